import type { AvroSchema } from '../events/avro-types.ts';
import { TypeConversionError } from '../errors.ts';
import { lastArrayHadBounds, parseArrayText } from './pg-array.ts';
import { connect, occasionally, type DecimalHandlingMode, type Scalar, type Warn } from './mapping-parts.ts';
import { numericFor } from './numeric-mapping.ts';
import { numericTypmod } from './pg-numeric.ts';
import * as pg from './pg-text.ts';
import type { FastText } from './pg-text-bytes.ts';

/**
 * Postgres column -> Avro field type and a converter from the value's text
 * output (pgoutput protocol v1, or a text-mode query, under the session
 * settings of session-settings.ts) to the value avsc encodes with
 * createAvroType (avro-types.ts). Debezium's PostgreSQL conventions where they
 * fit; the README's "Type mapping" section is the table of decisions.
 *
 * Everything type-specific is decided once per column: convert is a closure
 * picked here, so the per-row cost is the parse itself.
 */

export interface ColumnInfo {
  name: string;
  typeOid: number;
  typeMod: number;
  /** pg_type.typname, e.g. 'int4', 'numeric', '_text', 'order_status' (for a domain: its base type's). */
  typeName: string;
  /** pg_type.typcategory: 'N', 'S', 'D', 'A', 'E', 'U', ... */
  typeCategory: string;
  /** For arrays: typname / typcategory of the element. */
  elementTypeName?: string;
  elementTypeCategory?: string;
  /** Enum labels in sort order, for enum types or arrays of enums. */
  enumValues?: string[];
  notNull: boolean;
  hasDefault: boolean;
  /** pg_attribute.attndims when known: > 1 declares a multi-dimensional array, which maps to a string. */
  arrayDimensions?: number;
}

export type { DecimalHandlingMode, Warn } from './mapping-parts.ts';
/** `micros`: Avro timestamp-micros (UTC), Tide's default; `string`: Debezium's io.debezium.time.ZonedTimestamp, an ISO-8601 string in UTC. */
export type TimestamptzHandlingMode = 'micros' | 'string';

/**
 * A timestamptz as Debezium's ZonedTimestamp writes it: ISO-8601 in UTC with `Z`, the fraction without trailing
 * zeros (Java's DateTimeFormatter.ISO_OFFSET_DATE_TIME), e.g. `2024-03-01T12:34:56.1234Z`. ±infinity become the
 * instants parseTimestamp gives them.
 */
export function zonedTimestampString(text: string): string {
  const us = BigInt(pg.parseTimestamp(text, true));
  const ms = us >= 0n ? us / 1000n : -((-us + 999n) / 1000n);
  const iso = new Date(Number(ms)).toISOString(); // …T12:34:56.123Z
  const fraction = `${iso.slice(-4, -1)}${String(us - ms * 1000n).padStart(3, '0')}`.replace(/0+$/, '');
  return `${iso.slice(0, -5)}${fraction ? `.${fraction}` : ''}Z`;
}

export interface ColumnMapping {
  /** The NON-null field type; the caller wraps nullable columns as ['null', T]. */
  avroType: AvroSchema;
  /** Postgres text output (never SQL NULL) -> avsc value; throws TypeConversionError naming column, type and value. */
  convert(text: string): unknown;
  /** e.g. 'io.debezium.time.MicroTimestamp' or 'decimal(12,2)', for docs and debugging. */
  semanticType: string;
  /** True when convert is the identity and the Avro type a string: the UTF-8 text is the encoded value, so it can be copied as bytes. */
  textIsValue?: boolean;
  /** A byte-level parser for the common shape of this type's text (pg-text-bytes.ts); convert stays the reference. */
  fast?: FastText;
}

const identity = (text: string): string => text;

const STRING_TYPES = new Set(['text', 'varchar', 'bpchar', 'char', 'name', 'citext', 'inet', 'cidr', 'macaddr', 'macaddr8']);

function scalarFor(col: ColumnInfo, mode: DecimalHandlingMode, warn: Warn): Scalar {
  // First, so a user enum in another schema that happens to be called "date" is still an enum.
  if (col.typeCategory === 'E') return enumFor(col, warn);
  switch (col.typeName) {
    case 'int2':
      return {
        avroType: { type: 'int', 'connect.type': 'int16' },
        parse: (t) => pg.parseSmallInt(t, -32768, 32767),
        semanticType: 'int16',
        fast: { kind: 'int', min: -32768, max: 32767 },
      };
    case 'int4':
      return {
        avroType: 'int',
        parse: (t) => pg.parseSmallInt(t, -2147483648, 2147483647),
        semanticType: 'int32',
        fast: { kind: 'int', min: -2147483648, max: 2147483647 },
      };
    case 'int8':
      return { avroType: 'long', parse: pg.parseBigInt, semanticType: 'int64', fast: { kind: 'int8' } };
    case 'oid':
      return {
        avroType: 'long',
        parse: (t) => pg.parseSmallInt(t, 0, 4294967295),
        semanticType: 'int64 (oid)',
        fast: { kind: 'int', min: 0, max: 4294967295 },
      };
    case 'float4':
      // fround: the value is exactly the float32 Avro will carry (and decode to).
      return { avroType: 'float', parse: (t) => Math.fround(pg.parseFloatText(t)), semanticType: 'float32' };
    case 'float8':
      return { avroType: 'double', parse: pg.parseFloatText, semanticType: 'float64' };
    case 'numeric':
      return numericFor(col, mode, warn);
    case 'bool':
      return { avroType: 'boolean', parse: pg.parseBool, semanticType: 'boolean', fast: { kind: 'bool' } };
    case 'bytea':
      return { avroType: 'bytes', parse: pg.parseByteaHex, semanticType: 'bytes' };
    case 'date':
      return {
        avroType: connect('int', 'io.debezium.time.Date', { logicalType: 'date' }),
        parse: pg.parseDate,
        semanticType: 'io.debezium.time.Date',
        fast: { kind: 'date' },
      };
    case 'time':
      return {
        avroType: connect('long', 'io.debezium.time.MicroTime', { logicalType: 'time-micros' }),
        parse: pg.parseTime,
        semanticType: 'io.debezium.time.MicroTime',
      };
    case 'timetz':
      return {
        avroType: connect('string', 'io.debezium.time.ZonedTime'),
        parse: pg.parseTimeTz,
        semanticType: 'io.debezium.time.ZonedTime',
      };
    case 'timestamp':
      return {
        avroType: connect('long', 'io.debezium.time.MicroTimestamp', { logicalType: 'local-timestamp-micros' }),
        parse: (t) => pg.parseTimestamp(t, false),
        semanticType: 'io.debezium.time.MicroTimestamp',
        fast: { kind: 'timestamp', withZone: false },
      };
    case 'timestamptz':
      // Debezium sends a string (ZonedTimestamp); Tide sends UTC microseconds, which every Avro reader understands.
      return {
        avroType: { type: 'long', logicalType: 'timestamp-micros' },
        parse: (t) => pg.parseTimestamp(t, true),
        semanticType: 'timestamp-micros (UTC)',
        fast: { kind: 'timestamp', withZone: true },
      };
    case 'interval':
      return {
        avroType: connect('string', 'io.debezium.time.Interval'),
        parse: pg.parseInterval,
        semanticType: 'io.debezium.time.Interval',
      };
    case 'uuid':
      return {
        avroType: connect('string', 'io.debezium.data.Uuid', { logicalType: 'uuid' }),
        parse: (t) => {
          if (t.length !== 36 || t.charCodeAt(8) !== 45 || t.charCodeAt(23) !== 45) throw new pg.PgTextError('is not a valid uuid');
          return t;
        },
        semanticType: 'io.debezium.data.Uuid',
      };
    case 'json':
    case 'jsonb':
      return { avroType: connect('string', 'io.debezium.data.Json'), semanticType: 'io.debezium.data.Json' };
    case 'xml':
      return { avroType: connect('string', 'io.debezium.data.Xml'), semanticType: 'io.debezium.data.Xml' };
  }
  // Character types by Postgres' own classification (citext, ...) and network addresses: their text is the value.
  if (STRING_TYPES.has(col.typeName) || col.typeCategory === 'S') return { avroType: 'string', semanticType: 'string' };
  warn(`column ${col.name} has type ${col.typeName}, which Tide does not map: its values are sent as Postgres' text output (Avro string)`, {
    column: col.name,
    type: col.typeName,
    category: col.typeCategory,
  });
  return { avroType: 'string', semanticType: `string (unmapped ${col.typeName})` };
}

function enumFor(col: ColumnInfo, warn: Warn): Scalar {
  const allowed = col.enumValues;
  if (!allowed) return { avroType: connect('string', 'io.debezium.data.Enum'), semanticType: 'io.debezium.data.Enum' };
  // A label added by ALTER TYPE ... ADD VALUE after this mapping was built: sent as is, and said.
  const known = new Set(allowed);
  const unknown = occasionally(
    warn,
    `column ${col.name}: enum ${col.typeName} has a label the schema does not list (added after the schema was built?)`,
    {
      column: col.name,
      type: col.typeName,
    },
  );
  return {
    avroType: connect('string', 'io.debezium.data.Enum', { 'connect.parameters': { allowed: allowed.join(',') } }),
    parse: (t) => {
      if (!known.has(t)) unknown(t);
      return t;
    },
    semanticType: 'io.debezium.data.Enum',
  };
}

function guard(col: ColumnInfo, type: string, parse: (text: string) => unknown): (text: string) => unknown {
  return (text) => {
    try {
      return parse(text);
    } catch (err) {
      const reason = err instanceof pg.PgTextError ? err.message : `could not be converted: ${(err as Error).message}`;
      throw new TypeConversionError(col.name, type, text, reason, { cause: err });
    }
  };
}

function textFallback(col: ColumnInfo, why: string, warn: Warn): ColumnMapping {
  warn(`column ${col.name} (${col.typeName}) ${why}: its values are sent as Postgres' text output (Avro string)`, {
    column: col.name,
    type: col.typeName,
  });
  return { avroType: 'string', convert: identity, semanticType: `string (${col.typeName})`, textIsValue: true };
}

function arrayFor(col: ColumnInfo, mode: DecimalHandlingMode, warn: Warn): ColumnMapping {
  const elementName = col.elementTypeName ?? (col.typeName.startsWith('_') ? col.typeName.slice(1) : undefined);
  // int2vector / oidvector are category 'A' but print space-separated, not as '{...}'.
  if (!elementName || col.typeName === 'int2vector' || col.typeName === 'oidvector')
    return textFallback(col, 'is not a regular array type', warn);
  if ((col.arrayDimensions ?? 1) > 1) return textFallback(col, `is declared with ${col.arrayDimensions} dimensions`, warn);
  const element = scalarFor(
    {
      name: `${col.name}[]`,
      typeOid: 0,
      typeMod: col.typeMod, // an array column's typmod is its element's
      typeName: elementName,
      typeCategory: col.elementTypeCategory ?? (col.enumValues ? 'E' : ''),
      ...(col.enumValues ? { enumValues: col.enumValues } : {}),
      notNull: false, // elements can always be NULL
      hasDefault: false,
    },
    mode,
    warn,
  );
  const type = `${elementName}[]`;
  const delimiter = elementName === 'box' ? 59 : 44; // typdelim: ';' for box, ',' for everything else built in
  const parse = element.parse;
  const bounds = occasionally(
    warn,
    `column ${col.name}: an array value has explicit bounds ([lo:hi]=...); the elements are kept, the bounds dropped`,
    {
      column: col.name,
      type,
    },
  );
  const convert = guard(col, type, (text) => {
    const items = parseArrayText(text, delimiter);
    if (lastArrayHadBounds()) bounds(text);
    if (parse) {
      for (let i = 0; i < items.length; i++) {
        const v = items[i] as string | null;
        if (v === null) continue;
        try {
          items[i] = parse(v);
        } catch (err) {
          const reason = err instanceof pg.PgTextError ? err.message : `could not be converted: ${(err as Error).message}`;
          throw new pg.PgTextError(`has element ${i + 1} ${JSON.stringify(v)} that ${reason}`);
        }
      }
    }
    return items;
  });
  return { avroType: { type: 'array', items: ['null', element.avroType] }, convert, semanticType: `array<${element.semanticType}>` };
}

/** Build the mapping for one column. Unknown types map to string and call warn once; nothing here throws. */
export function mapColumn(
  col: ColumnInfo,
  opts: { decimalHandlingMode: DecimalHandlingMode; timestamptzHandlingMode?: TimestamptzHandlingMode },
  warn: Warn,
): ColumnMapping {
  if (col.typeCategory === 'A') return arrayFor(col, opts.decimalHandlingMode, warn);
  if (col.typeName === 'timestamptz' && opts.timestamptzHandlingMode === 'string')
    return {
      avroType: connect('string', 'io.debezium.time.ZonedTimestamp'),
      convert: guard(col, 'timestamptz', zonedTimestampString),
      semanticType: 'io.debezium.time.ZonedTimestamp',
    };
  const s = scalarFor(col, opts.decimalHandlingMode, warn);
  const tm = col.typeName === 'numeric' ? numericTypmod(col.typeMod) : undefined;
  const type = tm ? `numeric(${tm.precision},${tm.scale})` : col.typeName;
  if (!s.parse) return { avroType: s.avroType, convert: identity, semanticType: s.semanticType, textIsValue: true };
  return { avroType: s.avroType, convert: guard(col, type, s.parse), semanticType: s.semanticType, ...(s.fast ? { fast: s.fast } : {}) };
}

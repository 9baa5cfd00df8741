import { decodeDecimal, decodeUnscaled, type AvroSchema } from '../events/avro-types.ts';
import type { LakeType } from '../lake/lake-schema.ts';
import type { SinkColumn } from './lake-columns.ts';

/**
 * Kafka Connect's schemas, as Debezium writes them, mapped to the lake's columns (README "Reading Debezium
 * topics"). A Debezium topic carries Connect's type system whatever the converter: JsonConverter with
 * `schemas.enable=true` writes it as JSON (`{"type":"int64","name":"io.debezium.time.MicroTimestamp",…}`), and
 * the Avro converters (Confluent's, Apicurio's) translate it into Avro with `connect.name` / `connect.parameters`
 * annotations (Confluent's AvroData conventions). Both are read into one model here, so the semantic types
 * (Debezium's decimals, times, JSON, UUIDs) map once, to the same lake types as Tide's own topics:
 *   Decimal(p ≤ 38) → decimal(p,s) · wider, unknown precision, VariableScaleDecimal → string (exact text)
 *   Date (days) → date · Time (ms) / MicroTime / NanoTime → long (µs of the day)
 *   Timestamp (ms) / MicroTimestamp / NanoTimestamp → timestamp (µs; wall clock read as UTC, as Tide's `timestamp`)
 *   ZonedTimestamp (ISO-8601 string) → timestamp (µs, UTC) · int8/int16 → short · int32 → integer · int64 → long
 *   float32 → float · float64 → double · bytes → binary · string and its semantic types → string
 *   array → array · map and other structs (e.g. PostGIS) → string (JSON text)
 */
export interface ConnectSchema {
  type: string;
  optional?: boolean;
  name?: string;
  parameters?: Record<string, string>;
  /** Struct fields (Connect JSON names a field's name `field`). */
  fields?: ConnectField[];
  items?: ConnectSchema;
  values?: ConnectSchema;
}
export type ConnectField = ConnectSchema & { field: string };

type AvroObj = { type: AvroSchema; [key: string]: unknown };

const AVRO_PRIMITIVES: Record<string, string> = {
  int: 'int32',
  long: 'int64',
  float: 'float32',
  double: 'float64',
  boolean: 'boolean',
  string: 'string',
  bytes: 'bytes',
};

/** Every named type of an Avro schema, by full and by short name (Debezium's `after` refers to `before`'s record by name). */
export function avroNames(schema: AvroSchema): Map<string, AvroObj> {
  const names = new Map<string, AvroObj>();
  const walk = (s: AvroSchema, ns: string | undefined): void => {
    if (typeof s === 'string') return;
    if (Array.isArray(s)) return s.forEach((b) => walk(b, ns));
    const o = s;
    let space = ns;
    if (typeof o.name === 'string' && ['record', 'enum', 'fixed'].includes(o.type as string)) {
      space = typeof o.namespace === 'string' ? o.namespace : o.name.includes('.') ? o.name.slice(0, o.name.lastIndexOf('.')) : ns;
      const short = o.name.includes('.') ? o.name.slice(o.name.lastIndexOf('.') + 1) : o.name;
      names.set(space ? `${space}.${short}` : short, o);
      if (!names.has(short)) names.set(short, o);
    }
    if (Array.isArray(o.fields)) for (const f of o.fields as { type: AvroSchema }[]) walk(f.type, space);
    if (o.items) walk(o.items as AvroSchema, space);
    if (o.values) walk(o.values as AvroSchema, space);
    if (typeof o.type !== 'string') walk(o.type, space);
  };
  walk(schema, undefined);
  return names;
}

/** An Avro schema written by a Connect Avro converter, back in Connect's model. */
export function connectFromAvro(t: AvroSchema, names: Map<string, AvroObj>): ConnectSchema {
  if (Array.isArray(t)) {
    const rest = t.filter((b) => b !== 'null');
    if (rest.length !== 1) throw new Error(`unsupported Avro union ${JSON.stringify(t)}: only ["null", T] is expected`);
    return { ...connectFromAvro(rest[0]!, names), optional: rest.length !== t.length };
  }
  if (typeof t === 'string') {
    if (AVRO_PRIMITIVES[t]) return { type: AVRO_PRIMITIVES[t] };
    const named = names.get(t);
    if (!named) throw new Error(`unknown Avro type ${t}`);
    return connectFromAvro(named, names);
  }
  const o = t;
  // {"type": {...}} or {"type": "SomeNamedType"}: the type is elsewhere.
  if (typeof o.type !== 'string') return connectFromAvro(o.type, names);
  if (!AVRO_PRIMITIVES[o.type] && !['record', 'array', 'map', 'enum', 'fixed'].includes(o.type)) return connectFromAvro(o.type, names);
  const name = typeof o['connect.name'] === 'string' ? (o['connect.name'] as string) : undefined;
  const parameters = (o['connect.parameters'] as Record<string, string> | undefined) ?? undefined;
  const base = { ...(name ? { name } : {}), ...(parameters ? { parameters } : {}) };
  switch (o.type) {
    case 'record':
      return {
        type: 'struct',
        ...base,
        name: name ?? (o.name as string),
        fields: (o.fields as { name: string; type: AvroSchema }[]).map((f) => ({ ...connectFromAvro(f.type, names), field: f.name })),
      };
    case 'array':
      return { type: 'array', ...base, items: connectFromAvro(o.items as AvroSchema, names) };
    case 'map':
      return { type: 'map', ...base, values: connectFromAvro(o.values as AvroSchema, names) };
    case 'enum':
      return { type: 'string', ...base };
    case 'fixed':
      return { type: 'bytes', ...base };
    case 'int':
      if (o.logicalType === 'date') return { type: 'int32', name: name ?? 'org.apache.kafka.connect.data.Date' };
      if (o.logicalType === 'time-millis') return { type: 'int32', name: name ?? 'org.apache.kafka.connect.data.Time' };
      if (o['connect.type'] === 'int8' || o['connect.type'] === 'int16') return { type: o['connect.type'], ...base };
      return { type: 'int32', ...base };
    case 'long':
      if (o.logicalType === 'timestamp-millis') return { type: 'int64', name: name ?? 'org.apache.kafka.connect.data.Timestamp' };
      return { type: 'int64', ...base };
    case 'bytes':
      if (o.logicalType === 'decimal')
        return {
          type: 'bytes',
          name: 'org.apache.kafka.connect.data.Decimal',
          parameters: {
            ...parameters,
            scale: String(o.scale ?? parameters?.scale ?? 0),
            'connect.decimal.precision': String(o.precision ?? ''),
          },
        };
      return { type: 'bytes', ...base };
    default:
      return { type: AVRO_PRIMITIVES[o.type as string]!, ...base };
  }
}

/** A JSON value or an Avro one as bytes: JsonConverter writes bytes as base64. */
function toBuffer(v: unknown): Buffer {
  if (Buffer.isBuffer(v)) return v;
  if (v instanceof Uint8Array) return Buffer.from(v);
  if (typeof v === 'string') return Buffer.from(v, 'base64');
  throw new Error(`expected bytes, got ${typeof v}`);
}
const toBig = (v: unknown): bigint => (typeof v === 'bigint' ? v : BigInt(v as number));
const toNum = (v: unknown): number => Number(v);
const identity = (v: unknown): unknown => v;
const INFINITY_US = 253402300799999999n; // 9999-12-31T23:59:59.999999Z, as Tide's own topics carry `infinity`
const MINUS_INFINITY_US = -62135596800000000n; // 0001-01-01T00:00:00Z

/** Debezium's ZonedTimestamp (`2024-03-01T08:00:00.123456Z`, any offset) as µs since the epoch, exactly. */
export function zonedTimestampMicros(s: string): bigint {
  if (s === 'infinity') return INFINITY_US;
  if (s === '-infinity') return MINUS_INFINITY_US;
  const m = /^([+-]?\d{4,})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|([+-])(\d{2}):?(\d{2})(?::?(\d{2}))?)$/.exec(s);
  if (!m) throw new Error(`not an ISO-8601 timestamp with an offset: ${JSON.stringify(s)}`);
  const d = new Date(0);
  d.setUTCFullYear(Number(m[1]), Number(m[2]) - 1, Number(m[3]));
  d.setUTCHours(Number(m[4]), Number(m[5]), Number(m[6]), 0);
  let us = BigInt(d.getTime()) * 1000n + BigInt((m[7] ?? '').padEnd(6, '0').slice(0, 6));
  if (m[8] !== 'Z') {
    const offset = (Number(m[10]) * 3600 + Number(m[11]) * 60 + Number(m[12] ?? 0)) * 1_000_000;
    us -= BigInt(m[9] === '-' ? -offset : offset);
  }
  return us;
}

/** JSON text of a struct or map value (bytes as base64; an int64 beyond 2^53 as a string, to keep every digit). */
function jsonText(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) => {
    if (typeof x === 'bigint') return Number.isSafeInteger(Number(x)) ? Number(x) : x.toString();
    if (x && typeof x === 'object' && (x as { type?: string }).type === 'Buffer' && Array.isArray((x as { data?: unknown }).data))
      return Buffer.from((x as { data: number[] }).data).toString('base64');
    return x;
  });
}

/** The lake type of a Connect schema and the converter from its (Avro- or JSON-decoded) value. */
export function lakeTypeOf(s: ConnectSchema): { type: LakeType; convert: (v: unknown) => unknown } {
  switch (s.name) {
    case 'org.apache.kafka.connect.data.Decimal': {
      const scale = Number(s.parameters?.scale ?? 0);
      const precision = Number(s.parameters?.['connect.decimal.precision'] || NaN);
      if (precision > 0 && precision <= 38)
        return { type: { kind: 'decimal', precision, scale }, convert: (v) => decodeUnscaled(toBuffer(v)) };
      return { type: { kind: 'string' }, convert: (v) => decodeDecimal(toBuffer(v), scale) };
    }
    case 'io.debezium.data.VariableScaleDecimal':
      return {
        type: { kind: 'string' },
        convert: (v) => decodeDecimal(toBuffer((v as { value: unknown }).value), Number((v as { scale: unknown }).scale)),
      };
    case 'org.apache.kafka.connect.data.Date':
    case 'io.debezium.time.Date':
      return { type: { kind: 'date' }, convert: toNum };
    case 'org.apache.kafka.connect.data.Time':
    case 'io.debezium.time.Time':
      return { type: { kind: 'long' }, convert: (v) => toNum(v) * 1000 };
    case 'io.debezium.time.MicroTime':
      return { type: { kind: 'long' }, convert: toNum };
    case 'io.debezium.time.NanoTime':
      return { type: { kind: 'long' }, convert: (v) => Number(toBig(v) / 1000n) };
    case 'org.apache.kafka.connect.data.Timestamp':
    case 'io.debezium.time.Timestamp':
      return { type: { kind: 'timestamp' }, convert: (v) => toBig(v) * 1000n };
    case 'io.debezium.time.MicroTimestamp':
      return { type: { kind: 'timestamp' }, convert: toBig };
    case 'io.debezium.time.NanoTimestamp':
      return { type: { kind: 'timestamp' }, convert: (v) => toBig(v) / 1000n };
    case 'io.debezium.time.ZonedTimestamp':
      return { type: { kind: 'timestamp' }, convert: (v) => zonedTimestampMicros(v as string) };
  }
  switch (s.type) {
    case 'int8':
    case 'int16':
      return { type: { kind: 'short' }, convert: toNum };
    case 'int32':
      return { type: { kind: 'integer' }, convert: toNum };
    case 'int64':
      return { type: { kind: 'long' }, convert: identity };
    // Connect's JSON schemas name them float and double; its Java enum (and our Avro mapping) float32 and float64.
    case 'float32':
    case 'float':
      return { type: { kind: 'float' }, convert: toNum };
    case 'float64':
    case 'double':
      return { type: { kind: 'double' }, convert: toNum };
    case 'boolean':
      return { type: { kind: 'boolean' }, convert: identity };
    case 'string':
      return { type: { kind: 'string' }, convert: identity };
    case 'bytes':
      return { type: { kind: 'binary' }, convert: (v) => new Uint8Array(toBuffer(v)) };
    case 'array': {
      const el = lakeTypeOf(s.items!);
      return {
        type: { kind: 'array', element: el.type },
        convert: (v) => (v as unknown[]).map((x) => (x === null ? null : el.convert(x))),
      };
    }
    case 'map':
    case 'struct':
      return { type: { kind: 'string' }, convert: jsonText };
    default:
      throw new Error(`unsupported Kafka Connect type ${s.type}`);
  }
}

/** The lake columns of a Debezium `after` struct. */
export function columnsOfStruct(struct: ConnectSchema): SinkColumn[] {
  if (struct.type !== 'struct' || !struct.fields) throw new Error(`the row is a Connect ${struct.type}, not a struct`);
  return struct.fields.map((f) => {
    const mapped = lakeTypeOf(f);
    // Connect's JSON schemas always say `optional`; from Avro only a ["null", T] union is optional.
    return { name: f.field, avroName: f.field, type: mapped.type, nullable: f.optional === true, convert: mapped.convert };
  });
}

/**
 * Columns for JSON without schemas (`schemas.enable=false`): the message names no types, so every column is a
 * string holding the value's JSON text (strings as they are, numbers as written, objects and arrays as JSON).
 */
export function untypedColumns(names: string[]): SinkColumn[] {
  return names.map((name) => ({
    name,
    avroName: name,
    type: { kind: 'string' },
    nullable: true,
    convert: (v: unknown) => (typeof v === 'string' ? v : typeof v === 'object' ? jsonText(v) : String(v)),
  }));
}

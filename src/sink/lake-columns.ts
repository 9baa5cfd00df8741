import { decodeDecimal, decodeUnscaled, type AvroSchema } from '../events/avro-types.ts';
import type { LakeColumn, LakeType } from '../lake/lake-schema.ts';

/**
 * The lake's columns for one table, read off the Avro value schema the source registered
 * (the `after` record of the Debezium envelope), and a converter per column from the
 * decoded Avro value to the lake's JS value (see lake-schema.ts).
 *
 * The mapping inverts the source's (README "Type mapping"):
 *   int (connect.type int16) → short · int → integer · int/date → date · long → long
 *   long/timestamp-micros → timestamp · long/local-timestamp-micros → timestamp (the wall clock read as UTC:
 *     Delta's timestamp_ntz needs a table feature beyond writer version 2) · long/time-micros → long (µs of the day)
 *   bytes/decimal(p ≤ 38) → decimal(p,s) · wider decimals and VariableScaleDecimal → string (exact text)
 *   bytes → binary · float/double/boolean/string → same · array → array of the element's type
 */
export interface SinkColumn extends LakeColumn {
  /** The field's name in the Avro record (differs from the column when the name was not Avro-safe). */
  avroName: string;
  /** A renamed column's earlier names, newest first (the field's `tide.renamed_from`; see column-renames.ts). */
  renamedFrom?: string[];
  convert(value: unknown): unknown;
}

type Obj = { type: AvroSchema; [key: string]: unknown };

const identity = (v: unknown): unknown => v;
const toBigInt = (v: unknown): unknown => (typeof v === 'number' ? BigInt(v) : v);

function nonNull(t: AvroSchema): { type: AvroSchema; nullable: boolean } {
  if (Array.isArray(t)) {
    const rest = t.filter((b) => b !== 'null');
    if (rest.length !== 1) throw new Error(`unsupported Avro union ${JSON.stringify(t)}: only ["null", T] is expected`);
    return { type: rest[0]!, nullable: rest.length !== t.length };
  }
  return { type: t, nullable: false };
}

function mapType(t: AvroSchema): { type: LakeType; convert: (v: unknown) => unknown } {
  if (typeof t === 'string') {
    switch (t) {
      case 'int':
        return { type: { kind: 'integer' }, convert: identity };
      case 'long':
        return { type: { kind: 'long' }, convert: identity };
      case 'float':
        return { type: { kind: 'float' }, convert: identity };
      case 'double':
        return { type: { kind: 'double' }, convert: identity };
      case 'boolean':
        return { type: { kind: 'boolean' }, convert: identity };
      case 'string':
        return { type: { kind: 'string' }, convert: identity };
      case 'bytes':
        return { type: { kind: 'binary' }, convert: (v) => new Uint8Array(v as Buffer) };
      case 'io.debezium.data.VariableScaleDecimal':
        return { type: { kind: 'string' }, convert: (v) => variableScale(v) };
      default:
        throw new Error(`unsupported Avro type ${t}`);
    }
  }
  if (Array.isArray(t)) throw new Error(`nested union ${JSON.stringify(t)} is not supported`);
  const o = t as Obj;
  if (typeof o.type !== 'string') return mapType(o.type);
  const logical = o.logicalType as string | undefined;
  switch (o.type) {
    case 'int':
      if (logical === 'date') return { type: { kind: 'date' }, convert: identity };
      if (o['connect.type'] === 'int16') return { type: { kind: 'short' }, convert: identity };
      return { type: { kind: 'integer' }, convert: identity };
    case 'long':
      if (logical === 'timestamp-micros' || logical === 'local-timestamp-micros') return { type: { kind: 'timestamp' }, convert: toBigInt };
      return { type: { kind: 'long' }, convert: identity };
    case 'bytes':
      if (logical === 'decimal') {
        const precision = Number(o.precision);
        const scale = Number(o.scale ?? 0);
        if (precision <= 38) return { type: { kind: 'decimal', precision, scale }, convert: (v) => decodeUnscaled(v as Buffer) };
        return { type: { kind: 'string' }, convert: (v) => decodeDecimal(v as Buffer, scale) };
      }
      return { type: { kind: 'binary' }, convert: (v) => new Uint8Array(v as Buffer) };
    case 'record':
      if (o.name === 'VariableScaleDecimal') return { type: { kind: 'string' }, convert: (v) => variableScale(v) };
      throw new Error(`unsupported Avro record ${String(o.name)}`);
    case 'array': {
      const item = nonNull(o.items as AvroSchema);
      const el = mapType(item.type);
      return {
        type: { kind: 'array', element: el.type },
        convert: (v) => (v as unknown[]).map((x) => (x === null ? null : el.convert(x))),
      };
    }
    default:
      return mapType(o.type);
  }
}

function variableScale(v: unknown): string {
  const r = v as { scale: number; value: Buffer };
  return decodeDecimal(r.value, r.scale);
}

/** Columns of the envelope's `after` record (Tide's, or Debezium's `Value`). */
export function lakeColumnsOf(valueSchema: object): SinkColumn[] {
  const envelope = valueSchema as { fields?: { name: string; type: AvroSchema }[] };
  const after = envelope.fields?.find((f) => f.name === 'after');
  if (!after) throw new Error('not a Debezium envelope: the value schema has no `after` field');
  const record = nonNull(after.type).type as Obj & {
    fields: { name: string; type: AvroSchema; 'tide.column'?: string; 'tide.renamed_from'?: string[]; aliases?: string[] }[];
  };
  return record.fields.map((f) => {
    const { type, nullable } = nonNull(f.type);
    const mapped = mapType(type);
    const renamedFrom = f['tide.renamed_from'] ?? f.aliases;
    return {
      name: f['tide.column'] ?? f.name,
      avroName: f.name,
      type: mapped.type,
      nullable,
      ...(renamedFrom?.length ? { renamedFrom } : {}),
      convert: mapped.convert,
    };
  });
}

/** Key column names from the key schema (a record of the primary-key columns). */
export function keyColumnsOf(keySchema: object): string[] {
  const record = keySchema as { fields?: { name: string; 'tide.column'?: string }[] };
  return (record.fields ?? []).map((f) => f['tide.column'] ?? f.name);
}

/**
 * A decoded row image (a record by Avro field name) as lake values by column name: a missing or null value is
 * null, every other value goes through its column's `convert`. With `unavailable`, a value it recognises as a
 * producer's placeholder for a value it did not have (an unchanged TOASTed value) is null and its column is
 * added to `unavailable.unchanged` (silver keeps the value it has).
 */
export function rowImage(
  record: Record<string, unknown>,
  columns: SinkColumn[],
  unavailable?: { is: (value: unknown) => boolean; unchanged: string[] },
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const c of columns) {
    const v = record[c.avroName];
    if (v === null || v === undefined) out[c.name] = null;
    else if (unavailable?.is(v)) {
      out[c.name] = null;
      unavailable.unchanged.push(c.name);
    } else out[c.name] = c.convert(v);
  }
  return out;
}

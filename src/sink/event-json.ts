import { readFileSync } from 'node:fs';
import { ConfigError } from '../errors.ts';
import type { LakeColumn, LakeType } from '../lake/lake-schema.ts';
import { parseIsoMicros } from './event-time.ts';

/**
 * JSON event values (input.format events, value.converter json): the fields come from the connector
 * file, either a field list (`value.converter.fields`: `customer_id:long,payload:string?`) or a JSON Schema
 * file (`value.converter.schema.file`). Each value must be a JSON object; a required field that is missing
 * or null, or a field whose value is not of its type, makes the message a dead letter (reason: which field
 * and why). Fields the object has beyond the list are ignored.
 *
 * The JSON Schema is read, not fully validated: its top-level `properties` (`type` string, integer,
 * number, boolean, object, array, or a [type, "null"] pair; `format` date-time or date) and `required`.
 * Keywords beyond those (patterns, ranges, nested schemas) are not checked; ajv could, but the lake only
 * needs each column's type and presence, and one reason per message.
 */
export interface JsonField {
  name: string;
  type: LakeType;
  /** The lake type name the user wrote (`timestamp`, `json`, …), for messages. */
  spelled: string;
  /** `json`: any JSON value, stored as its text. */
  json: boolean;
  required: boolean;
}

const FIELD_TYPES: Record<string, LakeType> = {
  string: { kind: 'string' },
  long: { kind: 'long' },
  int: { kind: 'integer' },
  integer: { kind: 'integer' },
  double: { kind: 'double' },
  boolean: { kind: 'boolean' },
  timestamp: { kind: 'timestamp' },
  date: { kind: 'date' },
  json: { kind: 'string' },
};

/** `value.converter.fields`: `name:type`, a trailing `?` for an optional field. */
export function fieldsFromList(items: string[], source?: string): JsonField[] {
  return items.map((item) => {
    const m = /^([A-Za-z_][A-Za-z0-9_]*)\s*:\s*([a-z]+)(\?)?$/.exec(item.trim());
    if (!m || !FIELD_TYPES[m[2]!])
      throw new ConfigError(
        'value.converter.fields',
        `"${item}" is not name:type with a type among ${Object.keys(FIELD_TYPES).join(', ')} (a trailing ? for an optional field)`,
        source,
      );
    return { name: m[1]!, type: FIELD_TYPES[m[2]!]!, spelled: m[2]!, json: m[2] === 'json', required: !m[3] };
  });
}

interface SchemaProperty {
  type?: string | string[];
  format?: string;
}

/** `value.converter.schema.file`: a JSON Schema of an object, read at start. */
export function fieldsFromJsonSchema(path: string, source?: string): JsonField[] {
  const key = 'value.converter.schema.file';
  let schema: { type?: string; properties?: Record<string, SchemaProperty>; required?: string[] };
  try {
    schema = JSON.parse(readFileSync(path, 'utf8')) as typeof schema;
  } catch (err) {
    throw new ConfigError(key, `cannot read the JSON Schema ${path}: ${(err as Error).message}`, source);
  }
  if (!schema || typeof schema.properties !== 'object')
    throw new ConfigError(key, `${path} has no "properties": give the event's fields as a JSON Schema of an object`, source);
  const required = new Set(schema.required ?? []);
  return Object.entries(schema.properties).map(([name, p]) => {
    const types = (Array.isArray(p.type) ? p.type : [p.type]).filter((t) => t !== 'null');
    const nullable = Array.isArray(p.type) && p.type.includes('null');
    if (types.length !== 1)
      throw new ConfigError(
        key,
        `${path}: property "${name}" needs one type (or [type, "null"]), it has ${JSON.stringify(p.type)}`,
        source,
      );
    const t = types[0];
    const spelled =
      t === 'string'
        ? p.format === 'date-time'
          ? 'timestamp'
          : p.format === 'date'
            ? 'date'
            : 'string'
        : t === 'integer'
          ? 'long'
          : t === 'number'
            ? 'double'
            : t === 'boolean'
              ? 'boolean'
              : t === 'object' || t === 'array'
                ? 'json'
                : undefined;
    if (!spelled)
      throw new ConfigError(key, `${path}: property "${name}" has the type ${JSON.stringify(t)}, which Tide cannot store`, source);
    return { name, type: FIELD_TYPES[spelled]!, spelled, json: spelled === 'json', required: required.has(name) && !nullable };
  });
}

export function jsonColumns(fields: JsonField[]): LakeColumn[] {
  return fields.map((f) => ({ name: f.name, type: f.type, nullable: !f.required }));
}

/** One JSON value as a lake row; throws an Error whose message is the dead letter's reason. */
export function decodeJsonEvent(value: Buffer, fields: JsonField[]): Record<string, unknown> {
  let doc: unknown;
  try {
    doc = JSON.parse(value.toString('utf8'));
  } catch (err) {
    throw new Error(`the value is not JSON: ${(err as Error).message}`);
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw new Error('the value is JSON but not an object');
  const obj = doc as Record<string, unknown>;
  const row: Record<string, unknown> = {};
  for (const f of fields) {
    const v = obj[f.name];
    if (v === undefined || v === null) {
      if (f.required) throw new Error(`the required field "${f.name}" is ${v === null ? 'null' : 'missing'}`);
      row[f.name] = null;
      continue;
    }
    row[f.name] = jsonValue(f, v);
  }
  return row;
}

function jsonValue(f: JsonField, v: unknown): unknown {
  const wrong = () => new Error(`the field "${f.name}" is ${JSON.stringify(v).slice(0, 80)}, not a ${f.spelled}`);
  if (f.json) return JSON.stringify(v);
  switch (f.type.kind) {
    case 'string':
      if (typeof v !== 'string') throw wrong();
      return v;
    case 'long':
      if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw wrong();
      return BigInt(v);
    case 'integer':
      if (typeof v !== 'number' || !Number.isInteger(v) || v < -(2 ** 31) || v >= 2 ** 31) throw wrong();
      return v;
    case 'double':
      if (typeof v !== 'number') throw wrong();
      return v;
    case 'boolean':
      if (typeof v !== 'boolean') throw wrong();
      return v;
    case 'timestamp': {
      // An ISO-8601 string, or a number of milliseconds since the epoch (what JavaScript's Date.now() gives).
      const micros =
        typeof v === 'string' ? parseIsoMicros(v) : typeof v === 'number' && Number.isSafeInteger(v) ? BigInt(v) * 1000n : undefined;
      if (micros === undefined)
        throw new Error(
          `the field "${f.name}" is ${JSON.stringify(v).slice(0, 80)}, not a time (ISO-8601, or milliseconds since the epoch)`,
        );
      return micros;
    }
    case 'date': {
      const micros = typeof v === 'string' && /^\d{4}-\d{2}-\d{2}$/.test(v) ? parseIsoMicros(v) : undefined;
      if (micros === undefined) throw new Error(`the field "${f.name}" is ${JSON.stringify(v).slice(0, 80)}, not a date (YYYY-MM-DD)`);
      return Number(micros / 86_400_000_000n);
    }
    default:
      throw wrong();
  }
}

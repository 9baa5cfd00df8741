import {
  DuckDBArrayValue,
  DuckDBBlobValue,
  DuckDBDateValue,
  DuckDBDecimalValue,
  DuckDBListValue,
  DuckDBMapValue,
  DuckDBStructValue,
  DuckDBTimestampMillisecondsValue,
  DuckDBTimestampNanosecondsValue,
  DuckDBTimestampSecondsValue,
  DuckDBTimestampTZValue,
  DuckDBTimestampValue,
  DuckDBTimeValue,
  DuckDBUUIDValue,
  type DuckDBValue,
} from '@duckdb/node-api';
import type { LakeType } from '../lake-schema.ts';
import { checkDecimal } from './duckdb-sql.ts';

/**
 * Conversions between the lake's JS values (lake-schema.ts: bigint micros, unscaled decimals, days, …)
 * and @duckdb/node-api's value classes. The library's own JS converters take `Date` for timestamps and
 * numbers for decimals, which lose microseconds and precision, so these are written here.
 */

/** Why a value does not fit; `toDuckDBValue` callers turn it into a StageValueError with the row and column. */
export class ValueMismatch extends Error {}

export type ToDuckDB = (v: unknown) => DuckDBValue;

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

function int64(v: unknown): bigint {
  if (typeof v === 'bigint') {
    if (v < INT64_MIN || v > INT64_MAX) throw new ValueMismatch('is outside the 64-bit integer range');
    return v;
  }
  if (typeof v === 'number' && Number.isSafeInteger(v)) return BigInt(v);
  throw new ValueMismatch('is not an integer bigint (or a safe-integer number)');
}

function intRange(bits: 16 | 32): (v: unknown) => number {
  const max = 2 ** (bits - 1) - 1;
  const min = -(2 ** (bits - 1));
  return (v) => {
    if (typeof v !== 'number' || !Number.isInteger(v)) throw new ValueMismatch('is not an integer number');
    if (v < min || v > max) throw new ValueMismatch(`is outside the ${bits}-bit integer range`);
    return v;
  };
}

/** A converter from the lake JS value of type `t` to a DuckDB value (null passes through). */
export function toDuckDBValue(t: LakeType): ToDuckDB {
  const notNull = nonNullConverter(t);
  return (v) => (v === null || v === undefined ? null : notNull(v));
}

function nonNullConverter(t: LakeType): ToDuckDB {
  switch (t.kind) {
    case 'string':
      return (v) => {
        if (typeof v !== 'string') throw new ValueMismatch('is not a string');
        return v;
      };
    case 'long':
      return int64;
    case 'integer':
      return intRange(32);
    case 'short':
      return intRange(16);
    case 'double':
    case 'float':
      return (v) => {
        if (typeof v !== 'number') throw new ValueMismatch('is not a number');
        return v;
      };
    case 'boolean':
      return (v) => {
        if (typeof v !== 'boolean') throw new ValueMismatch('is not a boolean');
        return v;
      };
    case 'binary':
      return (v) => {
        if (!(v instanceof Uint8Array)) throw new ValueMismatch('is not a Uint8Array');
        return new DuckDBBlobValue(v);
      };
    case 'date': {
      const days = intRange(32);
      return (v) => new DuckDBDateValue(days(v));
    }
    case 'timestamp':
      return (v) => new DuckDBTimestampTZValue(int64(v));
    case 'decimal': {
      const { precision, scale } = t;
      checkDecimal(precision, scale);
      const limit = 10n ** BigInt(precision);
      return (v) => {
        const unscaled = typeof v === 'bigint' ? v : typeof v === 'number' && Number.isSafeInteger(v) ? BigInt(v) : undefined;
        if (unscaled === undefined) throw new ValueMismatch('is not an unscaled decimal bigint');
        if (unscaled <= -limit || unscaled >= limit) throw new ValueMismatch(`has more than ${precision} digits`);
        return new DuckDBDecimalValue(unscaled, precision, scale);
      };
    }
    case 'array': {
      const element = toDuckDBValue(t.element);
      return (v) => {
        if (!Array.isArray(v)) throw new ValueMismatch('is not an array');
        return new DuckDBListValue(v.map(element));
      };
    }
  }
}

/**
 * A DuckDB result value in the lake's JS representation: TIMESTAMP(TZ) → bigint micros, DECIMAL →
 * bigint unscaled, DATE → days, BLOB → Uint8Array, BIGINT/HUGEINT → bigint, LIST/ARRAY → arrays,
 * STRUCT → objects, MAP → [{ key, value }], TIME → bigint micros, UUID → string. Other values
 * (e.g. INTERVAL) are returned as the library's value objects.
 */
export function fromDuckDBValue(v: DuckDBValue): unknown {
  if (v === null || typeof v !== 'object') return v;
  if (v instanceof DuckDBTimestampTZValue || v instanceof DuckDBTimestampValue) return v.micros;
  if (v instanceof DuckDBDecimalValue) return v.value;
  if (v instanceof DuckDBDateValue) return v.days;
  if (v instanceof DuckDBBlobValue) return new Uint8Array(v.bytes);
  if (v instanceof DuckDBListValue || v instanceof DuckDBArrayValue) return v.items.map(fromDuckDBValue);
  if (v instanceof DuckDBStructValue) {
    const out: Record<string, unknown> = {};
    for (const [k, item] of Object.entries(v.entries)) out[k] = fromDuckDBValue(item);
    return out;
  }
  if (v instanceof DuckDBMapValue) return v.entries.map((e) => ({ key: fromDuckDBValue(e.key), value: fromDuckDBValue(e.value) }));
  if (v instanceof DuckDBTimestampMillisecondsValue) return v.millis * 1000n;
  if (v instanceof DuckDBTimestampSecondsValue) return v.seconds * 1_000_000n;
  if (v instanceof DuckDBTimestampNanosecondsValue) return v.nanos / 1000n;
  if (v instanceof DuckDBTimeValue) return v.micros;
  if (v instanceof DuckDBUUIDValue) return v.toString();
  return v;
}

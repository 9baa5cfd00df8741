import { DuckDBMapValue, type DuckDBValue } from '@duckdb/node-api';
import type { LakeColumn } from '../lake-schema.ts';
import { STRING_PREFIX_LENGTH, type ColumnAggregate } from './file-stats.ts';

/**
 * A data file's stats from DuckDB's own Parquet writer: `COPY … TO … (FORMAT parquet, RETURN_STATS)`
 * returns, besides the row count, each column's `null_count`, `min` and `max` as text
 * (https://duckdb.org/docs/stable/sql/statements/copy#copy--to-options). Reading them saves the second
 * scan of the rows an aggregate query costs (~5% of a bronze append in bench/sink-lake.ts).
 *
 * Only types whose text form maps back exactly are taken from there: integers, booleans, strings
 * (see stringBound), dates and UTC timestamps (years 1000–9999). Floating point (NaN and float rounding), decimals,
 * binary and arrays, anything not in the expected form, and a column whose bounds are missing while
 * it has values, come back `undefined`: the caller aggregates those columns over the rows as before,
 * so every bound is what `min()`/`max()` over the file give (test/integration/parquet-engine.test.ts
 * compares both routes).
 */

export interface CopyStats {
  numRecords: number;
  /** Per data column, in order: its aggregate, or undefined when it must be computed over the rows. */
  columns: (ColumnAggregate | undefined)[];
}

/** Parse the one row COPY … RETURN_STATS returns (filename, count, file_size_bytes, footer_size_bytes, column_statistics, …). */
export function copyStats(row: Record<string, DuckDBValue> | undefined, data: LakeColumn[]): CopyStats | undefined {
  const count = row?.count;
  const stats = row?.column_statistics;
  if (typeof count !== 'bigint' || !(stats instanceof DuckDBMapValue)) return undefined;
  const byKey = new Map<string, Map<string, string>>();
  for (const { key, value } of stats.entries) {
    if (typeof key !== 'string' || !(value instanceof DuckDBMapValue)) continue;
    const m = new Map<string, string>();
    for (const e of value.entries) if (typeof e.key === 'string' && typeof e.value === 'string') m.set(e.key, e.value);
    byKey.set(key, m);
  }
  const numRecords = Number(count);
  const columns = data.map((column) => {
    const quoted = `"${column.name.replace(/"/g, '""')}"`;
    const m = byKey.get(quoted) ?? byKey.get(column.name);
    return m ? columnStats(column, m, numRecords) : undefined;
  });
  return { numRecords, columns };
}

function columnStats(column: LakeColumn, m: Map<string, string>, numRecords: number): ColumnAggregate | undefined {
  const nulls = m.get('null_count');
  if (nulls === undefined || !/^\d+$/.test(nulls)) return undefined;
  const nullCount = Number(nulls);
  const lo = m.get('min');
  const hi = m.get('max');
  if (lo === undefined || hi === undefined) {
    // No bounds: right only when there is no value to bound.
    return nullCount === numRecords && lo === undefined && hi === undefined ? { column, min: null, max: null, nullCount } : undefined;
  }
  const min = parse(column, lo);
  const max = parse(column, hi);
  return min === undefined || max === undefined ? undefined : { column, min, max, nullCount };
}

/**
 * DuckDB cuts string bounds to 256 bytes (the max then gets its last byte incremented). Delta keeps
 * only the first STRING_PREFIX_LENGTH (32) code points, at most 128 bytes, so a bound longer than that
 * gives the same Delta bound either way; one of at most 32 code points was never cut and is exact.
 */
function stringBound(text: string): string | undefined {
  let cps = 0;
  for (const _ of text) if (++cps > STRING_PREFIX_LENGTH) return text;
  return Buffer.byteLength(text) < 256 ? text : undefined;
}

const DAY_MS = 86_400_000;
const DATE = /^(\d{4})-(\d{2})-(\d{2})$/;
const TIMESTAMP = /^(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?\+00$/;

/** The value in the lake JS representation `fromDuckDBValue` gives, or undefined when the text is not in the expected form. */
function parse(column: LakeColumn, text: string): unknown {
  switch (column.type.kind) {
    case 'long':
      return /^-?\d+$/.test(text) ? BigInt(text) : undefined;
    case 'integer':
    case 'short':
      return /^-?\d+$/.test(text) ? Number(text) : undefined;
    case 'boolean':
      return text === 'true' || text === '1' ? true : text === 'false' || text === '0' ? false : undefined;
    case 'string':
      return stringBound(text);
    case 'date': {
      const d = DATE.exec(text);
      if (!d || Number(d[1]) < 1000) return undefined;
      return Date.UTC(Number(d[1]), Number(d[2]) - 1, Number(d[3])) / DAY_MS;
    }
    case 'timestamp': {
      const t = TIMESTAMP.exec(text);
      if (!t || Number(t[1]) < 1000) return undefined;
      const ms = Date.UTC(Number(t[1]), Number(t[2]) - 1, Number(t[3]), Number(t[4]), Number(t[5]), Number(t[6]));
      return BigInt(ms) * 1000n + BigInt((t[7] ?? '').padEnd(6, '0'));
    }
    default:
      return undefined;
  }
}

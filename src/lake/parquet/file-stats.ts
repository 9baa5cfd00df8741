import type { LakeColumn, LakeType } from '../lake-schema.ts';

/**
 * Delta per-file statistics (PROTOCOL.md, "Appendix: Per-file Statistics"): `numRecords`, and per
 * column `minValues`, `maxValues` and `nullCount`, as the JSON string of `add.stats`.
 *
 * Readers skip files with these bounds, so a bound that is too tight returns wrong query results.
 * Every min written here is ≤ every value in the file and every max ≥ every value:
 * - strings longer than STRING_PREFIX_LENGTH code points: min is the prefix (≤ the value), max is the
 *   prefix with its last code point incremented (> every string with that prefix). Comparison is by
 *   code point, which is UTF-8 byte order, the order Spark, delta-rs and DuckDB use.
 * - timestamps: stats are millisecond ISO-8601 strings ("Timestamp columns are truncated down to
 *   milliseconds"); min is floored and max rounded *up* to the millisecond, so the max stays an upper
 *   bound for readers that do not add the 1 ms Spark adds (older delta-kernel-rs, Trino).
 * - NaN and ±Infinity have no JSON form: that bound is left out. So are dates and timestamps outside
 *   years 0001–9999, which Spark's stats parser does not read.
 * - binary and array columns get a nullCount only (Delta does not define min/max for them).
 * A missing bound only costs skipping, never correctness.
 */

/** Spark's default `delta.dataSkippingStringPrefixLength`. */
export const STRING_PREFIX_LENGTH = 32;

/** One column's aggregates over a file, values in the lake JS representation (lake-schema.ts). */
export interface ColumnAggregate {
  column: LakeColumn;
  /** null when every value is null, or when the type has no min/max (binary, array). */
  min: unknown;
  max: unknown;
  nullCount: number;
}

/** Whether Delta stats carry min/max for the type (binary and arrays: no). */
export function hasMinMax(t: LakeType): boolean {
  return t.kind !== 'binary' && t.kind !== 'array';
}

/** The `add.stats` JSON. Keys in Spark's order. */
export function statsJson(numRecords: number, columns: ColumnAggregate[]): string {
  const mins: string[] = [];
  const maxs: string[] = [];
  const nulls: string[] = [];
  for (const a of columns) {
    const key = JSON.stringify(a.column.name);
    nulls.push(`${key}:${a.nullCount}`);
    if (!hasMinMax(a.column.type)) continue;
    const lo = a.min === null || a.min === undefined ? undefined : boundJson(a.column.type, a.min, 'min');
    const hi = a.max === null || a.max === undefined ? undefined : boundJson(a.column.type, a.max, 'max');
    if (lo !== undefined) mins.push(`${key}:${lo}`);
    if (hi !== undefined) maxs.push(`${key}:${hi}`);
  }
  return `{"numRecords":${numRecords},"minValues":{${mins.join(',')}},"maxValues":{${maxs.join(',')}},"nullCount":{${nulls.join(',')}}}`;
}

/** One bound as JSON text, or undefined when it cannot be written safely. */
export function boundJson(t: LakeType, v: unknown, bound: 'min' | 'max'): string | undefined {
  switch (t.kind) {
    case 'string': {
      const s = bound === 'min' ? stringLowerBound(String(v)) : stringUpperBound(String(v));
      return s === undefined ? undefined : JSON.stringify(s);
    }
    case 'long':
    case 'integer':
    case 'short':
      return String(v);
    case 'double':
    case 'float':
      return typeof v === 'number' && Number.isFinite(v) ? JSON.stringify(v) : undefined;
    case 'boolean':
      return v ? 'true' : 'false';
    case 'decimal':
      // A JSON number with exactly the column's scale (Spark writes decimals as numbers).
      return decimalText(BigInt(v as bigint), t.scale);
    case 'date': {
      const s = isoDate(Number(v));
      return s === undefined ? undefined : JSON.stringify(s);
    }
    case 'timestamp': {
      const s = isoTimestampMillis(BigInt(v as bigint), bound === 'min' ? 'floor' : 'ceil');
      return s === undefined ? undefined : JSON.stringify(s);
    }
    case 'binary':
    case 'array':
      return undefined;
  }
}

/** A lower bound for `s`: itself, or its first STRING_PREFIX_LENGTH code points. */
export function stringLowerBound(s: string, prefix = STRING_PREFIX_LENGTH): string {
  const cps = Array.from(s);
  return cps.length <= prefix ? s : cps.slice(0, prefix).join('');
}

/**
 * An upper bound for `s`: itself, or its prefix with the last code point incremented (skipping the
 * surrogate range), so it sorts after every string starting with that prefix. Undefined when no such
 * string exists (the prefix is all U+10FFFF).
 */
export function stringUpperBound(s: string, prefix = STRING_PREFIX_LENGTH): string | undefined {
  const cps = Array.from(s, (ch) => ch.codePointAt(0)!);
  if (cps.length <= prefix) return s;
  for (let i = prefix - 1; i >= 0; i--) {
    const cp = cps[i]!;
    if (cp >= 0x10ffff) continue;
    const next = cp + 1 === 0xd800 ? 0xe000 : cp + 1;
    return String.fromCodePoint(...cps.slice(0, i), next);
  }
  return undefined;
}

/** `-123.45` from unscaled -12345 and scale 2. */
export function decimalText(unscaled: bigint, scale: number): string {
  const neg = unscaled < 0n;
  const digits = (neg ? -unscaled : unscaled).toString();
  if (scale === 0) return `${neg ? '-' : ''}${digits}`;
  const padded = digits.padStart(scale + 1, '0');
  return `${neg ? '-' : ''}${padded.slice(0, -scale)}.${padded.slice(-scale)}`;
}

/** 0001-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z (Date.UTC maps years 0–99 to 19xx, so literals). */
const MIN_MS = -62_135_596_800_000;
const MAX_MS = 253_402_300_799_999;
const DAY_MS = 86_400_000;

function yearsOk(ms: number): boolean {
  return ms >= MIN_MS && ms <= MAX_MS;
}

/** `YYYY-MM-DD` of days since 1970-01-01, or undefined outside years 0001–9999. */
export function isoDate(days: number): string | undefined {
  const ms = days * DAY_MS;
  return Number.isFinite(ms) && yearsOk(ms) ? new Date(ms).toISOString().slice(0, 10) : undefined;
}

/** `YYYY-MM-DDTHH:MM:SS.sssZ` of microseconds since the epoch, rounded down or up to the millisecond. */
export function isoTimestampMillis(micros: bigint, round: 'floor' | 'ceil'): string | undefined {
  let ms = micros / 1000n; // truncates toward zero
  const rem = micros % 1000n;
  if (round === 'floor' && rem < 0n) ms -= 1n;
  if (round === 'ceil' && rem > 0n) ms += 1n;
  if (ms < BigInt(MIN_MS) || ms > BigInt(MAX_MS)) return undefined;
  return new Date(Number(ms)).toISOString();
}

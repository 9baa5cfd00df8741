import { daysFromCivil } from './pg-text.ts';

/**
 * Fast paths for the streaming encoder: the commonest shapes of Postgres' text
 * output read straight from the pgoutput message bytes, with no JS string per
 * value. Each returns NaN for anything that is not its common shape (other
 * lengths, signs, BC dates, infinities, offsets other than +00, overflow...);
 * the caller then decodes the text and runs the full parser from pg-text.ts /
 * pg-numeric.ts, which also produces the error for invalid text. So on every
 * input a fast path either gives exactly the full parser's value or steps
 * aside (test/unit/event-writer.test.ts compares the two on many values).
 */

/** Which fast path fits a column; set by type-mapping.ts. */
export type FastText =
  | { kind: 'int'; min: number; max: number }
  | { kind: 'int8' }
  | { kind: 'bool' }
  | { kind: 'decimal'; scale: number; maxIntDigits: number }
  | { kind: 'timestamp'; withZone: boolean }
  | { kind: 'date' };

/** '-'? digits, at most 15 of them (exact as a double): int2/int4/int8/oid text. */
export function intBytes(buf: Buffer, start: number, end: number): number {
  const neg = buf[start] === 45;
  let i = neg ? start + 1 : start;
  if (i === end || end - i > 15) return NaN;
  let n = 0;
  for (; i < end; i++) {
    const d = buf[i]! - 48;
    if (d < 0 || d > 9) return NaN;
    n = n * 10 + d;
  }
  return neg ? -n : n;
}

/** 't' or 'f' (boolout): 1 or 0. */
export function boolBytes(buf: Buffer, start: number, end: number): number {
  if (end - start !== 1) return NaN;
  const c = buf[start];
  return c === 116 ? 1 : c === 102 ? 0 : NaN;
}

/**
 * numeric text at `scale` as its unscaled integer (value × 10^scale), when it has at most 15 significant
 * digits: '-'? digits ('.' digits)?, no more fraction digits than `scale`, integer digits within maxIntDigits.
 */
export function decimalBytes(buf: Buffer, start: number, end: number, scale: number, maxIntDigits: number): number {
  const neg = buf[start] === 45;
  let i = neg ? start + 1 : start;
  const intStart = i;
  let n = 0;
  let sig = 0;
  for (; i < end; i++) {
    const c = buf[i]!;
    if (c === 46) break;
    const d = c - 48;
    if (d < 0 || d > 9) return NaN;
    if (sig > 0 || d !== 0) sig++;
    n = n * 10 + d;
  }
  if (i === intStart || sig > maxIntDigits) return NaN;
  let frac = 0;
  if (i < end) {
    for (i++; i < end; i++, frac++) {
      const d = buf[i]! - 48;
      if (d < 0 || d > 9 || frac >= scale) return NaN;
      if (sig > 0 || d !== 0) sig++;
      n = n * 10 + d;
    }
    if (frac === 0) return NaN;
  }
  if (sig > 0) sig += scale - frac;
  if (sig > 15) return NaN;
  for (; frac < scale; frac++) n *= 10;
  return neg && n !== 0 ? -n : n;
}

function two(buf: Buffer, i: number): number {
  const a = buf[i]! - 48;
  const b = buf[i + 1]! - 48;
  return a >= 0 && a <= 9 && b >= 0 && b <= 9 ? a * 10 + b : NaN;
}

/** 'YYYY-MM-DD' at start (4-digit year, AD) as days since 1970-01-01, or NaN. */
function ymdDays(buf: Buffer, start: number): number {
  const y = two(buf, start) * 100 + two(buf, start + 2);
  const m = two(buf, start + 5);
  const d = two(buf, start + 8);
  if (buf[start + 4] !== 45 || buf[start + 7] !== 45 || !(m >= 1 && m <= 12 && d >= 1 && d <= 31)) return NaN;
  return daysFromCivil(y, m, d); // NaN stays NaN
}

/** date text 'YYYY-MM-DD': days since 1970-01-01. */
export function dateBytes(buf: Buffer, start: number, end: number): number {
  return end - start === 10 ? ymdDays(buf, start) : NaN;
}

/**
 * timestamp 'YYYY-MM-DD HH:MM:SS[.f{1,6}]', and for timestamptz followed by '+00' (the session runs in UTC):
 * microseconds since 1970-01-01 (UTC).
 */
export function timestampBytes(buf: Buffer, start: number, end: number, withZone: boolean): number {
  let last = end;
  if (withZone) {
    if (end - start < 22 || buf[end - 3] !== 43 || buf[end - 2] !== 48 || buf[end - 1] !== 48) return NaN;
    last = end - 3;
  }
  if (last - start < 19 || buf[start + 10] !== 32 || buf[start + 13] !== 58 || buf[start + 16] !== 58) return NaN;
  const days = ymdDays(buf, start);
  const h = two(buf, start + 11);
  const mi = two(buf, start + 14);
  const s = two(buf, start + 17);
  if (!(h <= 23 && mi <= 59 && s <= 59)) return NaN; // also false for NaN
  let frac = 0;
  let i = start + 19;
  if (i < last) {
    if (buf[i] !== 46) return NaN;
    const digits = last - i - 1;
    if (digits < 1 || digits > 6) return NaN;
    for (i++; i < last; i++) {
      const d = buf[i]! - 48;
      if (d < 0 || d > 9) return NaN;
      frac = frac * 10 + d;
    }
    for (let k = digits; k < 6; k++) frac *= 10;
  }
  const secs = days * 86400 + h * 3600 + mi * 60 + s;
  // Exact as a double only while |secs| < 9e9 (about years 1685 to 2255); parseTimestamp switches to bigint there too.
  return secs < 9e9 && secs > -9e9 ? secs * 1_000_000 + frac : NaN;
}

import type { AddAction } from '../lake/delta/actions.ts';
import type { LakeColumn, LakeType } from '../lake/lake-schema.ts';

/**
 * File pruning for merges: which files of a table may hold one of a batch's keys, from the files'
 * Delta statistics (PROTOCOL.md, "Appendix: Per-file Statistics"). A file left out here is never
 * looked at again by the merge, so a bound read wrongly loses updates and deletes (issue 11, item 15:
 * `date` and `timestamp` keys were compared as days/microseconds against ISO strings and never matched;
 * decimals unscaled against scaled numbers; strings in UTF-16 order against code-point statistics).
 *
 * So both sides are brought into ONE domain per lake type before comparing — the keys as the sink holds
 * them (lake-schema.ts) and the bounds as the stats JSON holds them (file-stats.ts) — and every
 * conversion widens rather than narrows: when a bound cannot be read exactly it is read loosely or the
 * file is kept. Keeping a file only costs a look; dropping one costs data.
 */

/** A value in the comparison domain of its type: bigint for integers, decimals and timestamps, number for dates and floats, string for strings. */
type Domain = bigint | number | string;

interface Bounds {
  lo: Domain;
  hi: Domain;
}

/** Code-point order, the order of UTF-8 bytes, which Delta's string statistics use (JS `<` compares UTF-16 code units). */
export function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    // Only when one side is a surrogate (a code point above U+FFFF) and the other is in U+E000–U+FFFF do the orders differ.
    const xs = x >= 0xd800 && x <= 0xdfff;
    const ys = y >= 0xd800 && y <= 0xdfff;
    if (xs !== ys) return xs ? 1 : -1;
    return x - y;
  }
  return a.length - b.length;
}

function compare(a: Domain, b: Domain): number {
  if (typeof a === 'string' && typeof b === 'string') return compareCodePoints(a, b);
  return a < b ? -1 : a > b ? 1 : 0;
}

/** A key value (lake representation) in its type's domain; undefined when keys of this type are not pruned. */
export function keyDomain(t: LakeType, v: unknown): Domain | undefined {
  if (v === null || v === undefined) return undefined;
  switch (t.kind) {
    case 'long':
    case 'integer':
    case 'short':
    case 'decimal': // the unscaled value
    case 'timestamp': // microseconds
      if (typeof v === 'bigint') return v;
      return typeof v === 'number' && Number.isSafeInteger(v) ? BigInt(v) : undefined;
    case 'date': // days since the epoch
      return typeof v === 'number' && Number.isInteger(v) ? v : undefined;
    case 'double':
    case 'float':
      return typeof v === 'number' && !Number.isNaN(v) ? v : undefined;
    case 'string':
      return typeof v === 'string' ? v : undefined;
    default:
      return undefined; // boolean, binary, array: no useful ranges
  }
}

const MS_PER_DAY = 86_400_000;

/** A file's min/max of a column, in the column type's domain, widened where the JSON cannot be exact. */
export function statsBounds(t: LakeType, min: unknown, max: unknown): Bounds | undefined {
  if (min === undefined || min === null || max === undefined || max === null) return undefined;
  switch (t.kind) {
    case 'long':
    case 'integer':
    case 'short': {
      // JSON numbers beyond 2^53 are not exact: do not prune on them.
      if (typeof min !== 'number' || typeof max !== 'number' || !Number.isSafeInteger(min) || !Number.isSafeInteger(max)) return undefined;
      return { lo: BigInt(min), hi: BigInt(max) };
    }
    case 'decimal': {
      // Written as JSON numbers with the column's scale; JSON.parse gives the nearest double, so widen by
      // a few ulps on each side and compare unscaled.
      const lo = scaledBound(min, t.scale, 'lo');
      const hi = scaledBound(max, t.scale, 'hi');
      return lo === undefined || hi === undefined ? undefined : { lo, hi };
    }
    case 'date': {
      const lo = isoDays(min);
      const hi = isoDays(max);
      return lo === undefined || hi === undefined ? undefined : { lo, hi };
    }
    case 'timestamp': {
      // Millisecond strings: the min is floored; a max may be truncated down (Spark's own writer does), so
      // the upper bound is the end of its millisecond.
      const lo = isoMillis(min);
      const hi = isoMillis(max);
      return lo === undefined || hi === undefined ? undefined : { lo: lo * 1000n, hi: hi * 1000n + 999n };
    }
    case 'double':
    case 'float':
      return typeof min === 'number' && typeof max === 'number' ? { lo: min, hi: max } : undefined;
    case 'string':
      // A truncated string's min is a prefix (≤ values) and its max an incremented prefix (> values): usable as they are.
      return typeof min === 'string' && typeof max === 'string' ? { lo: min, hi: max } : undefined;
    default:
      return undefined;
  }
}

function scaledBound(v: unknown, scale: number, side: 'lo' | 'hi'): bigint | undefined {
  if (typeof v !== 'number' || !Number.isFinite(v)) return undefined;
  const scaled = v * 10 ** scale;
  if (!Number.isFinite(scaled) || Math.abs(scaled) >= 2 ** 52) return undefined;
  const slack = Math.abs(scaled) * 2 ** -50 + 1;
  return BigInt(side === 'lo' ? Math.floor(scaled - slack) : Math.ceil(scaled + slack));
}

function isoDays(v: unknown): number | undefined {
  if (typeof v !== 'string' || !/^\d{4}-\d{2}-\d{2}$/.test(v)) return undefined;
  const ms = Date.parse(`${v}T00:00:00Z`);
  return Number.isFinite(ms) ? Math.round(ms / MS_PER_DAY) : undefined;
}

function isoMillis(v: unknown): bigint | undefined {
  if (typeof v !== 'string') return undefined;
  const ms = Date.parse(v);
  return Number.isFinite(ms) ? BigInt(ms) : undefined;
}

/**
 * The files whose range of the single key column may contain one of `keys`. A file without usable
 * statistics is a candidate; so is every file when a key cannot be put in the type's domain.
 */
export function candidateFiles(files: AddAction[], keyColumn: LakeColumn, keys: unknown[]): AddAction[] {
  const domain: Domain[] = [];
  for (const k of keys) {
    const d = keyDomain(keyColumn.type, k);
    if (d === undefined) return files;
    domain.push(d);
  }
  domain.sort(compare);
  return files.filter((f) => {
    if (!f.stats) return true;
    let stats: { minValues?: Record<string, unknown>; maxValues?: Record<string, unknown> };
    try {
      stats = JSON.parse(f.stats) as typeof stats;
    } catch {
      return true;
    }
    const b = statsBounds(keyColumn.type, stats.minValues?.[keyColumn.name], stats.maxValues?.[keyColumn.name]);
    if (!b) return true;
    // First key >= lo, by binary search; a candidate when it is <= hi.
    let a = 0;
    let z = domain.length;
    while (a < z) {
      const m = (a + z) >> 1;
      if (compare(domain[m]!, b.lo) < 0) a = m + 1;
      else z = m;
    }
    return a < domain.length && compare(domain[a]!, b.hi) <= 0;
  });
}

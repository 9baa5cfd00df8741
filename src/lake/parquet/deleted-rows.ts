import { endianness } from 'node:os';
import type { DeletionVectorDescriptor, DeletionVectorReader, RowBucket } from '../delta/deletion-vector.ts';
import { ParquetEngineError } from './parquet-errors.ts';

const LITTLE_ENDIAN = endianness() === 'LE';

/**
 * The rows a view's deletion vectors delete, as DuckDB sees them: a table (k BIGINT, bits BIGINT) with one
 * row per 64-row word of a file that holds a deleted row. `k` is the file's index in the view's list × 2^26 +
 * the row index ÷ 64 (`deletedWordKey`), `bits` has bit (row index mod 64) set for each deleted row of the word
 * (`deletedBit`). A view LEFT JOINs it on the word and keeps the rows whose bit is clear.
 *
 * Words rather than one key per deleted row: a table whose vectors hold millions of rows at random positions
 * (silver orders under random updates: a third of its rows after 15 minutes) has up to 64 of them per word, so
 * DuckDB appends and hashes far fewer rows (a 12M-row table with 4M deleted: 188k words). A key per deleted row
 * was appended on the calling (JS) thread and made the anti-join's hash table of 4M entries.
 *
 * Built from each vector's Uint32Array buckets (deserializeRowBuckets), ascending, with no JS value per row: on a
 * little-endian machine each 64-bit value is written as its two 32-bit halves. Before, the rows went through a
 * number[] per file, a Float64Array and a per-row staging callback: 16 s of the sink's main thread in 6 minutes of
 * the sustained pipeline, and much of its garbage.
 *
 * Sparse vectors (fewer than WORD_MIN_ROWS deleted rows per word on average; 4 lies between the densities
 * measured) are staged as one key per deleted row instead (k = file index × 2^32 + row, `bits` 0), anti-joined with
 * `NOT IN`: with about one deleted row per word the LEFT JOIN's probe of every row cost more than the anti-join
 * (bench/dv-rows.ts, README "Deleted rows as typed arrays").
 *
 * A row at or above 2^32 (a Parquet file of more than 4 billion rows) would not fit the key: refused.
 */
export interface DeletedRows {
  /** True: one row per word (`keys`, `bits`); false: one key per deleted row (`keys`; `bits` empty). */
  words: boolean;
  keys: BigInt64Array;
  bits: BigInt64Array;
}

/** Below this many deleted rows per word on average, one key per deleted row (see above). */
export const WORD_MIN_ROWS = 4;

/** A staged DeletedRows table: its name and shape. */
export interface StagedDeletes {
  table: string;
  words: boolean;
}

/**
 * SQL that leaves out (view) or picks (merge hits) the rows of `t` for a row `row` (BIGINT) of the file at index
 * `file`: `join` to append to the FROM clause (may be empty), `kept` the view's condition; `deleted` the condition
 * of a DELETE … USING `t` aliased d.
 */
export function deletedRowSql(t: StagedDeletes, file: string, row: string): { join: string; kept: string; deleted: string } {
  if (t.words) {
    const key = deletedWordKey(file, row);
    return {
      join: ` LEFT JOIN ${t.table} d ON d.k = ${key}`,
      kept: `d.bits IS NULL OR ${deletedBit('d.bits', row)} = 0`,
      deleted: `d.k = ${key} AND ${deletedBit('d.bits', row)} = 1`,
    };
  }
  const key = `(CAST(${file} AS BIGINT) * ${2 ** 32} + ${row})`;
  return { join: '', kept: `${key} NOT IN (SELECT k FROM ${t.table})`, deleted: `d.k = ${key}` };
}

/** Rows per word and the factor of the file index in a word's key (row indexes below 2^32 give words below 2^26). */
const WORD_SHIFT = 6;
const FILE_SHIFT = 26;

/** SQL: the key of the word holding row `row` (BIGINT) of the file at index `file` (read_parquet's file_index). */
const deletedWordKey = (file: string, row: string): string => `((CAST(${file} AS BIGINT) << ${FILE_SHIFT}) + (${row} >> ${WORD_SHIFT}))`;

/** SQL: 1 when `bits` (a word's bits, BIGINT) marks row `row` deleted, else 0. */
const deletedBit = (bits: string, row: string): string => `((${bits} >> (${row} & 63)) & 1)`;

export async function deletedRows(
  reader: DeletionVectorReader,
  files: readonly { path: string; deletionVector?: DeletionVectorDescriptor }[],
  opts: { words?: boolean } = {},
): Promise<DeletedRows> {
  const perFile: { fi: number; lows: Uint32Array }[] = [];
  let words = 0;
  let rows = 0;
  for (let fi = 0; fi < files.length; fi++) {
    const dv = files[fi]!.deletionVector;
    if (!dv) continue;
    const buckets: RowBucket[] = await reader.buckets(dv);
    if (buckets.some((b) => b.key !== 0))
      throw new ParquetEngineError(
        'createView',
        files[fi]!.path,
        'its deletion vector deletes a row at or above 2^32, which Tide cannot read (its views key rows by a 32-bit position): rewrite the file in smaller files with another engine',
      );
    const lows = buckets[0]?.lows;
    if (!lows) continue;
    perFile.push({ fi, lows });
    rows += lows.length;
    for (let i = 0, prev = -1; i < lows.length; i++) {
      const w = lows[i]! >>> WORD_SHIFT;
      if (w !== prev) words++;
      prev = w;
    }
  }
  if (!(opts.words ?? rows >= WORD_MIN_ROWS * words)) return { words: false, keys: rowKeys(perFile, rows), bits: new BigInt64Array(0) };
  const keys = new BigInt64Array(words);
  const bits = new BigInt64Array(words);
  if (!LITTLE_ENDIAN) {
    let n = -1;
    for (const { fi, lows } of perFile)
      for (let i = 0, prev = -1; i < lows.length; i++) {
        const w = lows[i]! >>> WORD_SHIFT;
        if (w !== prev) keys[++n] = (BigInt(fi) << BigInt(FILE_SHIFT)) + BigInt(w);
        prev = w;
        bits[n] = BigInt.asIntN(64, bits[n]! | (1n << BigInt(lows[i]! & 63)));
      }
    return { words: true, keys, bits };
  }
  const k = new Uint32Array(keys.buffer);
  const b = new Uint32Array(bits.buffer);
  let n = -1;
  for (const { fi, lows } of perFile) {
    const keyHigh = fi >>> (32 - FILE_SHIFT);
    const keyLow = (fi << FILE_SHIFT) >>> 0;
    for (let i = 0, prev = -1; i < lows.length; i++) {
      const row = lows[i]!;
      const w = row >>> WORD_SHIFT;
      if (w !== prev) {
        n++;
        k[2 * n] = (keyLow | w) >>> 0;
        k[2 * n + 1] = keyHigh;
        prev = w;
      }
      // Bit (row mod 64): the low half holds bits 0-31, the high half 32-63.
      b[2 * n + ((row >>> 5) & 1)]! |= 1 << (row & 31);
    }
  }
  return { words: true, keys, bits };
}

/** One key per deleted row: file index × 2^32 + row, written as the two uint32 halves (row, file index). */
function rowKeys(perFile: { fi: number; lows: Uint32Array }[], rows: number): BigInt64Array {
  const keys = new BigInt64Array(rows);
  const halves = new Uint32Array(keys.buffer);
  let at = 0;
  for (const { fi, lows } of perFile) {
    if (LITTLE_ENDIAN)
      for (let i = 0, o = 2 * at; i < lows.length; i++, o += 2) {
        halves[o] = lows[i]!;
        halves[o + 1] = fi;
      }
    else for (let i = 0; i < lows.length; i++) keys[at + i] = (BigInt(fi) << 32n) + BigInt(lows[i]!);
    at += lows.length;
  }
  return keys;
}

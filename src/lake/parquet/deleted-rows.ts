import { endianness } from 'node:os';
import { bucketRows, type DeletionVectorDescriptor, type DeletionVectorReader, type RowBucket } from '../delta/deletion-vector.ts';
import { ParquetEngineError } from './parquet-errors.ts';
import { ROW_KEY_FILE_FACTOR } from './table-view.ts';

const LITTLE_ENDIAN = endianness() === 'LE';

/**
 * The keys of the rows the files' deletion vectors delete, in one BigInt64Array: the file's index in
 * `files` × ROW_KEY_FILE_FACTOR (2^32) + the row index (table-view.ts deletedRowKey). Built from each vector's
 * Uint32Array buckets (deserializeRowBuckets) with no JS value per row: on a little-endian machine each key is
 * written as its two 32-bit halves (the row, then the file's index). The number[] of rows per file and the
 * Float64Array copied from it (then staged through a per-row callback) were 16 s of the sink's main thread in
 * 6 minutes of the sustained pipeline, its gold passes over millions of deleted rows, and much of its garbage.
 *
 * A row at or above 2^32 (a Parquet file of more than 4 billion rows) would not fit the key: refused.
 */
export async function deletedRowKeys(
  reader: DeletionVectorReader,
  files: readonly { path: string; deletionVector?: DeletionVectorDescriptor }[],
): Promise<BigInt64Array> {
  const perFile: { fi: number; buckets: RowBucket[] }[] = [];
  let total = 0;
  for (let fi = 0; fi < files.length; fi++) {
    const dv = files[fi]!.deletionVector;
    if (!dv) continue;
    const buckets = await reader.buckets(dv);
    if (buckets.some((b) => b.key !== 0))
      throw new ParquetEngineError(
        'createView',
        files[fi]!.path,
        'its deletion vector deletes a row at or above 2^32, which Tide cannot read (its views key rows by a 32-bit position): rewrite the file in smaller files with another engine',
      );
    perFile.push({ fi, buckets });
    total += bucketRows(buckets);
  }
  const keys = new BigInt64Array(total);
  const halves = new Uint32Array(keys.buffer);
  let at = 0;
  for (const { fi, buckets } of perFile)
    for (const { lows } of buckets) {
      if (LITTLE_ENDIAN) {
        for (let i = 0, o = 2 * at; i < lows.length; i++, o += 2) {
          halves[o] = lows[i]!;
          halves[o + 1] = fi;
        }
      } else {
        const base = BigInt(fi * ROW_KEY_FILE_FACTOR);
        for (let i = 0; i < lows.length; i++) keys[at + i] = base + BigInt(lows[i]!);
      }
      at += lows.length;
    }
  return keys;
}

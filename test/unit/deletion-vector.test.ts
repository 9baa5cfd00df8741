import { describe, expect, it } from 'vitest';
import {
  DeletionVectorReader,
  deserializeRowBuckets,
  deserializeRowIndexes,
  dvRelativePath,
  dvUniqueId,
  serializeRowIndexes,
  unionRowIndexes,
  writeDeletionVectors,
  z85Decode,
  z85Encode,
} from '../../src/lake/delta/deletion-vector.ts';
import { Snapshot } from '../../src/lake/delta/snapshot.ts';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalStore } from '../../src/lake/storage/local-store.ts';
import { deletedRows } from '../../src/lake/parquet/deleted-rows.ts';

describe('deletion vector format (PROTOCOL.md appendix "Deletion Vector Format")', () => {
  it('writes the portable RoaringBitmapArray: magic 1681511377 LE, bucket count, key, 32-bit portable bitmap', () => {
    const bytes = Buffer.from(serializeRowIndexes([3, 4, 7, 11, 18, 29]));
    expect(bytes.readUInt32LE(0)).toBe(1681511377);
    expect(bytes.readBigUInt64LE(4)).toBe(1n);
    expect(bytes.readUInt32LE(12)).toBe(0);
    expect(bytes.readUInt16LE(16)).toBe(12346); // SERIAL_COOKIE_NO_RUNCONTAINER of the 32-bit portable format
    expect(deserializeRowIndexes(bytes)).toEqual([3, 4, 7, 11, 18, 29]);
    const wide = [0, 65_535, 65_536, 1_000_000, 2 ** 32 + 5];
    expect(deserializeRowIndexes(serializeRowIndexes(wide))).toEqual(wide);
    expect(() => deserializeRowIndexes(Buffer.alloc(16))).toThrow(/expected magic number 1681511377/);
  });

  it('unions an existing vector with new rows inside the bitmap: the same bytes and cardinality as serialising the union', () => {
    // A random vector and random new rows, overlapping it, as a merge into a file that already has deleted rows makes.
    let seed = 7;
    const random = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const old = Array.from({ length: 50_000 }, () => random(250_000));
    const fresh = [...Array.from({ length: 5_000 }, () => random(250_000)), old[0]!, old[1]!];
    const expected = [...new Set([...old, ...fresh])].sort((a, b) => a - b);
    const union = unionRowIndexes(serializeRowIndexes(old), fresh);
    expect(union.cardinality).toBe(expected.length);
    expect(Buffer.from(union.data)).toEqual(Buffer.from(serializeRowIndexes(expected)));
    expect(deserializeRowIndexes(union.data)).toEqual(expected);
    // No vector yet; rows at or above 2^32 (the general path); the older native format (one bucket, key implied).
    expect(unionRowIndexes(undefined, [5, 1, 5])).toEqual({ data: serializeRowIndexes([1, 5]), cardinality: 2 });
    const wide = unionRowIndexes(serializeRowIndexes([1, 2 ** 32 + 1]), [2, 2 ** 33]);
    expect([deserializeRowIndexes(wide.data), wide.cardinality]).toEqual([[1, 2, 2 ** 32 + 1, 2 ** 33], 4]);
    const portable = Buffer.from(serializeRowIndexes([4, 9]));
    const native = Buffer.concat([Buffer.alloc(12), portable.subarray(16)]); // magic, bucket count, the bucket's size, bitmap
    native.writeUInt32LE(1681511376, 0);
    native.writeUInt32LE(1, 4);
    native.writeUInt32LE(portable.length - 16, 8);
    expect(deserializeRowIndexes(native)).toEqual([4, 9]);
    expect(deserializeRowIndexes(unionRowIndexes(native, [3]).data)).toEqual([3, 4, 9]);
  });

  it('deserialises into one Uint32Array per 2^32 bucket: portable and native formats, rows at or above 2^32, empty', () => {
    const rows = [0, 7, 65_536, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 9, 3 * 2 ** 32 + 2];
    const buckets = deserializeRowBuckets(serializeRowIndexes(rows));
    expect(buckets.map((b) => [b.key, b.lows])).toEqual([
      [0, Uint32Array.from([0, 7, 65_536, 2 ** 32 - 1])],
      [1, Uint32Array.from([0, 9])],
      [3, Uint32Array.from([2])],
    ]);
    expect(buckets.every((b) => b.lows instanceof Uint32Array)).toBe(true);
    expect(deserializeRowIndexes(serializeRowIndexes(rows))).toEqual(rows);
    // The native format: a 4-byte bucket count, then per bucket (keys 0, 1, … implied) its size and bitmap; an empty bucket is left out.
    const bitmap = (r: number[]) => Buffer.from(serializeRowIndexes(r)).subarray(16);
    const emptyBitmap = Buffer.from(serializeRowIndexes([5])).subarray(16);
    emptyBitmap.writeUInt32LE(0, 4); // SERIAL_COOKIE_NO_RUNCONTAINER, then 0 containers
    const parts = [bitmap([4, 9]), emptyBitmap.subarray(0, 8), bitmap([1])];
    const header = Buffer.alloc(8);
    header.writeUInt32LE(1681511376, 0);
    header.writeUInt32LE(parts.length, 4);
    const native = Buffer.concat([header, ...parts.flatMap((p) => [Buffer.from(Uint32Array.of(p.length).buffer), p])]);
    expect(deserializeRowBuckets(native).map((b) => [b.key, [...b.lows]])).toEqual([
      [0, [4, 9]],
      [2, [1]],
    ]);
    expect(deserializeRowIndexes(native)).toEqual([4, 9, 2 * 2 ** 32 + 1]);
    // No rows: no buckets; unknown magic or truncated data is refused.
    expect(deserializeRowBuckets(serializeRowIndexes([]))).toEqual([]);
    expect(deserializeRowIndexes(serializeRowIndexes([]))).toEqual([]);
    expect(() => deserializeRowBuckets(Buffer.alloc(16))).toThrow(/expected magic number 1681511377/);
    expect(() => deserializeRowBuckets(Buffer.from(serializeRowIndexes([1, 2])).subarray(0, 10))).toThrow(/truncated/);
  });

  it("stages a view's deleted rows as 64-row words keyed by file index × 2^26 + row ÷ 64 or keys, and refuses rows at or above 2^32", async () => {
    const store = new LocalStore(mkdtempSync(join(tmpdir(), 'tide-dv-unit-')));
    const [a, b, c, wide] = await writeDeletionVectors(store, 't', [
      { rows: [97, 3, 1] },
      { rows: [0, 2 ** 32 - 1] },
      { rows: [130, 128] },
      { rows: [2 ** 32] },
    ]);
    const reader = new DeletionVectorReader(store, 't', 't');
    const files = [{ path: 'a', deletionVector: a }, { path: 'none' }, { path: 'b', deletionVector: b }];
    // File index 70: its key's low half holds (70 mod 64) << 26, its high half 70 >> 6.
    for (let i = files.length; i < 70; i++) files.push({ path: `none-${i}` });
    files.push({ path: 'c', deletionVector: c });
    const { words, keys, bits } = await deletedRows(reader, files, { words: true });
    expect(words).toBe(true);
    const F = 2n ** 26n;
    expect([...keys]).toEqual([0n, 1n, 2n * F, 2n * F + F - 1n, 70n * F + 2n]);
    // Row 1 and 3 of word 0; row 97 = 64 + 33; row 0; row 2^32 - 1 = bit 63 (the sign bit); rows 128 and 130 = bits 0 and 2.
    expect([...bits]).toEqual([(1n << 1n) | (1n << 3n), 1n << 33n, 1n, -(2n ** 63n), 5n]);
    // Sparse vectors (fewer than 4 rows a word on average, as here) get one key per row: file index × 2^32 + row.
    const sparse = await deletedRows(reader, files);
    expect([sparse.words, [...sparse.keys]]).toEqual([
      false,
      [1n, 3n, 97n, 2n * 2n ** 32n, 2n * 2n ** 32n + 2n ** 32n - 1n, 70n * 2n ** 32n + 128n, 70n * 2n ** 32n + 130n],
    ]);
    expect((await deletedRows(reader, files, { words: false })).keys).toEqual(sparse.keys);
    const dense = await writeDeletionVectors(store, 't', [{ rows: Array.from({ length: 256 }, (_, r) => r) }]);
    expect((await deletedRows(reader, [{ path: 'd', deletionVector: dense[0] }])).words).toBe(true);
    expect((await deletedRows(reader, [{ path: 'none' }])).keys.length).toBe(0);
    await expect(deletedRows(reader, [{ path: 'w.parquet', deletionVector: wide }])).rejects.toThrow(/w\.parquet.*at or above 2\^32/);
    expect([...(await reader.buckets(b!))[0]!.lows]).toEqual([0, 2 ** 32 - 1]);
  });

  it('derives the file name from the Z85 UUID as the protocol example does', () => {
    const dv = { storageType: 'u' as const, pathOrInlineDv: 'ab^-aqEH.-t@S}K{vb[*k^', offset: 4, sizeInBytes: 40, cardinality: 6 };
    expect(dvRelativePath(dv)).toBe('ab/deletion_vector_d2c639aa-8816-431a-aaf6-d3fe2512ff61.bin');
    expect(dvUniqueId(dv)).toBe('uab^-aqEH.-t@S}K{vb[*k^@4');
    const data = new Uint8Array([1, 2, 3, 4, 5, 6]);
    expect([...z85Decode(z85Encode(data), 6)]).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it('stores several vectors in one file with sizes and CRCs, and reads each back', async () => {
    const store = new LocalStore(mkdtempSync(join(tmpdir(), 'tide-dv-unit-')));
    const [a, b] = await writeDeletionVectors(store, 'silver/t', [{ rows: [1, 5, 9] }, { rows: [0, 100_000] }]);
    expect(a).toMatchObject({ storageType: 'u', offset: 1, cardinality: 3 });
    expect(b!.offset).toBe(1 + 8 + a!.sizeInBytes);
    const reader = new DeletionVectorReader(store, 'silver/t', 'silver/t');
    expect(await reader.rows(a!)).toEqual([1, 5, 9]);
    expect(await reader.rows(b!)).toEqual([0, 100_000]);
    const inline = {
      storageType: 'i' as const,
      pathOrInlineDv: z85Encode(serializeRowIndexes([2])),
      sizeInBytes: serializeRowIndexes([2]).length,
      cardinality: 1,
    };
    expect(await reader.rows(inline)).toEqual([2]);
  });

  it('reconciles (path, vector) pairs: a re-add with a new vector stays active, the old pair is a tombstone', () => {
    const s = new Snapshot();
    const add = { path: 'f.parquet', partitionValues: {}, size: 1, modificationTime: 1, dataChange: true };
    const dv1 = { storageType: 'u' as const, pathOrInlineDv: 'ab^-aqEH.-t@S}K{vb[*k^', offset: 1, sizeInBytes: 40, cardinality: 1 };
    const dv2 = { ...dv1, offset: 49, cardinality: 2 };
    s.applyCommit(0, [{ add: { ...add, deletionVector: dv1 } }]);
    s.applyCommit(1, [
      { remove: { path: 'f.parquet', dataChange: true, deletionVector: dv1, deletionTimestamp: 5 } },
      { add: { ...add, deletionVector: dv2 } },
    ]);
    expect(s.files()).toHaveLength(1);
    expect(s.files()[0]!.deletionVector).toEqual(dv2);
    expect(s.tombstones().map((t) => t.deletionVector)).toEqual([dv1]);
  });
});

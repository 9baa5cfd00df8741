import { describe, expect, it } from 'vitest';
import {
  DeletionVectorReader,
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

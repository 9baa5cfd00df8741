import { describe, expect, it } from 'vitest';
import {
  DeletionVectorReader,
  deserializeRowIndexes,
  dvRelativePath,
  dvUniqueId,
  serializeRowIndexes,
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

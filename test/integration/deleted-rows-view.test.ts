import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeDeletionVectors } from '../../src/lake/delta/deletion-vector.ts';
import type { LakeSchema } from '../../src/lake/lake-schema.ts';
import { ParquetEngine } from '../../src/lake/parquet/parquet-engine.ts';
import { VIEW_FILE_COLUMN, VIEW_ROW_COLUMN } from '../../src/lake/parquet/table-view.ts';
import { LocalStore } from '../../src/lake/storage/local-store.ts';

// A view leaves out the rows deletion vectors delete through 64-row words (src/lake/parquet/deleted-rows.ts):
// rows at the words' edges (bits 0, 31, 32, 63, the sign bit of the BIGINT), thousands at random positions, a
// file without a vector, a file with every row deleted, and more than 64 files (the file index crosses the key's
// 32-bit halves) must come out exactly.
const FILE_ROWS = 5_000;
const SCHEMA: LakeSchema = { columns: [{ name: 'id', type: { kind: 'long' }, nullable: false }] };

describe('a view over files with deletion vectors (64-row words)', () => {
  let dir: string;
  let engine: ParquetEngine;
  let store: LocalStore;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tide-deleted-rows-'));
    store = new LocalStore(join(dir, 'lake'));
    engine = await ParquetEngine.create({ tempDir: join(dir, 'tmp') });
  });
  afterAll(async () => {
    await engine.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('keeps exactly the rows no vector deletes, with their positions', async () => {
    await mkdir(join(dir, 'lake', 't'), { recursive: true });
    const files = 70;
    for (let i = 0; i < files; i++)
      await engine.run(
        `COPY (SELECT (${i} * ${FILE_ROWS} + range)::BIGINT AS id FROM range(${FILE_ROWS})) TO '${join(dir, 'lake', 't', `f${i}.parquet`)}' (FORMAT parquet)`,
      );
    let seed = 11;
    const random = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const edges = [0, 1, 31, 32, 33, 63, 64, 127, 128, 4095, FILE_ROWS - 1];
    const deleted = new Map<number, Set<number>>();
    deleted.set(0, new Set(edges));
    deleted.set(2, new Set(Array.from({ length: FILE_ROWS }, (_, r) => r)));
    for (const i of [3, 64, 69]) deleted.set(i, new Set([...Array.from({ length: 1_500 }, () => random(FILE_ROWS)), 63]));
    const indexes = [...deleted.keys()];
    const dvs = await writeDeletionVectors(
      store,
      't',
      indexes.map((i) => ({ rows: [...deleted.get(i)!] })),
    );
    const viewFiles = Array.from({ length: files }, (_, i) => {
      const at = indexes.indexOf(i);
      return { path: `f${i}.parquet`, partitionValues: {}, ...(at >= 0 ? { deletionVector: dvs[at]! } : {}) };
    });
    await engine.createView('dv_words', store, 't', viewFiles, SCHEMA, [], { positions: true });
    const got = await engine.query('SELECT id FROM dv_words ORDER BY id');
    const expected: bigint[] = [];
    for (let i = 0; i < files; i++)
      for (let r = 0; r < FILE_ROWS; r++) if (!deleted.get(i)?.has(r)) expected.push(BigInt(i * FILE_ROWS + r));
    expect(got.map((g) => g.id)).toEqual(expected);
    // Each row's position is its own: id = file × FILE_ROWS + row, in the file the view names.
    const misplaced = `SELECT count(*) AS n FROM dv_words WHERE id % ${FILE_ROWS} <> ${VIEW_ROW_COLUMN} OR NOT ends_with(${VIEW_FILE_COLUMN}, 'f' || (id // ${FILE_ROWS}) || '.parquet')`;
    expect(await engine.query(misplaced)).toEqual([{ n: 0n }]);
    expect(got.length).toBe(files * FILE_ROWS - [...deleted.values()].reduce((n, s) => n + s.size, 0));
  });
});

import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeDeletionVectors } from '../../src/lake/delta/deletion-vector.ts';
import type { LakeSchema } from '../../src/lake/lake-schema.ts';
import { deletedRowSql } from '../../src/lake/parquet/deleted-rows.ts';
import { ParquetEngine } from '../../src/lake/parquet/parquet-engine.ts';
import { VIEW_FILE_COLUMN, VIEW_ROW_COLUMN } from '../../src/lake/parquet/table-view.ts';
import { LocalStore } from '../../src/lake/storage/local-store.ts';

// A view leaves out the rows deletion vectors delete through 64-row words, or one key per row for sparse vectors
// (src/lake/parquet/deleted-rows.ts): rows at the words' edges (bits 0, 31, 32, 63, the sign bit of the BIGINT),
// thousands at random positions, a file without a vector, a file with every row deleted, and more than 64 files
// (the file index crosses the word key's 32-bit halves) must come out exactly; and a merge's DELETE of hits in
// deleted rows (src/sink/dv-hits.ts) must remove exactly them, with either shape.
const FILE_ROWS = 5_000;
const FILES = 70;
const SCHEMA: LakeSchema = { columns: [{ name: 'id', type: { kind: 'long' }, nullable: false }] };

describe('a view over files with deletion vectors (64-row words or keys)', () => {
  let dir: string;
  let engine: ParquetEngine;
  let store: LocalStore;
  let seed = 11;
  const random = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tide-deleted-rows-'));
    store = new LocalStore(join(dir, 'lake'));
    engine = await ParquetEngine.create({ tempDir: join(dir, 'tmp') });
    await mkdir(join(dir, 'lake', 't'), { recursive: true });
    for (let i = 0; i < FILES; i++)
      await engine.run(
        `COPY (SELECT (${i} * ${FILE_ROWS} + range)::BIGINT AS id FROM range(${FILE_ROWS})) TO '${join(dir, 'lake', 't', `f${i}.parquet`)}' (FORMAT parquet)`,
      );
  });
  afterAll(async () => {
    await engine.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function check(deleted: Map<number, Set<number>>, expectWords: boolean): Promise<void> {
    const indexes = [...deleted.keys()];
    const dvs = await writeDeletionVectors(
      store,
      't',
      indexes.map((i) => ({ rows: [...deleted.get(i)!] })),
    );
    const viewFiles = Array.from({ length: FILES }, (_, i) => {
      const at = indexes.indexOf(i);
      return { path: `f${i}.parquet`, partitionValues: {}, ...(at >= 0 ? { deletionVector: dvs[at]! } : {}) };
    });
    const expected: bigint[] = [];
    for (let i = 0; i < FILES; i++)
      for (let r = 0; r < FILE_ROWS; r++) if (!deleted.get(i)?.has(r)) expected.push(BigInt(i * FILE_ROWS + r));

    await engine.createView('dv_rows', store, 't', viewFiles, SCHEMA, [], { positions: true });
    expect((await engine.query('SELECT id FROM dv_rows ORDER BY id')).map((g) => g.id)).toEqual(expected);
    // Each row's position is its own: id = file × FILE_ROWS + row, in the file the view names.
    const misplaced = `SELECT count(*) AS n FROM dv_rows WHERE id % ${FILE_ROWS} <> ${VIEW_ROW_COLUMN} OR NOT ends_with(${VIEW_FILE_COLUMN}, 'f' || (id // ${FILE_ROWS}) || '.parquet')`;
    expect(await engine.query(misplaced)).toEqual([{ n: 0n }]);

    // The merge's DELETE … USING of hits (file, row) in deleted rows, with the shape chosen and the other one.
    for (const words of [undefined, !expectWords]) {
      const gone = await engine.stageDeletedRows(store, 't', viewFiles, 't', words === undefined ? {} : { words });
      expect(gone.words).toBe(words ?? expectWords);
      await engine.run(
        `CREATE OR REPLACE TEMP TABLE dv_hits AS SELECT i AS fi, r AS __r, i * ${FILE_ROWS} + r AS id FROM range(${FILES}) a(i), range(${FILE_ROWS}) b(r)`,
      );
      await engine.run(`DELETE FROM dv_hits h USING ${gone.table} d WHERE ${deletedRowSql(gone, 'h.fi', 'h.__r').deleted}`);
      await engine.drop(gone.table);
      expect((await engine.query('SELECT id FROM dv_hits ORDER BY id')).map((g) => BigInt(g.id as number | bigint))).toEqual(expected);
    }
  }

  it('keeps exactly the rows dense vectors do not delete (64-row words), with their positions', async () => {
    const deleted = new Map<number, Set<number>>();
    deleted.set(0, new Set([0, 1, 31, 32, 33, 63, 64, 127, 128, 4095, FILE_ROWS - 1]));
    deleted.set(2, new Set(Array.from({ length: FILE_ROWS }, (_, r) => r)));
    for (const i of [3, 64, 69]) deleted.set(i, new Set([...Array.from({ length: 1_500 }, () => random(FILE_ROWS)), 63]));
    await check(deleted, true);
  });

  it('keeps exactly the rows sparse vectors do not delete (a key per row), with their positions', async () => {
    const deleted = new Map<number, Set<number>>();
    deleted.set(0, new Set([0, 31, 32, 63, FILE_ROWS - 1]));
    for (const i of [3, 64, 69]) deleted.set(i, new Set(Array.from({ length: 40 }, () => random(FILE_ROWS))));
    await check(deleted, false);
  });
});

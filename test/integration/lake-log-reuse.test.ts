import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { Action } from '../../src/lake/delta/actions.ts';
import { closeCheckpointDuckDB } from '../../src/lake/delta/checkpoint-duckdb.ts';
import { readCheckpoint } from '../../src/lake/delta/checkpoint.ts';
import { DeltaTable } from '../../src/lake/delta/delta-table.ts';
import { TIDE_PROTOCOL, withDeletionVectors } from '../../src/lake/delta/protocol-check.ts';
import type { LakeSchema } from '../../src/lake/lake-schema.ts';
import { LocalStore } from '../../src/lake/storage/local-store.ts';
import { LakeTables } from '../../src/reports/lake-tables.ts';

/**
 * What Tide keeps between uses of a Delta log, on the real filesystem with real DuckDB:
 *  - gold's kept tables (lake-tables.ts) follow other writers' commits, and a table dropped or created
 *    again under them is read afresh, never the new table's commits replayed onto the old one's files;
 *  - the shared checkpoint DuckDB (checkpoint-duckdb.ts) serves tables concurrently, and a close while
 *    checkpoints run lets them finish, the next checkpoint opening a new instance.
 * The checkpoints themselves are checked by delta-rs and Spark in delta-log, spark-reader and the
 * deletion-vector tests.
 */

const dir = mkdtempSync(join(tmpdir(), 'tide-lake-log-reuse-'));
const store = new LocalStore(dir);
afterAll(async () => {
  await closeCheckpointDuckDB();
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

const schema: LakeSchema = { columns: [{ name: 'id', type: { kind: 'long' }, nullable: false }] };
const add = (name: string, dv?: number): Action => ({
  add: {
    path: `${name}.parquet`,
    partitionValues: {},
    size: 100,
    modificationTime: 1765000000000,
    dataChange: true,
    ...(dv
      ? { deletionVector: { storageType: 'u', pathOrInlineDv: `ab^-aqEH.-t@S}K{vb[*k^${dv}`, offset: 1, sizeInBytes: 34, cardinality: dv } }
      : {}),
  },
});
const create = (root: string, interval = 100) =>
  DeltaTable.create(store, root, {
    name: root,
    schema,
    configuration: { 'delta.checkpointInterval': String(interval), 'delta.enableDeletionVectors': 'true' },
    protocol: withDeletionVectors(TIDE_PROTOCOL),
  });
const paths = (t: DeltaTable | undefined) => t?.files().map((f) => f.path);

describe('gold keeps the lake tables it reads open between passes', () => {
  it("follows another writer's commits, and reads a table dropped or created again afresh", async () => {
    const root = 'silver/kept';
    const writer = await create(root);
    await writer.commit([add('a'), add('b')], { operation: 'WRITE' });
    const tables = new LakeTables(store);
    const kept = await tables.get(root);
    expect(paths(kept)).toEqual(['a.parquet', 'b.parquet']);

    // Another writer's commit: the kept table is refreshed, the same object.
    await writer.commit([{ remove: { path: 'a.parquet', dataChange: true } }, add('c')], { operation: 'MERGE' });
    const again = await tables.get(root);
    expect(again).toBe(kept);
    expect(paths(again)).toEqual(['b.parquet', 'c.parquet']);

    // Dropped: gone for gold too.
    rmSync(join(dir, root), { recursive: true });
    expect(await tables.get(root)).toBeUndefined();

    // Created again with more versions than the kept one had: only the new table's files.
    const reborn = await create(root);
    for (const name of ['x', 'y', 'z']) await reborn.commit([add(name)], { operation: 'WRITE' });
    expect(paths(await tables.get(root))).toEqual(['x.parquet', 'y.parquet', 'z.parquet']);

    // Dropped and created again behind a kept table, at a higher version than it is: not a replay onto old files.
    const before = await tables.get(root);
    expect(before?.version).toBe(3);
    rmSync(join(dir, root), { recursive: true });
    const third = await create(root);
    for (const name of ['p', 'q', 'r', 's']) await third.commit([add(name)], { operation: 'WRITE' });
    const after = await tables.get(root);
    expect(after?.version).toBe(4);
    expect(paths(after)).toEqual(['p.parquet', 'q.parquet', 'r.parquet', 's.parquet']);
  });
});

describe('the shared checkpoint DuckDB', () => {
  it('writes and reads checkpoints of several tables at once, and survives a close while they run', async () => {
    const roots = ['silver/one', 'silver/two', 'silver/three', 'silver/four'];
    const tables = await Promise.all(roots.map((r) => create(r, 2)));
    // Each commit re-adds every file with a new vector; every second commit writes a checkpoint.
    const files = Array.from({ length: 50 }, (_, i) => `f${i}`);
    await Promise.all(
      tables.map((t) =>
        t.commit(
          files.map((f) => add(f)),
          { operation: 'WRITE' },
        ),
      ),
    );
    for (let v = 1; v <= 4; v++) {
      const closing = v === 2 ? closeCheckpointDuckDB() : undefined;
      await Promise.all(
        tables.map((t) =>
          t.commit(
            files.flatMap((f) => [{ remove: { path: `${f}.parquet`, deletionTimestamp: Date.now(), dataChange: true } }, add(f, v)]),
            { operation: 'MERGE' },
          ),
        ),
      );
      await closing;
    }
    for (const t of tables) {
      expect(t.version).toBe(5);
      const opened = await DeltaTable.open(store, t.root);
      expect(opened?.files()).toEqual(t.files());
      expect(opened?.files().map((f) => f.deletionVector?.cardinality)).toEqual(files.map(() => 4));
      // Checkpoint 4: protocol, metaData, 50 adds, and the 150 tombstones of vectors 0 to 3 (files without one first).
      const actions = await readCheckpoint(store, t.root, t.label, 4);
      expect(actions.filter((a) => 'add' in a)).toHaveLength(50);
      expect(actions.filter((a) => 'remove' in a)).toHaveLength(150);
    }
  });
});

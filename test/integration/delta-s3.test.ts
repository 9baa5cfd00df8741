import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { AddAction } from '../../src/lake/delta/actions.ts';
import { DeltaConflictError } from '../../src/lake/delta/delta-errors.ts';
import { DeltaTable } from '../../src/lake/delta/delta-table.ts';
import type { LakeSchema } from '../../src/lake/lake-schema.ts';
import { ParquetEngine } from '../../src/lake/parquet/parquet-engine.ts';
import { openStore } from '../../src/lake/storage/open-store.ts';
import type { ObjectStore } from '../../src/lake/storage/object-store.ts';
import { readWithDeltaRs, s3StorageOptions } from '../support/delta-reader.ts';
import { deletePrefix, listKeys, localS3, s3OpenOptions } from '../support/s3.ts';

/**
 * Concurrent Delta writers on one table on S3 (the local stack's versitygw). Each writer has its own
 * S3Store (its own SDK client and connections), as two sink processes would. Every commit is a
 * PutObject with If-None-Match: *, so for each version exactly one writer's commit lands; the other
 * gets 412, reads the winner's commit, checks for a conflict and retries at the next version. delta-rs
 * then reads the table from S3: every row of every writer is there, once.
 */
const s3 = localS3(inject('stackEnv'));
const prefix = `race-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
const lakeUri = `s3://${s3.bucket}/${prefix}`;
const cacheDir = mkdtempSync(join(tmpdir(), 'tide-s3-race-'));
const schema: LakeSchema = {
  columns: [
    { name: 'writer', type: { kind: 'string' }, nullable: false },
    { name: 'n', type: { kind: 'long' }, nullable: false },
  ],
};
const op = { operation: 'WRITE', parameters: { mode: 'Append' } };
let engine: ParquetEngine;
let stores: ObjectStore[] = [];
let failed = false;

const open = async () => {
  const store = await openStore(lakeUri, { s3: s3OpenOptions(s3, { store: { cacheDir } }) });
  stores.push(store);
  return store;
};

/** One data file holding rows (writer, n) for each n, uploaded to the table. */
async function dataFile(store: ObjectStore, root: string, writer: string, ns: number[]): Promise<AddAction> {
  const staged = await engine.stage(
    schema,
    ns.map((n) => [writer, BigInt(n)]),
  );
  const [file] = await engine.writeFiles(`SELECT * FROM ${staged}`, { store, root, schema });
  await engine.drop(staged);
  return file!;
}

beforeAll(async () => {
  engine = await ParquetEngine.create();
});

afterAll(async () => {
  await engine?.close();
  for (const s of stores) await s.close();
  stores = [];
  if (failed) console.error(`delta-s3 test: tables kept for inspection under ${lakeUri}`);
  else await deletePrefix(s3, `${prefix}/`);
  rmSync(cacheDir, { recursive: true, force: true });
});

describe('two Delta writers racing on one S3 table', () => {
  it('appends: each version has exactly one commit, the loser retries at the next; 2 x 8 racing appends all land once', async () => {
    try {
      const root = 'appends';
      const [sa, sb] = [await open(), await open()];
      const a = await DeltaTable.create(sa, root, { name: root, schema, configuration: { 'delta.checkpointInterval': '5' } });
      const b = (await DeltaTable.open(sb, root))!;
      const addsA: AddAction[] = [];
      const addsB: AddAction[] = [];
      for (let i = 0; i < 8; i++) {
        addsA.push(await dataFile(sa, root, 'a', [i * 2, i * 2 + 1]));
        addsB.push(await dataFile(sb, root, 'b', [i * 2, i * 2 + 1]));
      }
      // Both start from version 0 and aim at version 1 at the same time.
      const first = await Promise.all([
        a.commit([{ add: addsA[0]! }, { txn: { appId: 'writer-a', version: 0 } }], op),
        b.commit([{ add: addsB[0]! }, { txn: { appId: 'writer-b', version: 0 } }], op),
      ]);
      expect([...first].sort()).toEqual([1, 2]);
      const run = async (t: DeltaTable, adds: AddAction[], app: string) => {
        const versions: number[] = [];
        for (const [i, add] of adds.slice(1).entries())
          versions.push(await t.commit([{ add }, { txn: { appId: app, version: i + 1 } }], op));
        return versions;
      };
      const [va, vb] = await Promise.all([run(a, addsA, 'writer-a'), run(b, addsB, 'writer-b')]);
      // Versions 3..16, each taken by exactly one writer, each writer's in order.
      expect([...va, ...vb].sort((x, y) => x - y)).toEqual(Array.from({ length: 14 }, (_, i) => i + 3));
      for (const vs of [va, vb]) expect(vs).toEqual([...vs].sort((x, y) => x - y));

      const commits = (await listKeys(s3, `${prefix}/${root}/_delta_log/`)).filter((k) => k.endsWith('.json') && !k.includes('_last'));
      expect(commits).toHaveLength(17);
      const view = await readWithDeltaRs(`${lakeUri}/${root}`, {
        storageOptions: s3StorageOptions(inject('stackEnv')),
        appIds: ['writer-a', 'writer-b'],
      });
      expect(view.version).toBe(16);
      expect(view.txn).toEqual({ 'writer-a': 7, 'writer-b': 7 });
      const expected = ['a', 'b']
        .flatMap((w) => Array.from({ length: 16 }, (_, n) => [w, n]))
        .sort((x, y) => (String(x) < String(y) ? -1 : 1));
      expect([...view.rows].sort((x, y) => (String(x) < String(y) ? -1 : 1))).toEqual(expected);
      const reopened = (await DeltaTable.open(await open(), root))!;
      expect(reopened.version).toBe(16);
      expect(reopened.files()).toHaveLength(16);
    } catch (e) {
      failed = true;
      throw e;
    }
  });

  it('two writers removing the same file at the same version: one commits, the other gets DeltaConflictError', async () => {
    try {
      const root = 'merges';
      const [sa, sb] = [await open(), await open()];
      const a = await DeltaTable.create(sa, root, { name: root, schema });
      const f = await dataFile(sa, root, 'a', [1, 2, 3]);
      await a.commit([{ add: f }], op);
      const b = (await DeltaTable.open(sb, root))!;
      const [fromA, fromB] = [await dataFile(sa, root, 'a', [1, 2, 3, 4]), await dataFile(sb, root, 'b', [1, 2, 3, 5])];
      const rm = { path: f.path, deletionTimestamp: Date.now(), dataChange: true, partitionValues: f.partitionValues, size: f.size };
      const results = await Promise.allSettled([
        a.commit([{ remove: rm }, { add: fromA }], { operation: 'MERGE' }),
        b.commit([{ remove: rm }, { add: fromB }], { operation: 'MERGE' }),
      ]);
      const won = results.filter((r) => r.status === 'fulfilled');
      const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      expect(won).toHaveLength(1);
      expect(lost).toHaveLength(1);
      expect(lost[0]!.reason).toBeInstanceOf(DeltaConflictError);
      expect(String(lost[0]!.reason.message)).toContain(`already removed file ${f.path}`);
      const winnerAdd = results[0]!.status === 'fulfilled' ? fromA : fromB;
      const view = await readWithDeltaRs(`${lakeUri}/${root}`, { storageOptions: s3StorageOptions(inject('stackEnv')) });
      expect(view.version).toBe(2);
      expect(view.files).toEqual([`${lakeUri}/${root}/${winnerAdd.path}`]);
    } catch (e) {
      failed = true;
      throw e;
    }
  });
});

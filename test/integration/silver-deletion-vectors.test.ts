import { mkdtempSync, readdirSync } from 'node:fs';

import { historyPath, silverPath } from '../../src/sink/table-layout.ts';
import { useOrderPipeline } from '../support/order-pipeline.ts';
import {
  expectBronzeOnce,
  expectHistoryChained,
  expectSilverEqualsPostgres as expectSilverEqualsPostgresIn,
} from '../support/lake-checks.ts';
import { runTraffic } from '../../src/app/traffic.ts';
import { startCli } from '../support/cli.ts';
import { ORDER_TABLES } from '../support/lake.ts';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeltaConflictError, DeltaProtocolError } from '../../src/lake/delta/delta-errors.ts';
import { DeltaTable } from '../../src/lake/delta/delta-table.ts';
import { TIDE_PROTOCOL, withDeletionVectors } from '../../src/lake/delta/protocol-check.ts';
import { optimizeTable } from '../../src/lake/maintenance/optimize.ts';
import { vacuumTable } from '../../src/lake/maintenance/vacuum.ts';
import { ParquetEngine } from '../../src/lake/parquet/parquet-engine.ts';
import { LocalStore } from '../../src/lake/storage/local-store.ts';
import { log } from '../../src/log.ts';
import type { KeyChange, SilverBatch } from '../../src/sink/silver-changes.ts';
import { alignDeletionVectors } from '../../src/sink/silver-dv-merge.ts';
import { keyIndexOf, SilverKeyIndex } from '../../src/sink/silver-key-index.ts';
import { mergeSilver } from '../../src/sink/silver-merge.ts';
import { deltaReaderAvailable, readWithDeltaRs } from '../support/delta-reader.ts';
import { asRows, MODEL_SCHEMA, silverModel } from '../support/silver-model.ts';
import { SparkDelta, sparkMissing } from '../support/spark.ts';

/**
 * Silver merges with Delta deletion vectors (PROTOCOL.md "Deletion Vectors"): a merge marks the changed
 * rows of existing files deleted and appends their new versions, rewriting no file. Real Delta tables
 * on disk, DuckDB, and two independent readers: delta-rs (deltalake from PyPI) and Spark 4.0.1 with
 * Delta 4.0.1. Every reader must see exactly the rows of the model (what the source database holds),
 * after plain merges, replays, TOAST-less updates, deletes, a checkpoint, optimize (purge) and vacuum.
 */
const skipDeltaRs = deltaReaderAvailable() ? undefined : 'the delta-rs venv is missing: run `bash scripts/setup-python.sh`';
if (skipDeltaRs) console.warn(`silver-deletion-vectors: skipped: ${skipDeltaRs}`);
const skipSpark = sparkMissing();
if (skipSpark) console.warn(`silver-deletion-vectors: Spark checks skipped: ${skipSpark}`);

const schema = MODEL_SCHEMA;
/** The key index, used for every batch (the sink scans for batches above half of the keys). */
const INDEX = { maxRows: 1_000_000, lookupMaxShare: 1 };
const dir = mkdtempSync(join(tmpdir(), 'tide-silver-dv-'));
const store = new LocalStore(dir);
let engine: ParquetEngine;
let spark: SparkDelta | undefined;
/** One Spark for both suites of the file (it takes tens of seconds to start on two cores). */
let sparkStarting: Promise<SparkDelta> | undefined;
const startSpark = (): Promise<SparkDelta> | undefined => {
  if (skipSpark) return undefined;
  sparkStarting ??= SparkDelta.start();
  return sparkStarting;
};
afterAll(async () => {
  await (await sparkStarting?.catch(() => undefined))?.stop();
});

const { model, upsert, remove, expected, lastLsn } = silverModel();

async function tideRows(table: DeltaTable): Promise<unknown[][]> {
  await engine.createView('dv_check', store, table.root, table.files(), schema);
  return (await engine.query('SELECT id, name, note FROM dv_check ORDER BY id')).map((r) => [Number(r.id), r.name, r.note]);
}

/** A silver table with deletion vectors declared and enabled (and `extra` table properties). */
function createDvTable(root: string, extra: Record<string, string> = {}): Promise<DeltaTable> {
  return DeltaTable.create(store, root, {
    name: root.replace('/', '.').replace(/-/g, '_'),
    schema,
    configuration: { 'delta.enableDeletionVectors': 'true', ...extra },
    protocol: withDeletionVectors(TIDE_PROTOCOL),
  });
}

/** Tide, delta-rs and Spark read the table at once (three processes), then each must equal the model. */
async function expectAllReaders(table: DeltaTable): Promise<void> {
  const [tide, deltaRs, sparkView] = await Promise.all([
    tideRows(table),
    readWithDeltaRs(join(dir, table.root)),
    spark?.read(join(dir, table.root)),
  ]);
  expect(tide).toEqual(expected());
  expect(asRows(deltaRs)).toEqual(expected());
  if (sparkView) expect(asRows(sparkView)).toEqual(expected());
}

describe.skipIf(skipDeltaRs)('silver merges with deletion vectors', () => {
  beforeAll(async () => {
    // Spark's first read of a table with deletion vectors loads and compiles most of Delta's reader: 30 s
    // and more on two busy cores, which used to land in the first test and push it past vitest's 120 s. It
    // is done here, on a small table Tide writes while Spark starts.
    const [, started] = await Promise.all([
      ParquetEngine.create().then(async (e) => {
        engine = e;
        const warm = await createDvTable('silver/dv-warmup');
        const change = (id: number, name: string, commitLsn: number): KeyChange => ({
          key: [BigInt(id)],
          deleted: false,
          row: { id: BigInt(id), name, note: 'n' },
          unchanged: [],
          commitLsn: BigInt(commitLsn),
          eventIndex: 0,
          commitTsMs: 1_600_000_000_000 + commitLsn,
        });
        await mergeSilver(engine, warm, schema, ['id'], { changes: [change(1, 'a', 1), change(2, 'b', 2)] }, []);
        await mergeSilver(engine, warm, schema, ['id'], { changes: [change(1, 'c', 3)] }, []);
      }),
      startSpark(),
    ]);
    spark = started;
    if (spark) expect((await spark.read(join(dir, 'silver/dv-warmup'))).row_count).toBe(2);
  }, 300_000);
  afterAll(async () => {
    await engine?.close();
  });

  it('marks changed rows deleted, appends new versions, rewrites nothing; delta-rs and Spark agree', async () => {
    const table = await createDvTable('silver/dv', { 'delta.checkpointInterval': '4' });
    expect(table.protocol).toEqual({
      minReaderVersion: 3,
      minWriterVersion: 7,
      readerFeatures: ['deletionVectors'],
      writerFeatures: ['appendOnly', 'invariants', 'deletionVectors'],
    });
    // With the key index, as the sink merges (silver-key-index.ts); the scan is covered by the tests below.
    const merge = (changes: KeyChange[]) =>
      mergeSilver(engine, table, schema, ['id'], { changes } as SilverBatch, [], undefined, undefined, INDEX);

    await merge(Array.from({ length: 1000 }, (_, i) => upsert(i, `n${i}`, `note${i}`)));
    const loaded = table.files().map((f) => f.path);
    expect(loaded.length).toBeGreaterThan(0);

    // Updates (one without its TOAST column), deletes and inserts: the loaded file gets a vector, nothing is rewritten.
    const r = await merge([
      upsert(3, 'three', 'x'),
      upsert(500, 'five hundred', undefined),
      remove(7),
      remove(999),
      upsert(2000, 'new', 'y'),
    ]);
    expect(r.rewrittenFiles).toBe(0);
    expect(r.vectorFiles).toBe(1);
    const dvFile = table.files().find((f) => f.path === loaded[0])!;
    expect(dvFile.deletionVector).toMatchObject({ storageType: 'u', cardinality: 4, offset: 1 });
    expect(JSON.parse(dvFile.stats!)).toMatchObject({ numRecords: 1000, tightBounds: false });
    expect(readdirSync(join(dir, table.root)).filter((n) => n.startsWith('deletion_vector_'))).toHaveLength(1);
    await expectAllReaders(table);

    // A replay of older changes changes nothing; a second update of a key already updated hits its new file.
    const before = table.version;
    await merge([{ ...upsert(3, 'stale', 'stale', 1001), eventIndex: 0 }].map((c) => ({ ...c })));
    model.set(3, ['three', 'x']);
    expect(table.version).toBe(before + 1);
    await merge([upsert(3, 'three again', 'z'), upsert(10, 'ten', undefined)]);
    const merged = table.files().find((f) => f.path === loaded[0])!;
    expect(merged.deletionVector!.cardinality).toBe(5); // 3 and 500 from before, 7 and 999 deleted, plus 10 (3's old row is in the other file)
    await expectAllReaders(table);

    // Checkpoints carry the descriptors: a fresh open from the checkpoint reads the same table.
    await table.checkpoint();
    const reopened = (await DeltaTable.open(store, table.root))!;
    expect(reopened.files().find((f) => f.path === loaded[0])!.deletionVector).toEqual(merged.deletionVector);
    await expectAllReaders(reopened);

    // Optimize purges the file whose vector passes the ratio; vacuum then removes the old file and the vector files.
    const opt = await optimizeTable(engine, table, { maxDeletedRowsRatio: 0.001 });
    expect(opt.purged).toBeGreaterThan(0);
    expect(table.files().some((f) => f.deletionVector && f.path === loaded[0])).toBe(false);
    await expectAllReaders(table);
    const vac = await vacuumTable(table, { retainHours: 0, now: Date.now() + 3_600_000 });
    expect(vac.deleted.some((p) => p.startsWith('deletion_vector_'))).toBe(true);
    expect(vac.deleted).toContain(decodeURIComponent(loaded[0]!));
    await expectAllReaders(table);

    // After optimize replaced files under it, the index re-reads them: updates, a delete and a re-insert of a deleted key.
    await merge([upsert(3, 'after optimize', undefined), upsert(500, 'five', 'w'), remove(2000), upsert(7, 'back again', 'v')]);
    expect(await tideRows(table)).toEqual(expected());
    expect(asRows(await readWithDeltaRs(join(dir, table.root)))).toEqual(expected());
  });

  it('a vector update on a file another commit changed is a conflict; the re-read merge goes through', async () => {
    const table = await createDvTable('silver/dv2');
    model.clear();
    await mergeSilver(engine, table, schema, ['id'], { changes: Array.from({ length: 100 }, (_, i) => upsert(i, `a${i}`, 'n')) }, []);
    const other = (await DeltaTable.open(store, table.root))!;
    await mergeSilver(engine, other, schema, ['id'], { changes: [upsert(1, 'by other', 'n')] }, []);
    const err = await mergeSilver(engine, table, schema, ['id'], { changes: [upsert(2, 'by me', 'n')] }, []).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeltaConflictError);
    await table.refresh();
    await mergeSilver(engine, table, schema, ['id'], { changes: [upsert(2, 'by me', 'n')] }, []);
    await expectAllReaders(table);
  });

  it('the key index stays true under random changes, replays, TOAST, a second worker, optimize and a restart', async () => {
    const table = await createDvTable('silver/dv-index');
    model.clear();
    let seed = 42;
    const rand = (n: number) => Math.floor(((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 4294967296) * n);
    /** The last applied version of each key (for replays): id → [name, note, lsn]. */
    const applied = new Map<number, number>();
    const batch = (size: number): KeyChange[] => {
      const ids = new Set<number>();
      while (ids.size < size) ids.add(rand(400));
      return [...ids].map((id) => {
        const r = rand(10);
        if (r === 0 && applied.has(id)) {
          // A replay of an older version: a no-op (the model keeps what it has).
          return { ...upsert(id, 'stale', 'stale', applied.get(id)! - 1), row: { id: BigInt(id), name: 'stale', note: 'stale' } };
        }
        if (r < 3 && model.has(id)) {
          applied.delete(id);
          return remove(id);
        }
        const c =
          r < 5 && model.has(id) ? upsert(id, `n${id}-${lastLsn()}`, undefined) : upsert(id, `n${id}-${lastLsn()}`, `note${lastLsn()}`);
        applied.set(id, Number(c.commitLsn));
        return c;
      });
    };
    // The model for replays: restore what a stale upsert() call wrote into it.
    const replayed = (changes: KeyChange[], before: Map<number, [string, string]>) => {
      for (const c of changes) {
        if (c.row.name !== 'stale') continue;
        const id = Number(c.key[0]);
        if (before.has(id)) model.set(id, before.get(id)!);
        else model.delete(id);
      }
    };
    /** A sink worker: its own table object (and so its own index); a conflict re-reads and plans again, as table-sink does. */
    const worker = async (t: DeltaTable, changes: KeyChange[]) => {
      for (let attempt = 0; ; attempt++) {
        try {
          return await mergeSilver(engine, t, schema, ['id'], { changes }, [], undefined, undefined, INDEX);
        } catch (e) {
          if (!(e instanceof DeltaConflictError) || attempt > 3) throw e;
          await t.refresh();
        }
      }
    };
    const step = async (t: DeltaTable, size: number) => {
      const before = new Map(model);
      const changes = batch(size);
      replayed(changes, before);
      await worker(t, changes);
      // The index was used and stays exact: in step with the snapshot, it holds every live key once.
      const index = keyIndexOf(t);
      if (!(index instanceof SilverKeyIndex)) throw new Error(`the key index of ${t.label} is ${String(index)}`);
      expect(await index.sync(engine, t)).toMatchObject({ ok: true });
      expect(index.size).toBe(model.size);
    };
    await step(table, 300);
    const second = (await DeltaTable.open(store, table.root))!;
    for (let i = 0; i < 12; i++) {
      const t = i % 3 === 2 ? second : table;
      await t.refresh();
      await step(t, 5 + rand(60));
      if (i === 5) await optimizeTable(engine, (await DeltaTable.open(store, table.root))!, { maxDeletedRowsRatio: 0.01 });
      await table.refresh();
      expect(await tideRows(table)).toEqual(expected());
    }
    // A conflict: the second worker commits on files the first one's plan holds; the first re-plans on the new snapshot.
    await second.refresh();
    await step(second, 40);
    await step(table, 40);
    // A restart: a fresh table object builds its index from scratch.
    const restarted = (await DeltaTable.open(store, table.root))!;
    await step(restarted, 50);
    await table.refresh();
    await step(table, 50);
    await expectAllReaders(table);
  });

  it('refuses a deletion vector on a table that does not declare the feature; enabling upgrades the protocol', async () => {
    const table = await DeltaTable.create(store, 'silver/plain', { name: 'silver.plain', schema });
    model.clear();
    await mergeSilver(engine, table, schema, ['id'], { changes: [upsert(1, 'a', 'n'), upsert(2, 'b', 'n')] }, []);
    const file = table.files()[0]!;
    const err = await table
      .commit(
        [
          { remove: { path: file.path, deletionTimestamp: Date.now(), dataChange: true } },
          { add: { ...file, deletionVector: { storageType: 'i', pathOrInlineDv: 'x', sizeInBytes: 1, cardinality: 1 } } },
        ],
        { operation: 'DELETE' },
      )
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeltaProtocolError);
    expect((err as Error).message).toMatch(/does not declare the table feature deletionVectors.*sink key delta.enableDeletionVectors/);
    await alignDeletionVectors(table, true, log);
    expect(table.protocol.readerFeatures).toEqual(['deletionVectors']);
    const r = await mergeSilver(engine, table, schema, ['id'], { changes: [upsert(1, 'changed', 'n')] }, []);
    expect(r.vectorFiles).toBe(1);
    await expectAllReaders(table);
  });
});

/**
 * The real pipeline (order app → Postgres → source → Kafka → sink) with `delta.enableDeletionVectors`
 * on every table: silver merges write deletion vectors, and delta-rs and Spark read silver equal to
 * Postgres (masking applied), history keeps one current version per key, after a kill -9 of `tide sink
 * start` at its third commit and a restart (bronze then holds each event once), after a checkpoint, after
 * `tide lake optimize` purged the vectors and after `tide lake vacuum` deleted the old files.
 */
describe.skipIf(skipDeltaRs)('the sink with deletion vectors, end to end', () => {
  let spark: SparkDelta | undefined;
  let sparkReady: Promise<SparkDelta> | undefined;
  beforeAll(() => {
    sparkReady = startSpark();
    sparkReady?.catch(() => undefined);
  });
  const fx = useOrderPipeline({
    label: 'silverdv',
    replay: 300,
    sink: { 'flush.interval.ms': 200, 'delta.checkpoint.interval': 4, 'delta.enableDeletionVectors': '.*' },
    bursts: 2,
    timeoutMs: 400_000,
  });
  const { store: lake, lakeDir } = fx;
  beforeAll(async () => {
    spark = await sparkReady;
  }, 300_000);

  async function expectSilverEqualsPostgres(step: string): Promise<void> {
    const readers: [string, (root: string) => Promise<{ columns: string[]; rows: unknown[][] }>][] = [
      ['delta-rs', (root) => readWithDeltaRs(join(lakeDir, root))],
    ];
    if (spark) readers.push(['Spark', (root) => spark!.read(join(lakeDir, root))]);
    for (const [reader, read] of readers) await expectSilverEqualsPostgresIn(fx.db.url, read, `${step}, ${reader}`);
    // History has deletion vectors too (history-dv-merge.ts): every reader sees it chained, its current versions equal to Postgres.
    for (const [, read] of readers) await expectHistoryChained(fx.db.url, read);
  }

  it('silver merges write deletion vectors; delta-rs and Spark read silver equal to Postgres after checkpoint, optimize and vacuum', async () => {
    const orders = (await DeltaTable.open(lake, silverPath('public.orders')))!;
    expect(orders.protocol).toMatchObject({ minReaderVersion: 3, minWriterVersion: 7, readerFeatures: ['deletionVectors'] });
    expect(
      orders.files().some((f) => f.deletionVector),
      'the traffic updated orders: some file has a deletion vector',
    ).toBe(true);
    const history = (await DeltaTable.open(lake, historyPath('public.orders')))!;
    expect(history.protocol).toMatchObject({ minReaderVersion: 3, minWriterVersion: 7, readerFeatures: ['deletionVectors'] });
    expect(
      history.files().some((f) => f.deletionVector),
      'the traffic closed versions of orders_history through deletion vectors',
    ).toBe(true);
    await expectSilverEqualsPostgres('after merges');

    // kill -9 at the third commit of a `tide sink start` (TIDE_SINK_CRASH_AT counts every commit of the process:
    // bronze, silver, history), then a restart: the vectors and the key indexes are rebuilt from the table.
    // The in-process sink leaves first (same consumer group), and the order app writes meanwhile: a sink with
    // nothing new to consume makes no commit, so without traffic the crash never comes (the attempt that
    // waited 60 s in vain had everything committed before it started).
    await fx.sink!.stop();
    fx.sink = undefined;
    const abort = new AbortController();
    const traffic = runTraffic(fx.prisma, { rate: 40, concurrency: 2, signal: abort.signal, durationMs: 120_000 });
    const crashing = startCli(['sink', 'start', fx.connectorPath], fx.workDir, { TIDE_SINK_CRASH_AT: 'before-commit:3' });
    const crashed = await crashing.exitWithin(120_000);
    abort.abort();
    const stats = await traffic;
    expect(stats.errors, stats.lastError).toBe(0);
    if (crashed === undefined) crashing.child.kill('SIGKILL');
    expect(crashed, crashing.output().slice(-3000)).toBe('SIGKILL');
    expect(crashing.output()).toContain('killing myself at before-commit');
    const restarted = startCli(['sink', 'start', fx.connectorPath], fx.workDir);
    await fx.settle(180_000);
    restarted.child.kill('SIGTERM');
    expect(await restarted.exitWithin(60_000), restarted.output().slice(-3000)).toBe(0);
    // Silver and history are checked after the checkpoint below (one round of readers less: Spark's take ~20 s).
    await expectBronzeOnce(async (root) => {
      const view = await readWithDeltaRs(join(lakeDir, root));
      const lsn = view.columns.indexOf('_commit_lsn');
      const index = view.columns.indexOf('_event_index');
      const positions = view.rows.map((r) => `${String(r[lsn])}:${String(r[index])}`);
      expect(new Set(positions).size, `${root}: a (commit_lsn, event_index) twice in bronze`).toBe(positions.length);
      return view;
    });
    for (const table of ORDER_TABLES) await (await DeltaTable.open(lake, silverPath(table)))!.checkpoint();
    await (await DeltaTable.open(lake, historyPath('public.orders')))!.checkpoint();
    await expectSilverEqualsPostgres('after a kill -9 at the third commit, a restart and a checkpoint');

    const out = await fx.tideOk(['lake', 'optimize', '--max-deleted-rows-ratio', '0', '--lake', lakeDir]);
    expect(out).toMatch(/silver\.orders: .*purged of deleted rows/);
    expect((await DeltaTable.open(lake, silverPath('public.orders')))!.files().some((f) => f.deletionVector)).toBe(false);
    expect((await DeltaTable.open(lake, historyPath('public.orders')))!.files().some((f) => f.deletionVector)).toBe(false);
    await expectSilverEqualsPostgres('after optimize');

    await fx.tideOk(['lake', 'vacuum', '--retain', '0', '--force', '--lake', lakeDir]);
    expect(readdirSync(join(lakeDir, silverPath('public.orders'))).filter((n) => n.startsWith('deletion_vector_'))).toEqual([]);
    await expectSilverEqualsPostgres('after vacuum');
  }, 600_000);
});

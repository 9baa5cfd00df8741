import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { BlobServiceClient } from '@azure/storage-blob';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createPrisma, type PrismaClient } from '../../src/app/db.ts';
import { replay } from '../../src/app/replay.ts';
import { runTraffic } from '../../src/app/traffic.ts';
import { DeltaTable } from '../../src/lake/delta/delta-table.ts';
import { lastCheckpointPath } from '../../src/lake/delta/log-paths.ts';
import { ParquetEngine } from '../../src/lake/parquet/parquet-engine.ts';
import { openStore } from '../../src/lake/storage/open-store.ts';
import type { ObjectStore } from '../../src/lake/storage/object-store.ts';
import { log } from '../../src/log.ts';
import { GoldRefresher } from '../../src/reports/gold-refresh.ts';
import { ORDER_REPORTS } from '../support/order-reports.ts';
import { bronzePath, silverPath } from '../../src/sink/table-layout.ts';
import { createTestDatabase } from '../support/db.ts';
import {
  expectBronzeOnce,
  expectGoldEqualsPostgres,
  expectHistoryChained,
  expectOptimizeThenVacuum,
  expectSilverEqualsPostgres,
} from '../support/lake-checks.ts';
import { azuriteStorageOptions, readWithDeltaRs, type DeltaRsReadOptions } from '../support/delta-reader.ts';
import { ORDER_TABLES, sinkFile, startSink, waitForLake, type RunningSink } from '../support/lake.ts';
import { sourceConfig, startSource, waitForSourceCaughtUp, type RunningSource } from '../support/source.ts';

/**
 * The end-to-end check of sink-e2e, with the lake on Azure Blob Storage (Microsoft's azurite emulator
 * from the local stack) on a smaller data set: the sink writes to `az://<fresh container>/lake`, and
 * delta-rs reads the tables straight from azurite (object_store's Azure client, not Tide's). Gold is
 * refreshed against the Azure store; optimize and vacuum run there too. The container is deleted at
 * the end.
 */
const BIN = resolve('bin/tide.js');

describe('sink end to end on Azure Blob Storage (azurite): Postgres = silver, bronze exactly once, gold = Postgres reports', () => {
  const connectionString = inject('stackEnv').AZURE_STORAGE_CONNECTION_STRING!;
  const container = `tide-e2e-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
  const lakeUri = `az://${container}/lake`;
  const storageOptions = azuriteStorageOptions(connectionString);
  const cacheDir = mkdtempSync(join(tmpdir(), 'tide-azure-e2e-cache-'));
  const sinkName = `azure-${Date.now().toString(36)}`;
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let prisma: PrismaClient;
  let sql: pg.Client;
  let source: RunningSource | undefined;
  let sink: RunningSink | undefined;
  let store: ObjectStore;
  let sinkStore: ObjectStore;
  let src: ReturnType<typeof sourceConfig>;
  let prefix: string;

  /** delta-rs reading a table of the lake from azurite. */
  const deltaRs = (root: string, options: DeltaRsReadOptions = {}) => readWithDeltaRs(`${lakeUri}/${root}`, { ...options, storageOptions });

  async function settle(): Promise<void> {
    await waitForSourceCaughtUp(sql, src.config['slot.name']);
    await waitForLake(store, sinkName, prefix);
  }

  beforeAll(async () => {
    db = await createTestDatabase('sink_azure');
    prisma = createPrisma(db.url, 4);
    sql = new pg.Client({ connectionString: db.url });
    await sql.connect();
    await replay(prisma, { limit: 500, concurrency: 4 });
    src = sourceConfig(db.url, 'sinkazure', { 'table.include.list': 'public\\.(customers|products|orders|order_items)' });
    prefix = src.config['topic.prefix'];
    source = await startSource(src);
    // The sink's store comes from lake.uri (credentials from AZURE_STORAGE_CONNECTION_STRING, as in production);
    // only the download cache is the test's own, so nothing is left in the OS temp dir.
    store = await openStore(lakeUri, { azure: { cacheDir } });
    sinkStore = await openStore(lakeUri, { azure: { cacheDir } });
    sink = startSink(sinkFile(sinkName, prefix, lakeUri, { 'delta.checkpoint.interval': 5 }), sinkStore);
    // The sink has the replayed data before the traffic starts, and the traffic goes on until a table has
    // passed a checkpoint (at most a minute): a fixed window let a busy machine's sink take it all in one batch.
    await settle();
    const trafficStop = new AbortController();
    const traffic = runTraffic(prisma, { rate: 40, durationMs: 60_000, concurrency: 3, signal: trafficStop.signal });
    const checkpointed = async () => {
      for (const t of ORDER_TABLES) if (await store.get(lastCheckpointPath(bronzePath(t)))) return true;
      return false;
    };
    for (const deadline = Date.now() + 60_000; Date.now() < deadline && !(await checkpointed());)
      await new Promise((r) => setTimeout(r, 500));
    trafficStop.abort();
    const stats = await traffic;
    expect(stats.errors, stats.lastError).toBe(0);
    await settle();
    await sink.stop();
    sink = undefined;
  }, 300_000);

  afterAll(async () => {
    await sink?.stop();
    await source?.stop();
    await prisma?.$disconnect();
    await sql?.end();
    await db?.drop();
    await store?.close();
    await sinkStore?.close();
    await BlobServiceClient.fromConnectionString(connectionString).getContainerClient(container).deleteIfExists();
    rmSync(cacheDir, { recursive: true, force: true });
  });

  it('the lake is in the Azure container: every table has its Delta log there, and checkpoints were written', async () => {
    const blobs = BlobServiceClient.fromConnectionString(connectionString).getContainerClient(container);
    const names: string[] = [];
    for await (const b of blobs.listBlobsFlat({ prefix: 'lake/' })) names.push(b.name);
    for (const t of ORDER_TABLES)
      for (const root of [bronzePath(t), silverPath(t)]) expect(names, root).toContain(`lake/${root}/_delta_log/00000000000000000000.json`);
    const checkpointed = [];
    for (const t of ORDER_TABLES)
      for (const root of [bronzePath(t), silverPath(t)]) if (await store.get(lastCheckpointPath(root))) checkpointed.push(root);
    expect(checkpointed.length, 'tables past a checkpoint (interval 5)').toBeGreaterThan(0);
  });

  it('every silver table equals its Postgres table row for row (delta-rs reading from azurite)', async () => {
    await expectSilverEqualsPostgres(db.url, deltaRs, 'azure', async (table, view) => {
      expect(view.files.every((f) => f.startsWith(`${lakeUri}/${silverPath(table)}/`))).toBe(true);
      // Tide reads the same version and files as delta-rs.
      const tide = (await DeltaTable.open(store, silverPath(table)))!;
      expect(tide.version).toBe(view.version);
      expect(tide.files()).toHaveLength(view.files.length);
    });
  });

  it('bronze holds every change event exactly once; silver.orders_history chains every version', async () => {
    await expectBronzeOnce(deltaRs);
    await expectHistoryChained(db.url, deltaRs);
  });

  it('gold refreshes on Azure, and every gold table equals the same report run on Postgres', async () => {
    const engine = await ParquetEngine.create();
    try {
      const gold = new GoldRefresher(engine, store, log, ORDER_REPORTS);
      const results = await gold.refresh();
      expect(gold.failures).toEqual([]);
      expect(results.map((r) => r.report).sort()).toEqual(ORDER_REPORTS.map((r) => r.name).sort());
      await expectGoldEqualsPostgres(db.url, deltaRs, 'azure');
    } finally {
      await engine.close();
    }
  });

  it('optimize and vacuum work on Azure: delta-rs reads the same rows, and the replaced blobs are deleted', async () => {
    await expectOptimizeThenVacuum(store, deltaRs);
  });

  it('tide lake tables --json works on the az:// lake (credentials from the environment)', async () => {
    const out = await new Promise<{ code: number | null; stdout: string; stderr: string }>((done, fail) => {
      const child = spawn(process.execPath, [BIN, 'lake', 'tables', '--json', '--lake', lakeUri], {
        // TMPDIR: the CLI's blob download cache (checkpoints) lands in the test's own folder, removed at the end.
        env: { ...process.env, TMPDIR: cacheDir },
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('error', fail);
      child.on('close', (code) => done({ code, stdout, stderr }));
    });
    expect(out.code, out.stderr).toBe(0);
    const tables = JSON.parse(out.stdout) as { name: string; version: number; rows: number | null }[];
    const silverOrders = tables.find((t) => t.name === 'silver.orders');
    const view = await deltaRs(silverPath('public.orders'));
    expect(silverOrders).toMatchObject({ version: view.version, rows: view.row_count });
    expect(tables.map((t) => t.name)).toEqual(expect.arrayContaining(['bronze.orders', 'silver.orders_history', 'gold.daily_billing']));
  });
});

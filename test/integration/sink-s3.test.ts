import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
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
import { GoldReader } from '../../src/ops/dashboard/gold-reader.ts';
import { GoldRefresher } from '../../src/reports/gold-refresh.ts';
import { writeConnectorFileAt } from '../support/connector-file.ts';
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
import { readWithDeltaRs, s3StorageOptions, type DeltaRsReadOptions } from '../support/delta-reader.ts';
import { ORDER_TABLES, sinkFile, startSink, waitForLake, type RunningSink } from '../support/lake.ts';
import { deletePrefix, listKeys, localS3, s3ChildEnv, s3OpenOptions } from '../support/s3.ts';
import { sourceConfig, startSource, waitForSourceCaughtUp, type RunningSource } from '../support/source.ts';

/**
 * The end-to-end check of sink-azure, with the lake on S3 (the local stack's versitygw): the sink
 * writes to `s3://<bucket>/<fresh prefix>/lake` with s3.endpoint and s3.region from its connector
 * config and credentials from the AWS SDK's default chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
 * in the environment, as in production); delta-rs reads the tables straight from S3 with its own S3
 * client. Gold is refreshed and read (the dashboard's GoldReader) on S3; optimize, vacuum and the
 * lake CLI run there too. A wrong secret key and a missing bucket stop `tide sink start` at once.
 */
const BIN = resolve('bin/tide.js');

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

function tide(args: string[], env: NodeJS.ProcessEnv, cwd?: string): Promise<CliResult> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 100_000);
    child.on('error', fail);
    child.on('close', (code) => {
      clearTimeout(timer);
      done({ code, stdout, stderr });
    });
  });
}

describe('sink end to end on S3 (versitygw): Postgres = silver, bronze exactly once, gold = Postgres reports', () => {
  const s3 = localS3(inject('stackEnv'));
  const runId = `${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
  const prefix = `e2e-${runId}`;
  const lakeUri = `s3://${s3.bucket}/${prefix}/lake`;
  const s3Keys = { 's3.endpoint': s3.endpoint, 's3.region': s3.region };
  const storageOptions = s3StorageOptions(inject('stackEnv'));
  const cacheDir = mkdtempSync(join(tmpdir(), 'tide-s3-e2e-cache-'));
  const sinkName = `s3-${Date.now().toString(36)}`;
  const savedEnv = { AWS_ACCESS_KEY_ID: process.env.AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY: process.env.AWS_SECRET_ACCESS_KEY };
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let prisma: PrismaClient;
  let sql: pg.Client;
  let source: RunningSource | undefined;
  let sink: RunningSink | undefined;
  let store: ObjectStore;
  let src: ReturnType<typeof sourceConfig>;
  let topicPrefix: string;

  const deltaRs = (root: string, options: DeltaRsReadOptions = {}) => readWithDeltaRs(`${lakeUri}/${root}`, { ...options, storageOptions });

  beforeAll(async () => {
    // The sink finds its credentials where the SDK's default chain looks first: the environment.
    process.env.AWS_ACCESS_KEY_ID = s3.accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = s3.secretAccessKey;
    db = await createTestDatabase('sink_s3');
    prisma = createPrisma(db.url, 4);
    sql = new pg.Client({ connectionString: db.url });
    await sql.connect();
    await replay(prisma, { limit: 500, concurrency: 4 });
    src = sourceConfig(db.url, 'sinks3', { 'table.include.list': 'public\\.(customers|products|orders|order_items)' });
    topicPrefix = src.config['topic.prefix'];
    source = await startSource(src);
    store = await openStore(lakeUri, { s3: s3OpenOptions(s3, { store: { cacheDir } }) });
    // No store override: the sink opens lake.uri itself, from its s3.* keys and the environment's credentials.
    sink = startSink(sinkFile(sinkName, topicPrefix, lakeUri, { ...s3Keys, 'delta.checkpoint.interval': 3 }));
    // The snapshot is in the lake before the traffic starts, so the traffic lands as several commits of its own.
    await waitForLake(store, sinkName, topicPrefix);
    const stats = await runTraffic(prisma, { rate: 40, durationMs: 4000, concurrency: 3 });
    expect(stats.errors, stats.lastError).toBe(0);
    await waitForSourceCaughtUp(sql, src.config['slot.name']);
    await waitForLake(store, sinkName, topicPrefix);
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
    for (const [k, v] of Object.entries(savedEnv))
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    await deletePrefix(s3, `${prefix}/`);
    rmSync(cacheDir, { recursive: true, force: true });
  });

  it('the lake is in the bucket: every table has its Delta log there, checkpoints were written, no probe object is left', async () => {
    const keys = await listKeys(s3, `${prefix}/`);
    for (const t of ORDER_TABLES)
      for (const root of [bronzePath(t), silverPath(t)])
        expect(keys, root).toContain(`${prefix}/lake/${root}/_delta_log/00000000000000000000.json`);
    const checkpointed = [];
    for (const t of ORDER_TABLES)
      for (const root of [bronzePath(t), silverPath(t)]) if (await store.get(lastCheckpointPath(root))) checkpointed.push(root);
    expect(checkpointed.length, 'tables past a checkpoint (interval 3)').toBeGreaterThan(0);
    expect(keys.filter((k) => k.includes('_tide_probe'))).toEqual([]);
  });

  it('every silver table equals its Postgres table row for row (delta-rs reading from S3)', async () => {
    await expectSilverEqualsPostgres(db.url, deltaRs, 's3', async (table, view) => {
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

  it('gold refreshes on S3, equals the reports run on Postgres, and the dashboard reads it', async () => {
    const engine = await ParquetEngine.create();
    try {
      const gold = new GoldRefresher(engine, store, log, ORDER_REPORTS);
      await gold.refresh();
      expect(gold.failures).toEqual([]);
      await expectGoldEqualsPostgres(db.url, deltaRs, 's3');
      // The dashboard's gold reads: GoldReader over the same S3 store, as the sink's ops server uses it.
      const reader = new GoldReader(store, engine);
      const billing = await reader.read('daily_billing', (view) => `SELECT count(*)::INTEGER AS n FROM ${view}`);
      const expectedBilling = await deltaRs('gold/daily_billing');
      expect(billing).toMatchObject({ rows: [{ n: expectedBilling.row_count }], version: expectedBilling.version });
      expect(billing!.committedAtMs).toBeGreaterThan(0);
    } finally {
      await engine.close();
    }
  });

  it('optimize and vacuum work on S3: delta-rs reads the same rows, and the replaced objects are deleted', async () => {
    await expectOptimizeThenVacuum(store, deltaRs);
  });

  it('tide lake tables, export, optimize and vacuum work on the s3:// lake (endpoint and credentials from the AWS environment variables)', async () => {
    const env = { ...s3ChildEnv(s3), TMPDIR: cacheDir };
    const tables = await tide(['lake', 'tables', '--json', '--lake', lakeUri], env);
    expect(tables.code, tables.stderr).toBe(0);
    const list = JSON.parse(tables.stdout) as { name: string; version: number; rows: number | null }[];
    const view = await deltaRs(silverPath('public.orders'));
    expect(list.find((t) => t.name === 'silver.orders')).toMatchObject({ version: view.version, rows: view.row_count });
    const out = join(cacheDir, 'orders.csv');
    const exported = await tide(['lake', 'export', 'silver.orders', '--lake', lakeUri, '--out', out], env);
    expect(exported.code, exported.stderr).toBe(0);
    expect(exported.stdout).toBe(`wrote ${view.row_count} rows of silver.orders (version ${view.version}) to ${out}\n`);
    expect(readFileSync(out, 'utf8').trim().split('\n')).toHaveLength(view.row_count + 1);
    // The writing commands: optimize one table, and a vacuum dry run (within retention: nothing to delete).
    const optimized = await tide(['lake', 'optimize', 'silver.order_items', '--lake', lakeUri, '--min-file-mb', '1'], env);
    expect(optimized.code, optimized.stderr).toBe(0);
    expect(optimized.stdout).toMatch(/^silver\.order_items: (nothing to compact|\d+ files \(.+\) -> \d+ \(.+\), version \d+)\n$/);
    const vacuum = await tide(['lake', 'vacuum', 'silver.order_items', '--retain', '1', '--dry-run', '--lake', lakeUri], env);
    expect({ code: vacuum.code, stdout: vacuum.stdout }).toEqual({ code: 0, stdout: 'silver.order_items: would delete 0 files (0 B)\n' });
  });

  it('tide sink start with a wrong secret key or a missing bucket exits 1 at once, naming the lake, and commits nothing', async () => {
    const dir = mkdtempSync(join(cacheDir, 'bad-'));
    const start = async (name: string, uri: string, env: NodeJS.ProcessEnv) => {
      const file = sinkFile(`${sinkName}-${name}`, topicPrefix, uri, s3Keys);
      const path = join(dir, `${name}.json`);
      writeConnectorFileAt(path, { name: file.name, config: file.config }, 2);
      return tide(['sink', 'start', path, '--http-port', '0'], env, dir);
    };
    const wrongSecret = `wrong-${randomBytes(6).toString('hex')}`;
    const badKey = await start('wrong-key', `s3://${s3.bucket}/${prefix}/bad`, { ...s3ChildEnv(s3), AWS_SECRET_ACCESS_KEY: wrongSecret });
    expect(badKey.code).toBe(1);
    expect(badKey.stderr).toContain(
      `tide: lake (s3://${s3.bucket}/${prefix}/bad): the request signature was refused (SignatureDoesNotMatch): the secret access key does not belong to the access key id.`,
    );
    expect(badKey.stderr + badKey.stdout).not.toContain(wrongSecret);
    const noBucket = await start('no-bucket', `s3://tide-missing-${runId}/lake`, s3ChildEnv(s3));
    expect(noBucket.code).toBe(1);
    expect(noBucket.stderr).toContain(
      `tide: lake (s3://tide-missing-${runId}/lake): the bucket tide-missing-${runId} does not exist. Create it (e.g. aws s3 mb s3://tide-missing-${runId}) or correct lake.uri; Tide does not create buckets`,
    );
    expect(await listKeys(s3, `${prefix}/bad`)).toEqual([]);
  });
});

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, expect } from 'vitest';
import { createPrisma, type PrismaClient } from '../../src/app/db.ts';
import { replay } from '../../src/app/replay.ts';
import { runTraffic } from '../../src/app/traffic.ts';
import { LocalStore } from '../../src/lake/storage/local-store.ts';
import { startCli } from './cli.ts';
import { writeConnectorFileAt } from './connector-file.ts';
import { createTestDatabase } from './db.ts';
import { sinkFile, startSink, waitForLake, type RunningSink } from './lake.ts';
import { sourceConfig, startSource, waitForSourceCaughtUp, type RunningSource } from './source.ts';

export interface OrderPipelineOptions {
  /** Names the test database, the source (slot, publication, topic prefix), the sink and the work directory. */
  label: string;
  /** How many orders of the shop's history the order app replays into the database before the source starts. */
  replay: number;
  /** Settings of the sink's connector file beyond `sinkFile`'s (e.g. `flush.interval.ms`). */
  sink: Record<string, unknown>;
  /** false: only write the connector file (the test starts `tide sink start` processes itself). Default true. */
  startSink?: boolean;
  /**
   * Bursts of order-app traffic (40 changes/s for 3 s), each committed to the lake before the next, so the
   * tables get several commits; 0 (the default): only the replay, committed.
   */
  bursts?: number;
  /** The beforeAll's timeout. */
  timeoutMs?: number;
}

/** What `useOrderPipeline` gives a describe block; filled in its beforeAll. */
export interface OrderPipeline {
  db: Awaited<ReturnType<typeof createTestDatabase>>;
  prisma: PrismaClient;
  sql: pg.Client;
  src: ReturnType<typeof sourceConfig>;
  /** The source's topic prefix. */
  prefix: string;
  source: RunningSource | undefined;
  /** The in-process sink on `store`; a test that stops it sets it to undefined (else afterAll stops it and fails on its error). */
  sink: RunningSink | undefined;
  sinkName: string;
  /** A temporary directory, the CLI's working directory; removed in afterAll unless a test failed. */
  workDir: string;
  lakeDir: string;
  store: LocalStore;
  /** The sink's connector file, as a user would write it (`tide sink start <connectorPath>`). */
  connectorPath: string;
  /** Wait until the source has confirmed every change so far and the lake has committed every Kafka event. */
  settle(timeoutMs?: number): Promise<void>;
  /** `tide <args>` as the CLI (a child process in workDir); expects exit 0 and returns its output. */
  tideOk(args: string[]): Promise<string>;
}

/**
 * The start of the order-app pipeline every end-to-end lake test runs (order app → Postgres → source →
 * Kafka → sink → lake directory), set up in beforeAll and torn down in afterAll: a migrated test database
 * with `replay` orders, a Tide source streaming its four order tables, a sink connector file and (unless
 * `startSink: false`) that sink running in this process, with everything so far committed to the lake.
 */
export function useOrderPipeline(options: OrderPipelineOptions): OrderPipeline {
  const { label } = options;
  const workDir = mkdtempSync(join(tmpdir(), `tide-${label}-`));
  const fx = {
    source: undefined,
    sink: undefined,
    sinkName: `${label}-${Date.now().toString(36)}`,
    workDir,
    lakeDir: join(workDir, 'lake'),
    connectorPath: join(workDir, 'orders-lake.json'),
  } as OrderPipeline;
  fx.store = new LocalStore(fx.lakeDir);
  let failed = false;

  fx.settle = async (timeoutMs) => {
    await waitForSourceCaughtUp(fx.sql, fx.src.config['slot.name']);
    await waitForLake(fx.store, fx.sinkName, fx.prefix, timeoutMs);
  };
  fx.tideOk = async (args) => {
    const cli = startCli(args, workDir);
    const code = await cli.exited;
    expect(code, `tide ${args.join(' ')}\n${cli.output()}`).toBe(0);
    return cli.output();
  };

  beforeAll(async () => {
    fx.db = await createTestDatabase(label);
    fx.prisma = createPrisma(fx.db.url, 4);
    fx.sql = new pg.Client({ connectionString: fx.db.url });
    await fx.sql.connect();
    await replay(fx.prisma, { limit: options.replay, concurrency: 4 });
    fx.src = sourceConfig(fx.db.url, label, { 'table.include.list': 'public\\.(customers|products|orders|order_items)' });
    fx.prefix = fx.src.config['topic.prefix'];
    fx.source = await startSource(fx.src);
    const file = sinkFile(fx.sinkName, fx.prefix, fx.lakeDir, options.sink);
    writeConnectorFileAt(fx.connectorPath, { name: fx.sinkName, config: file.config }, 2);
    if (options.startSink === false) return;
    fx.sink = startSink(file, fx.store);
    const bursts = options.bursts ?? 0;
    if (bursts === 0) await fx.settle();
    for (let burst = 0; burst < bursts; burst++) {
      const stats = await runTraffic(fx.prisma, { rate: 40, durationMs: 3000, concurrency: 3 });
      expect(stats.errors, stats.lastError).toBe(0);
      await fx.settle();
    }
  }, options.timeoutMs ?? 300_000);

  afterEach((ctx) => {
    if (ctx.task.result?.state === 'fail') failed = true;
  });

  afterAll(async () => {
    // The sink's error (a test that expects one takes the sink away) is rethrown once everything is closed.
    const sinkError = await fx.sink?.stop().then(
      () => undefined,
      (e: unknown) => e,
    );
    await fx.source?.stop();
    await fx.prisma?.$disconnect();
    await fx.sql?.end();
    await fx.db?.drop();
    if (failed) console.error(`${label}: lake kept for inspection in ${fx.lakeDir}`);
    else rmSync(workDir, { recursive: true, force: true });
    if (sinkError) throw sinkError;
  });
  return fx;
}

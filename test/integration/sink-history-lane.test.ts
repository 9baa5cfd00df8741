import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPrisma, type PrismaClient } from '../../src/app/db.ts';
import { replay } from '../../src/app/replay.ts';
import { runTraffic } from '../../src/app/traffic.ts';
import { DeltaTable } from '../../src/lake/delta/delta-table.ts';
import { LocalStore } from '../../src/lake/storage/local-store.ts';
import { txnAppId } from '../../src/sink/offsets.ts';
import { historyPath, silverPath } from '../../src/sink/table-layout.ts';
import { spawnSink, writeConnectorFileAt } from '../support/connector-file.ts';
import { createTestDatabase } from '../support/db.ts';
import { readWithDeltaRs } from '../support/delta-reader.ts';
import { expectBronzeOnce, expectHistoryChained, expectSilverEqualsPostgres, type ReadTable } from '../support/lake-checks.ts';
import { waitFor } from '../support/kafka.ts';
import { highWatermarks, sinkFile, waitForLake } from '../support/lake.ts';
import { sourceConfig, startSource, waitForSourceCaughtUp, type RunningSource } from '../support/source.ts';

/**
 * History on its own cadence (silver.history.interval.ms, src/sink/history-lane.ts): silver is written at
 * every flush while history's merges wait, in memory; a kill -9 loses what waited, and the restarted sink
 * re-reads it from history's txn versions (bronze and silver skip it); a clean stop merges what waits.
 */
describe('history merges behind silver (silver.history.interval.ms)', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let sql: pg.Client;
  let prisma: PrismaClient;
  let source: RunningSource;
  let src: ReturnType<typeof sourceConfig>;
  let prefix: string;
  const workDir = mkdtempSync(join(tmpdir(), 'tide-history-lane-'));
  const lakeDir = join(workDir, 'lake');
  const store = new LocalStore(lakeDir);
  const sinkName = `hlane-${Date.now().toString(36)}`;
  const connectorPath = join(workDir, 'orders-lake.json');
  const logPath = join(workDir, 'sink.log');
  const read: ReadTable = (root, options) => readWithDeltaRs(join(lakeDir, root), options);

  const writeConnector = (history: Record<string, unknown>) =>
    writeConnectorFileAt(connectorPath, {
      name: sinkName,
      config: sinkFile(sinkName, prefix, lakeDir, { 'flush.interval.ms': 200, ...history }).config,
    });

  /** The lowest txn version of `root` over the orders topic's partitions that hold messages (-1: none committed). */
  async function ordersVersion(root: string): Promise<bigint> {
    const table = await DeltaTable.open(store, root);
    const marks = (await highWatermarks([`${prefix}.public.orders`])).filter((m) => m.high > 0n);
    let lowest: bigint | undefined;
    for (const m of marks) {
      const v = BigInt(table?.txnVersion(txnAppId(sinkName, m.topic, m.partition)) ?? -1);
      lowest = lowest === undefined || v < lowest ? v : lowest;
    }
    return lowest ?? -1n;
  }

  beforeAll(async () => {
    db = await createTestDatabase('history_lane');
    sql = new pg.Client({ connectionString: db.url });
    await sql.connect();
    prisma = createPrisma(db.url, 4);
    await replay(prisma, { limit: 600, concurrency: 4 });
    src = sourceConfig(db.url, 'historylane', { 'table.include.list': 'public\\.(customers|products|orders|order_items)' });
    prefix = src.config['topic.prefix'];
    source = await startSource(src);
  }, 180_000);

  afterAll(async () => {
    await source?.stop();
    await prisma?.$disconnect();
    await sql?.end();
    await db?.drop();
  });

  it('keeps silver current while history waits; after kill -9 and a clean stop, history chains every version once', async () => {
    // 1. History waits (an interval far beyond the test): silver catches up, history does not move.
    writeConnector({ 'silver.history.interval.ms': 3_600_000 });
    let sink = spawnSink(connectorPath, workDir, logPath);
    const first = await runTraffic(prisma, { rate: 40, durationMs: 4000, concurrency: 2 });
    expect(first.errors, first.lastError).toBe(0);
    await waitForSourceCaughtUp(sql, src.config['slot.name']);
    await waitForLake(store, sinkName, prefix, 120_000, false);
    const silverAt = await ordersVersion(silverPath('public.orders'));
    expect(silverAt).toBeGreaterThan(0n);
    expect(await ordersVersion(historyPath('public.orders')), 'history merged although its interval had not passed').toBe(-1n);

    // 2. kill -9: what history held in memory is gone; more changes arrive while the sink is down.
    sink.child.kill('SIGKILL');
    expect(await sink.exited).toBe(-9);
    const second = await runTraffic(prisma, { rate: 40, durationMs: 3000, concurrency: 2 });
    expect(second.errors, second.lastError).toBe(0);

    // 3. Restart: merges by count (silver.history.max.events) while it catches up, the rest waits for the interval…
    writeConnector({ 'silver.history.interval.ms': 3_600_000, 'silver.history.max.events': 20 });
    sink = spawnSink(connectorPath, workDir, logPath);
    await waitForSourceCaughtUp(sql, src.config['slot.name']);
    await waitForLake(store, sinkName, prefix, 120_000, false);
    // (A merge started by the last flushes may still be running.)
    await waitFor(
      async () => (await ordersVersion(historyPath('public.orders'))) >= 0n,
      'a history merge at silver.history.max.events',
      60_000,
    );
    // … and a clean stop merges what waits.
    sink.child.kill('SIGTERM');
    expect(await sink.exited, readFileSync(logPath, 'utf8').slice(-3000)).toBe(0);
    await waitForLake(store, sinkName, prefix, 10_000, true);
    expect(await ordersVersion(historyPath('public.orders'))).toBe(await ordersVersion(silverPath('public.orders')));

    await expectSilverEqualsPostgres(db.url, read, 'history lane');
    await expectBronzeOnce(read);
    await expectHistoryChained(db.url, read);
  }, 420_000);
});

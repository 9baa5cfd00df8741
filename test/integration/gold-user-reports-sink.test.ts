import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPrisma, type PrismaClient } from '../../src/app/db.ts';
import { replay } from '../../src/app/replay.ts';
import { LocalStore } from '../../src/lake/storage/local-store.ts';
import { createTestDatabase } from '../support/db.ts';
import { readWithDeltaRs } from '../support/delta-reader.ts';
import { waitFor } from '../support/kafka.ts';
import { sinkFile, startSink, waitForLake, type RunningSink } from '../support/lake.ts';
import { dropSlot, sourceConfig, startSource, type RunningSource } from '../support/source.ts';

/**
 * A report folder of the team's own (gold.reports.dir) under the running sink, fed by the real pipeline
 * (Postgres → source → Kafka → sink): an incremental report over bronze, a report over the SCD 2 history,
 * and a report that reads another report. Each must end equal to the lake it was built from.
 */
const REPORTS: Record<string, string> = {
  'order_changes_per_minute.sql': `-- Changes to orders per minute of commit time, from bronze.
-- tide: incremental by minute lookback 1m
SELECT date_trunc('minute', _commit_ts) AS minute, count(*) AS changes
FROM bronze_orders
WHERE _commit_ts >= {{since}}
GROUP BY 1
`,
  'order_changes_total.sql': `-- Every change to orders, summed from the per-minute report.
SELECT CAST(sum(changes) AS BIGINT) AS changes FROM gold_order_changes_per_minute
`,
  'order_versions.sql': `-- Versions of orders in the history, and the current ones.
SELECT count(*) AS versions, count(*) FILTER (WHERE _is_current) AS current FROM silver_orders_history
`,
};

describe('a report folder of your own under the running sink', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let prisma: PrismaClient;
  let source: RunningSource | undefined;
  let sink: RunningSink | undefined;
  let src: ReturnType<typeof sourceConfig>;
  const root = mkdtempSync(join(tmpdir(), 'tide-user-reports-sink-'));
  const lakeDir = join(root, 'lake');
  const reportsDir = join(root, 'reports');
  const sinkName = `user-reports-${Date.now().toString(36)}`;

  beforeAll(async () => {
    mkdirSync(lakeDir);
    mkdirSync(reportsDir);
    for (const [file, sql] of Object.entries(REPORTS)) writeFileSync(join(reportsDir, file), sql);
    db = await createTestDatabase('user_reports');
    prisma = createPrisma(db.url, 4);
    src = sourceConfig(db.url, 'user_reports', { 'table.include.list': 'public\\.(customers|products|orders|order_items)' });
    source = await startSource(src);
  });
  afterAll(async () => {
    await sink?.stop();
    await source?.stop();
    await prisma?.$disconnect();
    if (db) {
      if (src) await dropSlot(db.url, src.config['slot.name']);
      await db.drop();
    }
  });

  const one = async (table: string) => {
    const t = await readWithDeltaRs(join(lakeDir, ...table.split('.'))).catch(() => undefined);
    return t?.rows.length === 1 ? Object.fromEntries(t.columns.map((c, i) => [c, t.rows[0]![i]])) : undefined;
  };

  /**
   * Wait until gold equals the lake, and the lake has every order Postgres has (the source publishes a
   * moment after the commit): every bronze change of orders counted, every history version.
   */
  async function goldCaughtUp(orders: number): Promise<number> {
    let changes = 0;
    let seen = '';
    await waitFor(
      async () => {
        const bronze = await readWithDeltaRs(join(lakeDir, 'bronze', 'orders'));
        const history = await readWithDeltaRs(join(lakeDir, 'silver', 'orders_history'));
        const current = history.rows.filter((r) => r[history.columns.indexOf('_is_current')] === true).length;
        const total = await one('gold.order_changes_total');
        const versions = await one('gold.order_versions');
        seen = `bronze ${bronze.rows.length} vs gold ${JSON.stringify(total)}; history ${history.rows.length}/${current} vs gold ${JSON.stringify(versions)}`;
        changes = bronze.rows.length;
        return (
          current === orders &&
          Number(total?.changes) === bronze.rows.length &&
          Number(versions?.versions) === history.rows.length &&
          Number(versions?.current) === current
        );
      },
      'gold to catch up with the lake',
      60_000,
    ).catch((err: Error) => {
      throw new Error(`${err.message} (${seen}; ${orders} orders in Postgres)`);
    });
    return changes;
  }

  it('builds them in order as the lake changes, the bronze one incrementally', async () => {
    const store = new LocalStore(lakeDir);
    const prefix = src.config['topic.prefix'];
    sink = startSink(
      sinkFile(sinkName, prefix, lakeDir, { 'gold.refresh.interval.ms': 1000, 'flush.interval.ms': 200, 'gold.reports.dir': reportsDir }),
      store,
    );
    const sql = new pg.Client({ connectionString: db.url });
    await sql.connect();
    const orders = async () => Number((await sql.query<{ n: string }>('SELECT count(*) AS n FROM orders')).rows[0]!.n);
    try {
      await replay(prisma, { limit: 300 });
      await waitForLake(store, sinkName, prefix);
      const first = await goldCaughtUp(await orders());
      // More changes: new orders, and updates that add history versions.
      await replay(prisma, { limit: 1500 });
      await sql.query(`UPDATE orders SET status = 'paid', updated_at = now() WHERE status = 'shipped' AND id % 3 = 0`);
      await waitForLake(store, sinkName, prefix);
      expect(await goldCaughtUp(await orders())).toBeGreaterThan(first);
    } finally {
      await sql.end();
    }
    // The per-minute report was merged at least once (an incremental build), not only rewritten whole.
    const log = join(lakeDir, 'gold', 'order_changes_per_minute', '_delta_log');
    const operations = readdirSync(log)
      .filter((f) => f.endsWith('.json'))
      .map(
        (f) =>
          (JSON.parse(readFileSync(join(log, f), 'utf8').split('\n')[0]!) as { commitInfo: { operation: string } }).commitInfo.operation,
      );
    expect(operations).toContain('MERGE');
    expect(sink.worker.stats.goldRefreshes).toBeGreaterThan(1);
  }, 240_000);
});

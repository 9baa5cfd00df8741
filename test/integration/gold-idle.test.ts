import { mkdtempSync } from 'node:fs';
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
 * Gold follows silver on its interval even when the traffic stops: the last silver change of a burst
 * usually lands within the interval of the previous build, and no later message comes to trigger one.
 */
describe('gold refresh after the traffic stops', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let prisma: PrismaClient;
  let source: RunningSource | undefined;
  let sink: RunningSink | undefined;
  let src: ReturnType<typeof sourceConfig>;
  const lakeDir = mkdtempSync(join(tmpdir(), 'tide-gold-idle-'));
  const sinkName = `gold-idle-${Date.now().toString(36)}`;

  beforeAll(async () => {
    db = await createTestDatabase('gold_idle');
    prisma = createPrisma(db.url, 4);
    src = sourceConfig(db.url, 'gold_idle', { 'table.include.list': 'public\\.(customers|products|orders|order_items)' });
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

  it('rebuilds gold from the last silver change without a further message', async () => {
    const store = new LocalStore(lakeDir);
    const prefix = src.config['topic.prefix'];
    sink = startSink(sinkFile(sinkName, prefix, lakeDir, { 'gold.refresh.interval.ms': 2000, 'flush.interval.ms': 200 }), store);
    // Orders arrive in several small bursts, so silver changes more than once within one gold interval.
    for (const limit of [300, 600, 900]) {
      await replay(prisma, { limit });
      await new Promise((r) => setTimeout(r, 400));
    }
    await waitForLake(store, sinkName, prefix);
    const sql = new pg.Client({ connectionString: db.url });
    await sql.connect();
    const { rows } = await sql.query<{ n: string }>(
      `SELECT count(*) AS n FROM orders WHERE customer_id IS NOT NULL AND status IN ('placed', 'paid', 'shipped')`,
    );
    await sql.end();
    const sales = Number(rows[0]!.n);
    expect(sales).toBeGreaterThan(0);
    let shown = -1;
    await waitFor(
      async () => {
        const view = await readWithDeltaRs(join(lakeDir, 'gold', 'daily_billing')).catch(() => undefined);
        if (!view) return false;
        const i = view.columns.indexOf('orders');
        shown = view.rows.reduce((n, r) => n + Number(r[i]), 0);
        // A pass is counted when all its reports are built, after daily_billing's commit.
        return shown === sales && sink!.worker.stats.goldRefreshes > 0;
      },
      `gold.daily_billing to count all ${sales} sales (it shows ${shown})`,
      20_000,
    );
    expect(sink.worker.stats.goldRefreshes).toBeGreaterThan(0);
  }, 180_000);
});

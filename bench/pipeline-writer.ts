/**
 * The load of bench/pipeline-sustained.ts: row changes to the order app's `orders` table at a steady rate
 * over several connections. Each connection every 20 ms commits one transaction with the changes due at
 * its share of the rate: half a multi-row INSERT of new orders, half an UPDATE of uniformly random
 * existing orders. bench/sink-freshness.ts uses the same writer on one connection.
 */
import pg from 'pg';
import { round, sleep } from './bench-common.ts';

const TICK_MS = 20;

/** Inserts new orders and updates random existing ones, one transaction per call; `ids` is shared by the run's writers. */
export class OrderWriter {
  private version = 0;
  constructor(
    private readonly sql: pg.Client,
    private readonly ids: { inserted: number },
  ) {}

  /** Returns the row changes Postgres reports (INSERT + UPDATE row counts). */
  async write(inserts: number, updates: number): Promise<number> {
    // Claim the transaction numbers before the await, so concurrent writers never collide on the unique key.
    const from = this.ids.inserted + 1;
    const to = this.ids.inserted + inserts;
    this.ids.inserted = to;
    const existing = from - 1;
    const ids = new Set<number>();
    while (existing > 0 && ids.size < Math.min(updates, existing)) ids.add(1 + Math.floor(Math.random() * existing));
    this.version++;
    const statements = [
      'BEGIN',
      inserts
        ? `INSERT INTO orders (transaction_no, ordered_at, customer_id, status, attributes)
           SELECT (536365 + g)::text, now() - (g % 1440) * interval '1 minute', 1 + g % 200, 'placed',
                  jsonb_build_object('channel', CASE WHEN g % 3 = 0 THEN 'web' ELSE 'store' END, 'gift', g % 11 = 0)
             FROM generate_series(${from}, ${to}) g`
        : undefined,
      ids.size
        ? `UPDATE orders SET status = (ARRAY['paid','shipped','cancelled']::order_status[])[1 + id % 3],
                  attributes = attributes || jsonb_build_object('v', ${this.version}), updated_at = now()
            WHERE id = ANY('{${[...ids].join(',')}}'::bigint[])`
        : undefined,
      'COMMIT',
    ].filter((s): s is string => s !== undefined);
    const results = (await this.sql.query(statements.join(';\n'))) as unknown as pg.QueryResult[];
    return results.reduce((a, r) => a + (r.command === 'INSERT' || r.command === 'UPDATE' ? (r.rowCount ?? 0) : 0), 0);
  }
}

export interface WriterProgress {
  changes: number;
  /** Changes per second over the last report interval. */
  rate: number;
}

/**
 * Run `writers` at `rate` row changes/s in all for `ms`; `report` every 30 s (it may throw to stop the run).
 * A writer that falls behind catches up with a bigger transaction on its next tick, so the achieved rate
 * says whether Postgres and this process kept up, and `lateTicks` how often a transaction took longer than a tick.
 */
export async function runWriters(writers: OrderWriter[], rate: number, ms: number, report: (p: WriterProgress) => void) {
  const t0 = performance.now();
  const end = t0 + ms;
  const share = rate / writers.length;
  let changes = 0;
  let txs = 0;
  let lateTicks = 0;
  let stop: unknown;
  const loops = writers.map(async (w) => {
    let mine = 0;
    while (performance.now() < end && stop === undefined) {
      const tick = performance.now();
      const due = Math.floor(((tick - t0) / 1000) * share) - mine;
      if (due > 0) {
        const ins = Math.ceil(due / 2);
        const n = await w.write(ins, due - ins);
        mine += due; // the schedule counts what was asked; `changes` what Postgres changed
        changes += n;
        txs++;
      }
      const spent = performance.now() - tick;
      if (spent > TICK_MS) lateTicks++;
      else await sleep(TICK_MS - spent);
    }
  });
  let last = { t: t0, changes: 0 };
  const timer = setInterval(() => {
    const t = performance.now();
    try {
      report({ changes, rate: Math.round((changes - last.changes) / ((t - last.t) / 1000)) });
    } catch (err) {
      stop = err;
    }
    last = { t, changes };
  }, 30_000);
  try {
    await Promise.all(loops);
  } finally {
    clearInterval(timer);
  }
  if (stop !== undefined) throw stop;
  const seconds = (performance.now() - t0) / 1000;
  return { changes, transactions: txs, lateTicks, seconds: round(seconds, 1), rowsPerSecond: Math.round(changes / seconds) };
}

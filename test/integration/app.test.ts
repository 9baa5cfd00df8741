import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { createPrisma, type PrismaClient } from '../../src/app/db.ts';
import { DEFAULT_DATASET } from '../../src/app/dataset.ts';
import { replay } from '../../src/app/replay.ts';
import { parseMix, runTraffic } from '../../src/app/traffic.ts';
import { createTestDatabase } from '../support/db.ts';

const LIMIT = 400;

/** The expected counts, from a plain split of the CSV (SOURCE.md: no field holds a comma), not from the app's parser. */
function expectedFromFile(limit: number) {
  const lines = gunzipSync(readFileSync(DEFAULT_DATASET))
    .toString('ascii')
    .split('\r\n')
    .slice(1, limit + 1);
  const fields = lines.map((l) => l.split(','));
  const cents = fields.reduce((sum, f) => sum + Math.round(Number(f[4]) * 100) * Number(f[5]), 0);
  return {
    items: lines.length,
    orders: new Set(fields.map((f) => f[0])).size,
    cancelled: new Set(fields.filter((f) => f[0]!.startsWith('C')).map((f) => f[0])).size,
    customers: new Set(fields.map((f) => f[6]).filter((c) => c !== 'NA')).size,
    products: new Set(fields.map((f) => f[2])).size,
    revenueCents: cents,
  };
}

describe('order app against real Postgres', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let prisma: PrismaClient;
  let sql: pg.Client;

  beforeAll(async () => {
    db = await createTestDatabase('app');
    prisma = createPrisma(db.url, 6);
    sql = new pg.Client({ connectionString: db.url });
    await sql.connect();
  });
  afterAll(async () => {
    await prisma?.$disconnect();
    await sql?.end();
    await db?.drop();
  });

  const count = async (query: string) => Number((await sql.query<{ n: string }>(query)).rows[0]!.n);

  it(`replays the first ${LIMIT} sale lines into the expected rows`, async () => {
    const want = expectedFromFile(LIMIT);
    const result = await replay(prisma, { limit: LIMIT, concurrency: 4 });
    expect(result.rows).toBe(want.items);
    expect(result.orders).toBe(want.orders);
    expect(await count('SELECT count(*) AS n FROM order_items')).toBe(want.items);
    expect(await count('SELECT count(*) AS n FROM orders')).toBe(want.orders);
    expect(await count(`SELECT count(*) AS n FROM orders WHERE status = 'cancelled'`)).toBe(want.cancelled);
    expect(await count('SELECT count(*) AS n FROM customers')).toBe(want.customers);
    expect(await count('SELECT count(*) AS n FROM products')).toBe(want.products);
    expect(await count('SELECT sum(unit_price * quantity * 100)::bigint AS n FROM order_items')).toBe(want.revenueCents);
  });

  it('replaying again skips orders already loaded', async () => {
    const result = await replay(prisma, { limit: LIMIT });
    expect(result.orders).toBe(0);
    expect(result.skippedOrders).toBe(expectedFromFile(LIMIT).orders);
    expect(await count('SELECT count(*) AS n FROM order_items')).toBe(LIMIT);
  });

  it("traffic's inserts, updates and deletes land in the tables, each kind of operation visibly", async () => {
    const before = {
      orders: await count('SELECT count(*) AS n FROM orders'),
      maxOrderId: await count('SELECT max(id) AS n FROM orders'),
    };
    // What each kind of update can change, keyed by primary key, to compare after the run.
    const snapshot = async (query: string) => new Map((await sql.query<{ k: string; v: string }>(query)).rows.map((r) => [r.k, r.v]));
    const quantities = await snapshot('SELECT id::text AS k, quantity::text AS v FROM order_items');
    const attributes = await snapshot('SELECT id::text AS k, attributes::text AS v FROM orders');
    const prices = await snapshot('SELECT product_no AS k, price::text AS v FROM products');
    const emails = await snapshot('SELECT id::text AS k, email AS v FROM customers');
    const changed = async (was: Map<string, string>, query: string) =>
      [...(await snapshot(query))].filter(([k, v]) => was.has(k) && was.get(k) !== v).length;

    const stats = await runTraffic(prisma, {
      rate: 200,
      durationMs: 3000,
      mix: parseMix('new-order=6,status=2,item-quantity=1,attributes=1,cancel=1,delete-draft=2,price=1,email=1'),
    });
    expect(stats.errors, stats.lastError).toBe(0);
    expect(stats.achievedRate).toBeGreaterThan(0);
    for (const op of ['new-order', 'status', 'item-quantity', 'attributes', 'cancel', 'delete-draft', 'price', 'email'] as const)
      expect(stats.ops[op], `${op} ran`).toBeGreaterThan(0);

    // Inserts and deletes: every new order is in the table unless a draft delete removed it.
    const created = await count(`SELECT count(*) AS n FROM orders WHERE id > ${before.maxOrderId}`);
    expect(created + stats.ops['delete-draft']).toBe(stats.ops['new-order']);
    expect(await count(`SELECT count(*) AS n FROM orders WHERE attributes->>'source' = 'traffic'`)).toBe(created);
    expect(await count(`SELECT count(*) AS n FROM orders WHERE status = 'draft' AND id > ${before.maxOrderId}`)).toBeLessThan(created);
    expect(await count('SELECT count(*) AS n FROM orders')).toBe(before.orders + created);
    // Updates: a cancel acts once per order (only traffic's orders are placed or paid); status moves orders on.
    expect(await count(`SELECT count(*) AS n FROM orders WHERE status = 'cancelled' AND id > ${before.maxOrderId}`)).toBe(stats.ops.cancel);
    expect(
      await count(`SELECT count(*) AS n FROM orders WHERE status IN ('paid', 'shipped') AND id > ${before.maxOrderId}`),
    ).toBeGreaterThan(0);
    expect(await changed(quantities, 'SELECT id::text AS k, quantity::text AS v FROM order_items')).toBeGreaterThan(0);
    expect(await changed(prices, 'SELECT product_no AS k, price::text AS v FROM products')).toBeGreaterThan(0);
    expect(await changed(emails, 'SELECT id::text AS k, email AS v FROM customers')).toBeGreaterThan(0);
    const newKeys = await count(
      `SELECT count(*) AS n FROM orders WHERE id > ${before.maxOrderId} AND (attributes ? 'gift_wrap' OR attributes ? 'coupon')`,
    );
    expect((await changed(attributes, 'SELECT id::text AS k, attributes::text AS v FROM orders')) + newKeys).toBeGreaterThan(0);
  });
});

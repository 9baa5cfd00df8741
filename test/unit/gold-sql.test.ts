import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { afterEach, describe, expect, it } from 'vitest';
import { ORDER_REPORTS } from '../support/order-reports.ts';

/**
 * The gold SQL's definitions, checked against values worked out by hand (the integration test only
 * proves DuckDB and Postgres agree). In-memory DuckDB over tiny silver tables. The session time zone
 * is deliberately not UTC: every boundary must still fall in UTC.
 */

const SILVER_DDL = `
CREATE TABLE silver_customers (id INTEGER, email VARCHAR, country VARCHAR, created_at TIMESTAMPTZ, updated_at TIMESTAMPTZ,
  _commit_lsn BIGINT, _event_index BIGINT, _commit_ts TIMESTAMPTZ);
CREATE TABLE silver_products (product_no VARCHAR, name VARCHAR, price DECIMAL(12,2), updated_at TIMESTAMPTZ,
  _commit_lsn BIGINT, _event_index BIGINT, _commit_ts TIMESTAMPTZ);
CREATE TABLE silver_orders (id BIGINT, transaction_no VARCHAR, ordered_at TIMESTAMPTZ, customer_id INTEGER, status VARCHAR,
  attributes VARCHAR, created_at TIMESTAMPTZ, updated_at TIMESTAMPTZ, _commit_lsn BIGINT, _event_index BIGINT, _commit_ts TIMESTAMPTZ);
CREATE TABLE silver_order_items (id BIGINT, order_id BIGINT, product_no VARCHAR, unit_price DECIMAL(12,2), quantity INTEGER,
  _commit_lsn BIGINT, _event_index BIGINT, _commit_ts TIMESTAMPTZ);
`;

let instance: DuckDBInstance | undefined;
let conn: DuckDBConnection | undefined;

afterEach(() => {
  conn?.closeSync();
  instance?.closeSync();
  conn = instance = undefined;
});

async function silver(inserts: string): Promise<DuckDBConnection> {
  instance = await DuckDBInstance.create(':memory:');
  conn = await instance.connect();
  // UTC+14: a local day or month boundary would move every late-UTC order to the next day.
  await conn.run(`SET TimeZone = 'Pacific/Kiritimati'`);
  await conn.run(SILVER_DDL);
  await conn.run(inserts);
  return conn;
}

async function report(name: string): Promise<Record<string, unknown>[]> {
  const c = conn!;
  const q = async (sql: string) => (await c.runAndReadAll(sql)).getRowObjectsJson() as Record<string, unknown>[];
  const r = ORDER_REPORTS.find((x) => x.name === name);
  if (!r) throw new Error(`no report ${name}`);
  return q(await r.duckdbSql(q));
}

// Order lines: (order, product, unit price, quantity). Line amounts are in the comments.
const SHOP = `
INSERT INTO silver_customers (id, country, updated_at) VALUES
  (1, 'United Kingdom', '2019-01-01 00:00:00+00'), (2, 'France', '2019-05-05 05:05:05.5+00'), (3, 'United Kingdom', '2018-06-01 00:00:00+00');
INSERT INTO silver_products (product_no, name, price) VALUES ('P1', 'Pen', 1.50), ('P2', 'Book', 10.00), ('P3', 'Mug', 3.33);
INSERT INTO silver_orders (id, transaction_no, ordered_at, customer_id, status, attributes, updated_at) VALUES
  (10, '100',  '2019-01-15 10:00:30+00',        1,    'shipped',   '{}', '2019-01-15 10:00:30+00'),
  (11, 'C100', '2019-01-15 10:00:59.999999+00', 1,    'cancelled', '{}', '2019-01-15 10:00:59.999999+00'),
  (12, '101',  '2019-01-15 23:59:59.999999+00', 1,    'paid',      '{}', '2019-01-16 08:00:00+00'),
  (13, '102',  '2019-01-16 00:00:00+00',        1,    'placed',    '{}', '2019-01-16 00:00:00+00'),
  (14, 'W1',   '2019-01-16 00:00:00+00',        1,    'draft',     '{}', '2019-03-01 12:00:00.123456+00'),
  (15, 'W2',   '2019-01-16 00:00:00+00',        2,    'cancelled', '{}', '2019-01-16 00:00:00+00'),
  (16, '300',  '2019-01-16 00:00:10+00',        NULL, 'shipped',   '{}', '2019-01-16 00:00:10+00'),
  (17, '200',  '2019-01-16 00:00:20+00',        2,    'shipped',   '{}', '2019-01-16 00:00:20+00');
INSERT INTO silver_order_items (id, order_id, product_no, unit_price, quantity) VALUES
  (1, 10, 'P1', 1.50, 2),   -- 3.00
  (2, 10, 'P2', 10.00, 1),  -- 10.00
  (3, 11, 'P1', 1.50, -1),  -- -1.50: a return, counts
  (4, 12, 'P3', 3.33, 1),   -- 3.33
  (5, 13, 'P2', 9.00, 2),   -- 18.00 at the price on the line, not the product's current 10.00
  (6, 14, 'P2', 10.00, 5),  -- draft: nothing counts
  (7, 15, 'P1', 1.50, 3),   -- cancelled before delivery: counts zero
  (8, 16, 'P1', 1.50, 4),   -- 6.00, no customer
  (9, 16, 'P3', 3.00, 2);   -- 6.00, ties with P1 in its country
`;

describe('gold SQL definitions (DuckDB, hand-computed)', () => {
  it('every report can be described and wrapped as a subquery, as the refresher runs it', async () => {
    const c = await silver(SHOP);
    const q = async (sql: string) => (await c.runAndReadAll(sql)).getRowObjectsJson() as Record<string, unknown>[];
    for (const r of ORDER_REPORTS) {
      const sql = await r.duckdbSql(q);
      const described = await q(`DESCRIBE ${sql}`);
      expect(
        described.map((d) => d.column_name),
        r.name,
      ).toEqual(expect.arrayContaining(r.key));
      expect(
        described.map((d) => String(d.column_type)),
        r.name,
      ).not.toContain('HUGEINT');
      const wrapped = await q(`SELECT count(*) AS n FROM (${sql}) r`);
      expect(Number(wrapped[0]!.n), r.name).toBe((await q(sql)).length);
    }
  });

  it('sales_per_minute: UTC minutes; drafts out; returns count, undelivered cancellations do not', async () => {
    await silver(SHOP);
    expect(await report('sales_per_minute')).toEqual([
      { minute: '2019-01-15 10:00:00+00', orders: '1', cancellations: '1', revenue: '11.50' },
      { minute: '2019-01-15 23:59:00+00', orders: '1', cancellations: '0', revenue: '3.33' },
      { minute: '2019-01-16 00:00:00+00', orders: '3', cancellations: '1', revenue: '30.00' },
    ]);
  });

  it('daily_billing: per customer per UTC day, orders without a customer left out', async () => {
    await silver(SHOP);
    expect(await report('daily_billing')).toEqual([
      { customer_id: 1, day: '2019-01-15', orders: '2', cancellations: '1', amount_billed: '14.83' },
      { customer_id: 1, day: '2019-01-16', orders: '1', cancellations: '0', amount_billed: '18.00' },
      { customer_id: 2, day: '2019-01-16', orders: '1', cancellations: '1', amount_billed: '0.00' },
    ]);
  });

  it('customer_last_update: latest change to the customer or any of their orders, drafts included', async () => {
    await silver(SHOP);
    expect(await report('customer_last_update')).toEqual([
      { customer_id: 1, country: 'United Kingdom', last_order_at: '2019-01-16 00:00:00+00', last_update: '2019-03-01 12:00:00.123456+00' },
      { customer_id: 2, country: 'France', last_order_at: '2019-01-16 00:00:20+00', last_update: '2019-05-05 05:05:05.5+00' },
      { customer_id: 3, country: 'United Kingdom', last_order_at: null, last_update: '2018-06-01 00:00:00+00' },
    ]);
  });

  it('revenue_by_country: adds up to the total, NULL country for orders without a customer', async () => {
    await silver(SHOP);
    expect(await report('revenue_by_country')).toEqual([
      { country: 'United Kingdom', customers: '1', orders: '3', cancellations: '1', revenue: '32.83' },
      { country: null, customers: '0', orders: '1', cancellations: '0', revenue: '12.00' },
      { country: 'France', customers: '1', orders: '1', cancellations: '1', revenue: '0.00' },
    ]);
  });

  it('top_products_by_country: revenue > 0 ranked, ties by product_no, current product name', async () => {
    await silver(SHOP);
    expect(await report('top_products_by_country')).toEqual([
      { country: 'United Kingdom', product_rank: '1', product_no: 'P2', product_name: 'Book', units: '3', revenue: '28.00' },
      { country: 'United Kingdom', product_rank: '2', product_no: 'P3', product_name: 'Mug', units: '1', revenue: '3.33' },
      { country: 'United Kingdom', product_rank: '3', product_no: 'P1', product_name: 'Pen', units: '1', revenue: '1.50' },
      { country: null, product_rank: '1', product_no: 'P1', product_name: 'Pen', units: '4', revenue: '6.00' },
      { country: null, product_rank: '2', product_no: 'P3', product_name: 'Mug', units: '2', revenue: '6.00' },
    ]);
  });

  it('rolling_revenue: windows before the reference month, NULL without history, exact half-away-from-zero cents', async () => {
    // One line per order; revenue per order in the comment. Reference months: Jan, Mar, May, Jul, Aug, Oct.
    await silver(`
      INSERT INTO silver_products (product_no, name, price) VALUES ('P', 'Thing', 1.00);
      INSERT INTO silver_orders (id, transaction_no, ordered_at, customer_id, status, attributes) VALUES
        (1, 'a', '2019-01-31 23:59:59.999999+00', 1,    'shipped',   '{}'),  -- 100.00 (still January in UTC)
        (2, 'b', '2019-03-05 00:00:00+00',        1,    'shipped',   '{}'),  -- 0.05
        (3, 'c', '2019-03-06 00:00:00+00',        2,    'shipped',   '{}'),  -- 10.00, customer 2's first order
        (4, 'd', '2019-05-01 00:00:00+00',        1,    'cancelled', '{}'),  -- -0.08, a return
        (5, 'e', '2019-02-01 00:00:00+00',        3,    'draft',     '{}'),  -- a draft: no reference month, no history
        (6, 'f', '2019-07-10 00:00:00+00',        3,    'paid',      '{}'),  -- 5.00, customer 3's first order
        (7, 'g', '2019-08-10 00:00:00+00',        2,    'placed',    '{}'),  -- 1.65
        (8, 'h', '2019-10-10 00:00:00+00',        NULL, 'shipped',   '{}');  -- 2.00, no customer: only makes October a reference month
      INSERT INTO silver_order_items (id, order_id, product_no, unit_price, quantity) VALUES
        (1, 1, 'P', 100.00, 1), (2, 2, 'P', 0.05, 1), (3, 3, 'P', 10.00, 1), (4, 4, 'P', 0.08, -1),
        (5, 5, 'P', 50.00, 1), (6, 6, 'P', 5.00, 1), (7, 7, 'P', 1.65, 1), (8, 8, 'P', 2.00, 1);
    `);
    const row = (customer_id: number, month: string, first: string, avg3: string | null, avg6: string | null) => ({
      customer_id,
      reference_month: `2019-${month}-01`,
      first_order_month: `2019-${first}-01`,
      avg_revenue_3m: avg3,
      avg_revenue_6m: avg6,
    });
    expect(await report('rolling_revenue')).toEqual([
      row(1, '03', '01', null, null), //          3m Dec..Feb starts before January
      row(1, '05', '01', '0.02', null), //        0.05 / 3 = 0.0166…
      row(1, '07', '01', '-0.03', '16.66'), //    -0.08 / 3; 99.97 / 6 = 16.661…
      row(1, '08', '01', '-0.03', '-0.01'), //    -0.08 / 3; -0.03 / 6 = -0.005, away from zero
      row(1, '10', '01', '0.00', '-0.01'), //     nothing Jul..Sep; -0.08 / 6
      row(2, '05', '03', null, null), //          Feb..Apr starts before March
      row(2, '07', '03', '0.00', null), //        Apr..Jun empty but in history
      row(2, '08', '03', '0.00', null),
      row(2, '10', '03', '0.55', '0.28'), //      1.65 / 3; 1.65 / 6 = 0.275 (DOUBLE division and round give 0.27)
      row(3, '08', '07', null, null),
      row(3, '10', '07', '1.67', null), //        5.00 / 3
    ]);
  });

  it('order_attributes: one column per key, any key, current values as text', async () => {
    await silver(`
      INSERT INTO silver_orders (id, transaction_no, ordered_at, status, attributes, updated_at) VALUES
        (1, 'a', '2019-01-01 00:00:00+00', 'shipped', '{"channel": "web", "gift_wrap": true, "it''s": "o''clock", "x\\"y": "q", "$&": null}',
         '2019-01-02 03:04:05.678901+00'),
        (2, 'b', '2019-01-01 00:00:00+00', 'draft', '{"channel": "app", "coupon": "SAVE5"}', '2019-01-01 00:00:00+00'),
        (3, 'c', '2019-01-01 00:00:00+00', 'placed', '["channel"]', '2019-01-01 00:00:00+00'),
        (4, 'd', '2019-01-01 00:00:00+00', 'placed', '"channel"', '2019-01-01 00:00:00+00'),
        (5, 'e', '2019-01-01 00:00:00+00', 'placed', '{}', '2019-01-01 00:00:00+00');
    `);
    const empty = { '$&': null, channel: null, coupon: null, gift_wrap: null, "it's": null, 'x"y': null };
    const rows = await report('order_attributes');
    expect(Object.keys(rows[0]!)).toEqual([
      'order_id',
      'transaction_no',
      'updated_at',
      '$&',
      'channel',
      'coupon',
      'gift_wrap',
      "it's",
      'x"y',
    ]);
    expect(rows).toEqual([
      {
        order_id: '1',
        transaction_no: 'a',
        updated_at: '2019-01-02 03:04:05.678901+00',
        ...empty,
        channel: 'web',
        gift_wrap: 'true',
        "it's": "o'clock",
        'x"y': 'q',
      },
      { order_id: '2', transaction_no: 'b', updated_at: '2019-01-01 00:00:00+00', ...empty, channel: 'app', coupon: 'SAVE5' },
      { order_id: '3', transaction_no: 'c', updated_at: '2019-01-01 00:00:00+00', ...empty },
      { order_id: '4', transaction_no: 'd', updated_at: '2019-01-01 00:00:00+00', ...empty },
      { order_id: '5', transaction_no: 'e', updated_at: '2019-01-01 00:00:00+00', ...empty },
    ]);
  });
});

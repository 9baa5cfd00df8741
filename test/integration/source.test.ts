import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { createTestDatabase } from '../support/db.ts';
import { consumeUntil, type ConsumedEvent } from '../support/kafka.ts';
import { dropSlot, sourceConfig, startSource, type RunningSource } from '../support/source.ts';

type Envelope = {
  op: string;
  before: Record<string, unknown> | null;
  after: Record<string, unknown> | null;
  source: Record<string, unknown>;
  transaction: Record<string, unknown> | null;
};
const env = (e: ConsumedEvent) => e.value as unknown as Envelope;

describe('source connector: snapshot and every operation, decoded from Kafka', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let sql: pg.Client;
  let file: ReturnType<typeof sourceConfig>;
  let running: RunningSource | undefined;
  const topic = (table: string) => `${file.config['topic.prefix']}.public.${table}`;

  beforeAll(async () => {
    db = await createTestDatabase('source_ops');
    sql = new pg.Client({ connectionString: db.url });
    await sql.connect();
    await sql.query(`INSERT INTO customers (id, email, country) VALUES (1, 'a@x.example', 'France'), (2, 'b@x.example', 'Spain')`);
    await sql.query(`INSERT INTO products (product_no, name, price) VALUES ('P1', 'One', 1.50), ('P2', 'Two', 2.25)`);
    file = sourceConfig(db.url, 'ops', { 'table.include.list': 'public\\.(customers|products|orders|order_items)' });
    running = await startSource(file);
    expect(running.connector.state).toBe('streaming');
  });

  afterAll(async () => {
    await running?.stop();
    await sql?.end();
    if (file) await dropSlot(db.url, file.config['slot.name']);
    await db?.drop();
  });

  it('reads rows that existed before start as op=r snapshot events', async () => {
    const events = await consumeUntil([topic('customers')], (es) => es.length >= 2);
    expect(events.map((e) => env(e).op)).toEqual(['r', 'r']);
    expect(events.map((e) => e.key)).toEqual(expect.arrayContaining([{ id: 1 }, { id: 2 }]));
    const first = env(events.find((e) => (e.key as { id: number }).id === 1)!);
    expect(first.before).toBeNull();
    expect(first.after).toMatchObject({ id: 1, email: 'a@x.example', country: 'France' });
    expect(first.source).toMatchObject({ snapshot: 'first', connector: 'postgresql', db: db.name, schema: 'public', table: 'customers' });
  });

  it('streams insert, update and delete with a tombstone, in commit order on one partition', async () => {
    await sql.query(`INSERT INTO products (product_no, name, price) VALUES ('P3', 'Three', 3.00)`);
    await sql.query(`UPDATE products SET name = 'Three!' WHERE product_no = 'P3'`);
    await sql.query(`DELETE FROM products WHERE product_no = 'P3'`);
    const all = await consumeUntil(
      [topic('products')],
      (es) => es.filter((e) => (e.key as { product_no: string } | null)?.product_no === 'P3').length >= 4,
    );
    const p3 = all.filter((e) => (e.key as { product_no: string }).product_no === 'P3');
    expect(p3.map((e) => (e.value ? env(e).op : 'tombstone'))).toEqual(['c', 'u', 'd', 'tombstone']);
    expect(new Set(p3.map((e) => e.partition)).size).toBe(1);
    const [c, u, d] = p3.map((e) => e.value && env(e));
    expect(c!.after).toMatchObject({ product_no: 'P3', name: 'Three' });
    expect(u!.after).toMatchObject({ product_no: 'P3', name: 'Three!' });
    expect(d!.after).toBeNull();
    expect(d!.before).toMatchObject({ product_no: 'P3' });
    const positions = [c, u, d].map((e) => [Number(e!.source.commit_lsn), Number(e!.source.event_index)] as const);
    for (let i = 1; i < positions.length; i++) expect(positions[i]![0]).toBeGreaterThan(positions[i - 1]![0]);
    expect(c!.source.snapshot).toBe('false');
    expect(typeof c!.source.txId).toBe('number');
  });

  it('a primary-key update becomes a delete (with tombstone) of the old key and a create of the new one', async () => {
    await sql.query(`UPDATE customers SET id = 22 WHERE id = 2`);
    const isTail = (e: ConsumedEvent) => [2, 22].includes((e.key as { id: number }).id) && (e.value === null || env(e).op !== 'r');
    const events = (await consumeUntil([topic('customers')], (es) => es.filter(isTail).length >= 3)).filter(isTail);
    // Keys 2 and 22 may sit on different partitions, so check each key in offset order, then link them by position.
    const ofKey = (id: number) =>
      events.filter((e) => (e.key as { id: number }).id === id).sort((a, b) => Number(a.offset) - Number(b.offset));
    expect(ofKey(2).map((e) => (e.value ? env(e).op : 'tombstone'))).toEqual(['d', 'tombstone']);
    expect(ofKey(22).map((e) => env(e).op)).toEqual(['c']);
    const d = env(ofKey(2)[0]!);
    const c = env(ofKey(22)[0]!);
    expect(d.before).toMatchObject({ id: 2 });
    expect(c.after).toMatchObject({ id: 22, email: 'b@x.example' });
    expect(d.source.commit_lsn).toEqual(c.source.commit_lsn);
    expect(Number(c.source.event_index)).toBe(Number(d.source.event_index) + 1);
  });

  it('numbers the events of one transaction from 0 under one commit LSN and transaction id', async () => {
    await sql.query('BEGIN');
    const { rows } = await sql.query<{ id: string }>(
      `INSERT INTO orders (transaction_no, ordered_at, customer_id) VALUES ('T1', now(), 1) RETURNING id`,
    );
    for (const p of ['P1', 'P2', 'P1'])
      await sql.query(`INSERT INTO order_items (order_id, product_no, unit_price, quantity) VALUES ($1, $2, 1.00, 1)`, [rows[0]!.id, p]);
    await sql.query('COMMIT');
    const events = await consumeUntil([topic('orders'), topic('order_items')], (es) => es.length >= 4);
    const sorted = events.map(env).sort((a, b) => Number(a.source.event_index) - Number(b.source.event_index));
    expect(sorted.map((e) => Number(e.source.event_index))).toEqual([0, 1, 2, 3]);
    expect(new Set(sorted.map((e) => String(e.source.commit_lsn))).size).toBe(1);
    expect(new Set(sorted.map((e) => (e.transaction as { id: string }).id)).size).toBe(1);
    expect(sorted.map((e) => e.source.table)).toEqual(['orders', 'order_items', 'order_items', 'order_items']);

    // Its boundaries on the transaction topic: BEGIN, then END with the count per table.
    const txId = (sorted[0]!.transaction as { id: string }).id;
    const meta = await consumeUntil(
      [`${file.config['topic.prefix']}.transaction`],
      (es) => es.filter((e) => (e.value as { id: string }).id === txId).length >= 2,
    );
    const mine = meta.filter((e) => (e.value as { id: string }).id === txId).map((e) => e.value);
    expect(mine).toEqual([
      expect.objectContaining({ status: 'BEGIN', id: txId, event_count: null }),
      expect.objectContaining({
        status: 'END',
        id: txId,
        event_count: 4,
        data_collections: [
          { data_collection: 'public.orders', event_count: 1 },
          { data_collection: 'public.order_items', event_count: 3 },
        ],
      }),
    ]);
  });

  it('emits op=t for TRUNCATE', async () => {
    await sql.query('TRUNCATE order_items');
    const events = await consumeUntil([topic('order_items')], (es) => es.some((e) => e.value !== null && env(e).op === 't'));
    const t = events.find((e) => e.value !== null && env(e).op === 't')!;
    expect(env(t).before).toBeNull();
    expect(env(t).after).toBeNull();
    expect(t.key).toBeNull();
  });

  it('confirms progress to the slot only as far as Kafka holds the events', async () => {
    const lsn = async () =>
      (
        await sql.query<{ lsn: string }>(`SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1`, [
          file.config['slot.name'],
        ])
      ).rows[0]!.lsn;
    const before = await lsn();
    await sql.query(`UPDATE products SET price = price + 1 WHERE product_no = 'P1'`);
    await consumeUntil([topic('products')], (es) =>
      es.some((e) => e.value !== null && env(e).op === 'u' && (e.key as { product_no: string }).product_no === 'P1'),
    );
    const deadline = Date.now() + 10_000;
    while ((await lsn()) === before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(await lsn()).not.toBe(before);
  });
});

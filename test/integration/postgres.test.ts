import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { createTestDatabase } from '../support/db.ts';

describe('Postgres for logical replication', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let sql: pg.Client;
  const slot = `t_slot_${Date.now().toString(36)}`;
  const publication = `t_pub_${Date.now().toString(36)}`;

  beforeAll(async () => {
    db = await createTestDatabase('postgres');
    sql = new pg.Client({ connectionString: db.url });
    await sql.connect();
  });
  afterAll(async () => {
    await sql
      .query(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, [slot])
      .catch(() => undefined);
    await sql?.end();
    await db?.drop();
  });

  it('runs with wal_level=logical and room for at least 10 slots and WAL senders', async () => {
    const setting = async (name: string) =>
      (await sql.query<{ setting: string }>(`SELECT setting FROM pg_settings WHERE name = $1`, [name])).rows[0]!.setting;
    expect(await setting('wal_level')).toBe('logical');
    expect(Number(await setting('max_replication_slots'))).toBeGreaterThanOrEqual(10);
    expect(Number(await setting('max_wal_senders'))).toBeGreaterThanOrEqual(10);
  });

  it('creates a pgoutput slot and a publication, decodes a change, and drops both', async () => {
    await sql.query(`CREATE PUBLICATION ${publication} FOR TABLE products`);
    await sql.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [slot]);
    const slots = await sql.query(`SELECT plugin, slot_type, database FROM pg_replication_slots WHERE slot_name = $1`, [slot]);
    expect(slots.rows).toEqual([{ plugin: 'pgoutput', slot_type: 'logical', database: db.name }]);

    await sql.query(`INSERT INTO products (product_no, name, price) VALUES ('SLOT1', 'Slot Test', 1.50)`);
    const changes = await sql.query<{ data: Buffer }>(
      `SELECT data FROM pg_logical_slot_peek_binary_changes($1, NULL, NULL, 'proto_version', '1', 'publication_names', $2)`,
      [slot, publication],
    );
    // pgoutput messages: B(egin), R(elation), I(nsert), C(ommit).
    const kinds = changes.rows.map((r) => String.fromCharCode(r.data[0]!));
    expect(kinds).toEqual(['B', 'R', 'I', 'C']);
    expect(changes.rows[2]!.data.includes(Buffer.from('SLOT1'))).toBe(true);

    await sql.query(`SELECT pg_drop_replication_slot($1)`, [slot]);
    await sql.query(`DROP PUBLICATION ${publication}`);
    expect((await sql.query(`SELECT 1 FROM pg_replication_slots WHERE slot_name = $1`, [slot])).rowCount).toBe(0);
    expect((await sql.query(`SELECT 1 FROM pg_publication WHERE pubname = $1`, [publication])).rowCount).toBe(0);
  });
});

import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import pg from 'pg';
import { connectPg } from '../../src/source/pg-connection.ts';
import { emitSignal, snapshotSignal } from '../../src/source/signals.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPrisma } from '../../src/app/db.ts';
import { replay } from '../../src/app/replay.ts';
import { SourceConnector } from '../../src/source/connector.ts';
import { readTables } from '../../src/source/catalog.ts';
import { buildPlan } from '../../src/source/plan.ts';
import { leastPrivilegeSql } from '../../src/source/prerequisites.ts';
import { createTestDatabase } from '../support/db.ts';
import { consumeUntil } from '../support/kafka.ts';
import { dropSlot, sourceConfig, startSource, waitForSourceCaughtUp, writeConnectorFile } from '../support/source.ts';

const BIN = resolve('bin/tide.js');
const PASSWORD = 'least-priv-pw-1';
const TABLES = 'public\\.(customers|orders)';

/**
 * Issue 9, least privilege: the role `tide source plan` prints (LOGIN REPLICATION, SELECT on the captured
 * tables, nothing for heartbeats, a publication the DBA creates) runs the whole source: snapshot,
 * streaming, heartbeats and a schema change. It is not a superuser. A right taken away stops the start
 * with a message naming the right and the GRANT that gives it back.
 */
describe('the source runs as a least-privilege role', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let admin: pg.Client;
  const tag = Date.now().toString(36);
  const role = `t_cdc_${tag}`;
  const owner = `t_owner_${tag}`;
  /** The publication the DBA makes for disabled mode. */
  const publication = `t_pub_${tag}`;
  const slots: string[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'tide-leastpriv-'));
  const asRole = (label: string, extra: Record<string, unknown> = {}) => {
    const f = sourceConfig(db.url, label, {
      'database.user': role,
      'database.password': PASSWORD,
      'table.include.list': TABLES,
      'heartbeat.interval.ms': 500,
      ...extra,
    });
    slots.push(f.config['slot.name']);
    return f;
  };

  beforeAll(async () => {
    db = await createTestDatabase('least_priv');
    const prisma = createPrisma(db.url, 6);
    await replay(prisma, { limit: 300, concurrency: 4 });
    await prisma.$disconnect();
    admin = new pg.Client({ connectionString: db.url });
    await admin.connect();
  }, 300_000);
  afterAll(async () => {
    for (const s of slots) await dropSlot(db.url, s);
    await admin?.end();
    await db?.drop();
    const c = new pg.Client({ connectionString: process.env.DATABASE_URL });
    await c.connect();
    for (const r of [role, owner]) await c.query(`DROP ROLE IF EXISTS ${r}`);
    await c.end();
  });

  it('the SQL `source plan` prints for publication.autocreate.mode=disabled is enough for snapshot, streaming, heartbeats and a schema change', async () => {
    const file = asRole('disabled', { 'publication.autocreate.mode': 'disabled', 'publication.name': publication });
    // The DBA runs what the plan prints, with a real password.
    const plan = buildPlan(file.config, {
      tables: await readTables(admin),
      publication: { exists: false, allTables: false, tables: [] },
      slotExists: false,
      offsets: undefined,
    });
    const sql = leastPrivilegeSql(file.config, plan)
      .filter((l) => !l.startsWith('--'))
      .map((l) => l.replace(/'<choose one[^']*>'/, `'${PASSWORD}'`));
    const named = (text: string) => text.replaceAll(role, '<role>').replaceAll(db.name, '<db>').replaceAll(publication, '<publication>');
    expect(sql.map(named)).toMatchInlineSnapshot(`
      [
        "CREATE ROLE "<role>" LOGIN REPLICATION PASSWORD 'least-priv-pw-1';",
        "GRANT CONNECT ON DATABASE "<db>" TO "<role>";",
        "GRANT USAGE ON SCHEMA "public" TO "<role>";",
        "GRANT SELECT ON "public"."customers", "public"."orders" TO "<role>";",
        "CREATE PUBLICATION "<publication>" FOR TABLE "public"."customers", "public"."orders";",
      ]
    `);

    for (const statement of sql) await admin.query(statement);
    expect((await admin.query('SELECT rolsuper, rolreplication FROM pg_roles WHERE rolname = $1', [role])).rows[0]).toEqual({
      rolsuper: false,
      rolreplication: true,
    });

    const source = await startSource(file);
    try {
      expect(source.connector.state).toBe('streaming');
      const topic = `${file.config['topic.prefix']}.public.customers`;
      const snapshotRows = Number((await admin.query('SELECT count(*) AS n FROM customers')).rows[0].n);
      await consumeUntil([topic], (e) => e.filter((x) => (x.value as { op: string }).op === 'r').length >= snapshotRows);

      // Streaming, then a schema change (a new nullable column) the role did not make and owns nothing of.
      await admin.query(`INSERT INTO customers (id, email, country) VALUES (990001, 'lp@example.com', 'Norway')`);
      await admin.query('ALTER TABLE customers ADD COLUMN loyalty int');
      await admin.query(`INSERT INTO customers (id, email, country, loyalty) VALUES (990002, 'lp2@example.com', 'Norway', 7)`);
      const events = await consumeUntil([topic], (e) => e.some((x) => (x.value as { after?: { id: number } }).after?.id === 990002));
      const last = events.find((x) => (x.value as { after?: { id: number } }).after?.id === 990002)!.value as {
        after: { loyalty: number };
      };
      expect(last.after.loyalty).toBe(7);
      expect(events.some((x) => (x.value as { after?: { id: number } }).after?.id === 990001)).toBe(true);

      // Heartbeats: writes to a table the slot does not capture leave no change to confirm; the heartbeat
      // (pg_logical_emit_message, run as the role) moves the slot past them anyway.
      await admin.query('CREATE TABLE not_captured (id int PRIMARY KEY)');
      await admin.query('INSERT INTO not_captured SELECT generate_series(1, 100)');
      await waitForSourceCaughtUp(admin, file.config['slot.name'], 60_000);
      expect(source.connector.state).toBe('streaming');
      expect(source.connector.lastError).toBeUndefined();

      // An incremental snapshot, signalled as the role: its watermarks and reads need nothing more.
      const asTheRole = await connectPg(file.config);
      await emitSignal(asTheRole, snapshotSignal(file.config['slot.name'], ['public.customers'])).finally(() => asTheRole.end());
      const rows = snapshotRows + 2;
      await consumeUntil(
        [topic],
        (e) => e.filter((x) => (x.value as { source: { snapshot: string } }).source.snapshot === 'incremental').length >= rows,
      );
    } finally {
      await source.stop();
    }
  });

  it('a missing right stops the start, naming the right and the GRANT; `source plan` lists it first', async () => {
    await admin.query(`REVOKE SELECT ON orders FROM ${role}`);
    const file = asRole('no_select', { 'publication.autocreate.mode': 'disabled', 'publication.name': publication });
    const err = await new SourceConnector(file, { stateDir: mkdtempSync(join(dir, 'state-')) }).run(new AbortController().signal).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(err?.name).toBe('PrerequisiteError');
    expect(
      err!.message
        .replaceAll(role, '<role>')
        .replaceAll(db.name, '<db>')
        .replace(/127\.0\.0\.1:\d+/, '<server>'),
    ).toMatchInlineSnapshot(`
      "Postgres at <server>/<db>: the source cannot start: a prerequisite is missing (tide source plan lists them all):
        - SELECT on the captured tables: <role> cannot read public.orders. Fix: GRANT SELECT ON public.orders TO "<role>";"
    `);
    expect((await admin.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [file.config['slot.name']])).rowCount).toBe(0);

    const path = writeConnectorFile(dir, file);
    const plan = await new Promise<{ code: number; stdout: string }>((r) =>
      execFile(process.execPath, [BIN, 'source', 'plan', path], { cwd: dir }, (e, stdout) =>
        r({ code: e ? Number((e as { code?: number }).code) : 0, stdout }),
      ),
    );
    expect(plan.code).toBe(1);
    expect(plan.stdout).toContain(`[MISSING] SELECT on the captured tables: ${role} cannot read public.orders`);
    expect(plan.stdout).toContain(`fix: GRANT SELECT ON public.orders TO "${role}";`);
    await admin.query(`GRANT SELECT ON orders TO ${role}`);
  });

  it('publication.autocreate.mode=filtered needs CREATE on the database and the tables’ ownership (membership in the owning role), and works with them', async () => {
    const file = asRole('filtered', { 'publication.autocreate.mode': 'filtered' });
    const err = await new SourceConnector(file, { stateDir: mkdtempSync(join(dir, 'state-')) }).run(new AbortController().signal).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(err?.message).toContain(`GRANT CREATE ON DATABASE "${db.name}" TO "${role}";`);
    expect(err?.message).toMatch(/not the owner of public\.customers, public\.orders/);

    await admin.query(`CREATE ROLE ${owner} NOLOGIN`);
    for (const t of ['customers', 'orders']) await admin.query(`ALTER TABLE ${t} OWNER TO ${owner}`);
    await admin.query(`GRANT ${owner} TO ${role}`);
    await admin.query(`GRANT CREATE ON DATABASE ${db.name} TO ${role}`);
    const source = await startSource(file);
    try {
      expect(source.connector.state).toBe('streaming');
      const pub = await admin.query(`SELECT pg_get_userbyid(pubowner) AS owner FROM pg_publication WHERE pubname = $1`, [
        file.config['publication.name'],
      ]);
      expect(pub.rows[0]?.owner).toBe(role);
    } finally {
      await source.stop();
    }
  });
});

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { SourceConnector } from '../../src/source/connector.ts';
import { postgresService } from '../../src/stack/postgres.ts';
import { stackContext } from '../../src/stack/context.ts';
import { createTestDatabase } from '../support/db.ts';
import { consumeUntil } from '../support/kafka.ts';
import { dropSlot, sourceConfig, startSource, unconfirmedMessages, type RunningSource } from '../support/source.ts';

type Env = { op: string; after: Record<string, unknown> | null };

describe('schema changes while streaming', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let sql: pg.Client;
  let file: ReturnType<typeof sourceConfig>;
  let running: RunningSource | undefined;
  const registry = process.env.SCHEMA_REGISTRY_URL!;

  beforeAll(async () => {
    db = await createTestDatabase('source_schema');
    sql = new pg.Client({ connectionString: db.url });
    await sql.connect();
    await sql.query('CREATE TABLE evolve (id int PRIMARY KEY, name text NOT NULL)');
    file = sourceConfig(db.url, 'schema', { 'table.include.list': 'public\\.evolve' });
    running = await startSource(file);
  });
  afterAll(async () => {
    await running?.stop().catch(() => undefined);
    await sql?.end();
    if (file) await dropSlot(db.url, file.config['slot.name']);
    await db?.drop();
  });

  const topic = () => `${file.config['topic.prefix']}.public.evolve`;
  const versions = async () => (await (await fetch(`${registry}/subjects/${topic()}-value/versions`)).json()) as number[];

  it('registers a new version for an added nullable column and keeps streaming', async () => {
    await sql.query(`INSERT INTO evolve VALUES (1, 'one')`);
    await consumeUntil([topic()], (es) => es.length >= 1);
    expect(await versions()).toHaveLength(1);
    await sql.query('ALTER TABLE evolve ADD COLUMN note text');
    await sql.query(`INSERT INTO evolve VALUES (2, 'two', 'hello')`);
    const events = await consumeUntil([topic()], (es) => es.length >= 2);
    expect(events.map((e) => (e.value as Env).after).find((a) => a?.id === 2)).toEqual({ id: 2, name: 'two', note: 'hello' });
    expect(await versions()).toHaveLength(2);
    expect(running!.connector.state).toBe('streaming');

    // NOT NULL: only primary-key columns are required in the schema (NOT NULL is not in the WAL), so BACKWARD compatibility holds.
    await sql.query('ALTER TABLE evolve ADD COLUMN qty int NOT NULL DEFAULT 0');
    await sql.query(`INSERT INTO evolve VALUES (4, 'four', NULL, 7)`);
    const withQty = await consumeUntil([topic()], (es) => es.some((e) => (e.value as Env).after?.id === 4));
    expect(withQty.map((e) => (e.value as Env).after).find((a) => a?.id === 4)).toEqual({ id: 4, name: 'four', note: null, qty: 7 });
    expect(await versions()).toHaveLength(3);
    expect(running!.connector.state).toBe('streaming');
  });

  it('pauses on an incompatible type change, names table and column, and confirms nothing past it', async () => {
    await sql.query('ALTER TABLE evolve ALTER COLUMN name TYPE integer USING length(name)');
    await sql.query(`INSERT INTO evolve VALUES (3, 42, 'after the change', 1)`);
    const state = await running!.done;
    expect(state).toBe('paused');
    const error = running!.connector.lastError ?? '';
    expect(error).toContain('table public.evolve');
    expect(error).toContain('column name changed type');
    expect(error).toContain('Options:');
    // Not confirmed past the change: the slot still holds the insert, so a restart sees it again.
    expect(await unconfirmedMessages(db.url, file.config['slot.name'], file.config['publication.name'])).toEqual(['B', 'R', 'I', 'C']);
    const events = await consumeUntil([topic()], (es) => es.length >= 3);
    expect(events.map((e) => (e.value as Env).after?.id).sort()).toEqual([1, 2, 4]); // keys sit on different partitions: no order across them
    expect(await versions()).toHaveLength(3);

    // A restart with the change still in place pauses again at start-up, with the same message, and keeps the slot as it was.
    const again = await startSource(file, running!.stateDir);
    expect(await again.done).toBe('paused');
    expect(again.connector.lastError).toContain('column name changed type');
    expect(await unconfirmedMessages(db.url, file.config['slot.name'], file.config['publication.name'])).toEqual(['B', 'R', 'I', 'C']);
  });
});

describe('bad input gets a clear message', () => {
  it('refuses a captured table without a primary key', async () => {
    const db = await createTestDatabase('source_nopk');
    const sql = new pg.Client({ connectionString: db.url });
    await sql.connect();
    await sql.query('CREATE TABLE events_log (at timestamptz, what text)');
    const file = sourceConfig(db.url, 'nopk', { 'table.include.list': 'public\\.events_log' });
    const err = await new SourceConnector(file, { stateDir: mkdtempSync(join(tmpdir(), 'tide-nopk-')) })
      .run(new AbortController().signal)
      .catch((e: Error) => e);
    expect(String(err)).toMatchInlineSnapshot(
      `"MissingPrimaryKeyError: table public.events_log has no primary key. Tide keys each event by the primary key, so changes to a row stay in order on one partition. Add one (ALTER TABLE public.events_log ADD PRIMARY KEY (...)), or leave the table out with table.exclude.list."`,
    );
    expect((await sql.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [file.config['slot.name']])).rowCount).toBe(0);
    await sql.end();
    await db.drop();
  });

  it('refuses Postgres without wal_level=logical and says how to fix it', async () => {
    const stackDir = mkdtempSync(join(tmpdir(), 'tide-walreplica-'));
    const prev = process.env.TIDE_PG_SETTINGS;
    process.env.TIDE_PG_SETTINGS = 'wal_level=replica';
    const ctx = stackContext({ ...process.env, TIDE_STACK_DIR: stackDir, TIDE_PG_PORT: '56434' }, () => undefined);
    try {
      await postgresService.start(ctx);
      await postgresService.waitReady(ctx, 60_000);
      const url = `postgresql://tide:tide@127.0.0.1:56434/orders`;
      const file = sourceConfig(url, 'walreplica', { 'table.include.list': 'public\\..*' });
      const err = await new SourceConnector(file, { stateDir: join(stackDir, 'state') })
        .run(new AbortController().signal)
        .catch((e: Error) => e);
      expect(String(err)).toMatchInlineSnapshot(
        `"WalLevelError: Postgres at 127.0.0.1:56434/orders runs with wal_level=replica; logical replication needs wal_level=logical. Run ALTER SYSTEM SET wal_level = logical; (or set it in postgresql.conf) and restart Postgres."`,
      );
    } finally {
      if (prev === undefined) delete process.env.TIDE_PG_SETTINGS;
      else process.env.TIDE_PG_SETTINGS = prev;
      await postgresService.stop(ctx);
      rmSync(stackDir, { recursive: true, force: true });
    }
  });
});

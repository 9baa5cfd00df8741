import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { createTestDatabase } from '../support/db.ts';
import { consumeAll, consumeUntil, type ConsumedEvent } from '../support/kafka.ts';
import { dropSlot, sourceConfig, startSource, unconfirmedMessages, waitForSourceCaughtUp, type RunningSource } from '../support/source.ts';

/**
 * The relation message is the truth, not today's catalog (issue 11, item 4). A connector that is behind
 * reads WAL written before later DDL: it must encode that WAL with the table as the WAL describes it.
 * Each case failed on the old code, which rebuilt codecs from the *current* catalog and compared only
 * names, types and typmods:
 *  - DROP NOT NULL while streaming, then a NULL: the relation message looked unchanged, the codec kept the
 *    column required, and the NULL could not be encoded (the source failed);
 *  - ADD COLUMN, rows with NULL in it, then SET NOT NULL, all while stopped: the restart took NOT NULL from
 *    the catalog and paused (a required field without default) or could not encode the NULLs;
 *  - REPLICA IDENTITY changed while stopped: the restart used today's identity for older WAL, so an update's
 *    unchanged TOAST value met a required field;
 *  - a captured table dropped while stopped: the restart refused ("it was dropped. Remove it from
 *    table.include.list"), and following that advice lost the rows committed before the drop;
 *  - a primary key changed while stopped: older rows were keyed by the new key.
 */
type Env = { op: string; before: Record<string, unknown> | null; after: Record<string, unknown> | null; unchanged_toast: string[] };
const env = (e: ConsumedEvent) => e.value as unknown as Env;

describe('a lagging connector reads old WAL with the schema it was written with', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let sql: pg.Client;
  let file: ReturnType<typeof sourceConfig>;
  let running: RunningSource | undefined;
  let stateDir: string;
  const topic = (t: string) => `${file.config['topic.prefix']}.public.${t}`;
  const registry = process.env.SCHEMA_REGISTRY_URL!;

  beforeAll(async () => {
    db = await createTestDatabase('source_relation');
    sql = new pg.Client({ connectionString: db.url });
    await sql.connect();
    await sql.query(`CREATE TABLE nn (id int PRIMARY KEY, label text NOT NULL)`);
    await sql.query(`CREATE TABLE grow (id int PRIMARY KEY, name text NOT NULL)`);
    await sql.query(`CREATE TABLE ident (id int PRIMARY KEY, n int NOT NULL, body text NOT NULL)`);
    await sql.query(`CREATE TABLE gone (id int PRIMARY KEY, v text)`);
    await sql.query(`CREATE TABLE keyed (id int PRIMARY KEY, code int NOT NULL)`);
    await sql.query(`CREATE TABLE widen (id int PRIMARY KEY, v text)`);
    await sql.query(`INSERT INTO widen SELECT g, 'w' || g FROM generate_series(1, 30) g`);
    await sql.query(`INSERT INTO nn VALUES (1, 'one'); INSERT INTO grow VALUES (1, 'one'); INSERT INTO gone VALUES (1, 'one')`);
    file = sourceConfig(db.url, 'relation', {
      'table.include.list': 'public\\.(nn|grow|ident|gone|keyed|widen)',
      'snapshot.fetch.size': 10,
    });
    running = await startSource(file);
    stateDir = running.stateDir;
    expect(running.connector.state).toBe('streaming');
  }, 120_000);

  afterAll(async () => {
    await running?.stop().catch(() => undefined);
    await sql?.end();
    if (file) await dropSlot(db.url, file.config['slot.name']);
    await db?.drop();
  });

  it('DROP NOT NULL while streaming: the NULL that follows is delivered', async () => {
    await sql.query(`ALTER TABLE nn ALTER COLUMN label DROP NOT NULL`);
    await sql.query(`INSERT INTO nn VALUES (2, NULL)`);
    const events = await consumeUntil([topic('nn')], (es) => es.some((e) => env(e).after?.id === 2));
    expect(env(events.find((e) => env(e).after?.id === 2)!).after).toEqual({ id: 2, label: null });
    expect(running!.connector.state).toBe('streaming');
  });

  it('an incremental snapshot reads the table as the catalog has it at each chunk, even before the stream saw the DDL', async () => {
    // No row of widen changes after the ALTER: the stream has no relation message for it, so the stream's
    // codec still has (id, v). A chunk reads the table of now, so its rows carry the new column.
    await sql.query(`ALTER TABLE widen ADD COLUMN extra int NOT NULL DEFAULT 7`);
    const signal = JSON.stringify({
      type: 'execute-snapshot',
      slot: file.config['slot.name'],
      data: { 'data-collections': ['public.widen'], type: 'incremental' },
    });
    await sql.query(`SELECT pg_logical_emit_message(true, 'tide.signal', $1)`, [signal]);
    const events = await consumeUntil([topic('widen')], (es) => es.filter((e) => env(e).op === 'r').length >= 60);
    const incremental = events
      .map(env)
      .filter((e) => e.op === 'r' && (e as { source?: { snapshot?: string } }).source?.snapshot === 'incremental');
    expect(incremental.map((e) => e.after).sort((a, b) => Number(a!.id) - Number(b!.id))).toEqual(
      Array.from({ length: 30 }, (_, i) => ({ id: i + 1, v: `w${i + 1}`, extra: 7 })),
    );
    expect(running!.connector.state).toBe('streaming');
  });

  it('DDL and DML while stopped: everything committed is delivered, each row with the schema of its time', async () => {
    await waitForSourceCaughtUp(sql, file.config['slot.name']);
    expect(await running!.stop()).toBe('stopped');

    // ADD COLUMN, a row with NULL in it, fill it, then SET NOT NULL.
    await sql.query(`ALTER TABLE grow ADD COLUMN extra int`);
    await sql.query(`INSERT INTO grow VALUES (10, 'ten', NULL)`);
    await sql.query(`UPDATE grow SET extra = 0 WHERE extra IS NULL`);
    await sql.query(`ALTER TABLE grow ALTER COLUMN extra SET NOT NULL`);
    await sql.query(`INSERT INTO grow VALUES (11, 'eleven', 11)`);
    // An out-of-line (TOASTed) value, an update that leaves it unchanged, then REPLICA IDENTITY FULL.
    await sql.query(`INSERT INTO ident SELECT 2, 1, string_agg(md5(random()::text), '') FROM generate_series(1, 400)`);
    await sql.query(`UPDATE ident SET n = 2 WHERE id = 2`);
    await sql.query(`ALTER TABLE ident REPLICA IDENTITY FULL`);
    await sql.query(`UPDATE ident SET n = 3 WHERE id = 2`);
    // Rows committed to a table, then the table dropped.
    await sql.query(`INSERT INTO gone VALUES (5, 'five')`);
    await sql.query(`DROP TABLE gone`);

    running = await startSource(file, stateDir);
    expect(running.connector.state, running.connector.lastError).toBe('streaming');
    await waitForSourceCaughtUp(sql, file.config['slot.name']);
    expect(running.connector.state, running.connector.lastError).toBe('streaming');

    // Keys sit on different partitions: no order across them, so compare sorted.
    const grow = (await consumeAll([topic('grow')])).map(env);
    const rows = (es: Env[]) => es.map((e) => JSON.stringify([e.op, e.after])).sort();
    expect(rows(grow.filter((e) => e.op !== 'r'))).toEqual(
      rows([
        { op: 'c', after: { id: 10, name: 'ten', extra: null } },
        { op: 'u', after: { id: 1, name: 'one', extra: 0 } },
        { op: 'u', after: { id: 10, name: 'ten', extra: 0 } },
        { op: 'c', after: { id: 11, name: 'eleven', extra: 11 } },
      ] as unknown as Env[]),
    );

    const ident = (await consumeAll([topic('ident')])).map(env);
    expect(ident.map((e) => [e.op, e.after?.n, e.unchanged_toast])).toEqual([
      ['c', 1, []],
      ['u', 2, ['body']], // the default identity: the update did not carry the unchanged TOAST value
      ['u', 3, []], // REPLICA IDENTITY FULL: the old row is complete, so the value is known
    ]);
    expect(ident[2]!.before?.n).toBe(2);

    const gone = (await consumeAll([topic('gone')])).map(env);
    expect(rows(gone)).toEqual(
      rows([
        { op: 'r', after: { id: 1, v: 'one' } },
        { op: 'c', after: { id: 5, v: 'five' } },
      ] as unknown as Env[]),
    );
  });

  it('a primary key changed while stopped: older rows keep the old key, and the change pauses with the reason', async () => {
    await waitForSourceCaughtUp(sql, file.config['slot.name']);
    expect(await running!.stop()).toBe('stopped');
    await sql.query(`INSERT INTO keyed VALUES (20, 200)`);
    await sql.query(`ALTER TABLE keyed DROP CONSTRAINT keyed_pkey, ADD PRIMARY KEY (code)`);
    await sql.query(`INSERT INTO keyed VALUES (21, 210)`);

    running = await startSource(file, stateDir);
    expect(await running.done).toBe('paused');
    expect(running.connector.lastError).toContain(
      'the primary key changed from (id) to (code): events are keyed by it, and old keys cannot be read with the new key schema.',
    );
    const keyed = await consumeUntil([topic('keyed')], (es) => es.length >= 1);
    expect(keyed.map((e) => [e.key, env(e).after])).toEqual([[{ id: 20 }, { id: 20, code: 200 }]]);
    // Nothing past the change was confirmed: the slot still holds the insert keyed by the new key.
    expect(await unconfirmedMessages(db.url, file.config['slot.name'], file.config['publication.name'])).toEqual(['B', 'R', 'I', 'C']);
    const versions = (await (await fetch(`${registry}/subjects/${topic('keyed')}-key/versions`)).json()) as number[];
    expect(versions).toHaveLength(1);
  });
});

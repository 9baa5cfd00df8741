import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silverPath } from '../../src/sink/table-layout.ts';
import { createTestDatabase } from '../support/db.ts';
import { readWithDeltaRs } from '../support/delta-reader.ts';
import { consumeUntil, registryClient, waitFor, type ConsumedEvent } from '../support/kafka.ts';
import { sinkFile, startSink, type RunningSink } from '../support/lake.ts';
import { dropSlot, sourceConfig, startSource, unconfirmedMessages, waitForSourceCaughtUp, type RunningSource } from '../support/source.ts';

/**
 * What Debezium's consumers rely on, on the real stack: source.sequence filled as Debezium's Postgres
 * connector fills it, and a primary-key update under REPLICA IDENTITY USING INDEX as a delete plus a
 * create (with Debezium's __debezium.newkey / __debezium.oldkey headers), carried through the sink.
 */
type Envelope = {
  op: string;
  before: Record<string, unknown> | null;
  after: Record<string, unknown> | null;
  source: Record<string, unknown>;
};
const env = (e: ConsumedEvent) => e.value as unknown as Envelope;

/** The commit messages' end LSNs, in stream order, from a pgoutput slot of our own (an independent reading of the WAL). */
async function commitEndLsns(sql: pg.Client, slot: string, publication: string): Promise<bigint[]> {
  const { rows } = await sql.query<{ data: Buffer }>(
    `SELECT data FROM pg_logical_slot_peek_binary_changes($1, NULL, NULL, 'proto_version', '1', 'publication_names', $2)`,
    [slot, publication],
  );
  // pgoutput Commit: 'C', flags (1), commit LSN (8), end LSN (8), timestamp (8).
  return rows.filter((r) => r.data[0] === 0x43).map((r) => r.data.readBigUInt64BE(10));
}

describe('Debezium compatibility: source.sequence and primary-key changes', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let sql: pg.Client;
  let file: ReturnType<typeof sourceConfig>;
  let running: RunningSource | undefined;
  let sink: RunningSink | undefined;
  const lakeDir = mkdtempSync(join(tmpdir(), 'tide-dbz-lake-'));
  const topic = (table: string) => `${file.config['topic.prefix']}.public.${table}`;

  beforeAll(async () => {
    db = await createTestDatabase('debezium_compat');
    sql = new pg.Client({ connectionString: db.url });
    await sql.connect();
    // The identity index contains the primary key (and more): Postgres logs the old id when it changes.
    await sql.query(`CREATE TABLE accounts (id int PRIMARY KEY, code text NOT NULL, note text)`);
    await sql.query(`CREATE UNIQUE INDEX accounts_id_code ON accounts (id, code)`);
    await sql.query(`ALTER TABLE accounts REPLICA IDENTITY USING INDEX accounts_id_code`);
    await sql.query(`INSERT INTO accounts VALUES (1, 'one', 'a'), (2, 'two', 'b'), (3, 'three', 'c')`);
    file = sourceConfig(db.url, 'dbz', { 'table.include.list': 'public\\.accounts', 'heartbeat.interval.ms': 0 });
    running = await startSource(file);
    expect(running.connector.state).toBe('streaming');
  }, 120_000);

  afterAll(async () => {
    await sink?.stop();
    await running?.stop();
    await sql?.query(`SELECT pg_drop_replication_slot('probe_dbz')`).catch(() => undefined);
    await sql?.end();
    if (file) await dropSlot(db.url, file.config['slot.name']);
    await db?.drop();
  });

  it('source.sequence is ["<end LSN of the previous commit>","<lsn>"], as Debezium fills it', async () => {
    await sql.query(`SELECT pg_create_logical_replication_slot('probe_dbz', 'pgoutput')`);
    await sql.query(`UPDATE accounts SET note = 'tx1' WHERE id = 3`);
    await sql.query(`BEGIN`);
    await sql.query(`UPDATE accounts SET note = 'tx2' WHERE id = 3`);
    await sql.query(`INSERT INTO accounts VALUES (4, 'four', 'tx2')`);
    await sql.query(`COMMIT`);
    const ends = await commitEndLsns(sql, 'probe_dbz', file.config['publication.name']);
    expect(ends).toHaveLength(2);
    const streamed = (await consumeUntil([topic('accounts')], (es) => es.filter((e) => e.value && env(e).op !== 'r').length >= 3))
      .filter((e) => e.value && env(e).op !== 'r')
      .map(env);
    const tx2 = streamed.filter((e) => e.after?.note === 'tx2');
    expect(tx2).toHaveLength(2);
    for (const e of tx2) {
      const sequence = JSON.parse(String(e.source.sequence)) as unknown;
      expect(sequence).toEqual([String(ends[0]), String(e.source.lsn)]);
    }
    // The first transaction after start: the previous commit is the one the slot had confirmed.
    const tx1 = streamed.find((e) => e.after?.note === 'tx1')!;
    const first = JSON.parse(String(tx1.source.sequence)) as [string, string];
    expect(first[1]).toBe(String(tx1.source.lsn));
    expect(BigInt(first[0])).toBeLessThan(BigInt(String(tx1.source.lsn)));
    // Snapshot rows: no commit before them, their LSN is the snapshot's position.
    const snap = (await consumeUntil([topic('accounts')], (es) => es.some((e) => e.value && env(e).op === 'r'))).find(
      (e) => e.value && env(e).op === 'r',
    )!;
    const s = JSON.parse(String(env(snap).source.sequence)) as unknown[];
    expect(s[0]).toBeNull();
    expect(typeof s[1]).toBe('string');
  });

  it('under REPLICA IDENTITY USING INDEX a primary-key update is a delete (+ tombstone) and a create with Debezium headers; silver moves the row', async () => {
    await sql.query(`UPDATE accounts SET id = 20 WHERE id = 2`);
    const isPk = (e: ConsumedEvent) => [2, 20].includes((e.key as { id: number }).id) && (e.value === null || env(e).op !== 'r');
    const events = (await consumeUntil([topic('accounts')], (es) => es.filter(isPk).length >= 3)).filter(isPk);
    const ofKey = (id: number) =>
      events.filter((e) => (e.key as { id: number }).id === id).sort((a, b) => Number(a.offset) - Number(b.offset));
    expect(ofKey(2).map((e) => (e.value ? env(e).op : 'tombstone'))).toEqual(['d', 'tombstone']);
    expect(ofKey(20).map((e) => env(e).op)).toEqual(['c']);
    const [d] = ofKey(2);
    const [c] = ofKey(20);
    expect(env(d!).before).toMatchObject({ id: 2, code: 'two' });
    expect(env(c!).after).toMatchObject({ id: 20, code: 'two', note: 'b' });
    // Debezium's headers: the delete names the new key, the create the old one, each as its record's key bytes.
    const registry = registryClient();
    const newKey = d!.headers?.['__debezium.newkey'] as Buffer;
    const oldKey = c!.headers?.['__debezium.oldkey'] as Buffer;
    expect(Buffer.compare(newKey, c!.rawKey!)).toBe(0);
    expect(Buffer.compare(oldKey, d!.rawKey!)).toBe(0);
    expect(await registry.decode(newKey)).toEqual({ id: 20 });
    expect(await registry.decode(oldKey)).toEqual({ id: 2 });

    // Through the sink: silver drops the old key and holds the new one.
    const sinkName = `dbz-${Date.now().toString(36)}`;
    sink = startSink(sinkFile(sinkName, file.config['topic.prefix'], lakeDir, { topics: topic('accounts') }));
    await waitForSourceCaughtUp(sql, file.config['slot.name']);
    let ids: number[] = [];
    await waitFor(
      async () => {
        const view = await readWithDeltaRs(join(lakeDir, silverPath('public.accounts'))).catch(() => undefined);
        if (!view) return false;
        const i = view.columns.indexOf('id');
        ids = view.rows.map((r) => Number(r[i])).sort((a, b) => a - b);
        return ids.includes(20);
      },
      'silver to hold the new key',
      120_000,
    );
    const pgIds = (await sql.query<{ id: number }>('SELECT id FROM accounts ORDER BY id')).rows.map((r) => r.id);
    expect(ids).toEqual(pgIds);
    expect(ids).not.toContain(2);
  });

  it('an identity index that leaves out the primary key stops the stream when announced, before any row under it is published or confirmed', async () => {
    await sql.query(`CREATE UNIQUE INDEX accounts_code ON accounts (code)`);
    await sql.query(`ALTER TABLE accounts REPLICA IDENTITY USING INDEX accounts_code`);
    await sql.query(`UPDATE accounts SET id = 30 WHERE id = 3`);
    await waitFor(() => running!.connector.state === 'failed', 'the source to stop', 60_000);
    expect(running!.connector.lastError).toMatch(
      /table public\.accounts: its replica identity changed to an index that leaves out primary-key column id\..*Nothing after this point was published or confirmed\. Fix: ALTER TABLE "public"\."accounts" REPLICA IDENTITY DEFAULT/s,
    );
    await running!.done.catch(() => undefined);
    running = undefined;
    // The update is still in the slot: nothing past it was confirmed.
    const pending = await unconfirmedMessages(db.url, file.config['slot.name'], file.config['publication.name']);
    expect(pending.filter((t) => t === 'U')).toHaveLength(1);
  });

  it('and at start, such a table is refused with the table, the index, the column and the fix', async () => {
    const again = await startSource(file).catch((err: unknown) => err as Error);
    const err =
      again instanceof Error
        ? again
        : await again.done.then(
            () => again.connector.lastError,
            (e: Error) => e.message,
          );
    const message = typeof err === 'string' ? err : (err as Error | undefined)?.message;
    expect(message).toContain(
      'replica identity includes the primary key: public.accounts: REPLICA IDENTITY USING INDEX accounts_code leaves out primary-key column id',
    );
    expect(message).toContain('Fix: ALTER TABLE "public"."accounts" REPLICA IDENTITY DEFAULT;');
  });
});

describe("timestamptz.handling.mode=string: Debezium's ZonedTimestamp, snapshot and stream, through the sink", () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let sql: pg.Client;
  let file: ReturnType<typeof sourceConfig>;
  let running: RunningSource | undefined;
  let sink: RunningSink | undefined;
  const lakeDir = mkdtempSync(join(tmpdir(), 'tide-dbz-ts-lake-'));
  // Postgres' own UTC rendering, the fraction without trailing zeros: what Debezium's ISO_OFFSET_DATE_TIME prints.
  const expected = async (id: number) =>
    (
      await sql.query<{ s: string }>(
        `SELECT regexp_replace(regexp_replace(to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'), '0+$', ''), '\\.$', '') || 'Z' AS s FROM stamps WHERE id = $1`,
        [id],
      )
    ).rows[0]!.s;

  beforeAll(async () => {
    db = await createTestDatabase('debezium_ts');
    sql = new pg.Client({ connectionString: db.url });
    await sql.connect();
    await sql.query(`CREATE TABLE stamps (id int PRIMARY KEY, at timestamptz NOT NULL)`);
    await sql.query(`INSERT INTO stamps VALUES (1, '2024-03-01 12:34:56.1234+01')`);
    file = sourceConfig(db.url, 'dbzts', { 'table.include.list': 'public\\.stamps', 'timestamptz.handling.mode': 'string' });
    running = await startSource(file);
    expect(running.connector.state).toBe('streaming');
  }, 120_000);

  afterAll(async () => {
    await sink?.stop();
    await running?.stop();
    await sql?.end();
    if (file) await dropSlot(db.url, file.config['slot.name']);
    await db?.drop();
  });

  it('sends an ISO-8601 UTC string for snapshot and streamed rows, and silver holds the same text', async () => {
    await sql.query(`INSERT INTO stamps VALUES (2, '1999-12-31 23:59:59-08')`);
    const topic = `${file.config['topic.prefix']}.public.stamps`;
    const events = await consumeUntil([topic], (es) => es.length >= 2);
    const at = (id: number) => events.map(env).find((e) => e.after?.id === id)!.after!.at;
    expect(at(1)).toBe('2024-03-01T11:34:56.1234Z');
    expect(at(1)).toBe(await expected(1));
    expect(at(2)).toBe('2000-01-01T07:59:59Z');
    expect(at(2)).toBe(await expected(2));

    sink = startSink(sinkFile(`dbzts-${Date.now().toString(36)}`, file.config['topic.prefix'], lakeDir, { topics: topic }));
    let rows: string[] = [];
    await waitFor(
      async () => {
        const view = await readWithDeltaRs(join(lakeDir, silverPath('public.stamps'))).catch(() => undefined);
        if (!view) return false;
        const i = view.columns.indexOf('at');
        rows = view.rows.map((r) => String(r[i])).sort();
        return rows.length === 2;
      },
      'silver to hold both rows',
      120_000,
    );
    expect(rows).toEqual(['2000-01-01T07:59:59Z', '2024-03-01T11:34:56.1234Z']);
  });
});

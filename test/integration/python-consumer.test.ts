import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase } from '../support/db.ts';
import { consumeAll } from '../support/kafka.ts';
import { dropSlot, sourceConfig, startSource, type RunningSource } from '../support/source.ts';

/**
 * Values standard consumers can read (issue 11, item 11): Confluent's stock Python AvroDeserializer
 * (confluent-kafka from PyPI, fastavro underneath) decodes every event of a type zoo, including the
 * ±infinity of date and timestamps, which it used to reject with "OverflowError: date value out of range"
 * (Tide sent int64 max/min as timestamp-micros and int32 max/min as date). Snapshot and streamed rows both.
 */
const python = resolve('.cache/venv/bin/python');
const script = resolve('scripts/confluent_decode.py');

describe("Confluent's Python AvroDeserializer reads Tide's topics", () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let sql: pg.Client;
  let file: ReturnType<typeof sourceConfig>;
  let running: RunningSource | undefined;

  beforeAll(async () => {
    db = await createTestDatabase('python_consumer');
    sql = new pg.Client({ connectionString: db.url });
    await sql.connect();
    await sql.query(`CREATE TABLE zoo (
      id int PRIMARY KEY, d date, ts timestamp, tstz timestamptz, t time, n numeric(12,2), u uuid, j jsonb, b bytea,
      iv interval, arr_ts timestamptz[], f double precision)`);
    const rows = `(1, 'infinity', 'infinity', 'infinity', '12:34:56', 12.5, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"a":1}', '\\x00ff', '1 day', ARRAY['infinity'::timestamptz, '2020-01-01'], 'Infinity'),
      (2, '-infinity', '-infinity', '-infinity', '00:00:00', -0.01, NULL, 'null', '', '-1 year', ARRAY['-infinity'::timestamptz], 'NaN'),
      (3, '2024-02-29', '2024-02-29 12:00:00.123456', '1999-12-31 23:59:59.999999+00', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)`;
    await sql.query(`INSERT INTO zoo VALUES ${rows}`);
    file = sourceConfig(db.url, 'pyzoo', { 'table.include.list': 'public\\.zoo' });
    running = await startSource(file);
    // Streamed too: the same values through pgoutput.
    await sql.query(`INSERT INTO zoo SELECT id + 10, d, ts, tstz, t, n, u, j, b, iv, arr_ts, f FROM zoo`);
  });

  afterAll(async () => {
    await running?.stop();
    await sql?.end();
    if (file) await dropSlot(db.url, file.config['slot.name']);
    await db?.drop();
  });

  it('decodes every event; ±infinity arrive as the last and first representable instants and days', async () => {
    const topic = `${file.config['topic.prefix']}.public.zoo`;
    let events = await consumeAll([topic]);
    for (let i = 0; i < 60 && events.filter((e) => e.rawValue).length < 6; i++) {
      await new Promise((r) => setTimeout(r, 500));
      events = await consumeAll([topic]);
    }
    const values = events.filter((e) => e.rawValue);
    expect(values).toHaveLength(6);
    const dir = mkdtempSync(join(tmpdir(), 'tide-pyzoo-'));
    const input = join(dir, 'messages.json');
    writeFileSync(input, JSON.stringify(values.map((e) => ({ topic: e.topic, value: e.rawValue!.toString('hex') }))));
    const { stdout } = await promisify(execFile)(python, [script, input, process.env.SCHEMA_REGISTRY_URL!], { timeout: 120_000 });
    const decoded = stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { op: string; after: Record<string, unknown> });
    expect(decoded).toHaveLength(6);
    const byId = new Map(decoded.map((v) => [Number(v.after.id), v.after]));
    for (const base of [0, 10]) {
      expect(byId.get(base + 1)).toMatchObject({
        d: '9999-12-31',
        ts: '9999-12-31 23:59:59.999999', // timestamp without time zone: local-timestamp-micros, a naive datetime
        tstz: '9999-12-31 23:59:59.999999+00:00',
        arr_ts: ['9999-12-31 23:59:59.999999+00:00', '2020-01-01 00:00:00+00:00'],
      });
      expect(byId.get(base + 2)).toMatchObject({
        d: '0001-01-01',
        ts: '0001-01-01 00:00:00',
        tstz: '0001-01-01 00:00:00+00:00',
        arr_ts: ['0001-01-01 00:00:00+00:00'],
      });
      expect(byId.get(base + 3)).toMatchObject({ d: '2024-02-29', tstz: '1999-12-31 23:59:59.999999+00:00' });
    }
  });
});

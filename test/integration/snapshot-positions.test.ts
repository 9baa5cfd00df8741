import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { parseLsn } from '../../src/source/lsn.ts';
import type { SourceOffsets } from '../../src/source/offset-store.ts';
import { createTestDatabase } from '../support/db.ts';
import { consumeAll, type ConsumedEvent } from '../support/kafka.ts';
import { dropSlot, sourceConfig, startSource, waitForSourceCaughtUp } from '../support/source.ts';

/**
 * Issue 11, item 6 (and 7's source.snapshot): the initial snapshot's positions are unique and sort before
 * every streamed change, also after a resume, and its records carry Debezium's first/…/last markers.
 */
const source = (e: ConsumedEvent) =>
  (e.value as { source: { commit_lsn: number | bigint; event_index: number | bigint; snapshot: string } }).source;
const op = (e: ConsumedEvent) => (e.value as { op: string }).op;

describe('initial snapshot positions', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let sql: pg.Client;
  const slots: string[] = [];

  beforeAll(async () => {
    db = await createTestDatabase('snapshot_positions');
    sql = new pg.Client({ connectionString: db.url });
    await sql.connect();
  });

  afterAll(async () => {
    await sql?.end();
    for (const s of slots) await dropSlot(db.url, s);
    await db?.drop();
  });

  it('sorts every snapshot row before every streamed change and marks first / last as Debezium does', async () => {
    await sql.query(
      'CREATE TABLE pa (id int PRIMARY KEY, v text); CREATE TABLE pb (id int PRIMARY KEY, v text); CREATE TABLE pc (id int PRIMARY KEY)',
    );
    await sql.query(
      `INSERT INTO pa SELECT g, 'a' || g FROM generate_series(1, 4) g; INSERT INTO pb SELECT g, 'b' || g FROM generate_series(1, 2) g`,
    );
    const file = sourceConfig(db.url, 'pos', { 'table.include.list': 'public\\.p[abc]', 'snapshot.fetch.size': 2 });
    slots.push(file.config['slot.name']);
    const src = await startSource(file);
    try {
      await sql.query(`UPDATE pa SET v = 'streamed' WHERE id = 1`);
      await waitForSourceCaughtUp(sql, file.config['slot.name']);
    } finally {
      await src.stop();
    }
    const offsets = JSON.parse(readFileSync(join(src.stateDir, `${file.name}.offsets.json`), 'utf8')) as SourceOffsets;
    const consistent = parseLsn(offsets.snapshot!.consistentLsn);
    const prefix = file.config['topic.prefix'];
    const events = (await consumeAll([`${prefix}.public.pa`, `${prefix}.public.pb`])).filter((e) => e.value);
    const reads = events.filter((e) => op(e) === 'r');
    const streamed = events.filter((e) => op(e) !== 'r');
    expect(reads).toHaveLength(6);
    expect(streamed.length).toBeGreaterThan(0);
    // The stream holds exactly the commits at or after the consistent point: snapshot rows sort strictly before.
    for (const r of reads) expect(BigInt(source(r).commit_lsn)).toBeLessThan(consistent);
    const minStreamed = streamed.reduce((m, e) => (BigInt(source(e).commit_lsn) < m ? BigInt(source(e).commit_lsn) : m), consistent * 2n);
    expect(minStreamed).toBeGreaterThanOrEqual(consistent);
    const markers = (topic: string) =>
      reads
        .filter((e) => e.topic === topic)
        .sort((a, b) => Number(source(a).event_index) - Number(source(b).event_index))
        .map((e) => source(e).snapshot);
    expect({ pa: markers(`${prefix}.public.pa`), pb: markers(`${prefix}.public.pb`) }).toEqual({
      pa: ['first', 'true', 'true', 'last_in_data_collection'],
      pb: ['first_in_data_collection', 'last'],
    });
    for (const s of streamed) expect(source(s).snapshot).toBe('false');
  });

  it('never gives one (commit_lsn, event_index) to two rows when a snapshot resumes after a crash', async () => {
    await sql.query('CREATE TABLE pr (id int PRIMARY KEY, v text)');
    await sql.query(`INSERT INTO pr SELECT g * 10, 'v' || g FROM generate_series(1, 20) g`);
    const file = sourceConfig(db.url, 'resume', { 'table.include.list': 'public\\.pr', 'snapshot.fetch.size': 10 });
    slots.push(file.config['slot.name']);
    const first = await startSource(file);
    await first.stop();
    // The offsets as a kill -9 during the second chunk leaves them: the chunk (ids 110..200, indexes 10..19) is in
    // Kafka, the file still says "after id 100, next index 10", and the chunk's indexes were reserved before it was sent.
    const path = join(first.stateDir, `${file.name}.offsets.json`);
    const offsets = JSON.parse(readFileSync(path, 'utf8')) as SourceOffsets;
    offsets.snapshot = {
      ...offsets.snapshot!,
      status: 'running',
      nextIndex: 10,
      reservedIndex: 20,
      tables: { 'public.pr': { done: false, rows: 10, lastKey: ['100'] } },
    };
    writeFileSync(path, JSON.stringify(offsets));
    // Rows committed before the resumed read, one inside the second chunk's range: the resumed chunk shifts by one.
    await sql.query(`INSERT INTO pr VALUES (105, 'new'); INSERT INTO pr SELECT g * 10, 'v' || g FROM generate_series(21, 30) g`);
    const second = await startSource(file, first.stateDir);
    await second.stop();

    const events = (await consumeAll([`${file.config['topic.prefix']}.public.pr`])).filter((e) => e.value && op(e) === 'r');
    const rowsAt = new Map<string, Set<string>>();
    for (const e of events) {
      const at = `${source(e).commit_lsn}/${source(e).event_index}`;
      const ids = rowsAt.get(at) ?? new Set<string>();
      ids.add(JSON.stringify(e.key));
      rowsAt.set(at, ids);
    }
    const reused = [...rowsAt].filter(([, ids]) => ids.size > 1).map(([at, ids]) => `${at}: ${[...ids].join(' ')}`);
    expect(reused, 'positions given to more than one row').toEqual([]);
    const ids = new Set(events.map((e) => (e.key as { id: number }).id));
    expect(ids.size).toBe(31);
  });
});

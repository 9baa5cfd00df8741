import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import type { SourceOffsets } from '../../src/source/offset-store.ts';
import { createTestDatabase } from '../support/db.ts';
import { consumeAll, waitFor, type ConsumedEvent } from '../support/kafka.ts';
import { dropSlot, sourceConfig, startSource, waitForSourceCaughtUp, writeConnectorFile } from '../support/source.ts';

/**
 * Issue 11, items 2 and 3: a table that joins table.include.list on restart, and a table created while the
 * source runs (publication.autocreate.mode filtered and all_tables), reach Kafka with every row.
 */
const run = promisify(execFile);
const BIN = resolve('bin/tide.js');
const env = (e: ConsumedEvent) => e.value as { op: string; after: Record<string, unknown> | null; source: { snapshot: string } };

/** The live rows of a topic: the newest event per key by (commit_lsn, event_index). */
function liveRows(events: ConsumedEvent[]): Record<string, unknown>[] {
  const pos = (e: ConsumedEvent) => {
    const s = (e.value as { source: { commit_lsn: number | bigint; event_index: number | bigint } }).source;
    return [BigInt(s.commit_lsn), BigInt(s.event_index)] as const;
  };
  const latest = new Map<string, ConsumedEvent>();
  for (const e of events) {
    if (!e.value || !e.key) continue;
    const k = JSON.stringify(e.key);
    const prev = latest.get(k);
    const [a, b] = pos(e);
    if (!prev) latest.set(k, e);
    else {
      const [pa, pb] = pos(prev);
      if (a > pa || (a === pa && b >= pb)) latest.set(k, e);
    }
  }
  return [...latest.values()].filter((e) => env(e).op !== 'd').map((e) => env(e).after!);
}

/** Whether the offsets list `table` as captured. */
function captured(stateDir: string, name: string, table: string): boolean {
  const path = join(stateDir, `${name}.offsets.json`);
  if (!existsSync(path)) return false;
  return ((JSON.parse(readFileSync(path, 'utf8')) as SourceOffsets).captured ?? []).includes(table);
}

describe('tables that join the capture', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let sql: pg.Client;
  const slots: string[] = [];
  const work = mkdtempSync(join(tmpdir(), 'tide-follow-'));

  beforeAll(async () => {
    db = await createTestDatabase('capture_follow');
    sql = new pg.Client({ connectionString: db.url });
    await sql.connect();
  });

  afterAll(async () => {
    await sql?.end();
    for (const s of slots) await dropSlot(db.url, s);
    await db?.drop();
  });

  it('snapshots a table added to table.include.list on restart, and `source plan` says so first', async () => {
    await sql.query('CREATE TABLE ja (id int PRIMARY KEY, v text); CREATE TABLE jb (id int PRIMARY KEY, v text)');
    await sql.query(
      `INSERT INTO ja SELECT g, 'a' FROM generate_series(1, 5) g; INSERT INTO jb SELECT g, 'b' || g FROM generate_series(1, 250) g`,
    );
    const first = sourceConfig(db.url, 'joined', {
      'table.include.list': 'public\\.ja',
      'snapshot.fetch.size': 100,
      'offset.storage.file.filename': join(work, 'joined.offsets.json'),
    });
    slots.push(first.config['slot.name']);
    const a = await startSource(first);
    await a.stop();
    // While it was stopped: rows change in jb, which is not captured yet.
    await sql.query(`UPDATE jb SET v = 'changed' WHERE id <= 10; DELETE FROM jb WHERE id > 240`);
    const second = { ...first, config: { ...first.config, 'table.include.list': ['public\\.(ja|jb)'] } };
    const path = writeConnectorFile(work, second);
    const plan = await run(process.execPath, [BIN, 'source', 'plan', path], { cwd: work, env: process.env });
    expect(plan.stdout).toContain('-- incremental snapshots at the next start: public.jb (joined table.include.list since the last start)');
    const b = await startSource(second, a.stateDir);
    try {
      await sql.query(`UPDATE jb SET v = 'streamed' WHERE id = 1`);
      await waitFor(() => b.connector.status().incrementalSnapshot === undefined, 'the incremental snapshot of jb to finish', 90_000);
      await waitForSourceCaughtUp(sql, first.config['slot.name']);
    } finally {
      await b.stop();
    }
    const events = await consumeAll([`${first.config['topic.prefix']}.public.jb`]);
    const rows = liveRows(events).sort((x, y) => Number(x.id) - Number(y.id));
    const table = (await sql.query<{ id: number; v: string }>('SELECT id, v FROM jb ORDER BY id')).rows;
    expect(rows.map((r) => ({ id: r.id, v: r.v }))).toEqual(table);
    expect(events.filter((e) => e.value && env(e).op === 'r').every((e) => env(e).source.snapshot === 'incremental')).toBe(true);
  });

  for (const mode of ['filtered', 'all_tables'] as const) {
    it(`captures a table created while the source runs from its first row (publication.autocreate.mode=${mode})`, async () => {
      const seed = `seed_${mode}`;
      const fresh = `fresh_${mode}`;
      await sql.query(`CREATE TABLE ${seed} (id int PRIMARY KEY)`);
      const file = sourceConfig(db.url, `created_${mode}`, {
        'table.include.list': `public\\.(${seed}|fresh_.*)`,
        'publication.autocreate.mode': mode,
        'table.discovery.interval.ms': 500,
      });
      slots.push(file.config['slot.name']);
      const src = await startSource(file);
      try {
        // Rows in the creating transaction, then 20 more one by one, as the user did.
        await sql.query(
          `BEGIN; CREATE TABLE ${fresh} (k text, n int, v int NOT NULL, PRIMARY KEY (k, n)); INSERT INTO ${fresh} VALUES ('a', 0, 0); COMMIT`,
        );
        for (let i = 1; i <= 20; i++) await sql.query(`INSERT INTO ${fresh} VALUES ($1, $2, $2)`, [i % 2 ? 'a' : 'b', i]);
        await sql.query(`UPDATE ${fresh} SET v = v + 100 WHERE n % 5 = 0`);
        // Captured (by the look-out, or under all_tables by the stream itself), and any incremental snapshot of it done.
        await waitFor(
          () => captured(src.stateDir, file.name, `public.${fresh}`) && src.connector.status().incrementalSnapshot === undefined,
          'the new table to be captured',
          60_000,
        );
        // And the stream carries it from now on.
        await sql.query(
          `INSERT INTO ${fresh} VALUES ('c', 100, 100); UPDATE ${fresh} SET v = -1 WHERE n = 1; DELETE FROM ${fresh} WHERE n = 2`,
        );
        await waitForSourceCaughtUp(sql, file.config['slot.name']);
      } finally {
        await src.stop();
      }
      const rows = liveRows(await consumeAll([`${file.config['topic.prefix']}.public.${fresh}`]))
        .map((r) => ({ k: r.k, n: r.n, v: r.v }))
        .sort((x, y) => Number(x.n) - Number(y.n));
      const table = (await sql.query<{ k: string; n: number; v: number }>(`SELECT k, n, v FROM ${fresh} ORDER BY n`)).rows;
      expect(rows).toEqual(table);
      expect(rows).toHaveLength(21);
    });
  }
});

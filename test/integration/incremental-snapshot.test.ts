import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { createPrisma } from '../../src/app/db.ts';
import { replay } from '../../src/app/replay.ts';
import { runTraffic } from '../../src/app/traffic.ts';
import type { SourceOffsets } from '../../src/source/offset-store.ts';
import type { SourceStatus } from '../../src/source/status-file.ts';
import { createTestDatabase } from '../support/db.ts';
import { consumeAll, waitFor, type ConsumedEvent } from '../support/kafka.ts';
import { dropSlot, sourceConfig, waitForSourceCaughtUp, writeConnectorFile } from '../support/source.ts';

/**
 * Issue 11, item 1: `tide source snapshot` reads tables in primary-key chunks while the order app writes to
 * the same rows, the source is killed (-9) in the middle and resumes, and afterwards the newest event of
 * every key equals Postgres (nothing lost, no older value over a newer one), for a single-column key
 * (orders) and a composite key (ledger). The source runs with snapshot.mode=never, so every row nobody
 * touched reaches Kafka only through the incremental snapshot.
 */
const run = promisify(execFile);
const BIN = resolve('bin/tide.js');

type Source = {
  op: string;
  after: Record<string, unknown> | null;
  source: { commit_lsn: number | bigint; event_index: number | bigint; snapshot: string };
};
const env = (e: ConsumedEvent) => e.value as Source;
const position = (e: ConsumedEvent) => [BigInt(env(e).source.commit_lsn), BigInt(env(e).source.event_index)] as const;

function newest(events: ConsumedEvent[]): Map<string, ConsumedEvent> {
  const latest = new Map<string, ConsumedEvent>();
  for (const e of events) {
    if (!e.value || !e.key) continue;
    const k = JSON.stringify(e.key);
    const prev = latest.get(k);
    if (!prev) {
      latest.set(k, e);
      continue;
    }
    const [a, b] = position(e);
    const [pa, pb] = position(prev);
    if (a > pa || (a === pa && b >= pb)) latest.set(k, e);
  }
  return latest;
}

describe('incremental snapshot under traffic, with kill -9', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let sql: pg.Client;
  let file: ReturnType<typeof sourceConfig>;
  let child: ChildProcess | undefined;
  const work = mkdtempSync(join(tmpdir(), 'tide-incr-'));
  let path: string;
  let stop = false;

  const startChild = () => {
    const logFd = openSync(join(work, 'source.log'), 'a');
    child = spawn(process.execPath, [BIN, 'source', 'start', path], {
      cwd: work,
      stdio: ['ignore', logFd, logFd],
      env: { ...process.env, TIDE_LOG_LEVEL: 'info' },
    });
  };
  const offsets = (): SourceOffsets | undefined => {
    const p = join(work, '.tide', `${file.name}.offsets.json`);
    return existsSync(p) ? (JSON.parse(readFileSync(p, 'utf8')) as SourceOffsets) : undefined;
  };
  const slotActive = async () =>
    (await sql.query(`SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND active`, [file.config['slot.name']])).rowCount === 1;

  beforeAll(async () => {
    db = await createTestDatabase('incremental_snapshot');
    sql = new pg.Client({ connectionString: db.url });
    await sql.connect();
    await sql.query('CREATE TABLE ledger (account text, seq int, amount int NOT NULL, PRIMARY KEY (account, seq))');
    await sql.query(`INSERT INTO ledger SELECT 'acct' || (g % 7), g, g FROM generate_series(1, 1500) g`);
    const prisma = createPrisma(db.url, 4);
    await replay(prisma, { limit: 800 });
    await prisma.$disconnect();
    file = sourceConfig(db.url, 'incr', {
      'table.include.list': 'public\\.(orders|ledger)',
      'snapshot.mode': 'never',
      'snapshot.fetch.size': 20,
    });
    path = writeConnectorFile(work, file);
  });

  afterAll(async () => {
    stop = true;
    if (child && child.exitCode === null) {
      child.kill('SIGTERM');
      await new Promise((r) => child!.once('exit', r));
    }
    await sql?.end();
    if (file) await dropSlot(db.url, file.config['slot.name']);
    await db?.drop();
  });

  it('reconciles every chunk with concurrent writes to the same keys and resumes after kill -9', async () => {
    startChild();
    await waitFor(slotActive, 'the source to attach to its slot', 90_000);
    const prisma = createPrisma(db.url, 4);
    const abort = new AbortController();
    const traffic = runTraffic(prisma, { rate: 150, concurrency: 4, signal: abort.signal });
    const ledgerWriter = (async () => {
      const w = new pg.Client({ connectionString: db.url });
      await w.connect();
      w.on('error', () => undefined);
      for (let i = 0; !stop; i++) {
        const seq = 1 + ((i * 37) % 1600);
        if (i % 10 === 0) await w.query('DELETE FROM ledger WHERE seq = $1', [seq]);
        else
          await w.query(
            `INSERT INTO ledger VALUES ('acct' || ($1::int % 7), $1, -$1) ON CONFLICT (account, seq) DO UPDATE SET amount = ledger.amount + 1000`,
            [seq],
          );
        await new Promise((r) => setTimeout(r, 3));
      }
      await w.end();
    })();

    const requested = await run(process.execPath, [BIN, 'source', 'snapshot', path, '--table', 'public.ledger', 'public.orders'], {
      cwd: work,
    });
    expect(requested.stdout).toMatch(
      /^incremental snapshot of public\.ledger, public\.orders requested \(signal at LSN [0-9A-F]+\/[0-9A-F]+\)/,
    );

    // kill -9 in the middle of the ledger's snapshot.
    await waitFor(() => (offsets()?.incremental?.current?.rows ?? 0) >= 200, 'the ledger snapshot to be under way', 90_000);
    // The status file is rewritten once a second, so it may still show the state before the first chunk.
    const readStatus = () => JSON.parse(readFileSync(join(work, '.tide', `${file.name}.status.json`), 'utf8')) as SourceStatus;
    await waitFor(() => (readStatus().incrementalSnapshot?.rows ?? 0) > 0, 'the status file to show the snapshot progress', 10_000);
    const status = readStatus();
    expect(status.incrementalSnapshot).toMatchObject({ table: 'public.ledger', reason: 'signal', queued: ['public.orders'] });
    expect(status.incrementalSnapshot!.rows).toBeGreaterThan(0);
    child!.kill('SIGKILL');
    await new Promise((r) => child!.once('exit', r));
    const rowsAtKill = offsets()!.incremental!.current!.rows;
    await waitFor(async () => !(await slotActive()), 'the slot to be released', 30_000);
    startChild();
    await waitFor(
      () => {
        const o = offsets()?.incremental;
        return !!o && !o.current && o.queue.length === 0 && o.finished.length === 2;
      },
      'both incremental snapshots to finish',
      240_000,
    );
    abort.abort();
    const stats = await traffic;
    stop = true;
    await ledgerWriter;
    await prisma.$disconnect();
    expect(stats.errors, stats.lastError).toBe(0);
    const resumed = offsets()!.incremental!.finished.find((f) => f.table === 'public.ledger')!;
    expect(resumed.rows).toBeGreaterThan(rowsAtKill);

    await waitForSourceCaughtUp(sql, file.config['slot.name']);
    const prefix = file.config['topic.prefix'];
    const [ledgerTopic, ordersTopic] = [`${prefix}.public.ledger`, `${prefix}.public.orders`];
    const events = await consumeAll([ledgerTopic, ordersTopic]);

    // Positions are unique: one (commit_lsn, event_index) never names two rows.
    const at = new Map<string, Set<string>>();
    for (const e of events) {
      if (!e.value) continue;
      const p = position(e).join('/');
      const set = at.get(p) ?? new Set<string>();
      set.add(`${e.topic}|${JSON.stringify(e.key)}`);
      at.set(p, set);
    }
    expect([...at].filter(([, s]) => s.size > 1).map(([p, s]) => `${p}: ${[...s].join(' ')}`)).toEqual([]);
    const incremental = events.filter((e) => e.value && env(e).op === 'r');
    expect(incremental.length).toBeGreaterThan(1500);
    expect(incremental.every((e) => env(e).source.snapshot === 'incremental')).toBe(true);

    const live = (topic: string) =>
      [...newest(events.filter((e) => e.topic === topic)).values()].filter((e) => env(e).op !== 'd').map((e) => env(e).after!);
    const ledger = (
      await sql.query<{ account: string; seq: number; amount: number }>('SELECT account, seq, amount FROM ledger ORDER BY seq')
    ).rows;
    const kafkaLedger = live(ledgerTopic)
      .map((r) => ({ account: r.account, seq: r.seq, amount: r.amount }))
      .sort((a, b) => Number(a.seq) - Number(b.seq));
    expect(kafkaLedger).toEqual(ledger);
    const orders = (await sql.query<{ id: string; status: string }>('SELECT id::text, status::text FROM orders ORDER BY id')).rows;
    const kafkaOrders = live(ordersTopic)
      .map((r) => ({ id: String(r.id), status: String(r.status) }))
      .sort((a, b) => Number(a.id) - Number(b.id));
    const inKafka = new Map(kafkaOrders.map((o) => [o.id, o.status]));
    const wrong = orders.filter((o) => inKafka.get(o.id) !== o.status).map((o) => `${o.id}: table ${o.status}, kafka ${inKafka.get(o.id)}`);
    expect(wrong, `orders whose newest event differs from the table (source log: ${join(work, 'source.log')})`).toEqual([]);
    expect(kafkaOrders.length).toBe(orders.length);
  }, 600_000);
});

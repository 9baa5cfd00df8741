import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, openSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { createPrisma } from '../../src/app/db.ts';
import { replay } from '../../src/app/replay.ts';
import { runTraffic } from '../../src/app/traffic.ts';
import { createTestDatabase } from '../support/db.ts';
import { consumeAll, waitFor, type ConsumedEvent } from '../support/kafka.ts';
import { dropSlot, sourceConfig, waitForSourceCaughtUp } from '../support/source.ts';

const KILLS = 5;
const BIN = resolve('bin/tide.js');

/**
 * kill -9 of the source, five times, while the order app writes. Then every
 * committed row version must be in Kafka (duplicates allowed), and the newest
 * event per key must equal the row in Postgres.
 */
describe('source survives kill -9 without losing a committed change', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let sql: pg.Client;
  let file: ReturnType<typeof sourceConfig>;
  let child: ChildProcess | undefined;
  const workDir = mkdtempSync(join(tmpdir(), 'tide-crash-'));
  const connectorPath = join(workDir, 'connector.json');

  const startChild = () => {
    const logFd = openSync(join(workDir, 'source.log'), 'a');
    child = spawn(process.execPath, [BIN, 'source', 'start', connectorPath], {
      cwd: workDir,
      stdio: ['ignore', logFd, logFd],
      env: { ...process.env, TIDE_LOG_LEVEL: 'info' },
    });
  };
  const slotActive = async () =>
    (await sql.query(`SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND active`, [file.config['slot.name']])).rowCount === 1;

  beforeAll(async () => {
    db = await createTestDatabase('source_crash');
    sql = new pg.Client({ connectionString: db.url });
    await sql.connect();
    await sql.query('CREATE TABLE ledger (id int PRIMARY KEY, version int NOT NULL)');
    const prisma = createPrisma(db.url, 4);
    await replay(prisma, { limit: 1500 });
    await prisma.$disconnect();
    file = sourceConfig(db.url, 'crash', { 'table.include.list': 'public\\.(customers|products|orders|order_items|ledger)' });
    const raw = {
      name: file.name,
      config: {
        ...file.config,
        'kafka.bootstrap.servers': file.config['kafka.bootstrap.servers'].join(','),
        'table.include.list': file.config['table.include.list']!.join(','),
      },
    };
    writeFileSync(connectorPath, JSON.stringify(raw));
  });

  afterAll(async () => {
    if (child && child.exitCode === null) {
      child.kill('SIGTERM');
      await new Promise((r) => child!.once('exit', r));
    }
    await sql?.end();
    if (file) await dropSlot(db.url, file.config['slot.name']);
    await db?.drop();
  });

  it(`keeps every committed row version across ${KILLS} kill -9 restarts`, async () => {
    // Only changes committed after the slot exists can be in the stream; older versions were superseded before the snapshot.
    startChild();
    await waitFor(slotActive, 'the source to attach to its slot', 90_000);
    const committed = new Map<number, number>(); // ledger id -> last committed version
    const versions: [number, number][] = [];
    let stop = false;
    const ledgerWriter = (async () => {
      const w = new pg.Client({ connectionString: db.url });
      await w.connect();
      for (let i = 0; !stop; i++) {
        const id = i % 50;
        const v = (committed.get(id) ?? 0) + 1;
        await w.query('INSERT INTO ledger (id, version) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET version = $2', [id, v]);
        committed.set(id, v);
        versions.push([id, v]);
        await new Promise((r) => setTimeout(r, 5));
      }
      await w.end();
    })();
    const prisma = createPrisma(db.url, 4);
    const abort = new AbortController();
    const traffic = runTraffic(prisma, { rate: 100, concurrency: 4, signal: abort.signal });

    for (let k = 0; k < KILLS; k++) {
      await new Promise((r) => setTimeout(r, 1500 + Math.random() * 1500));
      child!.kill('SIGKILL');
      await new Promise((r) => child!.once('exit', r));
      await waitFor(async () => !(await slotActive()), 'the slot to be released', 30_000);
      startChild();
      await waitFor(slotActive, 'the restarted source to attach', 90_000);
    }
    await new Promise((r) => setTimeout(r, 1000));
    abort.abort();
    const stats = await traffic;
    stop = true;
    await ledgerWriter;
    await prisma.$disconnect();
    expect(stats.errors, stats.lastError).toBe(0);

    // Everything committed before `target` is in Kafka once the slot's confirmed LSN passes it (heartbeats move it on).
    await waitForSourceCaughtUp(sql, file.config['slot.name']);
    const topics = ['customers', 'products', 'orders', 'order_items', 'ledger'].map((t) => `${file.config['topic.prefix']}.public.${t}`);
    const events = await consumeAll(topics);
    const seen = new Set<string>();
    for (const e of events) {
      const after = (e.value as { after?: { id: number; version: number } } | null)?.after;
      if (e.topic.endsWith('.ledger') && after) seen.add(`${after.id}:${after.version}`);
    }
    const wantLedger = new Set(versions.map(([id, v]) => `${id}:${v}`));
    const missing = [...wantLedger].filter((x) => !seen.has(x));
    expect(missing, `ledger versions missing from Kafka (source log: ${join(workDir, 'source.log')})`).toEqual([]);

    // The newest event per key (by commit LSN, then event index) equals the table.
    const latest = new Map<string, ConsumedEvent>();
    const pos = (e: ConsumedEvent) => {
      const s = (e.value as { source: { commit_lsn: number; event_index: number } }).source;
      return BigInt(s.commit_lsn) * 1_000_000n + BigInt(s.event_index);
    };
    for (const e of events) {
      if (!e.value || !e.key) continue;
      const k = `${e.topic}|${JSON.stringify(e.key)}`;
      const prev = latest.get(k);
      if (!prev || pos(e) >= pos(prev)) latest.set(k, e);
    }
    const live = (topic: string) =>
      [...latest.entries()]
        .filter(([k, e]) => k.startsWith(`${topic}|`) && (e.value as { op: string }).op !== 'd')
        .map(([, e]) => e.value as { after: Record<string, unknown> });
    const orderIds = (await sql.query<{ id: string; status: string }>('SELECT id::text, status::text FROM orders ORDER BY id')).rows;
    const kafkaOrders = live(topics[2]!)
      .map((v) => ({ id: String(v.after.id), status: String(v.after.status) }))
      .sort((a, b) => Number(a.id) - Number(b.id));
    const inKafka = new Map(kafkaOrders.map((o) => [o.id, o.status]));
    const wrong = orderIds
      .filter((o) => inKafka.get(o.id) !== o.status)
      .map((o) => `${o.id}: table ${o.status}, kafka ${inKafka.get(o.id)}`);
    expect(wrong, 'orders whose newest event differs from the table').toEqual([]);
    expect(kafkaOrders.length).toBe(orderIds.length);
    const itemCount = Number((await sql.query<{ n: string }>('SELECT count(*) AS n FROM order_items')).rows[0]!.n);
    expect(live(topics[3]!).length).toBe(itemCount);
    const ledgerRows = (await sql.query<{ id: number; version: number }>('SELECT id, version FROM ledger ORDER BY id')).rows;
    expect(
      live(topics[4]!)
        .map((v) => ({ id: v.after.id, version: v.after.version }))
        .sort((a, b) => Number(a.id) - Number(b.id)),
    ).toEqual(ledgerRows);
  }, 600_000);
});

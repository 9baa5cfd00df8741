import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPrisma, type PrismaClient } from '../../src/app/db.ts';
import { replay } from '../../src/app/replay.ts';
import { runTraffic } from '../../src/app/traffic.ts';
import { silverPath } from '../../src/sink/table-layout.ts';
import { LocalStore } from '../../src/lake/storage/local-store.ts';
import { hashValue } from '../../src/sink/masking.ts';
import { stackContext } from '../../src/stack/context.ts';
import { postgresService } from '../../src/stack/postgres.ts';
import { createTestDatabase } from '../support/db.ts';
import { readWithDeltaRs } from '../support/delta-reader.ts';
import { waitFor } from '../support/kafka.ts';
import {
  describeDiff,
  diffTables,
  MASK_SALT,
  ORDER_KEYS,
  ORDER_TABLES,
  postgresRows,
  sinkFile,
  startSink,
  waitForLake,
  type RunningSink,
} from '../support/lake.ts';
import { dropSlot, sourceConfig, waitForSourceCaughtUp, writeConnectorFile } from '../support/source.ts';

const BIN = resolve('bin/tide.js');

/**
 * Issue 10: a PostgreSQL restart under the order app's traffic (pg_ctl stop -m fast + start, as
 * `pg_ctl restart` does, of this stack's own cluster) used to crash the source with an unhandled
 * 'error' event (57P01). Now the source process rides it out: it reconnects with backoff within
 * errors.retry.timeout and resumes from the slot's confirmed position. Afterwards silver equals
 * Postgres and the source process was never restarted.
 */
describe('the source reconnects by itself when Postgres restarts under traffic', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let prisma: PrismaClient;
  let src: ReturnType<typeof sourceConfig>;
  let child: ChildProcess | undefined;
  let sink: RunningSink | undefined;
  const dir = mkdtempSync(join(tmpdir(), 'tide-pgrestart-'));
  const lakeDir = mkdtempSync(join(tmpdir(), 'tide-pgrestart-lake-'));
  const store = new LocalStore(lakeDir);
  const sinkName = `pgrestart-${Date.now().toString(36)}`;
  const logPath = join(dir, 'source.log');
  const ctx = stackContext();

  /** A fresh admin connection (a restart ends every connection). */
  const withSql = async <T>(work: (c: pg.Client) => Promise<T>): Promise<T> => {
    const c = new pg.Client({ connectionString: db.url });
    c.on('error', () => undefined);
    await c.connect();
    try {
      return await work(c);
    } finally {
      await c.end();
    }
  };
  const slotActive = () =>
    withSql(
      async (c) =>
        (await c.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND active', [src.config['slot.name']])).rowCount === 1,
    );

  beforeAll(async () => {
    db = await createTestDatabase('pg_restart');
    prisma = createPrisma(db.url, 6);
    await replay(prisma, { limit: 800, concurrency: 4 });
    src = sourceConfig(db.url, 'pgrestart', {
      'table.include.list': 'public\\.(customers|products|orders|order_items)',
      'errors.retry.timeout': 120_000,
      'errors.retry.delay.max.ms': 2000,
    });
    const path = writeConnectorFile(dir, src);
    const fd = openSync(logPath, 'a');
    child = spawn(process.execPath, [BIN, 'source', 'start', path, '--http-port', '0'], {
      cwd: dir,
      stdio: ['ignore', fd, fd],
      env: { ...process.env, TIDE_LOG_LEVEL: 'info' },
    });
    closeSync(fd);
    await waitFor(slotActive, 'the source to stream', 120_000);
    sink = startSink(sinkFile(sinkName, src.config['topic.prefix'], lakeDir), store);
  }, 300_000);

  afterAll(async () => {
    if (child && child.exitCode === null) {
      child.kill('SIGTERM');
      await new Promise((r) => child!.once('exit', r));
    }
    await sink?.stop();
    await prisma?.$disconnect();
    if (src) await dropSlot(db.url, src.config['slot.name']);
    await db?.drop();
  });

  it('keeps streaming across the restart without a hand restart, and silver equals Postgres afterwards', async () => {
    const abort = new AbortController();
    const traffic = runTraffic(prisma, { rate: 50, concurrency: 3, signal: abort.signal });
    await new Promise((r) => setTimeout(r, 3000));
    const down = Date.now();
    await postgresService.stop(ctx);
    await postgresService.start(ctx);
    await postgresService.waitReady(ctx, 60_000);
    console.log(`Postgres was down for ${((Date.now() - down) / 1000).toFixed(2)} s`);
    await waitFor(slotActive, 'the source to reattach to its slot', 120_000);
    const reattached = (Date.now() - down) / 1000;
    await new Promise((r) => setTimeout(r, 3000));
    abort.abort();
    const stats = await traffic;
    console.log(
      `traffic: ${Object.values(stats.ops).reduce((a, b) => a + b, 0)} operations, ${stats.errors} failed during the restart; source reattached ${reattached.toFixed(1)} s after the stop`,
    );

    expect(child!.exitCode, readFileSync(logPath, 'utf8').slice(-3000)).toBeNull();
    const log = readFileSync(logPath, 'utf8');
    expect(log).toContain('lost the connection to Postgres; reconnecting');
    expect(log).toContain('reconnected to Postgres');
    expect(log).not.toMatch(/unexpected error|Unhandled 'error' event/);

    await withSql((c) => waitForSourceCaughtUp(c, src.config['slot.name']));
    await waitForLake(store, sinkName, src.config['topic.prefix']);
    for (const table of ORDER_TABLES) {
      const expected = await postgresRows(db.url, table);
      if (table === 'public.customers') for (const r of expected) r.email = r.email === null ? null : hashValue(MASK_SALT, r.email);
      const view = await readWithDeltaRs(join(lakeDir, silverPath(table)));
      const actual = view.rows.map((r) => Object.fromEntries(view.columns.map((c, i) => [c, r[i]])));
      const diff = diffTables(expected, actual, ORDER_KEYS[table]!, Object.keys(expected[0] ?? {}));
      console.log(`${describeDiff(table, diff)}: ${expected.length} rows`);
      expect(diff.expectedChecksum, describeDiff(table, diff)).toBe(diff.actualChecksum);
    }

    // Still the same process, and it stops cleanly.
    child!.kill('SIGTERM');
    const code = await new Promise<number | null>((r) => child!.once('exit', (c) => r(c)));
    expect(code).toBe(0);
  }, 600_000);
});

import { type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPrisma, type PrismaClient } from '../../src/app/db.ts';
import { replay } from '../../src/app/replay.ts';
import { runTraffic, type TrafficStats } from '../../src/app/traffic.ts';
import { DeltaTable } from '../../src/lake/delta/delta-table.ts';
import { vacuumTable } from '../../src/lake/maintenance/vacuum.ts';
import { LocalStore } from '../../src/lake/storage/local-store.ts';
import { hashValue } from '../../src/sink/masking.ts';
import { bronzePath, silverPath } from '../../src/sink/table-layout.ts';
import { spawnSink, writeConnectorFileAt } from '../support/connector-file.ts';
import { createTestDatabase } from '../support/db.ts';
import { readWithDeltaRs } from '../support/delta-reader.ts';
import { consumeAll } from '../support/kafka.ts';
import { describeDiff, diffTables, MASK_SALT, ORDER_TABLES, postgresRows, sinkFile, waitForLake, ORDER_KEYS } from '../support/lake.ts';
import { sourceConfig, startSource, waitForSourceCaughtUp, type RunningSource } from '../support/source.ts';

/**
 * kill -9 of the sink, five times, while the order app writes: twice between writing data files and
 * committing them (fault injection), twice right after a commit, once from outside at a random moment.
 * Afterwards bronze holds every Kafka event exactly once, silver equals Postgres, and vacuum removes
 * the orphaned files of the interrupted commits.
 */
describe('sink survives kill -9 with no duplicated and no missing rows', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let sql: pg.Client;
  let prisma: PrismaClient;
  let source: RunningSource;
  let src: ReturnType<typeof sourceConfig>;
  let child: ChildProcess | undefined;
  const workDir = mkdtempSync(join(tmpdir(), 'tide-sink-crash-'));
  const lakeDir = join(workDir, 'lake');
  const store = new LocalStore(lakeDir);
  const sinkName = `crash-${Date.now().toString(36)}`;
  const connectorPath = join(workDir, 'orders-lake.json');
  const exits: string[] = [];

  const startChild = (crashAt?: string): Promise<number | null> => {
    const sink = spawnSink(connectorPath, workDir, join(workDir, 'sink.log'), crashAt);
    child = sink.child;
    return sink.exited;
  };

  beforeAll(async () => {
    db = await createTestDatabase('sink_crash');
    sql = new pg.Client({ connectionString: db.url });
    await sql.connect();
    prisma = createPrisma(db.url, 4);
    await replay(prisma, { limit: 800, concurrency: 4 });
    src = sourceConfig(db.url, 'sinkcrash', { 'table.include.list': 'public\\.(customers|products|orders|order_items)' });
    source = await startSource(src);
    const file = sinkFile(sinkName, src.config['topic.prefix'], lakeDir, { 'flush.interval.ms': 200 });
    writeConnectorFileAt(connectorPath, { name: sinkName, config: file.config }, 2);
  }, 180_000);

  afterAll(async () => {
    child?.kill('SIGKILL');
    await source?.stop();
    await prisma?.$disconnect();
    await sql?.end();
    await db?.drop();
  });

  it('keeps every event exactly once across 5 kill -9 restarts, including between data files and commit', async () => {
    const abort = new AbortController();
    // Traffic until the whole plan has run (abort below): a crash at the Nth commit needs changes to commit, and on a
    // loaded machine the plan outlasted a fixed 120 s of traffic (after-commit:4 then waited for a commit that never came).
    const traffic: Promise<TrafficStats> = runTraffic(prisma, { rate: 40, concurrency: 2, signal: abort.signal, durationMs: 540_000 });
    const plan = ['before-commit:3', 'after-commit:2', 'before-commit:6', 'external', 'after-commit:4'];
    for (const crashAt of plan) {
      if (crashAt === 'external') {
        const exited = startChild();
        await new Promise((r) => setTimeout(r, 1500 + Math.random() * 2000));
        child!.kill('SIGKILL');
        exits.push(`external: ${await exited}`);
      } else {
        const code = await Promise.race([startChild(crashAt), new Promise<string>((r) => setTimeout(() => r('timeout'), 60_000))]);
        exits.push(`${crashAt}: ${code}`);
        if (code === 'timeout') child!.kill('SIGKILL');
      }
    }
    abort.abort();
    const stats = await traffic;
    expect(stats.errors, stats.lastError).toBe(0);
    const log = readFileSync(join(workDir, 'sink.log'), 'utf8');
    expect(exits, log.slice(-3000)).toEqual([
      'before-commit:3: -9',
      'after-commit:2: -9',
      'before-commit:6: -9',
      'external: -9',
      'after-commit:4: -9',
    ]);
    expect(log.match(/killing myself at before-commit/g)).toHaveLength(2);

    // A clean run catches up.
    const exited = startChild();
    await waitForSourceCaughtUp(sql, src.config['slot.name']);
    await waitForLake(store, sinkName, src.config['topic.prefix'], 180_000);
    child!.kill('SIGTERM');
    expect(await exited).toBe(0);

    const prefix = src.config['topic.prefix'];
    for (const table of ORDER_TABLES) {
      // Bronze: exactly the Kafka events (tombstones excluded), each once.
      const events = (await consumeAll([`${prefix}.${table}`])).filter((e) => e.value !== null);
      const bronze = await readWithDeltaRs(join(lakeDir, bronzePath(table)));
      const p = bronze.columns.indexOf('_kafka_partition');
      const o = bronze.columns.indexOf('_kafka_offset');
      const inBronze = bronze.rows.map((r) => `${String(r[p])}:${String(r[o])}`);
      expect(new Set(inBronze).size, `${table}: duplicated rows in bronze`).toBe(inBronze.length);
      const inKafka = new Set(events.map((e) => `${e.partition}:${e.offset}`));
      const missing = [...inKafka].filter((k) => !inBronze.includes(k));
      expect(missing, `${table}: events missing from bronze`).toEqual([]);
      expect(inBronze.length).toBe(inKafka.size);

      // Silver: equal to Postgres.
      const expected = await postgresRows(db.url, table);
      if (table === 'public.customers') for (const r of expected) r.email = r.email === null ? null : hashValue(MASK_SALT, r.email);
      const silver = await readWithDeltaRs(join(lakeDir, silverPath(table)));
      const actual = silver.rows.map((r) => Object.fromEntries(silver.columns.map((c, i) => [c, r[i]])));
      const diff = diffTables(expected, actual, ORDER_KEYS[table]!, Object.keys(expected[0]!));
      console.log(`${describeDiff(table, diff)}; bronze ${inBronze.length} events`);
      expect(diff.expectedChecksum, describeDiff(table, diff)).toBe(diff.actualChecksum);
    }

    // The interrupted commits left data files no version references; vacuum removes them and the tables still read the same.
    let orphans = 0;
    for (const table of ORDER_TABLES) {
      for (const root of [bronzePath(table), silverPath(table)]) {
        const t = (await DeltaTable.open(store, root))!;
        const before = await readWithDeltaRs(join(lakeDir, root));
        const dry = await vacuumTable(t, { retainHours: 0, dryRun: true, now: Date.now() + 1000 });
        const referenced = new Set(t.files().map((f) => decodeURIComponent(f.path)));
        expect(dry.deleted.filter((f) => referenced.has(f))).toEqual([]);
        orphans += dry.deleted.length;
        await vacuumTable(t, { retainHours: 0, now: Date.now() + 1000 });
        const after = await readWithDeltaRs(join(lakeDir, root));
        expect(after.rows.length).toBe(before.rows.length);
      }
    }
    console.log(`sink crash: exits ${exits.join(', ')}; vacuum removed ${orphans} unreferenced files`);
    expect(orphans).toBeGreaterThan(0);
  }, 600_000);
});

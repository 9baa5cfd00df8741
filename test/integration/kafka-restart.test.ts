import { mkdtempSync, readdirSync, readlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPrisma, type PrismaClient } from '../../src/app/db.ts';
import { replay } from '../../src/app/replay.ts';
import { runTraffic } from '../../src/app/traffic.ts';
import { LocalStore } from '../../src/lake/storage/local-store.ts';
import { hashValue } from '../../src/sink/masking.ts';
import { silverPath } from '../../src/sink/table-layout.ts';
import { stackContext } from '../../src/stack/context.ts';
import { kafkaService } from '../../src/stack/kafka.ts';
import { readPid } from '../../src/stack/process.ts';
import { writeConnectorFileAt } from '../support/connector-file.ts';
import { printedHttpUrl, startCli, type RunningCli } from '../support/cli.ts';
import { createTestDatabase } from '../support/db.ts';
import { readWithDeltaRs } from '../support/delta-reader.ts';
import { waitFor } from '../support/kafka.ts';
import { describeDiff, diffTables, MASK_SALT, ORDER_KEYS, ORDER_TABLES, postgresRows, sinkFile, waitForLake } from '../support/lake.ts';
import { dropSlot, sourceConfig, waitForSourceCaughtUp, writeConnectorFile } from '../support/source.ts';

/**
 * A broker restart under the order app's traffic (issue 10). Before: the source exited 10 s after the
 * kill ("delivery to Kafka failed") and the sink's consumer crashed. Now both ride it out within
 * errors.retry.timeout: the source resends the batch in flight (same producer, same sequence numbers),
 * the sink's consumer rejoins and resumes where the lake says. Afterwards silver equals Postgres, and
 * neither process was restarted by hand.
 *
 * The broker is the stack's own (the integration files run one at a time): killed with SIGKILL, left
 * down a few seconds, started again from its data directory, as a crashed or rolled managed broker is.
 */
describe('a Kafka broker restart under traffic', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let sql: pg.Client;
  let prisma: PrismaClient;
  let src: ReturnType<typeof sourceConfig>;
  const dir = mkdtempSync(join(tmpdir(), 'tide-kafka-restart-'));
  const lakeDir = join(dir, 'lake');
  const store = new LocalStore(lakeDir);
  const sinkName = `restart-${Date.now().toString(36)}`;
  const ctx = stackContext();
  const running: RunningCli[] = [];

  beforeAll(async () => {
    db = await createTestDatabase('kafka_restart');
    sql = new pg.Client({ connectionString: db.url });
    await sql.connect();
    prisma = createPrisma(db.url, 4);
    await replay(prisma, { limit: 400, concurrency: 4 });
    src = sourceConfig(db.url, 'kafkarestart', { 'table.include.list': 'public\\.(customers|products|orders|order_items)' });
    writeConnectorFile(dir, src);
    const file = sinkFile(sinkName, src.config['topic.prefix'], lakeDir, { 'flush.interval.ms': 300 });
    writeConnectorFileAt(join(dir, 'sink.json'), { name: sinkName, config: file.config });
  }, 180_000);

  afterAll(async () => {
    for (const c of running) if (c.child.exitCode === null) c.child.kill('SIGKILL');
    // Never leave the shared broker down for the files after this one.
    if (!(await kafkaService.isUp(ctx))) {
      await kafkaService.start(ctx);
      await kafkaService.waitReady(ctx, 180_000);
    }
    await prisma?.$disconnect();
    await sql?.end();
    if (src) await dropSlot(db.url, src.config['slot.name']);
    await db?.drop();
  }, 240_000);

  it('source and sink ride it out; silver equals Postgres and no process was restarted by hand', async () => {
    const source = startCli(['source', 'start', `${src.name}.json`, '--http-port', '0'], dir);
    running.push(source);
    await source.waitForOutput(/"to":"streaming"/, 120_000);
    const sink = startCli(['sink', 'start', 'sink.json', '--http-port', '0'], dir);
    running.push(sink);
    await sink.waitForOutput(/sink started/, 120_000);

    const abort = new AbortController();
    const traffic = runTraffic(prisma, { rate: 20, concurrency: 2, signal: abort.signal });
    await new Promise((r) => setTimeout(r, 4000));

    const pid = readPid(join(ctx.stackDir, 'kafka', 'kafka.pid'))!;
    process.kill(pid, 'SIGKILL');
    await waitFor(async () => !(await kafkaService.isUp(ctx)), 'the broker to be down', 30_000);
    // The source is waiting for Kafka, and says so on /readyz and in its metrics.
    await source.waitForOutput(/waiting for Kafka at [^"]*\(delivering \d+ events\): failed, retrying/, 60_000);
    const url = printedHttpUrl(source.output())!;
    const ready = await fetch(`${url}readyz`);
    expect(ready.status).toBe(503);
    expect(((await ready.json()) as { reason: string }).reason).toMatch(/kafka \([^)]+\) is down for \d+ s/);
    expect(await (await fetch(`${url}metrics`)).text()).toContain(`tide_connection_up{connector="${src.name}",connection="kafka"} 0`);

    await new Promise((r) => setTimeout(r, 3000));
    await kafkaService.start(ctx);
    await kafkaService.waitReady(ctx, 180_000);
    // The restarted broker holds none of this test process's pipes or sockets (spawnDetached closes what it would inherit).
    const mine = openPipesAndSockets(process.pid);
    const shared = [...openPipesAndSockets(readPid(join(ctx.stackDir, 'kafka', 'kafka.pid'))!)].filter((x) => mine.has(x));
    expect(shared, 'descriptors the broker inherited from the test process').toEqual([]);
    await new Promise((r) => setTimeout(r, 8000));
    abort.abort();
    const stats = await traffic;
    expect(stats.errors, stats.lastError).toBe(0);

    await waitForSourceCaughtUp(sql, src.config['slot.name'], 240_000);
    await waitForLake(store, sinkName, src.config['topic.prefix'], 240_000);
    expect(source.child.exitCode, `the source exited:\n${source.output().slice(-3000)}`).toBeNull();
    expect(sink.child.exitCode, `the sink exited:\n${sink.output().slice(-3000)}`).toBeNull();
    expect(source.output()).toMatch(/waiting for Kafka at [^"]*: recovered/);

    for (const table of ORDER_TABLES) {
      const expected = await postgresRows(db.url, table);
      if (table === 'public.customers') for (const r of expected) r.email = r.email === null ? null : hashValue(MASK_SALT, r.email);
      const silver = await readWithDeltaRs(join(lakeDir, silverPath(table)));
      const actual = silver.rows.map((r) => Object.fromEntries(silver.columns.map((c, i) => [c, r[i]])));
      const diff = diffTables(expected, actual, ORDER_KEYS[table]!, Object.keys(expected[0]!));
      expect(diff.expectedChecksum, describeDiff(table, diff)).toBe(diff.actualChecksum);
    }

    source.child.kill('SIGTERM');
    sink.child.kill('SIGTERM');
    expect(await source.exited).toBe(0);
    expect(await sink.exited).toBe(0);
  }, 900_000);
});

/** The pipes and sockets (`pipe:[inode]`, `socket:[inode]`) process `pid` has open. */
function openPipesAndSockets(pid: number): Set<string> {
  const out = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      if (target.startsWith('pipe:') || target.startsWith('socket:')) out.add(target);
    } catch {
      // closed meanwhile
    }
  }
  return out;
}

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { createTestDatabase } from '../support/db.ts';
import { kafka, waitFor } from '../support/kafka.ts';
import { dropSlot, sourceConfig, writeConnectorFile } from '../support/source.ts';

const ROWS = 2_000_000;
const RSS_LIMIT_MB = 512;
const BIN = resolve('bin/tide.js');

/** Peak resident set size (VmHWM) of a live process, in MB. */
function peakRssMb(pid: number): number {
  const kb = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  if (kb === undefined) throw new Error(`no VmHWM in /proc/${pid}/status`);
  return Number(kb) / 1024;
}

/**
 * One transaction of 2,000,000 rows, streamed by a real `tide source start`
 * child. Memory must stay bounded (backpressure from Kafka pauses the
 * replication stream), and every row must reach Kafka exactly once.
 */
describe('source memory stays bounded on a huge transaction', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let sql: pg.Client;
  let file: ReturnType<typeof sourceConfig>;
  let child: ChildProcess | undefined;
  let exited: Promise<unknown> | undefined;
  const workDir = mkdtempSync(join(tmpdir(), 'tide-memory-'));
  const logPath = join(workDir, 'source.log');
  let topic = '';

  beforeAll(async () => {
    db = await createTestDatabase('source_memory');
    sql = new pg.Client({ connectionString: db.url });
    await sql.connect();
    await sql.query('CREATE TABLE mem_rows (id int PRIMARY KEY, v int NOT NULL) WITH (autovacuum_enabled = false)');
    file = sourceConfig(db.url, 'memory', { 'table.include.list': 'public\\.mem_rows', 'snapshot.mode': 'never' });
    topic = `${file.config['topic.prefix']}.public.mem_rows`;
  });

  afterAll(async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 30_000))]);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    }
    await sql?.end();
    if (file) await dropSlot(db.url, file.config['slot.name']);
    await db?.drop();
    if (topic) {
      // 2M events are a few hundred MB on the broker's disk: do not keep them around.
      const admin = kafka().admin();
      await admin.connect();
      const existing = new Set(await admin.listTopics());
      const ours = [topic, `${file.config['topic.prefix']}.transaction`].filter((t) => existing.has(t));
      if (ours.length) await admin.deleteTopics({ topics: ours }).catch(() => undefined);
      await admin.disconnect();
    }
  });

  it(`streams a ${ROWS.toLocaleString('en')}-row transaction with peak RSS < ${RSS_LIMIT_MB} MB and no loss`, async () => {
    const connectorPath = writeConnectorFile(workDir, file);
    const logFd = openSync(logPath, 'a');
    child = spawn(process.execPath, [BIN, 'source', 'start', connectorPath], {
      cwd: workDir,
      stdio: ['ignore', logFd, logFd],
      env: { ...process.env, TIDE_LOG_LEVEL: 'info' },
    });
    exited = new Promise((r) => child!.once('exit', r));
    const pid = child.pid!;
    const alive = () => {
      if (child!.exitCode !== null || child!.signalCode !== null) throw new Error(`the source exited early (log: ${logPath})`);
    };
    const slot = file.config['slot.name'];
    const statusPath = join(workDir, '.tide', `${file.name}.status.json`);
    const streaming = () => {
      try {
        return (JSON.parse(readFileSync(statusPath, 'utf8')) as { state: string }).state === 'streaming';
      } catch {
        return false;
      }
    };
    await waitFor(
      async () => {
        alive();
        return (
          streaming() && (await sql.query(`SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND active`, [slot])).rowCount === 1
        );
      },
      'the source to stream from its slot',
      90_000,
    );
    const rssAtStartMb = peakRssMb(pid);

    const t0 = performance.now();
    await sql.query(`INSERT INTO mem_rows SELECT g, g FROM generate_series(1, ${ROWS}) g`);
    const commitLsn = (await sql.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0]!.lsn;
    const insertSeconds = (performance.now() - t0) / 1000;

    let peakMb = rssAtStartMb;
    await waitFor(
      async () => {
        alive();
        peakMb = Math.max(peakMb, peakRssMb(pid));
        const { rowCount } = await sql.query(
          `SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND confirmed_flush_lsn >= $2::pg_lsn`,
          [slot, commitLsn],
        );
        return rowCount === 1;
      },
      `the source to confirm LSN ${commitLsn} (log: ${logPath})`,
      180_000,
    );
    const drainSeconds = (performance.now() - t0) / 1000;
    peakMb = Math.max(peakMb, peakRssMb(pid)); // VmHWM is the peak over the process' whole life

    const admin = kafka().admin();
    await admin.connect();
    const offsets = await admin.fetchTopicOffsets(topic).finally(() => admin.disconnect());
    const inKafka = offsets.reduce((a, p) => a + Number(p.high), 0);

    console.log(
      `source-memory: ${ROWS.toLocaleString('en')} rows in one transaction; insert ${insertSeconds.toFixed(1)} s; ` +
        `commit start to confirmed ${drainSeconds.toFixed(1)} s (${Math.round(ROWS / drainSeconds).toLocaleString('en')} rows/s); ` +
        `peak RSS (VmHWM) ${peakMb.toFixed(1)} MB (${rssAtStartMb.toFixed(1)} MB when streaming began); ` +
        `${inKafka.toLocaleString('en')} events in ${topic}`,
    );
    expect(inKafka, 'events in Kafka (topic high watermarks added up)').toBe(ROWS);
    expect(peakMb, `peak RSS of the source (log: ${logPath})`).toBeLessThan(RSS_LIMIT_MB);
  }, 300_000);
});

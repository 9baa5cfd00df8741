/**
 * Shared pieces of the source benchmarks (bench/source-drain.ts, bench/source-latency.ts): the run's
 * stack settings and scratch database, /proc and CPU accounting, machine and code provenance, the
 * benchmark table's shape, Postgres and Kafka probes, and `tide source start` as a child process.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Kafka, logLevel, type Admin } from 'kafkajs';
import pg from 'pg';
import { round, say, sleep } from '../bench-common.ts';
import { PROJECT_ROOT, readStackEnv } from '../../src/stack/context.ts';

const CLK_TCK = 100; // Linux USER_HZ

// ---------------------------------------------------------------------------------------------- the run

/**
 * One benchmark run: the stack's settings (from .stack/env), a fresh database name `bench_<id>` and
 * Kafka clients. --batch sets the Tide children's max.batch.size; --node-flags are given to their node
 * (e.g. "--max-semi-space-size=32"), to try V8 settings; --bin runs another build of the CLI (a
 * prototype in scratch/) through the same measurements.
 */
export function openBenchRun(opts: { batch?: string; nodeFlags?: string; bin?: string; socket?: string }) {
  for (const [k, v] of Object.entries(readStackEnv())) process.env[k] ??= v;
  const databaseUrl = process.env.DATABASE_URL;
  if (!databaseUrl) throw new Error('DATABASE_URL is not set: run `npm run stack:up` first (it writes .stack/env)');
  const brokers = (process.env.KAFKA_BROKERS ?? '127.0.0.1:59092').split(',');
  const id = `bench_${Date.now().toString(36)}`;
  const u = new URL(databaseUrl);
  u.pathname = `/${id}`;
  return {
    id,
    databaseUrl,
    dbUrl: u.toString(),
    brokers,
    registry: process.env.SCHEMA_REGISTRY_URL ?? 'http://127.0.0.1:58081/apis/ccompat/v7',
    pgBindir: process.env.TIDE_PG_BINDIR ?? '/usr/lib/postgresql/15/bin',
    batch: opts.batch,
    /** A Unix-socket directory: both drains connect through it instead of TCP (see source-drain.ts --socket). */
    socket: opts.socket ? resolve(opts.socket) : undefined,
    nodeFlags: opts.nodeFlags?.split(/\s+/).filter(Boolean) ?? [],
    bin: opts.bin ? resolve(opts.bin) : join(PROJECT_ROOT, 'bin', 'tide.js'),
    kafka: new Kafka({ clientId: 'tide-bench', brokers, logLevel: logLevel.NOTHING }),
    /** For sampling high watermarks while Tide runs: no retries, so a topic that does not exist yet costs one round trip, not seconds. */
    sampleKafka: new Kafka({ clientId: 'tide-bench-sampler', brokers, logLevel: logLevel.NOTHING, retry: { retries: 0 } }),
  };
}
export type BenchRun = ReturnType<typeof openBenchRun>;

/** Creates the run's database and connects to it. */
export async function createBenchDatabase(run: BenchRun): Promise<pg.Client> {
  const root = await connect(run.databaseUrl);
  await root.query(`CREATE DATABASE ${run.id}`);
  await root.end();
  return connect(run.dbUrl);
}

/** Drops the run's slots, database and topics (or, with --keep, says what it kept); ends `db`. */
export async function dropBenchRun(run: BenchRun, db: pg.Client, admin: Admin, slots: string[], topics: string[], keep: boolean) {
  const { id } = run;
  if (!keep) {
    await db
      .query(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = ANY($1) AND NOT active`, [slots])
      .catch((err: Error) => say(`could not drop slots: ${err.message}`));
    await db.end();
    const r = await connect(run.databaseUrl);
    await r.query(`DROP DATABASE IF EXISTS ${id} WITH (FORCE)`).catch((err: Error) => say(`could not drop ${id}: ${err.message}`));
    await r.end();
    const existing = new Set(await admin.listTopics());
    const ours = topics.filter((t) => existing.has(t));
    if (ours.length) await admin.deleteTopics({ topics: ours }).catch((err: Error) => say(`could not delete topics: ${err.message}`));
  } else {
    await db.end();
    say(`kept database ${id}, slots ${slots.join(', ')} and topics ${topics.join(', ')}`);
  }
}

// ---------------------------------------------------------------------------------------------- /proc

export function procStatus(pid: number): { hwmMb: number; rssMb: number } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0);
    return { hwmMb: kb('VmHWM') / 1024, rssMb: kb('VmRSS') / 1024 };
  } catch {
    return undefined;
  }
}

/** CPU seconds (user + system) a process has used so far. */
export function cpuSeconds(pid: number | undefined): number | undefined {
  if (!pid) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / CLK_TCK; // fields 14 and 15 of the full line
  } catch {
    return undefined;
  }
}

/** CPU used by processes up to their last sample(): all of it for processes started during the run, since baseline() for older ones. */
export class CpuMeter {
  private readonly first = new Map<string, number>();
  private readonly last = new Map<string, number>();
  sample(name: string, pid: number | undefined): void {
    const s = cpuSeconds(pid);
    if (s === undefined) return;
    if (!this.first.has(name)) this.first.set(name, 0); // born during the measured interval: all its CPU counts
    this.last.set(name, s);
  }
  /** Start counting a process that exists before the measured interval. */
  baseline(name: string, pid: number | undefined): void {
    const s = cpuSeconds(pid);
    if (s !== undefined) this.first.set(name, s);
  }
  result(): Record<string, number> {
    return Object.fromEntries([...this.last].map(([k, v]) => [k, round(v - (this.first.get(k) ?? v))]));
  }
}

export function kafkaPid(): number | undefined {
  const p = join(PROJECT_ROOT, '.stack', 'kafka', 'kafka.pid');
  return existsSync(p) ? Number(readFileSync(p, 'utf8').trim()) || undefined : undefined;
}

// ---------------------------------------------------------------------------------------------- Postgres

export const COLUMNS = `id bigint PRIMARY KEY, qty int NOT NULL, amount numeric(12,2) NOT NULL, name text NOT NULL,
  created_at timestamptz NOT NULL, active boolean NOT NULL, note text, score int`;

/** The row for id g: ~120 bytes on disk (pg_column_size of the whole row is printed). */
export const rowSql = (g: string) =>
  `${g}, (${g} % 1000)::int, ((${g} % 1000000) / 100.0)::numeric(12,2), 'customer ' || ${g},
   timestamptz '2026-01-01' + ${g} * interval '1 second', ${g} % 2 = 0, md5(${g}::text) || ' note', (${g} % 97)::int`;

export async function connect(url: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  return c;
}

export async function currentLsn(c: pg.Client): Promise<string> {
  return (await c.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0]!.lsn;
}

export async function slotState(c: pg.Client, slot: string, target: string | undefined) {
  const { rows } = await c.query<{ active: boolean; pid: number | null; confirmed: string | null; done: boolean | null }>(
    `SELECT active, active_pid AS pid, confirmed_flush_lsn::text AS confirmed,
            CASE WHEN $2::text IS NULL THEN NULL ELSE confirmed_flush_lsn >= $2::pg_lsn END AS done
       FROM pg_replication_slots WHERE slot_name = $1`,
    [slot, target ?? null],
  );
  return rows[0];
}

// ---------------------------------------------------------------------------------------------- Kafka

export async function highWatermark(admin: Admin, topic: string): Promise<number | undefined> {
  try {
    return (await admin.fetchTopicOffsets(topic)).reduce((a, p) => a + Number(p.high), 0);
  } catch {
    return undefined; // not created yet
  }
}

export async function waitUntil(check: () => Promise<boolean>, timeoutMs: number, failFast?: () => string | undefined): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    const why = failFast?.();
    if (why) throw new Error(why);
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms`);
    await sleep(100);
  }
}

// ---------------------------------------------------------------------------------------------- machine

/**
 * Before each drain: let the machine settle, so that neither side pays for the other's leftovers. After
 * the load, and after a Tide drain, Postgres has dirty buffers and the kernel ~hundreds of MB of dirty
 * pages (heap, WAL, Kafka's log) to write back; a drain that starts at once competes with that writeback
 * on 2 cores. A CHECKPOINT and `sync` flush it, then we wait (at most 30 s) until the machine's CPU is
 * under 25 % busy for two 500 ms windows in a row. Returns what it waited and the busy share it saw.
 */
export async function settle(db: pg.Client): Promise<{ seconds: number; busyPct: number }> {
  const t0 = performance.now();
  await db.query('CHECKPOINT');
  execFileSync('sync');
  const busy = () => {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    const idle = f[3]! + (f[4] ?? 0);
    return { idle, total: f.reduce((a, b) => a + b, 0) };
  };
  let quiet = 0;
  let last = 100;
  while (performance.now() - t0 < 30_000 && quiet < 2) {
    const a = busy();
    await sleep(500);
    const b = busy();
    last = round(100 * (1 - (b.idle - a.idle) / Math.max(1, b.total - a.total)), 1);
    quiet = last < 25 ? quiet + 1 : 0;
  }
  return { seconds: round((performance.now() - t0) / 1000), busyPct: last };
}

// ---------------------------------------------------------------------------------------------- Tide child

export interface TideChild {
  child: ChildProcess;
  workDir: string;
  logPath: string;
  exited: Promise<number | null>;
  statusState: () => string | undefined;
}

export function writeConnector(run: BenchRun, dir: string, name: string, config: Record<string, unknown>): string {
  const u = new URL(run.dbUrl);
  const path = join(dir, 'connector.json');
  const full = {
    name,
    config: {
      'database.hostname': run.socket ?? u.hostname, // node-postgres takes a host starting with '/' as a socket directory
      'database.port': Number(u.port),
      'database.user': decodeURIComponent(u.username),
      'database.password': decodeURIComponent(u.password),
      'database.dbname': run.id,
      'database.sslmode': 'disable',
      'topic.partitions': 3,
      'heartbeat.interval.ms': 1000,
      'kafka.bootstrap.servers': run.brokers.join(','),
      'schema.registry.url': run.registry,
      ...(run.batch ? { 'max.batch.size': Number(run.batch) } : {}),
      ...config,
    },
  };
  writeFileSync(path, JSON.stringify(full, null, 2));
  return path;
}

export function startTide(run: BenchRun, name: string, config: Record<string, unknown>, nodeFlags: string[] = []): TideChild {
  const workDir = mkdtempSync(join(tmpdir(), `tide-bench-${name}-`));
  const connectorPath = writeConnector(run, workDir, name, config);
  const logPath = join(workDir, 'source.log');
  const fd = openSync(logPath, 'a');
  const child = spawn(process.execPath, [...run.nodeFlags, ...nodeFlags, run.bin, 'source', 'start', connectorPath], {
    cwd: workDir,
    stdio: ['ignore', fd, fd],
    env: { ...process.env, TIDE_LOG_LEVEL: 'info' },
  });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const statusPath = join(workDir, '.tide', `${name}.status.json`);
  return {
    child,
    workDir,
    logPath,
    exited,
    statusState: () => {
      try {
        return (JSON.parse(readFileSync(statusPath, 'utf8')) as { state: string }).state;
      } catch {
        return undefined;
      }
    },
  };
}

export async function stopTide(t: TideChild, timeoutMs = 40_000): Promise<number | null> {
  if (t.child.exitCode !== null || t.child.signalCode !== null) return t.child.exitCode;
  t.child.kill('SIGTERM');
  const code = await Promise.race([t.exited, sleep(timeoutMs).then(() => 'timeout' as const)]);
  if (code === 'timeout') {
    say(`tide child ${t.child.pid} did not exit ${timeoutMs} ms after SIGTERM; killing it (log: ${t.logPath})`);
    t.child.kill('SIGKILL');
    return t.exited;
  }
  return code;
}

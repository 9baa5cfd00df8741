/**
 * Source drain benchmark: how fast does Tide move one big transaction from the
 * WAL to Kafka, compared with Postgres' own `pg_recvlogical` on the same data?
 * And what commit-to-Kafka latency does a steady application load see?
 *
 *   npx tsx bench/source-drain.ts [--rows 1000000] [--rounds 2] [--rate 5000] [--seconds 20]
 *                                 [--batch <max.batch.size>] [--node-flags "<flags>"] [--profile] [--no-latency] [--keep] [--bin <tide.js>]
 *
 * One run, one data set:
 *  1. a fresh database `bench_<id>`, table `bench_rows` (8 columns, ~120 bytes a row), a publication, and
 *     two pgoutput slots per round (--rounds, default 2), all created before the load;
 *  2. one transaction inserting N rows; the WAL LSN after its commit is the target;
 *  3. per round, in ABBA order (baseline first in round 1, Tide first in round 2, …), each drain after a
 *     CHECKPOINT, `sync` and a wait for the CPU to settle (so neither side inherits the other's writeback):
 *     a. baseline: `pg_recvlogical --endpos <lsn> -f /dev/null` on the round's first slot;
 *     b. Tide: `node bin/tide.js source start` as a child on the round's second slot, timed from spawn until
 *        the slot's confirmed_flush_lsn >= target (Tide confirms only what Kafka acknowledged); peak RSS from
 *        VmHWM; the topic's high watermarks must add up to N;
 *  4. the ratio: summed baseline seconds / summed Tide seconds (spawn to confirm), and the same without Tide's
 *     process start-up (from the moment its walsender is active; pg_recvlogical starts in milliseconds);
 *  5. latency: another Tide child on a second table, a writer at --rate row changes/s for --seconds,
 *     latency = Kafka LogAppendTime (broker clock) - source.ts_ms (Postgres commit time); same host, same clock;
 *  6. a table on stdout and JSON in bench/results/ (one file per run). Slots, database and topics are dropped.
 *
 * --profile runs the Tide drain child with `node --cpu-prof` and prints where its CPU time went.
 * Not part of the test suite. Needs the local stack (`npm run stack:up`).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { SchemaRegistry } from '@kafkajs/confluent-schema-registry';
import kafkajs, { Kafka, logLevel, type Admin } from 'kafkajs';
import pg from 'pg';
import { PROJECT_ROOT, readStackEnv } from '../src/stack/context.ts';

const { values: args } = parseArgs({
  options: {
    rows: { type: 'string', default: '1000000' },
    rate: { type: 'string', default: '5000' },
    rounds: { type: 'string', default: '2' },
    seconds: { type: 'string', default: '20' },
    batch: { type: 'string' },
    'node-flags': { type: 'string' },
    profile: { type: 'boolean', default: false },
    'no-latency': { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    bin: { type: 'string' },
  },
});
const N = Number(args.rows);
const RATE = Number(args.rate);
const SECONDS = Number(args.seconds);
if (!Number.isInteger(N) || N < 1) throw new Error(`--rows must be a positive integer, got ${args.rows}`);
const ROUNDS = Number(args.rounds);
if (!Number.isInteger(ROUNDS) || ROUNDS < 1) throw new Error(`--rounds must be a positive integer, got ${args.rounds}`);

for (const [k, v] of Object.entries(readStackEnv())) process.env[k] ??= v;
const DATABASE_URL = process.env.DATABASE_URL;
if (!DATABASE_URL) throw new Error('DATABASE_URL is not set: run `npm run stack:up` first (it writes .stack/env)');
const BROKERS = (process.env.KAFKA_BROKERS ?? '127.0.0.1:59092').split(',');
const REGISTRY = process.env.SCHEMA_REGISTRY_URL ?? 'http://127.0.0.1:58081/apis/ccompat/v7';
const PG_BINDIR = process.env.TIDE_PG_BINDIR ?? '/usr/lib/postgresql/15/bin';
/** --bin runs another build of the CLI (a prototype in scratch/) through the same measurements. */
/** --node-flags are given to the Tide children's node (e.g. "--max-semi-space-size=32"), to try V8 settings. */
const NODE_FLAGS = args['node-flags']?.split(/\s+/).filter(Boolean) ?? [];
const BIN = args.bin ? resolve(args.bin) : join(PROJECT_ROOT, 'bin', 'tide.js');
const CLK_TCK = 100; // Linux USER_HZ
const { ConfigResourceTypes } = kafkajs; // not a named export Node's CJS lexer detects

const id = `bench_${Date.now().toString(36)}`;
const dbUrl = (() => {
  const u = new URL(DATABASE_URL);
  u.pathname = `/${id}`;
  return u.toString();
})();
const kafka = new Kafka({ clientId: 'tide-bench', brokers: BROKERS, logLevel: logLevel.NOTHING });
/** For sampling high watermarks while Tide runs: no retries, so a topic that does not exist yet costs one round trip, not seconds. */
const sampleKafka = new Kafka({ clientId: 'tide-bench-sampler', brokers: BROKERS, logLevel: logLevel.NOTHING, retry: { retries: 0 } });

const say = (m: string) => process.stderr.write(`[${new Date().toISOString().slice(11, 23)}] ${m}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const round = (x: number, d = 2) => Math.round(x * 10 ** d) / 10 ** d;

// ---------------------------------------------------------------------------------------------- /proc

function procStatus(pid: number): { hwmMb: number; rssMb: number } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0);
    return { hwmMb: kb('VmHWM') / 1024, rssMb: kb('VmRSS') / 1024 };
  } catch {
    return undefined;
  }
}

/** CPU seconds (user + system) a process has used so far. */
function cpuSeconds(pid: number | undefined): number | undefined {
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
class CpuMeter {
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

function kafkaPid(): number | undefined {
  const p = join(PROJECT_ROOT, '.stack', 'kafka', 'kafka.pid');
  return existsSync(p) ? Number(readFileSync(p, 'utf8').trim()) || undefined : undefined;
}

/** Which code was measured: the commit, and files under src/ that differ from it. */
function provenance() {
  const git = (...a: string[]) => {
    try {
      return execFileSync('git', a, { cwd: PROJECT_ROOT, encoding: 'utf8' }).trim();
    } catch {
      return undefined;
    }
  };
  return {
    commit: git('rev-parse', 'HEAD'),
    uncommittedInSrc: git('status', '--porcelain', '--', 'src')?.split('\n').filter(Boolean) ?? [],
  };
}

function machine() {
  const info = readFileSync('/proc/cpuinfo', 'utf8');
  return {
    nproc: cpus().length,
    memoryGiB: round(totalmem() / 2 ** 30, 1),
    cpuModel: /^model name\s*:\s*(.*)$/m.exec(info)?.[1] ?? 'unknown',
    loadavgAtStart: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number),
    node: process.version,
  };
}

// ---------------------------------------------------------------------------------------------- Postgres

const COLUMNS = `id bigint PRIMARY KEY, qty int NOT NULL, amount numeric(12,2) NOT NULL, name text NOT NULL,
  created_at timestamptz NOT NULL, active boolean NOT NULL, note text, score int`;

/** The row for id g: ~120 bytes on disk (pg_column_size of the whole row is printed). */
const rowSql = (g: string) =>
  `${g}, (${g} % 1000)::int, ((${g} % 1000000) / 100.0)::numeric(12,2), 'customer ' || ${g},
   timestamptz '2026-01-01' + ${g} * interval '1 second', ${g} % 2 = 0, md5(${g}::text) || ' note', (${g} % 97)::int`;

async function connect(url: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  return c;
}

async function currentLsn(c: pg.Client): Promise<string> {
  return (await c.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0]!.lsn;
}

async function slotState(c: pg.Client, slot: string, target: string | undefined) {
  const { rows } = await c.query<{ active: boolean; pid: number | null; confirmed: string | null; done: boolean | null }>(
    `SELECT active, active_pid AS pid, confirmed_flush_lsn::text AS confirmed,
            CASE WHEN $2::text IS NULL THEN NULL ELSE confirmed_flush_lsn >= $2::pg_lsn END AS done
       FROM pg_replication_slots WHERE slot_name = $1`,
    [slot, target ?? null],
  );
  return rows[0];
}

// ---------------------------------------------------------------------------------------------- Kafka

async function highWatermark(admin: Admin, topic: string): Promise<number | undefined> {
  try {
    return (await admin.fetchTopicOffsets(topic)).reduce((a, p) => a + Number(p.high), 0);
  } catch {
    return undefined; // not created yet
  }
}

// ---------------------------------------------------------------------------------------------- Tide child

interface TideChild {
  child: ChildProcess;
  workDir: string;
  logPath: string;
  exited: Promise<number | null>;
  statusState: () => string | undefined;
}

function writeConnector(dir: string, name: string, config: Record<string, unknown>): string {
  const u = new URL(dbUrl);
  const path = join(dir, 'connector.json');
  const full = {
    name,
    config: {
      'database.hostname': u.hostname,
      'database.port': Number(u.port),
      'database.user': decodeURIComponent(u.username),
      'database.password': decodeURIComponent(u.password),
      'database.dbname': id,
      'database.sslmode': 'disable',
      'topic.partitions': 3,
      'heartbeat.interval.ms': 1000,
      'kafka.bootstrap.servers': BROKERS.join(','),
      'schema.registry.url': REGISTRY,
      ...(args.batch ? { 'max.batch.size': Number(args.batch) } : {}),
      ...config,
    },
  };
  writeFileSync(path, JSON.stringify(full, null, 2));
  return path;
}

function startTide(name: string, config: Record<string, unknown>, nodeFlags: string[] = []): TideChild {
  const workDir = mkdtempSync(join(tmpdir(), `tide-bench-${name}-`));
  const connectorPath = writeConnector(workDir, name, config);
  const logPath = join(workDir, 'source.log');
  const fd = openSync(logPath, 'a');
  const child = spawn(process.execPath, [...NODE_FLAGS, ...nodeFlags, BIN, 'source', 'start', connectorPath], {
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

async function stopTide(t: TideChild, timeoutMs = 40_000): Promise<number | null> {
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

// ---------------------------------------------------------------------------------------------- CPU profile summary

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

/**
 * Where the child's CPU went, from a V8 .cpuprofile: each sample goes to the stage of the innermost
 * frame that belongs to one (a Buffer copy inside kafkajs counts as Kafka, avsc called from the
 * envelope as Avro). `window` (CLOCK_MONOTONIC µs, as V8 and process.hrtime use) keeps only the
 * samples taken while the big transaction drained.
 */
const STAGES: [string, RegExp][] = [
  ['kafka produce (kafkajs + Tide producer)', /node_modules\/(kafkajs|@platformatic\/kafka)\/|src\/events\/kafka-producer\.ts/],
  [
    'avro encode (envelope, type mapping, avsc)',
    /node_modules\/avsc\/|src\/events\/(envelope|avro-types|avro-writer|row-event-writer|schema-registry|transaction-events)\.ts|src\/source\/(type-mapping|pg-text|pg-numeric|pg-array)\.ts/,
  ],
  [
    'pgoutput decode (pg-protocol, pgoutput decoder)',
    /node_modules\/(pg-protocol|pg)\/|output-plugins\/|src\/source\/(pgoutput-plugin|pgoutput-decoder)\.ts/,
  ],
  [
    'per-event pipeline (replication stream, change handler, connector, publisher)',
    /node_modules\/(eventemitter2|pg-logical-replication)\/|src\/source\/(connector|publisher|lsn|change-handler|replication-stream)\.ts/,
  ],
];

function summarizeProfile(path: string, window?: [number, number]) {
  const prof = JSON.parse(readFileSync(path, 'utf8')) as {
    nodes: ProfileNode[];
    samples: number[];
    timeDeltas: number[];
    startTime: number;
  };
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const where = (u: string) => {
    const m = /node_modules\/(.*)$/.exec(u);
    return m ? m[1]! : u.includes('/src/') ? u.slice(u.indexOf('/src/') + 1) : u;
  };
  const stageOf = new Map<number, { stage: string; owner: string }>();
  const classify = (leaf: number) => {
    let hit = stageOf.get(leaf);
    if (hit) return hit;
    const fn = byId.get(leaf)!.callFrame.functionName;
    if (fn === '(garbage collector)') hit = { stage: 'gc', owner: 'gc' };
    else if (fn === '(idle)') hit = { stage: 'idle (waiting for Postgres or Kafka)', owner: 'idle' };
    else if (fn === '(program)') hit = { stage: 'v8 (program)', owner: 'program' };
    for (let id: number | undefined = leaf; !hit && id !== undefined; id = parent.get(id)) {
      const f = byId.get(id)!.callFrame;
      const stage = STAGES.find(([, re]) => re.test(f.url));
      if (stage) hit = { stage: stage[0], owner: `${f.functionName || '(anonymous)'} ${where(f.url)}:${f.lineNumber + 1}` };
    }
    hit ??= { stage: 'other (start-up, module loading, timers, status file)', owner: 'other' };
    stageOf.set(leaf, hit);
    return hit;
  };
  const perStage = new Map<string, number>();
  const perOwner = new Map<string, number>();
  let t = prof.startTime;
  let total = 0;
  prof.samples.forEach((s, i) => {
    const dt = prof.timeDeltas[i] ?? 0;
    t += dt;
    if (window && (t < window[0] || t > window[1])) return;
    const { stage, owner } = classify(s);
    perStage.set(stage, (perStage.get(stage) ?? 0) + dt);
    perOwner.set(owner, (perOwner.get(owner) ?? 0) + dt);
    total += dt;
  });
  const top = (m: Map<string, number>, k: number) =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, k)
      .map(([name, us]) => ({ name, ms: Math.round(us / 1000), pct: round((100 * us) / total, 1) }));
  return {
    window: window ? 'drain (first event to confirm)' : 'whole run',
    totalMs: Math.round(total / 1000),
    stages: top(perStage, 10),
    functions: top(perOwner, 25),
  };
}

// ---------------------------------------------------------------------------------------------- phases

/** Slot and topic names of drain round r (0-based): each round drains the same transaction through fresh slots. */
const drainNames = (r: number) => ({
  slotBase: `${id}_base${r}`,
  slotTide: `${id}_tide${r}`,
  prefix: `${id}_r${r}`,
  topic: `${id}_r${r}.public.bench_rows`,
});
const drainPub = `${id}_pub`;

/** The table, the publication, a baseline and a Tide slot per round, then one transaction of N rows. */
async function loadDrainData(db: pg.Client) {
  const pub = drainPub;
  await db.query(`CREATE TABLE bench_rows (${COLUMNS}) WITH (autovacuum_enabled = false)`);
  await db.query(`CREATE PUBLICATION ${pub} FOR TABLE bench_rows`);
  for (let r = 0; r < ROUNDS; r++) {
    const { slotBase, slotTide } = drainNames(r);
    for (const s of [slotBase, slotTide]) await db.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [s]);
  }

  say(`loading ${N.toLocaleString('en')} rows in one transaction ...`);
  const lsnBefore = await currentLsn(db);
  const t0 = performance.now();
  await db.query('BEGIN');
  await db.query(`INSERT INTO bench_rows SELECT ${rowSql('g')} FROM generate_series(1, ${N}) g`);
  await db.query('COMMIT');
  const loadLsn = await currentLsn(db);
  const loadSeconds = (performance.now() - t0) / 1000;
  const { rows: sz } = await db.query<{ row_bytes: string; wal_bytes: string }>(
    `SELECT (SELECT round(avg(pg_column_size(t.*))) FROM (SELECT * FROM bench_rows LIMIT 10000) t)::text AS row_bytes,
            pg_wal_lsn_diff($2::pg_lsn, $1::pg_lsn)::bigint::text AS wal_bytes`,
    [lsnBefore, loadLsn],
  );
  const load = {
    seconds: round(loadSeconds),
    lsn: loadLsn,
    walMB: round(Number(sz[0]!.wal_bytes) / 2 ** 20, 1),
    avgRowBytes: Number(sz[0]!.row_bytes),
  };
  say(`loaded in ${load.seconds} s, commit LSN ${loadLsn}, ${load.walMB} MB of WAL, ~${load.avgRowBytes} bytes a row`);
  return load;
}

/**
 * pg_recvlogical drains round r's baseline slot up to the load's LSN, run as it would be by hand:
 * through `/usr/bin/time` (its own elapsed and CPU time, no /proc polling of it), with TLS off as Tide's
 * child has it (libpq's default `sslmode=prefer` would encrypt the baseline's stream only), and with a
 * 1 s sampler of the walsender's CPU only. The elapsed time is this process's spawn-to-exit clock;
 * /usr/bin/time's own elapsed is kept beside it as the hand-timed check.
 */
async function runBaseline(r: number, loadLsn: string) {
  const pub = drainPub;
  const { slotBase } = drainNames(r);
  say(`round ${r + 1}: baseline: pg_recvlogical ...`);
  const recvCpu = new CpuMeter();
  const url = new URL(dbUrl);
  url.searchParams.set('sslmode', 'disable');
  const recvStart = performance.now();
  const recv = spawn(
    '/usr/bin/time',
    [
      '-f',
      'TIME %e %U %S',
      join(PG_BINDIR, 'pg_recvlogical'),
      '-d',
      url.toString(),
      '--slot',
      slotBase,
      '--start',
      '-o',
      'proto_version=1',
      '-o',
      `publication_names=${pub}`,
      '--endpos',
      loadLsn,
      '-f',
      '/dev/null',
      '--no-loop',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let recvErr = '';
  recv.stderr!.on('data', (d: Buffer) => (recvErr += d.toString()));
  const recvExit = new Promise<number | null>((r) => recv.once('exit', (code) => r(code)));
  let recvDone = false;
  void recvExit.then(() => (recvDone = true));
  const sampler = new pg.Client({ connectionString: dbUrl });
  // If the run fails, main() drops the database WITH (FORCE), which ends this connection: say so rather than crash.
  sampler.on('error', (err: Error) => say(`sampler connection: ${err.message}`));
  await sampler.connect();
  let walsender: number | undefined;
  while (!recvDone) {
    walsender ??= (await slotState(sampler, slotBase, undefined))?.pid ?? undefined;
    recvCpu.sample('postgres walsender', walsender);
    await Promise.race([recvExit, sleep(1000)]);
  }
  const recvCode = await recvExit;
  const baselineSeconds = (performance.now() - recvStart) / 1000;
  if (recvCode !== 0) throw new Error(`pg_recvlogical exited ${recvCode}: ${recvErr}`);
  await sampler.end();
  const [elapsed, user, sys] = (/TIME ([\d.]+) ([\d.]+) ([\d.]+)/.exec(recvErr)?.slice(1) ?? []).map(Number);
  const baseline = {
    seconds: round(baselineSeconds),
    rowsPerSecond: Math.round(N / baselineSeconds),
    timeElapsedSeconds: elapsed,
    cpuSeconds: { ...recvCpu.result(), pg_recvlogical: round((user ?? NaN) + (sys ?? NaN)) },
  };
  say(
    `round ${r + 1}: baseline: ${baseline.seconds} s (/usr/bin/time: ${elapsed} s), ${baseline.rowsPerSecond.toLocaleString('en')} rows/s`,
  );
  return baseline;
}

/**
 * Before each drain: let the machine settle, so that neither side pays for the other's leftovers. After
 * the load, and after a Tide drain, Postgres has dirty buffers and the kernel ~hundreds of MB of dirty
 * pages (heap, WAL, Kafka's log) to write back; a drain that starts at once competes with that writeback
 * on 2 cores. A CHECKPOINT and `sync` flush it, then we wait (at most 30 s) until the machine's CPU is
 * under 25 % busy for two 500 ms windows in a row. Returns what it waited and the busy share it saw.
 */
async function settle(db: pg.Client): Promise<{ seconds: number; busyPct: number }> {
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

/** Tide (`tide source start` as a child) drains round r's slot; timed from spawn until the slot confirms the load's LSN. */
async function runTide(r: number, loadLsn: string) {
  const pub = drainPub;
  const { slotTide, prefix, topic } = drainNames(r);
  const sampler = new pg.Client({ connectionString: dbUrl });
  sampler.on('error', (err: Error) => say(`sampler connection: ${err.message}`));
  await sampler.connect();
  const admin = sampleKafka.admin();
  await admin.connect();
  const kpid = kafkaPid();
  // Profile the first round only: the profiler slows the child down.
  const profDir = args.profile && r === 0 ? mkdtempSync(join(tmpdir(), 'tide-bench-prof-')) : undefined;
  say(`round ${r + 1}: tide: starting the source${profDir ? ` under --cpu-prof (${profDir})` : ''} ...`);
  const cpu = new CpuMeter();
  cpu.baseline('kafka broker', kpid);
  const tStart = performance.now();
  const spawnedAt = Date.now();
  const tide = startTide(
    `${id}-drain${r}`,
    {
      'slot.name': slotTide,
      'publication.name': pub,
      'publication.autocreate.mode': 'disabled',
      'table.include.list': 'public\\.bench_rows',
      'topic.prefix': prefix,
      'snapshot.mode': 'never',
    },
    profDir ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : [],
  );
  const marks: Record<string, number> = {};
  const mono: Record<string, number> = {}; // CLOCK_MONOTONIC µs, to cut the CPU profile to the drain
  const mark = (k: string) => {
    mono[k] ??= Number(process.hrtime.bigint() / 1000n);
    return (marks[k] ??= (performance.now() - tStart) / 1000);
  };
  let peakRssMb = 0;
  let walsender: number | undefined;
  const deadline = Date.now() + Math.max(300_000, (N / 5_000) * 1000);
  for (;;) {
    if (tide.child.exitCode !== null) throw new Error(`tide exited with ${tide.child.exitCode} before draining (log: ${tide.logPath})`);
    if (Date.now() > deadline) throw new Error(`tide did not confirm ${loadLsn} in time (log: ${tide.logPath})`);
    const s = await slotState(sampler, slotTide, loadLsn);
    if (s?.active && s.pid && walsender === undefined) {
      walsender = s.pid;
      // Exact: when the walsender's backend started (server clock, same host), not when this loop noticed it.
      const { rows } = await sampler.query<{ ms: number }>(
        'SELECT extract(epoch FROM backend_start) * 1000 AS ms FROM pg_stat_activity WHERE pid = $1',
        [s.pid],
      );
      marks.slotActive = rows[0] ? Math.max(0, (Number(rows[0].ms) - spawnedAt) / 1000) : (performance.now() - tStart) / 1000;
    }
    if (tide.statusState() === 'streaming') mark('streaming');
    const hw = await highWatermark(admin, topic);
    if (hw !== undefined && hw > 0) mark('firstEventInKafka');
    if (hw === N) mark('allInKafka');
    cpu.sample('tide (node)', tide.child.pid);
    cpu.sample('postgres walsender', walsender);
    cpu.sample('kafka broker', kpid);
    peakRssMb = Math.max(peakRssMb, procStatus(tide.child.pid!)?.rssMb ?? 0);
    if (s?.done) {
      mark('confirmed');
      break;
    }
    await sleep(50);
  }
  const hwm = procStatus(tide.child.pid!);
  const tideSeconds = marks.confirmed!;
  const exit = await stopTide(tide);
  const delivered = (await highWatermark(admin, topic)) ?? 0;
  const steady = tideSeconds - (marks.firstEventInKafka ?? 0);
  const tideResult = {
    seconds: round(tideSeconds),
    rowsPerSecond: Math.round(N / tideSeconds),
    startupSeconds: round(marks.firstEventInKafka ?? NaN),
    drainSecondsAfterFirstEvent: round(steady),
    secondsFromSlotActive: round(tideSeconds - (marks.slotActive ?? 0)),
    rowsPerSecondAfterFirstEvent: Math.round(N / steady),
    marksSeconds: Object.fromEntries(Object.entries(marks).map(([k, v]) => [k, round(v)])),
    peakRssMB: round(hwm?.hwmMb ?? peakRssMb, 1),
    cpuSeconds: cpu.result(),
    topicHighWatermark: delivered,
    noLoss: delivered === N,
    exitCode: exit,
    log: tide.logPath,
  };
  say(
    `round ${r + 1}: tide: ${tideResult.seconds} s, ${tideResult.rowsPerSecond.toLocaleString('en')} rows/s, peak RSS ${tideResult.peakRssMB} MB`,
  );
  await sampler.end();
  await admin.disconnect();

  let profile: ReturnType<typeof summarizeProfile> | undefined;
  if (profDir) {
    const f = readdirSync(profDir).find((x) => x.endsWith('.cpuprofile'));
    if (f) {
      const drainWindow = summarizeProfile(join(profDir, f), [mono.firstEventInKafka!, mono.confirmed!]);
      profile = drainWindow.totalMs > 0 ? drainWindow : summarizeProfile(join(profDir, f));
    } else say(`no .cpuprofile in ${profDir} (did the child exit cleanly?)`);
  }
  return { tide: tideResult, profile };
}

async function latencyBenchmark(db: pg.Client, admin: Admin) {
  const pub = `${id}_live_pub`;
  const slot = `${id}_live`;
  const prefix = `${id}_live`;
  const topic = `${prefix}.public.bench_live`;
  await db.query(`CREATE TABLE bench_live (${COLUMNS})`);
  await db.query(`INSERT INTO bench_live SELECT ${rowSql('g')} FROM generate_series(1, 10000) g`);
  const tide = startTide(`${id}-live`, {
    'slot.name': slot,
    'publication.name': pub,
    'table.include.list': 'public\\.bench_live',
    'topic.prefix': prefix,
    'snapshot.mode': 'never',
  });
  const result = { slot, topics: [topic, `${prefix}.transaction`] };
  try {
    await waitUntil(
      async () => tide.statusState() === 'streaming' && (await slotState(db, slot, undefined))?.active === true,
      120_000,
      () => (tide.child.exitCode !== null ? `tide exited (log: ${tide.logPath})` : undefined),
    );
    await admin.alterConfigs({
      validateOnly: false,
      resources: [
        { type: ConfigResourceTypes.TOPIC, name: topic, configEntries: [{ name: 'message.timestamp.type', value: 'LogAppendTime' }] },
      ],
    });
    const described = await admin.describeConfigs({
      includeSynonyms: false,
      resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configNames: ['message.timestamp.type'] }],
    });
    const tsType = described.resources[0]?.configEntries[0]?.configValue;
    if (tsType !== 'LogAppendTime') throw new Error(`could not set message.timestamp.type=LogAppendTime on ${topic} (got ${tsType})`);
    await sleep(2000); // let the config reach the partition leaders

    say(`latency: writing ${RATE} row changes/s for ${SECONDS} s (half inserts, half updates, 50 transactions/s) ...`);
    const w = await connect(dbUrl);
    let nextId = 10_001;
    let changes = 0;
    let txs = 0;
    const t0 = performance.now();
    const end = t0 + SECONDS * 1000;
    const tick = 20;
    while (performance.now() < end) {
      const due = Math.floor(((performance.now() - t0) / 1000) * RATE) - changes;
      if (due > 0) {
        const ins = Math.ceil(due / 2);
        const upd = due - ins;
        const from = nextId;
        nextId += ins;
        const lo = 1 + Math.floor(Math.random() * Math.max(1, from - 1 - upd));
        await w.query(
          `BEGIN;
           INSERT INTO bench_live SELECT ${rowSql('g')} FROM generate_series(${from}, ${from + ins - 1}) g;
           UPDATE bench_live SET qty = qty + 1, score = coalesce(score, 0) + 1, active = NOT active WHERE id BETWEEN ${lo} AND ${lo + upd - 1};
           COMMIT;`,
        );
        changes += due;
        txs++;
      }
      await sleep(tick);
    }
    const writeSeconds = (performance.now() - t0) / 1000;
    const lastLsn = await currentLsn(w);
    await w.end();
    say(
      `latency: wrote ${changes} changes in ${txs} transactions (${Math.round(changes / writeSeconds)}/s); waiting for Tide to confirm ...`,
    );
    await waitUntil(async () => (await slotState(db, slot, lastLsn))?.done === true, 120_000);
    const rss = procStatus(tide.child.pid!);
    await stopTide(tide);

    const { lat, count } = await readLatencies(topic);
    lat.sort((a, b) => a - b);
    const q = (p: number) => lat[Math.min(lat.length - 1, Math.floor((p / 100) * lat.length))] ?? NaN;
    return {
      ...result,
      clock:
        'Kafka record timestamp with message.timestamp.type=LogAppendTime (broker wall clock) minus source.ts_ms (Postgres commit timestamp); broker, Postgres and Tide share one host clock',
      targetRowsPerSecond: RATE,
      achievedRowsPerSecond: Math.round(changes / writeSeconds),
      seconds: round(writeSeconds),
      transactions: txs,
      events: count,
      expectedEvents: changes,
      p50ms: q(50),
      p90ms: q(90),
      p99ms: q(99),
      maxMs: lat[lat.length - 1] ?? NaN,
      tidePeakRssMB: round(rss?.hwmMb ?? NaN, 1),
    };
  } finally {
    await stopTide(tide);
  }
}

async function waitUntil(check: () => Promise<boolean>, timeoutMs: number, failFast?: () => string | undefined): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    const why = failFast?.();
    if (why) throw new Error(why);
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms`);
    await sleep(100);
  }
}

/** Every record of `topic` up to its high watermark: LogAppendTime - source.ts_ms, in ms. */
async function readLatencies(topic: string): Promise<{ lat: number[]; count: number }> {
  const admin = kafka.admin();
  await admin.connect();
  const ends = new Map((await admin.fetchTopicOffsets(topic)).map((p) => [p.partition, Number(p.high)]));
  await admin.disconnect();
  const total = [...ends.values()].reduce((a, b) => a + b, 0);
  const registry = new SchemaRegistry({ host: REGISTRY });
  const consumer = kafka.consumer({ groupId: `${id}-latency` });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const lat: number[] = [];
  let count = 0;
  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));
  await consumer.run({
    eachBatch: async ({ batch }) => {
      for (const m of batch.messages) {
        if (Number(m.offset) >= (ends.get(batch.partition) ?? 0) || !m.value) continue;
        count++;
        const v = (await registry.decode(m.value)) as { source: { ts_ms: number | bigint } };
        lat.push(Number(m.timestamp) - Number(v.source.ts_ms));
      }
      if (count >= total) resolveDone();
    },
  });
  if (total === 0) resolveDone();
  await Promise.race([done, sleep(120_000).then(() => Promise.reject(new Error(`read ${count} of ${total} records of ${topic}`)))]);
  await consumer.disconnect();
  return { lat, count };
}

// ---------------------------------------------------------------------------------------------- main

async function main() {
  const m = machine();
  say(`machine: ${m.nproc} cores, ${m.memoryGiB} GiB, ${m.cpuModel}, load ${m.loadavgAtStart.join(' ')}`);
  const root = await connect(DATABASE_URL!);
  await root.query(`CREATE DATABASE ${id}`);
  await root.end();
  const db = await connect(dbUrl);
  const admin = kafka.admin();
  await admin.connect();
  const slots: string[] = [];
  const topics: string[] = [];
  let load: Awaited<ReturnType<typeof loadDrainData>> | undefined;
  const rounds: { baseline: Awaited<ReturnType<typeof runBaseline>>; tide: Awaited<ReturnType<typeof runTide>>['tide'] }[] = [];
  let profile: Awaited<ReturnType<typeof runTide>>['profile'];
  let latency: Awaited<ReturnType<typeof latencyBenchmark>> | undefined;
  const settles: { seconds: number; busyPct: number }[] = [];
  try {
    for (let r = 0; r < ROUNDS; r++) {
      const n = drainNames(r);
      slots.push(n.slotBase, n.slotTide);
      topics.push(n.topic, `${n.prefix}.transaction`);
    }
    slots.push(`${id}_live`);
    topics.push(`${id}_live.public.bench_live`, `${id}_live.transaction`);
    load = await loadDrainData(db);
    // Baseline and Tide alternate on the same data, so a burst of load from elsewhere hits both sides.
    // ABBA: even rounds run the baseline first, odd rounds Tide first, and the machine settles before every
    // drain, so neither side always inherits the other's writeback.
    for (let r = 0; r < ROUNDS; r++) {
      const baselineFirst = r % 2 === 0;
      let baseline: Awaited<ReturnType<typeof runBaseline>> | undefined;
      let t: Awaited<ReturnType<typeof runTide>> | undefined;
      for (const side of baselineFirst ? ['baseline', 'tide'] : ['tide', 'baseline']) {
        const s = await settle(db);
        settles.push(s);
        say(`round ${r + 1}: settled in ${s.seconds} s (CPU ${s.busyPct} % busy)`);
        if (side === 'baseline') baseline = await runBaseline(r, load.lsn);
        else t = await runTide(r, load.lsn);
      }
      rounds.push({ baseline: baseline!, tide: t!.tide });
      profile ??= t!.profile;
    }
    if (!args['no-latency']) latency = await latencyBenchmark(db, admin);
  } finally {
    if (!args.keep) {
      await db
        .query(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = ANY($1) AND NOT active`, [slots])
        .catch((err: Error) => say(`could not drop slots: ${err.message}`));
      await db.end();
      const r = await connect(DATABASE_URL!);
      await r.query(`DROP DATABASE IF EXISTS ${id} WITH (FORCE)`).catch((err: Error) => say(`could not drop ${id}: ${err.message}`));
      await r.end();
      const existing = new Set(await admin.listTopics());
      const ours = topics.filter((t) => existing.has(t));
      if (ours.length) await admin.deleteTopics({ topics: ours }).catch((err: Error) => say(`could not delete topics: ${err.message}`));
    } else {
      await db.end();
      say(`kept database ${id}, slots ${slots.join(', ')} and topics ${topics.join(', ')}`);
    }
    await admin.disconnect();
  }

  // Totals over the rounds: the ratio of the aggregate rates (rows over summed seconds).
  const sum = (f: (x: (typeof rounds)[number]) => number) => rounds.reduce((a, x) => a + f(x), 0);
  const baseSeconds = sum((x) => x.baseline.seconds);
  const tideSeconds = sum((x) => x.tide.seconds);
  const tideFromSlot = sum((x) => x.tide.secondsFromSlotActive);
  const summary = {
    baselineRowsPerSecond: Math.round((N * ROUNDS) / baseSeconds),
    tideRowsPerSecond: Math.round((N * ROUNDS) / tideSeconds),
    ratio: round(baseSeconds / tideSeconds, 3),
    tideRowsPerSecondFromSlotActive: Math.round((N * ROUNDS) / tideFromSlot),
    ratioFromSlotActive: round(baseSeconds / tideFromSlot, 3),
    perRound: rounds.map((x) => ({
      baselineSeconds: x.baseline.seconds,
      tideSeconds: x.tide.seconds,
      ratio: round(x.baseline.seconds / x.tide.seconds, 3),
      ratioFromSlotActive: round(x.baseline.seconds / x.tide.secondsFromSlotActive, 3),
    })),
    peakRssMB: Math.max(...rounds.map((x) => x.tide.peakRssMB)),
    noLoss: rounds.every((x) => x.tide.noLoss),
  };
  const result = {
    benchmark: 'source-drain',
    date: new Date().toISOString(),
    machine: m,
    rows: N,
    rounds: ROUNDS,
    maxBatchSize: args.batch ? Number(args.batch) : 'default',
    nodeFlags: NODE_FLAGS,
    tideBin: BIN,
    code: provenance(),
    load,
    baselineTool: 'pg_recvlogical (pgoutput proto 1, -f /dev/null, sslmode=disable, under /usr/bin/time)',
    order: 'ABBA (baseline first in odd-numbered rounds, Tide first in even), CHECKPOINT + sync + CPU settle before every drain',
    settles,
    ratioTarget: 0.8,
    summary,
    drains: rounds,
    latency,
    profile,
  };

  const rows: [string, string][] = [
    ['machine', `${m.nproc} cores, ${m.memoryGiB} GiB, ${m.cpuModel}, load ${m.loadavgAtStart.join(' ')} at start`],
    ['rows (one transaction)', `${N.toLocaleString('en')}, drained ${ROUNDS} times each way, ABBA order, settled before each drain`],
    ['row size / WAL', `~${load!.avgRowBytes} B a row, ${load!.walMB} MB WAL`],
  ];
  rounds.forEach((x, i) => {
    const t = x.tide;
    rows.push(
      [
        `round ${i + 1} pg_recvlogical`,
        `${x.baseline.seconds} s   ${x.baseline.rowsPerSecond.toLocaleString('en')} rows/s   (/usr/bin/time: ${x.baseline.timeElapsedSeconds} s)`,
      ],
      [`round ${i + 1} tide`, `${t.seconds} s   ${t.rowsPerSecond.toLocaleString('en')} rows/s  (spawn to confirm)`],
      [
        '  phases',
        `walsender up at ${t.marksSeconds.slotActive} s (node start-up, module loading, connect), ` +
          `1st event in Kafka at ${t.startupSeconds} s (Postgres decodes the transaction), then ${t.rowsPerSecondAfterFirstEvent.toLocaleString('en')} rows/s`,
      ],
      ['  CPU s', `baseline ${JSON.stringify(x.baseline.cpuSeconds)}; tide ${JSON.stringify(t.cpuSeconds)}`],
    );
  });
  rows.push(
    ['ratio tide / baseline', `${summary.ratio}   (target >= 0.8; spawn to confirm, all rounds)`],
    ['  from walsender up', `${summary.ratioFromSlotActive}   (without Tide's process start-up)`],
    ['tide peak RSS', `${summary.peakRssMB} MB`],
    ['no loss (topic HWM = N)', String(summary.noLoss)],
  );
  if (latency)
    rows.push(
      ['latency load', `${latency.achievedRowsPerSecond} changes/s for ${latency.seconds} s, ${latency.events} events`],
      ['commit→Kafka p50 / p99', `${latency.p50ms} ms / ${latency.p99ms} ms  (max ${latency.maxMs} ms; LogAppendTime - source.ts_ms)`],
    );
  const w = Math.max(...rows.map(([k]) => k.length));
  console.log(rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n'));
  if (profile) {
    console.log(`\nCPU profile of the tide child (round 1), ${profile.window} (${profile.totalMs} ms sampled), by stage:`);
    for (const a of profile.stages) console.log(`  ${String(a.pct).padStart(5)}%  ${String(a.ms).padStart(6)} ms  ${a.name}`);
    console.log('by innermost Tide or package function:');
    for (const f of profile.functions.slice(0, 20))
      console.log(`  ${String(f.pct).padStart(5)}%  ${String(f.ms).padStart(6)} ms  ${f.name}`);
  }

  const dir = join(PROJECT_ROOT, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const suffix = `${N === 1_000_000 ? '' : `-${N}rows`}${args.batch ? `-batch${args.batch}` : ''}${NODE_FLAGS.length ? '-flags' : ''}${args.bin ? '-prototype' : ''}${args.profile ? '-profile' : ''}`;
  // One file per run (date and time), so repeated runs are all kept.
  const out = join(dir, `source-drain-${result.date.slice(0, 16).replace(/:/g, '')}${suffix}.json`);
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`\nwrote ${resolve(out)}`);
  if (!summary.noLoss) process.exitCode = 1;
}

await main();

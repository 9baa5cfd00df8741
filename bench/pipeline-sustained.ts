/**
 * The whole pipeline under sustained load (issue 12, Benchmarks: "whole pipeline, sustained 15 minutes at
 * 12,000 changes/s … commit → silver p99 ≤ 5 s; RSS flat"):
 *
 *   Postgres → `tide source start` → Kafka → `tide sink start` → Delta (bronze, silver, history, gold)
 *
 *  1. a fresh migrated database (test/support/db.ts), 200 customers; copies of the shipped connector files
 *     (connectors/orders-source.json, connectors/orders-lake.json: all four order tables, bronze, silver,
 *     silver.orders_history, gold every 30 s from connectors/reports/orders), changed only in where they
 *     point (this database, a run-specific slot, topic prefix and dead-letter topic, a temporary lake, no
 *     serving database);
 *  2. the source and the sink as two child processes (`node bin/tide.js source|sink start`), so each one's
 *     RSS and CPU are sampled from /proc every 5 s; the orders topic switched to LogAppendTime;
 *  3. warm-up: 20,000 orders, until silver has them; the measured window starts at the topic's high
 *     watermarks then;
 *  4. `--writers` connections (default 2), each every 20 ms one transaction with the row changes due at its
 *     share of `--rate`: half a multi-row INSERT of new orders, half an UPDATE of uniformly random existing
 *     orders (as bench/sink-freshness.ts), for `--minutes`;
 *  5. wait until silver committed every record, then stream the window's records back (bench/sink-kafka.ts)
 *     and place each in histograms (1 ms buckets; memory does not grow with the run): commit → silver =
 *     ctime of the first silver commit covering its offset - source.ts_ms (bench/sink-visibility.ts; see
 *     bench/sink-freshness.ts for why ctime), commit → bronze likewise, commit → Kafka (LogAppendTime -
 *     source.ts_ms) as the baseline; and per minute of the run (by commit time) the silver p99.
 *
 *   npx tsx bench/pipeline-sustained.ts [--rate 12000] [--minutes 15] [--writers 2] [--warmup 20000]
 *                                       [--profile] [--keep] [--sink-set key=value ...]
 *
 * --profile runs both children under `node --cpu-prof` and prints where their CPU went (self time).
 * Needs the stack (npm run stack:up); writes bench/results/pipeline-sustained-<time>.json and prints a table.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Admin } from 'kafkajs';
import pg from 'pg';
import { DeltaTable } from '../src/lake/delta/delta-table.ts';
import { LocalStore } from '../src/lake/storage/local-store.ts';
import { txnAppId } from '../src/sink/offsets.ts';
import { bronzePath, silverPath } from '../src/sink/table-layout.ts';
import { loadStackEnvIntoProcess, PROJECT_ROOT } from '../src/stack/context.ts';
import { createTestDatabase } from '../test/support/db.ts';
import { kafka } from '../test/support/kafka.ts';
import { BenchError, machine, provenance, round, say, sleep, tideNodeFlags, useLogAppendTime } from './bench-common.ts';
import { Histogram, procSample, rssTrend, selfTime, type ProcPoint } from './pipeline-support.ts';
import { OrderWriter, runWriters } from './pipeline-writer.ts';
import { cleanKafka, forEachRecord } from './sink-kafka.ts';
import { coverage, visibleAt } from './sink-visibility.ts';

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const RATE = arg('rate', 12_000);
const MINUTES = arg('minutes', 15);
const WRITERS = arg('writers', 2);
const WARMUP = arg('warmup', 20_000);
const PROFILE = process.argv.includes('--profile');
const KEEP = process.argv.includes('--keep');
/** `--sink-set key=value` (repeatable): a sink setting other than the shipped one, for diagnosis; the result records it. */
const SINK_SET: Record<string, unknown> = Object.fromEntries(
  process.argv
    .flatMap((a, i) => (process.argv[i - 1] === '--sink-set' ? [a.split('=', 2)] : []))
    .map(([k, v]) => [k, Number.isNaN(Number(v)) ? v : Number(v)]),
);
const SAMPLE_MS = 5000;

interface Child {
  name: 'source' | 'sink';
  proc: ChildProcess;
  log: string;
  points: ProcPoint[];
  /** The sink's per-flush log lines ('flushed', at TIDE_LOG_LEVEL=debug) and gold passes ('gold refreshed'). */
  flushes: FlushLine[];
  goldPasses: { tS: number; ms: number; reports: number }[];
  /** Background history merges ('history merged', silver.history.interval.ms above 0: src/sink/history-lane.ts). */
  historyMerges: { tS: number; events: number; waitedMs: number; ms: number }[];
}

/** One 'flushed' line of the sink (src/sink/sink-worker.ts): where a flush's time went. */
interface FlushLine {
  tS: number;
  messages: number;
  bytes: number;
  decodeMs: number;
  lakeMs: number;
  offsetsMs: number;
  bronzeMs: number;
  silverMs: number;
  historyMs: number;
  /** The sink's memory after the flush (MiB): JS heap in use, V8 external (Buffers, typed arrays), RSS - heap - external. */
  heapMiB: number;
  externalMiB: number;
  nativeMiB: number;
}

function startChild(name: Child['name'], connector: string, cwd: string, profDir?: string): Child {
  const flags = [...tideNodeFlags(), ...(profDir ? ['--cpu-prof', `--cpu-prof-dir=${join(profDir, name)}`] : [])];
  const proc = spawn(process.execPath, [...flags, resolve(PROJECT_ROOT, 'bin/tide.js'), name, 'start', connector], {
    cwd,
    stdio: ['ignore', 'ignore', 'pipe'],
    // The sink at debug: its 'flushed' lines say where each flush's time went (it logs nothing else at debug).
    env: { ...process.env, TIDE_LOG_LEVEL: name === 'sink' ? 'debug' : 'warn', TIDE_HTTP_PORT: '0' },
  });
  const child: Child = { name, proc, log: '', points: [], flushes: [], goldPasses: [], historyMerges: [] };
  const started = Date.now();
  let partial = '';
  proc.stderr!.on('data', (d: Buffer) => {
    const lines = (partial + d.toString()).split('\n');
    partial = lines.pop()!;
    for (const line of lines) {
      const entry = parseLine(line);
      const tS = round((Date.now() - started) / 1000, 1);
      if (entry?.msg === 'flushed') {
        const tables = Object.values((entry.tables ?? {}) as Record<string, Record<string, number>>);
        const sum = (k: string) => tables.reduce((a, t) => a + (t[k] ?? 0), 0);
        child.flushes.push({
          tS,
          ...pick(entry, ['messages', 'bytes', 'decodeMs', 'lakeMs', 'offsetsMs', 'heapMiB', 'externalMiB', 'nativeMiB']),
          bronzeMs: sum('bronzeMs'),
          silverMs: sum('silverMs'),
          historyMs: sum('historyMs'),
        } as FlushLine);
        continue;
      }
      if (entry?.msg === 'history merged') {
        child.historyMerges.push({ tS, ...pick(entry, ['events', 'waitedMs', 'ms']) } as Child['historyMerges'][number]);
        continue;
      }
      if (entry?.msg === 'gold refreshed') {
        const reports = (entry.reports ?? []) as { ms: number }[];
        child.goldPasses.push({ tS, ms: reports.reduce((a, r) => a + r.ms, 0), reports: reports.length });
        continue;
      }
      child.log = (child.log + line + '\n').slice(-20_000);
    }
  });
  return child;
}

function parseLine(line: string): Record<string, unknown> | undefined {
  if (!line.startsWith('{')) return undefined;
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

const pick = (o: Record<string, unknown>, keys: string[]) => Object.fromEntries(keys.map((k) => [k, Number(o[k] ?? 0)]));

/** Per-flush figures of the measured window: count, and mean / p50 / p99 / max of each. */
function flushSummary(flushes: FlushLine[]) {
  const keys = [
    'messages',
    'bytes',
    'decodeMs',
    'lakeMs',
    'offsetsMs',
    'bronzeMs',
    'silverMs',
    'historyMs',
    'heapMiB',
    'externalMiB',
    'nativeMiB',
  ] as const;
  const stat = (k: (typeof keys)[number]) => {
    const v = flushes.map((f) => f[k]).sort((a, b) => a - b);
    const at = (p: number) => v[Math.min(v.length - 1, Math.floor((p / 100) * v.length))] ?? null;
    return { mean: v.length ? round(v.reduce((a, b) => a + b, 0) / v.length, 1) : null, p50: at(50), p99: at(99), max: v.at(-1) ?? null };
  };
  return { count: flushes.length, ...Object.fromEntries(keys.map((k) => [k, stat(k)])) };
}

async function stopChild(c: Child): Promise<void> {
  if (c.proc.exitCode !== null) return;
  const exited = new Promise((r) => c.proc.once('exit', r));
  c.proc.kill('SIGTERM');
  const timer = setTimeout(() => {
    say(`the ${c.name} did not exit 60 s after SIGTERM; killing it`);
    c.proc.kill('SIGKILL');
  }, 60_000);
  await exited;
  clearTimeout(timer);
}

const alive = (children: Child[]) => {
  for (const c of children)
    if (c.proc.exitCode !== null)
      throw new BenchError(c.name, `exited (${c.proc.exitCode}) during the run; its log:\n${c.log.slice(-4000)}`);
};

/** Copies of the shipped connector files, pointing at this run's database, topics and lake. */
function connectorFiles(dir: string, dbUrl: string, run: string, lake: string) {
  const shipped = (f: string) =>
    (JSON.parse(readFileSync(join(PROJECT_ROOT, 'connectors', f), 'utf8')) as { config: Record<string, unknown> }).config;
  const u = new URL(dbUrl);
  const prefix = `bench_${run}`;
  const source = {
    name: `bench-source-${run}`,
    config: {
      ...shipped('orders-source.json'),
      'database.hostname': u.hostname,
      'database.port': u.port,
      'database.user': decodeURIComponent(u.username),
      'database.password': decodeURIComponent(u.password),
      'database.dbname': u.pathname.slice(1),
      'slot.name': prefix,
      'publication.name': prefix,
      'topic.prefix': prefix,
      'kafka.bootstrap.servers': process.env.KAFKA_BROKERS,
      'schema.registry.url': process.env.SCHEMA_REGISTRY_URL,
    },
  };
  const lakeShipped = shipped('orders-lake.json');
  const sink: { name: string; config: Record<string, unknown> } = {
    name: `bench-sink-${run}`,
    config: {
      ...lakeShipped,
      topics: String(lakeShipped.topics).replaceAll('orders.public.', `${prefix}.public.`),
      'kafka.bootstrap.servers': process.env.KAFKA_BROKERS,
      'schema.registry.url': process.env.SCHEMA_REGISTRY_URL,
      'lake.uri': lake,
      'mask.hash.salt': 'bench-salt-0123456789',
      'dead.letter.topic': `${prefix}.lake.dlq`,
      'gold.reports.dir': join(PROJECT_ROOT, 'connectors', String(lakeShipped['gold.reports.dir'])),
      'serving.uri': '',
      ...SINK_SET,
    },
  };
  const write = (f: string, body: unknown) => {
    writeFileSync(join(dir, f), JSON.stringify(body, null, 2));
    return join(dir, f);
  };
  return {
    prefix,
    source: write('source.json', source),
    sink: write('sink.json', sink),
    sinkName: sink.name,
    slot: prefix,
    settings: sink.config as Record<string, unknown>,
  };
}

/** Wait until the slot confirmed every change so far and silver committed every record of `topic`; returns the high watermarks. */
async function settle(sql: pg.Client, admin: Admin, store: LocalStore, slot: string, topic: string, sinkName: string, children: Child[]) {
  const lsn = (await sql.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0]!.lsn;
  await until(`the source to confirm ${lsn} on slot ${slot}`, children, async () => {
    const r = await sql.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND confirmed_flush_lsn >= $2::pg_lsn', [slot, lsn]);
    return r.rowCount === 1;
  });
  const marks = (await admin.fetchTopicOffsets(topic)).map((p) => ({ partition: p.partition, high: Number(p.high) }));
  await until(`silver to commit every record of ${topic} (${JSON.stringify(marks)})`, children, async () => {
    const table = await DeltaTable.open(store, silverPath('public.orders'));
    return marks.every((m) => m.high === 0 || (table?.txnVersion(txnAppId(sinkName, topic, m.partition)) ?? -1) >= m.high - 1);
  });
  return marks;
}

/** Records in `topic` that silver has not committed yet. */
async function silverBehind(admin: Admin, store: LocalStore, topic: string, sinkName: string): Promise<number> {
  const marks = await admin.fetchTopicOffsets(topic);
  const table = await DeltaTable.open(store, silverPath('public.orders'));
  return marks.reduce((a, m) => a + Math.max(0, Number(m.high) - 1 - (table?.txnVersion(txnAppId(sinkName, topic, m.partition)) ?? -1)), 0);
}

async function until(what: string, children: Child[], check: () => Promise<boolean>, timeoutMs = 15 * 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    alive(children);
    if (Date.now() > deadline) throw new BenchError('wait', `timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await sleep(250);
  }
}

async function main(): Promise<void> {
  loadStackEnvIntoProcess();
  const m = machine();
  say(`machine: ${m.nproc} cores, ${m.memoryGiB} GiB, ${m.cpuModel}, load ${m.loadavgAtStart.join(' ')}`);
  const run = Date.now().toString(36);
  const dir = mkdtempSync(join(tmpdir(), 'tide-bench-pipeline-'));
  const lake = join(dir, 'lake');
  mkdirSync(lake);
  const profDir = PROFILE ? mkdtempSync(join(tmpdir(), 'tide-bench-pipeline-profiles-')) : undefined; // kept: the result names the files
  const db = await createTestDatabase('bench_pipeline');
  const files = connectorFiles(dir, db.url, run, lake);
  const topic = `${files.prefix}.public.orders`;
  const readerGroup = `${files.sinkName}-reader`;
  const store = new LocalStore(lake);
  const admin = kafka().admin();
  await admin.connect();
  const sql = new pg.Client({ connectionString: db.url });
  await sql.connect();
  const writerConns: pg.Client[] = [];
  const children: Child[] = [];
  let failed = true;
  try {
    await sql.query(
      `INSERT INTO customers (id, email, country) SELECT g, 'c' || g || '@example.com', 'United Kingdom' FROM generate_series(1, 200) g`,
    );
    const source = startChild('source', files.source, dir, profDir);
    children.push(source);
    await until('the source to create its topics and stream', children, async () => {
      const active = await sql.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND active', [files.slot]);
      return active.rowCount === 1 && (await admin.listTopics()).includes(topic);
    });
    await useLogAppendTime(admin, topic);
    const sink = startChild('sink', files.sink, dir, profDir);
    children.push(sink);
    const t0 = Date.now();
    const sampler = setInterval(() => {
      for (const c of children) {
        const s = procSample(c.proc.pid!);
        const prev = (c as Child & { last?: { t: number; cpuS: number } }).last;
        if (!s) continue;
        const t = Date.now();
        if (prev)
          c.points.push({ tS: round((t - t0) / 1000, 1), rssMiB: s.rssMiB, cores: round((s.cpuS - prev.cpuS) / ((t - prev.t) / 1000), 2) });
        (c as Child & { last?: { t: number; cpuS: number } }).last = { t, cpuS: s.cpuS };
      }
    }, SAMPLE_MS);

    say(`warm-up: ${WARMUP.toLocaleString('en')} orders; source pid ${source.proc.pid}, sink pid ${sink.proc.pid}, lake ${lake}`);
    for (let i = 0; i < WRITERS; i++) {
      const c = new pg.Client({ connectionString: db.url });
      await c.connect();
      writerConns.push(c);
    }
    const ids = { inserted: 0 };
    const writers = writerConns.map((c) => new OrderWriter(c, ids));
    for (let i = 0; i < 4; i++) await writers[0]!.write(Math.ceil(WARMUP / 4), 0);
    const warm = await settle(sql, admin, store, files.slot, topic, files.sinkName, children);
    const startOffsets = new Map(warm.map((p) => [p.partition, p.high]));

    say(
      `writing ${RATE.toLocaleString('en')} row changes/s for ${MINUTES} min over ${WRITERS} connections (half inserts, half updates) ...`,
    );
    const runStart = Date.now();
    const cpuAtStart = children.map((c) => procSample(c.proc.pid!)?.cpuS ?? NaN);
    // Silver's backlog every 10 s (records in Kafka it has not committed), for the progress lines and the result.
    const backlog: { tS: number; records: number }[] = [];
    let sampling = Promise.resolve();
    const backlogTimer = setInterval(() => {
      sampling = sampling.then(() =>
        silverBehind(admin, store, topic, files.sinkName).then(
          (records) => void backlog.push({ tS: round((Date.now() - runStart) / 1000, 1), records }),
          () => undefined,
        ),
      );
    }, 10_000);
    const w = await runWriters(writers, RATE, MINUTES * 60_000, (s) => {
      alive(children);
      const rss = children.map((c) => `${c.name} ${c.points.at(-1)?.rssMiB ?? '-'} MiB/${c.points.at(-1)?.cores ?? '-'} cores`).join(', ');
      const behind = backlog.at(-1)?.records.toLocaleString('en') ?? '-';
      say(
        `writer: ${s.changes.toLocaleString('en')} changes, ${s.rate}/s over the last 30 s; silver ${behind} records behind Kafka; ${rss}`,
      );
    }).finally(() => clearInterval(backlogTimer));
    await sampling;
    const drainStart = Date.now();
    say(`writer done: ${w.changes.toLocaleString('en')} changes in ${w.seconds} s = ${w.rowsPerSecond}/s; waiting for silver ...`);
    const final = await settle(sql, admin, store, files.slot, topic, files.sinkName, children);
    const drainSeconds = round((Date.now() - drainStart) / 1000, 1);
    // CPU per change of each child, from the writer's start until silver held every change.
    const cpuUsPerChange = Object.fromEntries(
      children.map((c, i) => [c.name, round((((procSample(c.proc.pid!)?.cpuS ?? NaN) - cpuAtStart[i]!) * 1e6) / w.changes, 1)]),
    );
    const windowFrom = (runStart - t0) / 1000;
    const windowFlushes = sink.flushes.filter((f) => f.tS >= windowFrom);
    const windowGold = sink.goldPasses.filter((g) => g.tS >= windowFrom);
    const windowHistory = sink.historyMerges.filter((g) => g.tS >= windowFrom);
    clearInterval(sampler);
    const pgRows = Number((await sql.query<{ n: string }>('SELECT count(*)::text AS n FROM orders')).rows[0]!.n);
    const silverRows = (await DeltaTable.open(store, silverPath('public.orders')))!
      .files()
      // Live rows: a file's numRecords counts the rows its deletion vector deletes too.
      .reduce(
        (a, f) =>
          a + Number((JSON.parse(f.stats ?? '{}') as { numRecords?: number }).numRecords ?? NaN) - (f.deletionVector?.cardinality ?? 0),
        0,
      );
    const goldTables = existsSync(join(lake, 'gold')) ? readdirSync(join(lake, 'gold')).length : 0;
    for (const c of [...children].reverse()) await stopChild(c);
    if (silverRows !== pgRows) throw new BenchError('silver', `silver.orders holds ${silverRows} rows, Postgres ${pgRows}`);

    const expected = final.reduce((a, p) => a + p.high - (startOffsets.get(p.partition) ?? 0), 0);
    say(`reading ${expected.toLocaleString('en')} records back ...`);
    const appIds = new Map(final.map((p) => [txnAppId(files.sinkName, topic, p.partition), p.partition]));
    const silverCov = coverage(join(lake, silverPath('public.orders')), appIds);
    const bronzeCov = coverage(join(lake, bronzePath('public.orders')), appIds);
    const silver = new Histogram();
    const bronze = new Histogram();
    const kafkaH = new Histogram();
    const perMinute: Histogram[] = [];
    const silverVersions = new Set<number>();
    const readStart = Date.now();
    const read = await forEachRecord(
      topic,
      readerGroup,
      startOffsets,
      final,
      (r) => {
        const s = visibleAt(silverCov, r);
        const b = visibleAt(bronzeCov, r);
        if (!s || !b)
          throw new BenchError('delta log', `no commit covers ${topic}[${r.partition}]@${r.offset} in ${s ? 'bronze' : 'silver'}`);
        silverVersions.add(s.version);
        silver.add(s.visibleMs - r.commitMs);
        bronze.add(b.visibleMs - r.commitMs);
        kafkaH.add(r.appendMs - r.commitMs);
        const minute = Math.max(0, Math.floor((r.commitMs - runStart) / 60_000));
        (perMinute[minute] ??= new Histogram(10)).add(s.visibleMs - r.commitMs);
      },
      Math.max(180_000, expected / 5),
    );
    if (read !== expected) throw new BenchError('kafka read-back', `read ${read} records of ${topic}, expected ${expected}`);
    say(`read back in ${round((Date.now() - readStart) / 1000, 1)} s`);

    const result = {
      bench: 'pipeline-sustained',
      at: new Date().toISOString(),
      machine: m,
      loadavgAtEnd: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number),
      provenance: provenance(),
      method:
        'commit → silver = ctime of the first silver _delta_log commit whose txn version for the partition >= the record offset, minus source.ts_ms (Postgres commit time); baseline commit → Kafka = LogAppendTime - source.ts_ms; one host clock; 1 ms histogram buckets (percentiles are bucket upper edges)',
      settings: {
        source: 'connectors/orders-source.json (4 tables, 3 partitions)',
        sink: 'connectors/orders-lake.json',
        nodeFlags: tideNodeFlags(),
        'flush.interval.ms': files.settings['flush.interval.ms'],
        'flush.max.events': files.settings['flush.max.events'],
        'gold.refresh.interval.ms': files.settings['gold.refresh.interval.ms'],
        bronze: files.settings['bronze.enabled'],
        'silver.history.tables': files.settings['silver.history.tables'],
        changedFromShipped: SINK_SET,
      },
      writer: { targetRowsPerSecond: RATE, connections: WRITERS, ...w },
      minutes: MINUTES,
      records: read,
      silverCommits: silverVersions.size,
      silverRowsAtEnd: silverRows,
      goldTables,
      drainSecondsAfterWriter: drainSeconds,
      latency: { commitToKafka: kafkaH.summary(), commitToBronze: bronze.summary(), commitToSilver: silver.summary() },
      silverBacklogRecords: {
        max: backlog.length ? Math.max(...backlog.map((b) => b.records)) : null,
        atWriterEnd: backlog.at(-1)?.records ?? null,
        samples: backlog,
      },
      silverPerMinute: perMinute.map((h, i) => ({
        minute: i + 1,
        count: h?.count ?? 0,
        p50ms: h?.percentile(50) ?? null,
        p99ms: h?.percentile(99) ?? null,
        maxMs: h ? round(h.max) : null,
      })),
      cpuUsPerChange,
      sinkFlushes: flushSummary(windowFlushes),
      /** Each flush of the window: [tS, messages, bytes, decodeMs, bronzeMs, silverMs, historyMs, offsetsMs, heapMiB, externalMiB, nativeMiB]. */
      sinkFlushList: windowFlushes.map((f) => [
        f.tS,
        f.messages,
        f.bytes,
        f.decodeMs,
        f.bronzeMs,
        f.silverMs,
        f.historyMs,
        f.offsetsMs,
        f.heapMiB,
        f.externalMiB,
        f.nativeMiB,
      ]),
      goldPasses: {
        count: windowGold.length,
        meanMs: windowGold.length ? round(windowGold.reduce((a, g) => a + g.ms, 0) / windowGold.length, 0) : null,
        maxMs: windowGold.length ? Math.max(...windowGold.map((g) => g.ms)) : null,
        passes: windowGold,
      },
      historyMerges: {
        count: windowHistory.length,
        meanMs: windowHistory.length ? round(windowHistory.reduce((a, g) => a + g.ms, 0) / windowHistory.length, 0) : null,
        maxMs: windowHistory.length ? Math.max(...windowHistory.map((g) => g.ms)) : null,
        meanEvents: windowHistory.length ? round(windowHistory.reduce((a, g) => a + g.events, 0) / windowHistory.length, 0) : null,
        merges: windowHistory,
      },
      rss: Object.fromEntries(children.map((c) => [c.name, rssTrend(c.points)])),
      samples: Object.fromEntries(children.map((c) => [c.name, c.points])),
      profiles: profDir
        ? Object.fromEntries(
            children.map((c) => {
              const d = join(profDir, c.name);
              const f = existsSync(d) ? readdirSync(d).find((x) => x.endsWith('.cpuprofile')) : undefined;
              return [c.name, f ? { file: join(d, f), ...selfTime(join(d, f)) } : null];
            }),
          )
        : undefined,
      stderrTail: Object.fromEntries(children.map((c) => [c.name, c.log.split('\n').slice(-5)])),
    };
    const out = join(PROJECT_ROOT, 'bench/results', `pipeline-sustained-${result.at.slice(0, 16).replace(/:/g, '')}-${MINUTES}min.json`);
    writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
    printTable(result);
    say(`wrote ${out}`);
    failed = false;
  } finally {
    for (const c of [...children].reverse()) await stopChild(c).catch(() => undefined);
    for (const c of writerConns) await c.end().catch(() => undefined);
    await sql.end();
    if (KEEP && failed) say(`kept database ${db.name}, slot ${files.slot}, ${dir} and topics ${files.prefix}.*`);
    else {
      await dropSlotWhenReleased(db.url, files.slot);
      await db.drop().catch((err: Error) => say(`could not drop database ${db.name}: ${err.message}`));
      await cleanKafka(admin, files.prefix, files.sinkName, [readerGroup, `tide-sink-${files.sinkName}`]);
      await store.close();
      await rm(dir, { recursive: true, force: true }).catch(() => undefined);
    }
    await admin.disconnect();
  }
}

function printTable(r: {
  writer: { targetRowsPerSecond: number; rowsPerSecond: number; changes: number };
  minutes: number;
  machine: { loadavgAtStart: number[] };
  latency: Record<string, { p50ms: number | null; p95ms: number | null; p99ms: number | null; maxMs: number | null }>;
  rss: Record<string, ReturnType<typeof rssTrend>>;
  drainSecondsAfterWriter: number;
  silverBacklogRecords: { max: number | null };
  cpuUsPerChange: Record<string, number>;
  sinkFlushes: ReturnType<typeof flushSummary>;
  goldPasses: { count: number; meanMs: number | null; maxMs: number | null };
  historyMerges: { count: number; meanMs: number | null; maxMs: number | null; meanEvents: number | null };
}) {
  const lat = (k: string, label: string) => {
    const l = r.latency[k]!;
    return `| ${label} | ${l.p50ms} | ${l.p95ms} | ${l.p99ms} | ${l.maxMs} |`;
  };
  const lines = [
    `${r.minutes} min at ${r.writer.targetRowsPerSecond.toLocaleString('en')} changes/s target, achieved ${r.writer.rowsPerSecond.toLocaleString('en')}/s (${r.writer.changes.toLocaleString('en')} changes); load at start ${r.machine.loadavgAtStart.join(' ')}; silver's backlog at most ${r.silverBacklogRecords.max?.toLocaleString('en') ?? '-'} records, caught up ${r.drainSecondsAfterWriter} s after the writer stopped`,
    '',
    '| latency (ms) | p50 | p95 | p99 | max |',
    '| --- | ---: | ---: | ---: | ---: |',
    lat('commitToKafka', 'commit → Kafka (baseline)'),
    lat('commitToBronze', 'commit → bronze'),
    lat('commitToSilver', 'commit → silver'),
    '',
    '| RSS (MiB) | first minute | last minute | max | trend (MiB/min) | flat | CPU (cores) |',
    '| --- | ---: | ---: | ---: | ---: | --- | ---: |',
    ...Object.entries(r.rss).map(
      ([k, t]) =>
        `| ${k} | ${t?.firstMinuteMeanMiB} | ${t?.lastMinuteMeanMiB} | ${t?.maxMiB} | ${t?.slopeMiBPerMinute} | ${t?.flat ? 'yes' : 'no'} | ${t?.meanCores} |`,
    ),
    '',
    `CPU per change (µs): ${Object.entries(r.cpuUsPerChange)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}; gold passes: ${r.goldPasses.count}, mean ${r.goldPasses.meanMs} ms, max ${r.goldPasses.maxMs} ms${
      r.historyMerges.count
        ? `; background history merges: ${r.historyMerges.count}, mean ${r.historyMerges.meanEvents} events in ${r.historyMerges.meanMs} ms, max ${r.historyMerges.maxMs} ms`
        : ''
    }`,
    '',
    `| sink flushes (${r.sinkFlushes.count}) | mean | p50 | p99 | max |`,
    '| --- | ---: | ---: | ---: | ---: |',
    ...Object.entries(r.sinkFlushes)
      .filter(([k]) => k !== 'count')
      .map(([k, v]) => {
        const x = v as unknown as { mean: number | null; p50: number | null; p99: number | null; max: number | null };
        return `| ${k} | ${x.mean} | ${x.p50} | ${x.p99} | ${x.max} |`;
      }),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

/** Drop the slot once the walsender has let go of it (a moment after the source exited). */
async function dropSlotWhenReleased(dbUrl: string, slot: string): Promise<void> {
  const c = new pg.Client({ connectionString: dbUrl });
  await c.connect();
  try {
    for (let i = 0; i < 100; i++) {
      await c.query('SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active', [slot]);
      if (!(await c.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [slot])).rowCount) return;
      await sleep(100);
    }
    say(`slot ${slot} is still active 10 s after the source stopped; drop it with pg_drop_replication_slot('${slot}')`);
  } finally {
    await c.end();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});

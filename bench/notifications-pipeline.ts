/**
 * The notification platform under load (issue 13 item 2): `tide app notifications`' generator at a
 * sustained rate (default 12,000 events/s, ten times the design's 100M/day) into a fresh topic, `tide sink
 * start` on a copy of connectors/notifications-lake.json (its own process, its own lake), and the gold
 * per-minute panel's lag sampled every 2 s: the generator's clock now minus the newest `last_update` in
 * gold.notifications_per_minute (read from the Delta log's file statistics, no data file opened). The sink's
 * RSS is sampled from /proc every 5 s. Baseline, in the same run: the generator alone into a throwaway topic.
 *
 *   npx tsx bench/notifications-pipeline.ts [--rate 12000] [--minutes 15] [--baseline-seconds 20]
 *
 * Needs the stack (npm run stack:up); writes bench/results/notifications-pipeline-<time>.json.
 */
import { spawn } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { runNotifications } from '../src/app/notifications.ts';
import { loadSinkConfig } from '../src/config/sink-config.ts';
import { DeltaTable } from '../src/lake/delta/delta-table.ts';
import { LocalStore } from '../src/lake/storage/local-store.ts';
import { txnAppId } from '../src/sink/offsets.ts';
import { loadStackEnvIntoProcess, PROJECT_ROOT } from '../src/stack/context.ts';
import { machine, provenance, round, say, sleep, tideNodeFlags } from './bench-common.ts';

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const RATE = arg('rate', 12_000);
const MINUTES = arg('minutes', 15);
const BASELINE_S = arg('baseline-seconds', 20);
const WARMUP_MS = 60_000;

const pct = (xs: number[], p: number) => {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};

function rssMiB(pid: number): number | null {
  try {
    const kb = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return kb ? round(Number(kb) / 1024, 1) : null;
  } catch {
    return null;
  }
}

/** The newest last_update in gold.notifications_per_minute, from the file statistics (ms), or undefined. */
async function newestPanelMs(store: LocalStore): Promise<number | undefined> {
  const t = await DeltaTable.open(store, 'gold/notifications_per_minute');
  let max: number | undefined;
  for (const f of t?.files() ?? []) {
    const v = f.stats ? (JSON.parse(f.stats) as { maxValues?: Record<string, unknown> }).maxValues?.last_update : undefined;
    const ms = typeof v === 'string' ? Date.parse(v) : undefined;
    if (ms !== undefined && !Number.isNaN(ms) && (max === undefined || ms > max)) max = ms;
  }
  return max;
}

async function main(): Promise<void> {
  loadStackEnvIntoProcess();
  const m = machine();
  say(`machine: ${m.nproc} cores, ${m.memoryGiB} GiB, ${m.cpuModel}, load ${m.loadavgAtStart.join(' ')}`);
  const run = Date.now().toString(36);
  const dir = mkdtempSync(join(tmpdir(), 'tide-bench-notifications-'));
  const lake = join(dir, 'lake');
  mkdirSync(lake);
  const topic = `bench-notifications-${run}`;
  const table = topic.replace(/-/g, '_');
  const shipped = JSON.parse(readFileSync(join(PROJECT_ROOT, 'connectors/notifications-lake.json'), 'utf8')) as {
    config: Record<string, unknown>;
  };
  mkdirSync(join(dir, 'reports'));
  for (const f of readdirSync(join(PROJECT_ROOT, 'connectors/reports/notifications')))
    writeFileSync(
      join(dir, 'reports', f),
      readFileSync(join(PROJECT_ROOT, 'connectors/reports/notifications', f), 'utf8').replaceAll('bronze_notifications', `bronze_${table}`),
    );
  cpSync(join(PROJECT_ROOT, 'connectors/sink-connector.schema.json'), join(dir, 'sink-connector.schema.json'));
  const connector = join(dir, 'notifications-lake.json');
  const write = (t: string, extra: Record<string, unknown> = {}) =>
    writeFileSync(
      connector,
      JSON.stringify({
        name: `bench-${run}`,
        config: {
          ...shipped.config,
          topics: t,
          'lake.uri': lake,
          'gold.reports.dir': 'reports',
          'serving.uri': '',
          'dead.letter.topic': `${topic}.dlq`,
          ...extra,
        },
      }),
    );

  // Baseline: the generator alone, same rate, into a throwaway topic.
  write(`${topic}-baseline`);
  say(`baseline: the generator alone at ${RATE}/s for ${BASELINE_S} s`);
  const baseline = await runNotifications(loadSinkConfig(connector), { rate: RATE, durationMs: BASELINE_S * 1000, customers: 1000 });
  say(`baseline: ${Math.round(baseline.achievedRate)} events/s`);

  write(topic);
  const file = loadSinkConfig(connector);
  const store = new LocalStore(lake);
  const sink = spawn(process.execPath, [...tideNodeFlags(), resolve(PROJECT_ROOT, 'bin/tide.js'), 'sink', 'start', connector], {
    cwd: dir,
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, TIDE_LOG_LEVEL: 'warn' },
  });
  let sinkErr = '';
  // A sink that stops (a bad connector file, a crash) ends the run: its figures would be meaningless.
  const abort = new AbortController();
  sink.once('exit', (code) => {
    if (!abort.signal.aborted && generating) {
      say(`the sink exited (${code}) during the run: ${sinkErr.slice(-2000)}`);
      abort.abort();
    }
  });
  sink.stderr!.on('data', (d: Buffer) => (sinkErr = (sinkErr + d.toString()).slice(-20_000)));
  const lags: { tS: number; lagS: number | null }[] = [];
  const rss: { tS: number; mib: number | null }[] = [];
  const started = Date.now();
  let generating = true;
  const sampler = (async () => {
    let n = 0;
    while (generating) {
      const newest = await newestPanelMs(store).catch(() => undefined);
      const t = Date.now();
      lags.push({ tS: round((t - started) / 1000, 1), lagS: newest === undefined ? null : round((t - newest) / 1000, 2) });
      if (n % 5 === 0) rss.push({ tS: round((t - started) / 1000, 1), mib: rssMiB(sink.pid!) });
      n++;
      await sleep(2000);
    }
  })();
  say(`pipeline: ${RATE}/s for ${MINUTES} min into ${topic}; sink pid ${sink.pid}, lake ${lake}`);
  const gen = await runNotifications(file, {
    rate: RATE,
    durationMs: MINUTES * 60_000,
    customers: 1000,
    lateFraction: 0.01,
    lateByMs: 2 * 60_000,
    reportEveryMs: 30_000,
    signal: abort.signal,
    onReport: (s) =>
      say(
        `generator: ${s.sent} sent, ${Math.round(s.achievedRate)}/s; panel lag ${lags.at(-1)?.lagS ?? '-'} s; sink RSS ${rss.at(-1)?.mib ?? '-'} MiB`,
      ),
  });
  generating = false;
  await sampler;
  if (abort.signal.aborted) throw new Error(`the sink stopped during the run; its log: ${sinkErr.slice(-4000)}`);
  say(
    `generator done: ${gen.sent} in ${round(gen.elapsedMs / 1000, 1)} s = ${Math.round(gen.achievedRate)}/s; waiting for bronze to catch up`,
  );
  // Drain: how long after the generator stopped bronze holds every event.
  const admin = (await import('kafkajs')).default;
  const kafka = new admin.Kafka({ brokers: file.config['kafka.bootstrap.servers'], logLevel: admin.logLevel.NOTHING });
  const a = kafka.admin();
  await a.connect();
  const highs = await a.fetchTopicOffsets(topic);
  await a.disconnect();
  const drainStart = Date.now();
  let caughtUp: number | null = null;
  while (Date.now() - drainStart < 10 * 60_000) {
    const b = await DeltaTable.open(store, `bronze/${table}`);
    if (highs.every((h) => Number(h.high) === 0 || (b?.txnVersion(txnAppId(file.name, topic, h.partition)) ?? -1) >= Number(h.high) - 1)) {
      caughtUp = Date.now();
      break;
    }
    await sleep(2000);
  }
  sink.kill('SIGTERM');
  await new Promise((r) => sink.once('exit', r));
  const steady = lags.filter((l) => l.tS * 1000 >= WARMUP_MS && l.lagS !== null).map((l) => l.lagS!);
  const rssSteady = rss.filter((r) => r.tS * 1000 >= WARMUP_MS && r.mib !== null).map((r) => r.mib!);
  const total = highs.reduce((n, h) => n + Number(h.high), 0);
  const result = {
    bench: 'notifications-pipeline',
    at: new Date().toISOString(),
    machine: m,
    loadavgAtEnd: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number),
    provenance: provenance(),
    targetRate: RATE,
    minutes: MINUTES,
    baseline: { generatorAloneEventsPerSecond: Math.round(baseline.achievedRate), seconds: BASELINE_S },
    generator: {
      sent: gen.sent,
      late: gen.late,
      eventsPerSecond: Math.round(gen.achievedRate),
      ratioToBaseline: round(gen.achievedRate / baseline.achievedRate),
    },
    sink: {
      eventsInTopic: total,
      drainedSecondsAfterGenerator: caughtUp === null ? null : round((caughtUp - drainStart) / 1000, 1),
      endToEndEventsPerSecond: caughtUp === null ? null : Math.round(total / ((caughtUp - started) / 1000)),
      ratioToBaseline: caughtUp === null ? null : round(total / ((caughtUp - started) / 1000) / baseline.achievedRate),
    },
    panelLagSeconds: {
      afterWarmupSeconds: WARMUP_MS / 1000,
      p50: pct(steady, 50),
      p95: pct(steady, 95),
      max: steady.length ? Math.max(...steady) : null,
      samples: lags,
    },
    sinkRssMiB: {
      first: rssSteady[0] ?? null,
      last: rssSteady.at(-1) ?? null,
      max: rssSteady.length ? Math.max(...rssSteady) : null,
      samples: rss,
    },
    sinkStderrTail: sinkErr.split('\n').slice(-5),
  };
  const out = join(PROJECT_ROOT, 'bench/results', `notifications-pipeline-${result.at.slice(0, 16).replace(/:/g, '')}-${MINUTES}min.json`);
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  say(
    `result: generator ${result.generator.eventsPerSecond}/s (baseline ${result.baseline.generatorAloneEventsPerSecond}/s); sink end-to-end ${result.sink.endToEndEventsPerSecond}/s, drained ${result.sink.drainedSecondsAfterGenerator} s after; panel lag p50 ${result.panelLagSeconds.p50} s p95 ${result.panelLagSeconds.p95} s max ${result.panelLagSeconds.max} s; RSS ${result.sinkRssMiB.first} → ${result.sinkRssMiB.last} MiB (max ${result.sinkRssMiB.max}); ${out}`,
  );
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});

/**
 * Source drain benchmark: how fast does Tide move one big transaction from the
 * WAL to Kafka, compared with Postgres' own `pg_recvlogical` on the same data?
 *
 *   npx tsx bench/source-drain.ts [--rows 1000000] [--rounds 2]
 *                                 [--batch <max.batch.size>] [--node-flags "<flags>"] [--profile] [--keep] [--bin <tide.js>]
 *                                 [--socket <unix socket directory>] [--baseline-streaming]
 *
 * --baseline-streaming: pg_recvlogical asks for pgoutput `proto_version=2, streaming=on`: Postgres sends a large
 * transaction's changes while decoding it (once logical_decoding_work_mem is exceeded) instead of after
 * reassembling it at its commit. Tide asks for proto 1 (it does not read streamed transactions); this is
 * the stronger baseline, measured beside the usual one (README, Performance → Source).
 *
 * --socket: both drains connect through the server's Unix socket instead of TCP to 127.0.0.1. On this
 * machine a pg_recvlogical drain over TCP loopback takes ~1.7x as long as over the socket (the walsender
 * spends its extra time in the TCP stack, one small send per message), and `pg_recvlogical` run by hand
 * without -h uses the socket: compare like with like (bench/source/hand-timed.sh times both by hand).
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
 *        VmHWM; the topic's high watermarks must add up to N; CPU seconds of Tide, its walsender and the Kafka
 *        broker from /proc (the broker's also net of its idle rate, measured for 3 s before the spawn);
 *  4. the ratio: summed baseline seconds / summed Tide seconds (spawn to confirm), and the same without Tide's
 *     process start-up (from the moment its walsender is active; pg_recvlogical starts in milliseconds);
 *  5. a table on stdout and JSON in bench/results/ (one file per run). Slots, database and topics are dropped.
 *
 * --profile runs the Tide drain child with `node --cpu-prof` and prints where its CPU time went.
 * Commit-to-Kafka latency under a steady load is bench/source-latency.ts.
 * Not part of the test suite. Needs the local stack (`npm run stack:up`).
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { PROJECT_ROOT } from '../src/stack/context.ts';
import { summarizeProfile } from './source/profile.ts';
import { machine, provenance, round, say, sleep } from './bench-common.ts';
import {
  CpuMeter,
  COLUMNS,
  cpuSeconds,
  createBenchDatabase,
  currentLsn,
  dropBenchRun,
  highWatermark,
  kafkaPid,
  openBenchRun,
  procStatus,
  rowSql,
  settle,
  slotState,
  startTide,
  stopTide,
} from './source/support.ts';

const { values: args } = parseArgs({
  options: {
    rows: { type: 'string', default: '1000000' },
    rounds: { type: 'string', default: '2' },
    batch: { type: 'string' },
    'node-flags': { type: 'string' },
    profile: { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    bin: { type: 'string' },
    socket: { type: 'string' },
    'baseline-streaming': { type: 'boolean', default: false },
  },
});
/** pg_recvlogical's pgoutput options: proto 1 as Tide's, or (--baseline-streaming) proto 2 with in-progress transactions streamed. */
const BASELINE_OPTIONS = args['baseline-streaming'] ? ['proto_version=2', 'streaming=on'] : ['proto_version=1'];
const N = Number(args.rows);
if (!Number.isInteger(N) || N < 1) throw new Error(`--rows must be a positive integer, got ${args.rows}`);
const ROUNDS = Number(args.rounds);
if (!Number.isInteger(ROUNDS) || ROUNDS < 1) throw new Error(`--rounds must be a positive integer, got ${args.rounds}`);

const run = openBenchRun({ batch: args.batch, nodeFlags: args['node-flags'], bin: args.bin, socket: args.socket });
const { id, dbUrl, kafka, sampleKafka } = run;
const NODE_FLAGS = run.nodeFlags;
const BIN = run.bin;

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
  // --socket: libpq's keyword form reaches the socket directory (the password comes from PGPASSWORD).
  const conninfo = run.socket
    ? `host=${run.socket} port=${url.port} dbname=${id} user=${decodeURIComponent(url.username)}`
    : url.toString();
  const recvStart = performance.now();
  const recv = spawn(
    '/usr/bin/time',
    [
      '-f',
      'TIME %e %U %S',
      join(run.pgBindir, 'pg_recvlogical'),
      '-d',
      conninfo,
      '--slot',
      slotBase,
      '--start',
      ...BASELINE_OPTIONS.flatMap((o) => ['-o', o]),
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
  // The broker's idle CPU (its JVM's timers, KRaft), measured for 3 s before the drain and reported beside
  // its total, so the figure per 1M rows is the broker's work for Tide's records, not its idling during a slow drain.
  const idle0 = cpuSeconds(kpid);
  await sleep(3000);
  const idleRate = idle0 === undefined ? undefined : (cpuSeconds(kpid)! - idle0) / 3;
  const cpu = new CpuMeter();
  cpu.baseline('kafka broker', kpid);
  const tStart = performance.now();
  const spawnedAt = Date.now();
  const tide = startTide(
    run,
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
  let lastHwPoll = 0;
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
    // Every 50 ms until the first event, then once a second: each poll is a Metadata and a ListOffsets request,
    // and at 20 a second they cost the broker ~0.04 core (measured) that would count as the drain's.
    if (marks.firstEventInKafka === undefined || Date.now() - lastHwPoll >= 1000) {
      lastHwPoll = Date.now();
      const hw = await highWatermark(admin, topic);
      if (hw !== undefined && hw > 0) mark('firstEventInKafka');
      if (hw === N) mark('allInKafka');
    }
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
    /** The broker's CPU less its idle rate over the same seconds (spawn to confirm). */
    brokerCpuSecondsNetOfIdle: idleRate === undefined ? undefined : round((cpu.result()['kafka broker'] ?? NaN) - idleRate * tideSeconds),
    brokerIdleCoresBefore: idleRate === undefined ? undefined : round(idleRate, 3),
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

// ---------------------------------------------------------------------------------------------- main

async function main() {
  const m = machine();
  say(`machine: ${m.nproc} cores, ${m.memoryGiB} GiB, ${m.cpuModel}, load ${m.loadavgAtStart.join(' ')}`);
  const db = await createBenchDatabase(run);
  const admin = kafka.admin();
  await admin.connect();
  const slots: string[] = [];
  const topics: string[] = [];
  let load: Awaited<ReturnType<typeof loadDrainData>> | undefined;
  const rounds: { baseline: Awaited<ReturnType<typeof runBaseline>>; tide: Awaited<ReturnType<typeof runTide>>['tide'] }[] = [];
  let profile: Awaited<ReturnType<typeof runTide>>['profile'];
  const settles: { seconds: number; busyPct: number }[] = [];
  try {
    for (let r = 0; r < ROUNDS; r++) {
      const n = drainNames(r);
      slots.push(n.slotBase, n.slotTide);
      topics.push(n.topic, `${n.prefix}.transaction`);
    }
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
  } finally {
    await dropBenchRun(run, db, admin, slots, topics, args.keep);
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
    baselineTool: `pg_recvlogical (pgoutput ${BASELINE_OPTIONS.join(' ')}, -f /dev/null, ${run.socket ? `unix socket ${run.socket}` : 'TCP, sslmode=disable'}, under /usr/bin/time)`,
    order: 'ABBA (baseline first in odd-numbered rounds, Tide first in even), CHECKPOINT + sync + CPU settle before every drain',
    settles,
    ratioTarget: 0.9, // issue 12: ≥ 0.9× pg_recvlogical
    summary,
    drains: rounds,
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
      [
        '  CPU s',
        `baseline ${JSON.stringify(x.baseline.cpuSeconds)}; tide ${JSON.stringify(t.cpuSeconds)}, broker net of idle ${t.brokerCpuSecondsNetOfIdle} (idle ${t.brokerIdleCoresBefore} core)`,
      ],
    );
  });
  rows.push(
    ['ratio tide / baseline', `${summary.ratio}   (target >= 0.9; spawn to confirm, all rounds)`],
    ['  from walsender up', `${summary.ratioFromSlotActive}   (without Tide's process start-up)`],
    ['tide peak RSS', `${summary.peakRssMB} MB`],
    ['no loss (topic HWM = N)', String(summary.noLoss)],
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
  const suffix = `${N === 1_000_000 ? '' : `-${N}rows`}${args.batch ? `-batch${args.batch}` : ''}${NODE_FLAGS.length ? '-flags' : ''}${args.bin ? '-prototype' : ''}${args.profile ? '-profile' : ''}${args['baseline-streaming'] ? '-streaming' : ''}`;
  // One file per run (date and time), so repeated runs are all kept.
  const out = join(dir, `source-drain-${result.date.slice(0, 16).replace(/:/g, '')}${suffix}.json`);
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`\nwrote ${resolve(out)}`);
  if (!summary.noLoss) process.exitCode = 1;
}

await main();

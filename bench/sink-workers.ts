/**
 * One sink worker against two on the same machine (issue 12, "1 worker vs 2 workers": no loss,
 * throughput reported).
 *
 *   npx tsx bench/sink-workers.ts [--orders 150000] [--repeats 2]
 *
 * The source (in this process) publishes `--orders` inserts into public.orders plus an update of every
 * fourth order to Kafka (three partitions, the default topic.partitions) and is stopped, so every run
 * reads the same messages. Each run then starts 1 or 2 `tide sink start` processes with one connector
 * file (a fresh lake and consumer group per run; bronze, silver and history on, gold off) and times
 * them until bronze and silver of orders have committed every message (txn versions in the Delta logs,
 * polled every 250 ms): throughput = messages / seconds from the first lake commit to the last
 * (process start-up and the group join are reported apart). Then it checks there was no loss: bronze
 * rows = Kafka messages, each (commit_lsn, event_index) once, silver rows and key sum = Postgres'.
 * Runs alternate 1, 2, 1, 2 so both see the same machine state. Writes bench/results/sink-workers-<date>.json.
 * Needs the local stack.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { DeltaTable } from '../src/lake/delta/delta-table.ts';
import { ParquetEngine } from '../src/lake/parquet/parquet-engine.ts';
import { LocalStore } from '../src/lake/storage/local-store.ts';
import { txnAppId } from '../src/sink/offsets.ts';
import { bronzePath, silverPath } from '../src/sink/table-layout.ts';
import { readStackEnv, PROJECT_ROOT } from '../src/stack/context.ts';
import { createTestDatabase } from '../test/support/db.ts';
import { kafka } from '../test/support/kafka.ts';
import { highWatermarks, sinkFile } from '../test/support/lake.ts';
import { dropSlot, sourceConfig, startSource, waitForSourceCaughtUp } from '../test/support/source.ts';
import { BenchError, machine, provenance, round, say, sleep } from './bench-common.ts';
import { cleanKafka } from './sink-kafka.ts';

const { values: args } = parseArgs({
  options: { orders: { type: 'string', default: '150000' }, repeats: { type: 'string', default: '2' } },
});
const ORDERS = Number(args.orders);
const REPEATS = Number(args.repeats);
if (!Number.isInteger(ORDERS) || ORDERS < 1) throw new BenchError('arguments', `--orders must be a positive integer, got ${args.orders}`);
if (!Number.isInteger(REPEATS) || REPEATS < 1)
  throw new BenchError('arguments', `--repeats must be a positive integer, got ${args.repeats}`);

for (const [k, v] of Object.entries(readStackEnv())) process.env[k] ??= v;
if (!process.env.DATABASE_URL) throw new BenchError('stack', 'DATABASE_URL is not set: run `npm run stack:up` first');
process.env.TIDE_LOG_LEVEL ??= 'warn';

const BIN = resolve(PROJECT_ROOT, 'bin/tide.js');
const TABLE = 'public.orders';
const TIMEOUT_MS = 900_000;

async function main() {
  const m = machine();
  say(`machine: ${m.nproc} cores, ${m.memoryGiB} GiB, load ${m.loadavgAtStart.join(' ')}`);
  const db = await createTestDatabase('bench_workers');
  const sql = new pg.Client({ connectionString: db.url });
  await sql.connect();
  const src = sourceConfig(db.url, 'benchworkers', { 'table.include.list': 'public\\.orders' });
  const prefix = src.config['topic.prefix'];
  const topic = `${prefix}.${TABLE}`;
  const work = mkdtempSync(join(tmpdir(), 'tide-bench-workers-'));
  const groups: string[] = [];
  const sinkNames: string[] = [];
  try {
    const source = await startSource(src);
    say(`writing ${ORDERS.toLocaleString('en')} orders and updating every fourth ...`);
    for (let from = 1; from <= ORDERS; from += 50_000) {
      const to = Math.min(ORDERS, from + 49_999);
      await sql.query(
        `INSERT INTO orders (transaction_no, ordered_at, customer_id, status, attributes)
         SELECT 'B' || g, now() - g * interval '1 second', NULL, 'placed', jsonb_build_object('channel', 'web', 'n', g, 'country', 'United Kingdom')
         FROM generate_series($1::int, $2::int) g`,
        [from, to],
      );
    }
    await sql.query(`UPDATE orders SET status = 'paid', updated_at = now() WHERE id % 4 = 0`);
    await waitForSourceCaughtUp(sql, src.config['slot.name'], TIMEOUT_MS);
    await source.stop();
    const marks = (await highWatermarks([topic])).filter((x) => x.high > 0n);
    const messages = Number(marks.reduce((a, x) => a + x.high, 0n));
    const [pgRow] = (await sql.query<{ n: string; s: string }>('SELECT count(*)::text AS n, sum(id)::text AS s FROM orders')).rows;
    say(`${messages.toLocaleString('en')} messages on ${marks.length} partitions of ${topic}`);

    const runs = [];
    for (let r = 0; r < REPEATS; r++) {
      for (const workers of [1, 2]) {
        const name = `bw${workers}-${r}-${Date.now().toString(36)}`;
        sinkNames.push(name);
        groups.push(`tide-sink-${name}`);
        const lakeDir = join(work, name);
        const store = new LocalStore(lakeDir);
        const file = sinkFile(name, prefix, lakeDir, { topics: topic, 'flush.interval.ms': 1000 });
        const config = Object.fromEntries(Object.entries(file.config).map(([k, v]) => [k, Array.isArray(v) ? v.join(',') : v]));
        const connector = join(work, `${name}.json`);
        writeFileSync(connector, JSON.stringify({ name, config }, null, 2));

        const children: ChildProcess[] = [];
        const exits: Promise<number | null>[] = [];
        const t0 = performance.now();
        for (let w = 0; w < workers; w++) {
          const log = openSync(join(work, `${name}-worker-${w}.log`), 'a');
          const child = spawn(process.execPath, [BIN, 'sink', 'start', connector], {
            cwd: work,
            stdio: ['ignore', log, log],
            env: process.env,
          });
          children.push(child);
          exits.push(new Promise((res) => child.on('exit', (code) => res(code))));
        }
        let firstCommit: number | undefined;
        let done: number | undefined;
        while (done === undefined) {
          if (performance.now() - t0 > TIMEOUT_MS) throw new BenchError(`${workers} worker(s)`, `not caught up in ${TIMEOUT_MS / 1000} s`);
          await sleep(250);
          const tables = await Promise.all([bronzePath(TABLE), silverPath(TABLE)].map((root) => DeltaTable.open(store, root)));
          const versions = tables.flatMap((t) => marks.map((x) => t?.txnVersion(txnAppId(name, topic, x.partition))));
          if (firstCommit === undefined && versions.some((v) => v !== undefined)) firstCommit = performance.now();
          if (tables.every((t) => t && marks.every((x) => BigInt(t.txnVersion(txnAppId(name, topic, x.partition)) ?? -1) >= x.high - 1n)))
            done = performance.now();
        }
        const cpu = children.map((c) => processCpuSeconds(c.pid!));
        for (const c of children) c.kill('SIGTERM');
        const codes = await Promise.all(exits);

        // No loss, no duplicates: bronze holds every message once, silver every order once.
        const engine = await ParquetEngine.create({ threads: 2 });
        let check: { bronzeRows: number; distinctPositions: number; silverRows: number; silverKeySum: string };
        try {
          const bronze = (await DeltaTable.open(store, bronzePath(TABLE)))!;
          const silver = (await DeltaTable.open(store, silverPath(TABLE)))!;
          await engine.createView('b', store, bronze.root, bronze.files(), bronze.schema, bronze.partitionColumns);
          await engine.createView('s', store, silver.root, silver.files(), silver.schema, silver.partitionColumns);
          const [b] = await engine.query(`SELECT count(*) AS n, count(DISTINCT (_commit_lsn, _event_index)) AS d FROM b`);
          const [s] = await engine.query(`SELECT count(*) AS n, sum(id)::VARCHAR AS s FROM s`);
          check = { bronzeRows: Number(b!.n), distinctPositions: Number(b!.d), silverRows: Number(s!.n), silverKeySum: String(s!.s) };
        } finally {
          await engine.close();
          await store.close();
        }
        const lossless =
          check.bronzeRows === messages &&
          check.distinctPositions === messages &&
          String(check.silverRows) === pgRow!.n &&
          check.silverKeySum === pgRow!.s;
        const run = {
          workers,
          messages,
          startupSeconds: round(((firstCommit ?? done) - t0) / 1000, 2),
          seconds: round((done - (firstCommit ?? t0)) / 1000, 2),
          messagesPerSecond: Math.round(messages / ((done - (firstCommit ?? t0)) / 1000)),
          messagesPerSecondFromStart: Math.round(messages / ((done - t0) / 1000)),
          workerCpuSeconds: cpu,
          exitCodes: codes,
          check,
          postgres: { rows: Number(pgRow!.n), keySum: pgRow!.s },
          lossless,
          loadavg: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number),
        };
        runs.push(run);
        say(
          `${workers} worker(s): ${run.messagesPerSecond.toLocaleString('en')} msg/s over ${run.seconds} s after a ${run.startupSeconds} s start; ` +
            `CPU ${cpu.join(' + ')} s; bronze ${check.bronzeRows} rows (${check.distinctPositions} distinct positions), silver ${check.silverRows}; ${lossless ? 'no loss' : 'LOSS OR DUPLICATES'}`,
        );
        if (!lossless) throw new BenchError(`${workers} worker(s)`, `lake differs from Kafka/Postgres: ${JSON.stringify(run)}`);
      }
    }
    const result = {
      benchmark: 'sink-workers',
      date: new Date().toISOString(),
      machine: m,
      code: provenance(),
      orders: ORDERS,
      messages,
      partitions: marks.length,
      runs,
      loadavgAtEnd: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number),
    };
    const dir = join(PROJECT_ROOT, 'bench', 'results');
    mkdirSync(dir, { recursive: true });
    const out = join(dir, `sink-workers-${result.date.slice(0, 16).replace(':', '')}.json`);
    writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
    say(`wrote ${out}`);
  } finally {
    const admin = kafka().admin();
    await admin.connect();
    // One call drops the run's topics, the first sink's dead-letter topic and every group; then the other dead-letter topics.
    if (sinkNames.length) await cleanKafka(admin, prefix, sinkNames[0]!, groups);
    const dlqs = sinkNames.slice(1).map((n) => `${n}.dlq`);
    if (dlqs.length) await admin.deleteTopics({ topics: dlqs }).catch(() => undefined);
    await admin.disconnect();
    await sql.end();
    await dropSlot(db.url, src.config['slot.name']);
    await db.drop();
    rmSync(work, { recursive: true, force: true });
  }
}

/** User + system CPU seconds of a live process (/proc/<pid>/stat, clock ticks of 1/100 s). */
function processCpuSeconds(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return round((Number(fields[11]) + Number(fields[12])) / 100, 1);
  } catch {
    return NaN;
  }
}

await main();

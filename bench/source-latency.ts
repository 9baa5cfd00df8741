/**
 * Source latency benchmark: what commit-to-Kafka latency does a steady application load see?
 *
 *   npx tsx bench/source-latency.ts [--rate 5000] [--seconds 20]
 *                                   [--batch <max.batch.size>] [--node-flags "<flags>"] [--keep] [--bin <tide.js>]
 *
 *  1. a fresh database `bench_<id>`, table `bench_live` (the drain benchmark's 8 columns) with 10,000 rows;
 *  2. `node bin/tide.js source start` as a child on its own slot and publication, streaming;
 *  3. the topic set to message.timestamp.type=LogAppendTime, then a writer at --rate row changes/s for
 *     --seconds (half inserts, half updates, 50 transactions/s), until the slot confirms the last LSN;
 *  4. latency = Kafka LogAppendTime (broker clock) - source.ts_ms (Postgres commit time); same host, same clock;
 *  5. a table on stdout and JSON in bench/results/ (one file per run). Slot, database and topics are dropped.
 *
 * Not part of the test suite. Needs the local stack (`npm run stack:up`).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { SchemaRegistry } from '@kafkajs/confluent-schema-registry';
import type { Admin } from 'kafkajs';
import type pg from 'pg';
import { PROJECT_ROOT } from '../src/stack/context.ts';
import { machine, provenance, round, say, sleep, useLogAppendTime } from './bench-common.ts';
import {
  COLUMNS,
  connect,
  createBenchDatabase,
  currentLsn,
  dropBenchRun,
  openBenchRun,
  procStatus,
  rowSql,
  slotState,
  startTide,
  stopTide,
  waitUntil,
} from './source/support.ts';

const { values: args } = parseArgs({
  options: {
    rate: { type: 'string', default: '5000' },
    seconds: { type: 'string', default: '20' },
    batch: { type: 'string' },
    'node-flags': { type: 'string' },
    keep: { type: 'boolean', default: false },
    bin: { type: 'string' },
  },
});
const RATE = Number(args.rate);
const SECONDS = Number(args.seconds);
if (!(RATE > 0)) throw new Error(`--rate must be a positive number, got ${args.rate}`);
if (!(SECONDS > 0)) throw new Error(`--seconds must be a positive number, got ${args.seconds}`);

const run = openBenchRun({ batch: args.batch, nodeFlags: args['node-flags'], bin: args.bin });
const { id, dbUrl, kafka } = run;

async function latencyBenchmark(db: pg.Client, admin: Admin) {
  const pub = `${id}_live_pub`;
  const slot = `${id}_live`;
  const prefix = `${id}_live`;
  const topic = `${prefix}.public.bench_live`;
  await db.query(`CREATE TABLE bench_live (${COLUMNS})`);
  await db.query(`INSERT INTO bench_live SELECT ${rowSql('g')} FROM generate_series(1, 10000) g`);
  const tide = startTide(run, `${id}-live`, {
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
    await useLogAppendTime(admin, topic);

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

/** Every record of `topic` up to its high watermark: LogAppendTime - source.ts_ms, in ms. */
async function readLatencies(topic: string): Promise<{ lat: number[]; count: number }> {
  const admin = kafka.admin();
  await admin.connect();
  const ends = new Map((await admin.fetchTopicOffsets(topic)).map((p) => [p.partition, Number(p.high)]));
  await admin.disconnect();
  const total = [...ends.values()].reduce((a, b) => a + b, 0);
  const registry = new SchemaRegistry({ host: run.registry });
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
  const db = await createBenchDatabase(run);
  const admin = kafka.admin();
  await admin.connect();
  let latency: Awaited<ReturnType<typeof latencyBenchmark>>;
  try {
    latency = await latencyBenchmark(db, admin);
  } finally {
    await dropBenchRun(run, db, admin, [`${id}_live`], [`${id}_live.public.bench_live`, `${id}_live.transaction`], args.keep);
    await admin.disconnect();
  }

  const result = {
    benchmark: 'source-latency',
    date: new Date().toISOString(),
    machine: m,
    maxBatchSize: args.batch ? Number(args.batch) : 'default',
    nodeFlags: run.nodeFlags,
    tideBin: run.bin,
    code: provenance(),
    latency,
  };
  const rows: [string, string][] = [
    ['machine', `${m.nproc} cores, ${m.memoryGiB} GiB, ${m.cpuModel}, load ${m.loadavgAtStart.join(' ')} at start`],
    ['latency load', `${latency.achievedRowsPerSecond} changes/s for ${latency.seconds} s, ${latency.events} events`],
    ['commit→Kafka p50 / p99', `${latency.p50ms} ms / ${latency.p99ms} ms  (max ${latency.maxMs} ms; LogAppendTime - source.ts_ms)`],
  ];
  const w = Math.max(...rows.map(([k]) => k.length));
  console.log(rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n'));

  const dir = join(PROJECT_ROOT, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const suffix = `${RATE === 5000 ? '' : `-${RATE}per-s`}${SECONDS === 20 ? '' : `-${SECONDS}s`}${args.batch ? `-batch${args.batch}` : ''}${run.nodeFlags.length ? '-flags' : ''}${args.bin ? '-prototype' : ''}`;
  // One file per run (date and time), so repeated runs are all kept.
  const out = join(dir, `source-latency-${result.date.slice(0, 16).replace(/:/g, '')}${suffix}.json`);
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`\nwrote ${resolve(out)}`);
}

await main();

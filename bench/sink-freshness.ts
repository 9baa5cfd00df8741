/**
 * Freshness half of bench/sink-lake.ts: commit-to-silver latency on the real stack, with the
 * source's own commit-to-Kafka latency of the very same changes as the baseline.
 *
 *  1. a fresh migrated database (test/support/db.ts), 200 customers; the source connector in this
 *     process on `public.orders` (3 partitions); its topic switched to LogAppendTime, so each
 *     record's Kafka timestamp is the broker's clock when the record was appended;
 *  2. the sink in this process (test/support/lake.ts, the shipped settings: bronze, silver and
 *     silver.orders_history; `flush.interval.ms` as given; gold off so it does not compete for CPU);
 *  3. warm-up: 20,000 orders, wait until silver has them; the measured window starts at the topic's
 *     high watermarks then;
 *  4. a writer through `pg` at `rate` row changes/s for `seconds`: every 20 ms one transaction with
 *     the changes due, half a multi-row INSERT, half an UPDATE of uniformly random existing orders;
 *  5. wait until silver committed every record; read the records back (bench/sink-kafka.ts: partition, offset, LogAppendTime,
 *     source.ts_ms) with an independent decoder (test/support/kafka.ts), and (bench/sink-visibility.ts) the silver and bronze
 *     `_delta_log/NNN.json` commit files: each commit's txn actions say up to which offset per partition
 *     it holds (src/sink/offsets.ts), and the file's ctime when it became visible: the commit is a
 *     hard link (LocalStore.putIfAbsent), and link + the unlink of its temp name that follows at once
 *     set ctime, so ctime is the moment a reader can see the version, to the kernel's coarse file-time
 *     granularity (a few ms; `stampCheck` in the output compares it with the file's mtime and with
 *     Tide's commitInfo.timestamp). This is what any Delta reader sees, stamped by the filesystem, not
 *     by Tide's own stats and not blurred by a poller's interval;
 *  6. freshness of a change = ctime of the first silver commit covering its offset - source.ts_ms
 *     (Postgres' commit time); baseline = LogAppendTime - source.ts_ms. One host, one clock.
 */
import { mkdtempSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Admin } from 'kafkajs';
import pg from 'pg';
import { DeltaTable } from '../src/lake/delta/delta-table.ts';
import { LocalStore } from '../src/lake/storage/local-store.ts';
import { txnAppId } from '../src/sink/offsets.ts';
import { bronzePath, silverPath } from '../src/sink/table-layout.ts';
import { createTestDatabase } from '../test/support/db.ts';
import { kafka } from '../test/support/kafka.ts';
import { sinkFile, startSink, type RunningSink } from '../test/support/lake.ts';
import { dropSlot, sourceConfig, startSource, type RunningSource } from '../test/support/source.ts';
import { OrderWriter } from './pipeline-writer.ts';
import { percentile, resetPeakRss, rssMb } from './sink-bench-support.ts';
import { cleanKafka, readRecords } from './sink-kafka.ts';
import { coverage, visibleAt, type StampGaps } from './sink-visibility.ts';
import { BenchError, round, say, sleep, useLogAppendTime } from './bench-common.ts';

export interface FreshnessOptions {
  rate: number;
  seconds: number;
  flushMs: number;
  warmup: number;
  keep: boolean;
}

const TICK_MS = 20;

export async function runFreshness(opts: FreshnessOptions) {
  const db = await createTestDatabase('bench_sink_lake');
  const lakeDir = mkdtempSync(join(tmpdir(), 'tide-bench-fresh-'));
  const store = new LocalStore(lakeDir);
  const src = sourceConfig(db.url, 'benchsink', { 'table.include.list': 'public\\.orders' });
  const prefix = src.config['topic.prefix'];
  const topic = `${prefix}.public.orders`;
  const sinkName = `bench-${prefix}`;
  const readerGroup = `${sinkName}-reader`;
  const admin = kafka().admin();
  await admin.connect();
  const sql = new pg.Client({ connectionString: db.url });
  await sql.connect();
  let source: RunningSource | undefined;
  let stateDir: string | undefined;
  let sink: RunningSink | undefined;
  let failed = true;
  try {
    await sql.query(
      `INSERT INTO customers (id, email, country) SELECT g, 'c' || g || '@example.com', 'United Kingdom' FROM generate_series(1, 200) g`,
    );
    source = await startSource(src);
    stateDir = source.stateDir;
    if (source.connector.state !== 'streaming')
      throw new BenchError('source', `the connector is ${source.connector.state}, not streaming (see its log above)`);
    await useLogAppendTime(admin, topic);
    resetPeakRss();
    const rss: Record<string, number> = { beforeSink: rssMb().rss };
    sink = startSink(
      sinkFile(sinkName, prefix, lakeDir, {
        topics: topic,
        'flush.interval.ms': opts.flushMs,
        'gold.refresh.interval.ms': 0,
        'delta.checkpoint.interval': 10,
      }),
      store,
    );

    say(`freshness: warm-up, ${opts.warmup.toLocaleString('en')} orders ...`);
    const writer = new OrderWriter(sql, { inserted: 0 });
    for (let i = 0; i < 4; i++) await writer.write(Math.ceil(opts.warmup / 4), 0);
    const warm = await settle(sql, admin, store, src.config['slot.name'], topic, sinkName, sink);
    const startOffsets = new Map(warm.map((p) => [p.partition, p.high]));
    rss.afterWarmup = rssMb().rss;

    say(`freshness: writing ${opts.rate} row changes/s for ${opts.seconds} s (half inserts, half updates) ...`);
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const end = t0 + opts.seconds * 1000;
    let changes = 0;
    let txs = 0;
    while (performance.now() < end) {
      const due = Math.floor(((performance.now() - t0) / 1000) * opts.rate) - changes;
      if (due > 0) {
        const ins = Math.ceil(due / 2);
        changes += await writer.write(ins, due - ins);
        txs++;
      }
      await sleep(TICK_MS);
    }
    const writeSeconds = (performance.now() - t0) / 1000;
    const final = await settle(sql, admin, store, src.config['slot.name'], topic, sinkName, sink);
    const cpu = process.cpuUsage(cpu0);
    const silverRows = (await DeltaTable.open(store, silverPath('public.orders')))!
      .files()
      .reduce((a, f) => a + Number((JSON.parse(f.stats ?? '{}') as { numRecords?: number }).numRecords ?? NaN), 0);
    const pgRows = Number((await sql.query<{ n: string }>('SELECT count(*)::text AS n FROM orders')).rows[0]!.n);
    if (silverRows !== pgRows) throw new BenchError('silver', `silver.orders holds ${silverRows} rows, Postgres ${pgRows}`);
    const wallSeconds = (performance.now() - t0) / 1000;
    const peakRssMB = rssMb().peak;
    rss.atEnd = rssMb().rss;
    const sinkStats = { ...sink.worker.stats };
    await sink.stop();
    sink = undefined;
    await source.stop();
    source = undefined;

    const expected = final.reduce((a, p) => a + p.high - (startOffsets.get(p.partition) ?? 0), 0);
    say(
      `freshness: ${changes} changes in ${txs} transactions (${Math.round(changes / writeSeconds)}/s); reading ${expected} records back ...`,
    );
    const records = await readRecords(topic, readerGroup, startOffsets, final);
    if (records.length !== expected)
      throw new BenchError('kafka read-back', `read ${records.length} records of ${topic}, expected ${expected}`);
    const appIds = new Map(final.map((p) => [txnAppId(sinkName, topic, p.partition), p.partition]));
    const gaps: StampGaps = { ctimeAfterMtimeMs: [], ctimeAfterCommitInfoMs: [] };
    const silver = coverage(join(lakeDir, silverPath('public.orders')), appIds, gaps);
    const bronze = coverage(join(lakeDir, bronzePath('public.orders')), appIds);
    const kafkaLat: number[] = [];
    const silverLat: number[] = [];
    const bronzeLat: number[] = [];
    const added: number[] = [];
    const silverVersions = new Set<number>();
    for (const r of records) {
      const s = visibleAt(silver, r);
      const b = visibleAt(bronze, r);
      if (!s || !b)
        throw new BenchError('delta log', `no commit covers ${topic}[${r.partition}]@${r.offset} in ${s ? 'bronze' : 'silver'}`);
      silverVersions.add(s.version);
      kafkaLat.push(r.appendMs - r.commitMs);
      silverLat.push(s.visibleMs - r.commitMs);
      bronzeLat.push(b.visibleMs - r.commitMs);
      added.push(s.visibleMs - r.appendMs);
    }
    const dist = (xs: number[]) => {
      const s = [...xs].sort((a, b) => a - b);
      return {
        p50ms: round(percentile(s, 50), 1),
        p90ms: round(percentile(s, 90), 1),
        p99ms: round(percentile(s, 99), 1),
        maxMs: round(s[s.length - 1] ?? NaN, 1),
      };
    };
    const silverDist = dist(silverLat);
    const kafkaDist = dist(kafkaLat);
    failed = false;
    return {
      method:
        'freshness = ctime of the first silver _delta_log commit whose txn version for the partition >= the record offset, minus source.ts_ms (Postgres commit time); baseline = Kafka LogAppendTime - source.ts_ms; one host clock',
      sinkSettings: {
        'flush.interval.ms': opts.flushMs,
        bronze: true,
        'silver.history.tables': 'public\\.orders',
        gold: 'off',
        topicPartitions: 3,
      },
      targetRowsPerSecond: opts.rate,
      achievedRowsPerSecond: Math.round(changes / writeSeconds),
      seconds: round(writeSeconds),
      transactions: txs,
      changes,
      records: records.length,
      silverCommits: silverVersions.size,
      silverRowsAtEnd: silverRows,
      silver: silverDist,
      bronze: dist(bronzeLat),
      baselineKafka: kafkaDist,
      lakeAddsAfterKafka: dist(added),
      ratioP50: round(silverDist.p50ms / kafkaDist.p50ms, 1),
      ratioP99: round(silverDist.p99ms / kafkaDist.p99ms, 1),
      /** Sanity of the visibility stamp over every silver commit: ctime is within a few ms of the file's write and of Tide's commitInfo.timestamp. */
      stampCheck: { ctimeAfterMtime: dist(gaps.ctimeAfterMtimeMs), ctimeAfterCommitInfo: dist(gaps.ctimeAfterCommitInfoMs) },
      processCpuCores: round((cpu.user + cpu.system) / 1e6 / wallSeconds, 2),
      peakRssMB,
      rssMB: rss,
      sinkStats: { flushes: sinkStats.flushes, messages: sinkStats.messages, silverChanges: sinkStats.silverChanges },
    };
  } finally {
    await sink?.stop().catch((err: Error) => say(`stopping the sink failed: ${err.message}`));
    await source?.stop().catch((err: Error) => say(`stopping the source failed: ${err.message}`));
    await sql.end();
    if (opts.keep && failed) say(`kept database ${db.name}, slot ${src.config['slot.name']}, lake ${lakeDir} and topics ${prefix}.*`);
    else {
      await dropSlotWhenReleased(db.url, src.config['slot.name']);
      await db.drop().catch((err: Error) => say(`could not drop database ${db.name}: ${err.message}`));
      await cleanKafka(admin, prefix, sinkName, [readerGroup, `tide-sink-${sinkName}`]);
      await store.close();
      await rm(lakeDir, { recursive: true, force: true });
      if (stateDir) await rm(stateDir, { recursive: true, force: true });
    }
    await admin.disconnect();
  }
}

/** Wait until the source confirmed every change so far and silver committed every record of `topic`; returns the high watermarks. */
async function settle(sql: pg.Client, admin: Admin, store: LocalStore, slot: string, topic: string, sinkName: string, sink: RunningSink) {
  const lsn = (await sql.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0]!.lsn;
  await until(`the source to confirm ${lsn} on slot ${slot}`, sink, async () => {
    const r = await sql.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND confirmed_flush_lsn >= $2::pg_lsn', [slot, lsn]);
    return r.rowCount === 1;
  });
  const marks = (await admin.fetchTopicOffsets(topic)).map((p) => ({ partition: p.partition, high: Number(p.high) }));
  await until(`silver to commit every record of ${topic} (${JSON.stringify(marks)})`, sink, async () => {
    const table = await DeltaTable.open(store, silverPath('public.orders'));
    return marks.every((m) => m.high === 0 || (table?.txnVersion(txnAppId(sinkName, topic, m.partition)) ?? -1) >= m.high - 1);
  });
  return marks;
}

async function until(what: string, sink: RunningSink, check: () => Promise<boolean>, timeoutMs = 180_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let sinkFailed: unknown;
  sink.done.catch((err: unknown) => (sinkFailed = err));
  while (!(await check())) {
    if (sinkFailed)
      throw new BenchError('sink', `stopped while waiting for ${what}: ${(sinkFailed as Error).message}`, { cause: sinkFailed });
    if (Date.now() > deadline) throw new BenchError('wait', `timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(100);
  }
}

/** Drop the slot once the walsender has let go of it (a moment after the source closed its connection). */
async function dropSlotWhenReleased(dbUrl: string, slot: string): Promise<void> {
  const c = new pg.Client({ connectionString: dbUrl });
  await c.connect();
  try {
    for (let i = 0; i < 100; i++) {
      await dropSlot(dbUrl, slot);
      if (!(await c.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [slot])).rowCount) return;
      await sleep(100);
    }
    say(`slot ${slot} is still active 10 s after the source stopped; drop it with pg_drop_replication_slot('${slot}')`);
  } finally {
    await c.end();
  }
}

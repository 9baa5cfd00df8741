import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPrisma, type PrismaClient } from '../../src/app/db.ts';
import { replay } from '../../src/app/replay.ts';
import { runTraffic } from '../../src/app/traffic.ts';
import { LocalStore } from '../../src/lake/storage/local-store.ts';
import { allReady, startHttpServer, type HttpServer } from '../../src/ops/http-server.ts';
import { meteredStore, registerSinkMetrics, SinkLagProbe, sinkReadiness } from '../../src/ops/sink-metrics.ts';
import { registerSourceMetrics, sourceReadiness } from '../../src/ops/source-metrics.ts';
import { createTestDatabase } from '../support/db.ts';
import { kafka, waitFor } from '../support/kafka.ts';
import { highWatermarks, ORDER_TABLES, sinkFile, startSink, waitForLake, type RunningSink } from '../support/lake.ts';
import { dropSlot, sourceConfig, startSource, waitForSourceCaughtUp, type RunningSource } from '../support/source.ts';

/**
 * The ops HTTP server on the real pipeline: order app → Postgres → source → Kafka → sink → Delta.
 * /metrics is scraped over HTTP and parsed; values are checked against what the systems say
 * (Kafka high watermarks, the slot in pg_replication_slots, SinkWorker.stats), and checked to move.
 */
type Sample = { name: string; labels: Record<string, string>; value: number };

function parseExposition(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not a sample line of the text format: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = JSON.parse(`"${l[2]}"`) as string;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

describe('metrics and health over HTTP on the running pipeline', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let prisma: PrismaClient;
  let sql: pg.Client;
  let source: RunningSource;
  let sink: RunningSink | undefined;
  let server: HttpServer;
  let lag: SinkLagProbe;
  let src: ReturnType<typeof sourceConfig>;
  let prefix: string;
  const removers: (() => void)[] = [];
  const lakeDir = mkdtempSync(join(tmpdir(), 'tide-metrics-lake-'));
  const sinkName = `metrics-${Date.now().toString(36)}`;
  let worker: RunningSink['worker'] | undefined;

  const scrape = async (): Promise<Sample[]> => {
    const res = await fetch(`${server.url}metrics`);
    expect(res.status).toBe(200);
    return parseExposition(await res.text());
  };
  const pick = (samples: Sample[], name: string, labels: Record<string, string> = {}) =>
    samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  const one = (samples: Sample[], name: string, labels: Record<string, string> = {}): number => {
    const hits = pick(samples, name, labels);
    if (hits.length !== 1) throw new Error(`${name}${JSON.stringify(labels)}: ${hits.length} series, expected 1`);
    return hits[0]!.value;
  };
  const readyz = async () => {
    const res = await fetch(`${server.url}readyz`);
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };

  beforeAll(async () => {
    db = await createTestDatabase('ops_metrics');
    prisma = createPrisma(db.url, 4);
    sql = new pg.Client({ connectionString: db.url });
    await sql.connect();
    await replay(prisma, { limit: 300, concurrency: 4 });
    src = sourceConfig(db.url, 'opsmetrics', { 'table.include.list': 'public\\.(customers|products|orders|order_items)' });
    prefix = src.config['topic.prefix'];
    source = await startSource(src);
    const slot = src.config['slot.name'];
    removers.push(
      registerSourceMetrics({
        name: src.name,
        status: () => source.connector.status(),
        // What slot-watch will provide; read here straight from the server.
        slot: async () => {
          const { rows } = await sql.query<{ lag: string; retained: string }>(
            `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint::text AS lag,
                    pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint::text AS retained
               FROM pg_replication_slots WHERE slot_name = $1`,
            [slot],
          );
          return rows[0] && { lagBytes: Number(rows[0].lag), retainedWalBytes: Number(rows[0].retained) };
        },
      }),
    );
    // Gold builds after the first flush, then only when forced (refreshGold) within the test's time.
    const file = sinkFile(sinkName, prefix, lakeDir, { 'gold.refresh.interval.ms': 3_600_000 });
    const store = meteredStore(new LocalStore(lakeDir), sinkName);
    lag = new SinkLagProbe(file, store, { minIntervalMs: 0 });
    const stats = () =>
      worker?.stats ?? { flushes: 0, messages: 0, bronzeRows: 0, silverChanges: 0, deadLetters: 0, goldRefreshes: 0, newestCommitMs: {} };
    removers.push(registerSinkMetrics({ name: sinkName, stats, lag }));
    const sinkReady = sinkReadiness({ name: sinkName, stats, lag }, { stallMs: 30_000 });
    server = await startHttpServer({
      port: 0,
      ready: allReady([sourceReadiness({ name: src.name, status: () => source.connector.status() }), sinkReady]),
    });
    startTheSink = () => {
      sink = startSink(file, store);
      worker = sink.worker;
    };
  }, 300_000);
  let startTheSink: () => void;

  afterAll(async () => {
    await server?.close();
    for (const r of removers) r();
    await sink?.stop();
    await lag?.close();
    await source?.stop();
    await prisma?.$disconnect();
    if (db && src) await dropSlot(db.url, src.config['slot.name']);
    await sql?.end();
    await db?.drop();
  });

  it('/healthz is 200; /readyz is 503 with the reason while the sink is not connected, 200 once it consumes and commits', async () => {
    expect((await fetch(`${server.url}healthz`)).status).toBe(200);
    const before = await readyz();
    expect(before.status).toBe(503);
    expect(before.body).toMatchObject({ status: 'not ready', component: `sink ${sinkName}` });
    expect(String(before.body.reason)).toMatch(/its consumer group is (Dead|Empty|Unknown) with 0 member\(s\): not connected to Kafka yet/);
    expect(before.body.checks).toEqual([
      { component: `source ${src.name}`, ready: true },
      { component: `sink ${sinkName}`, ready: false, reason: expect.any(String) },
    ]);

    // Consumer lag before the sink ever ran: every message of every partition is waiting.
    const marks = await highWatermarks(ORDER_TABLES.map((t) => `${prefix}.${t}`));
    const samples = await scrape();
    for (const m of marks)
      expect(
        one(samples, 'tide_sink_consumer_lag_messages', { topic: m.topic, partition: String(m.partition) }),
        `${m.topic}[${m.partition}]`,
      ).toBe(Number(m.high));
    expect(pick(samples, 'tide_sink_consumer_lag_messages')).toHaveLength(marks.length);

    startTheSink();
    await waitFor(async () => (await readyz()).status === 200, '/readyz to turn 200', 90_000);
    expect((await readyz()).body).toMatchObject({ status: 'ready', ready: true });
  });

  it('source series: state, confirmed LSN (moves with traffic, never ahead of the slot), snapshot progress, slot lag and retained WAL', async () => {
    const first = await scrape();
    const c = { connector: src.name };
    expect(one(first, 'tide_source_state', { ...c, state: 'streaming' })).toBe(1);
    expect(pick(first, 'tide_source_state', c).filter((s) => s.value === 1)).toHaveLength(1);
    expect(
      pick(first, 'tide_source_state', c)
        .map((s) => s.labels.state)
        .sort(),
    ).toEqual(['failed', 'paused', 'snapshotting', 'starting', 'stopped', 'streaming']);
    const confirmedBefore = one(first, 'tide_source_confirmed_lsn_bytes', c);
    expect(confirmedBefore).toBeGreaterThan(0);
    expect(one(first, 'tide_source_retained_wal_bytes', c)).toBeGreaterThanOrEqual(0);
    // The snapshot's progress stays visible after it finished (the status keeps the last table it read).
    const snap = source.connector.status().snapshot!;
    expect(one(first, 'tide_source_snapshot_rows', { ...c, table: snap.table })).toBe(snap.rows);
    expect(one(first, 'tide_source_snapshot_rows_expected', { ...c, table: snap.table })).toBe(snap.totalRows);
    expect(snap.rows).toBeGreaterThan(0);

    const traffic = await runTraffic(prisma, { rate: 40, durationMs: 2500, concurrency: 2 });
    expect(traffic.errors, traffic.lastError).toBe(0);
    await waitForSourceCaughtUp(sql, src.config['slot.name']);
    const after = await scrape();
    expect(one(after, 'tide_source_confirmed_lsn_bytes', c)).toBeGreaterThan(confirmedBefore);
    // The gauge says what the slot says (read in the same scrape, bounded by the WAL written meanwhile by other tests' databases).
    const { rows } = await sql.query<{ confirmed: string }>(
      `SELECT pg_wal_lsn_diff(confirmed_flush_lsn, '0/0')::bigint::text AS confirmed FROM pg_replication_slots WHERE slot_name = $1`,
      [src.config['slot.name']],
    );
    expect(one(after, 'tide_source_confirmed_lsn_bytes', c)).toBeLessThanOrEqual(Number(rows[0]!.confirmed));
    expect(one(after, 'tide_source_slot_lag_bytes', c)).toBeGreaterThanOrEqual(0);
    expect(one(after, 'tide_source_pending_events', c)).toBeGreaterThanOrEqual(0);
  });

  it('sink series: messages, flushes, commits, files and bytes per lake table move; lag drops to 0; freshness per table', async () => {
    await waitForLake(tracked(), sinkName, prefix);
    const c = { connector: sinkName };
    // The lake shows a flush's commit a moment before the worker counts its messages: scrape until the last
    // flush has finished (the series must then equal the worker's own counts).
    let s1 = await scrape();
    await waitFor(
      async () => {
        s1 = await scrape();
        return (
          one(s1, 'tide_sink_messages_total', c) === worker!.stats.messages &&
          one(s1, 'tide_sink_flushes_total', c) === worker!.stats.flushes
        );
      },
      "the sink's metrics to equal its stats once its last flush has finished",
      30_000,
    ).catch(() => undefined);
    expect(one(s1, 'tide_sink_messages_total', c)).toBe(worker!.stats.messages);
    expect(one(s1, 'tide_sink_flushes_total', c)).toBe(worker!.stats.flushes);
    expect(one(s1, 'tide_sink_messages_total', c)).toBeGreaterThan(0);
    for (const t of ['bronze/orders', 'silver/orders', 'silver/orders_history', 'bronze/order_items', 'silver/customers']) {
      expect(
        pick(s1, 'tide_sink_commits_total', { ...c, lake_table: t }).reduce((n, s) => n + s.value, 0),
        t,
      ).toBeGreaterThan(0);
      expect(one(s1, 'tide_sink_files_written_total', { ...c, lake_table: t }), t).toBeGreaterThan(0);
      expect(one(s1, 'tide_sink_bytes_written_total', { ...c, lake_table: t }), t).toBeGreaterThan(100);
    }
    expect(one(s1, 'tide_sink_commits_total', { ...c, lake_table: 'silver/orders', operation: 'CREATE TABLE' })).toBe(1);
    expect(one(s1, 'tide_sink_commits_total', { ...c, lake_table: 'silver/orders', operation: 'MERGE' })).toBeGreaterThan(0);
    expect(one(s1, 'tide_sink_commits_total', { ...c, lake_table: 'bronze/orders', operation: 'WRITE' })).toBeGreaterThan(0);
    const lagSeries = pick(s1, 'tide_sink_consumer_lag_messages', c);
    expect(lagSeries).toHaveLength(ORDER_TABLES.length * 3);
    expect(lagSeries.filter((s) => s.value !== 0)).toEqual([]);
    const fresh = one(s1, 'tide_sink_freshness_seconds', { ...c, table: 'public.orders' });
    const expected = (Date.now() - worker!.stats.newestCommitMs['public.orders']!) / 1000;
    expect(Math.abs(fresh - expected)).toBeLessThan(2);
    // Idle: freshness grows with the clock.
    await new Promise((r) => setTimeout(r, 1500));
    const s2 = await scrape();
    expect(one(s2, 'tide_sink_freshness_seconds', { ...c, table: 'public.orders' }) - fresh).toBeGreaterThan(1);

    // More traffic: the counters move.
    const traffic = await runTraffic(prisma, { rate: 40, durationMs: 2000, concurrency: 2 });
    expect(traffic.errors, traffic.lastError).toBe(0);
    await waitForSourceCaughtUp(sql, src.config['slot.name']);
    await waitForLake(tracked(), sinkName, prefix);
    const s3 = await scrape();
    expect(one(s3, 'tide_sink_messages_total', c)).toBeGreaterThan(one(s1, 'tide_sink_messages_total', c));
    expect(one(s3, 'tide_sink_bytes_written_total', { ...c, lake_table: 'bronze/orders' })).toBeGreaterThan(
      one(s1, 'tide_sink_bytes_written_total', { ...c, lake_table: 'bronze/orders' }),
    );
    const lastFlush = one(s3, 'tide_sink_last_flush_timestamp_seconds', c);
    expect(lastFlush).toBeLessThanOrEqual(worker!.stats.lastFlushAt! / 1000); // a flush may land after the scrape
    expect(lastFlush).toBeGreaterThan(Date.now() / 1000 - 30);
  });

  it('dead letters and gold refreshes are counted', async () => {
    const producer = kafka().producer();
    await producer.connect();
    await producer.send({ topic: `${prefix}.public.orders`, messages: [{ key: 'k', value: Buffer.from('not an Avro message') }] });
    await producer.disconnect();
    await waitFor(
      async () => one(await scrape(), 'tide_sink_dead_letters_total', { connector: sinkName }) === 1,
      'the dead letter to be counted',
      30_000,
    );
    const built = worker!.stats.goldRefreshes;
    expect(built).toBeGreaterThan(0); // the first flush built gold
    await worker!.refreshGold(); // silver changed since (the traffic above): builds again
    const s = await scrape();
    expect(one(s, 'tide_sink_gold_refreshes_total', { connector: sinkName })).toBe(built + 1);
    expect(
      pick(s, 'tide_sink_commits_total', { connector: sinkName }).filter((x) => x.labels.lake_table?.startsWith('gold/')).length,
    ).toBeGreaterThan(0);
  });

  it('consumer lag counts exactly the messages the lake has not committed while the sink is stopped', async () => {
    await waitForLake(tracked(), sinkName, prefix);
    await sink!.stop();
    sink = undefined;
    const before = await highWatermarks(ORDER_TABLES.map((t) => `${prefix}.${t}`));
    const traffic = await runTraffic(prisma, { rate: 30, durationMs: 1500, concurrency: 2 });
    expect(traffic.errors, traffic.lastError).toBe(0);
    await waitForSourceCaughtUp(sql, src.config['slot.name']);
    const after = await highWatermarks(ORDER_TABLES.map((t) => `${prefix}.${t}`));
    const s = await scrape();
    let total = 0;
    for (const m of after) {
      const was = before.find((b) => b.topic === m.topic && b.partition === m.partition)!;
      const want = Number(m.high - was.high);
      total += want;
      expect(
        one(s, 'tide_sink_consumer_lag_messages', { topic: m.topic, partition: String(m.partition) }),
        `${m.topic}[${m.partition}]`,
      ).toBe(want);
    }
    expect(total).toBeGreaterThan(0);
    const r = await readyz();
    expect(r.status).toBe(503);
    expect(String(r.body.reason)).toMatch(/consumer group is \w+ with 0 member\(s\)/);
  });

  it('events by table and op, and commit-to-ack latencies (the source reports through its SourceObserver)', async () => {
    // The source's own count first, then the scrape: both only grow, so an event counted between the two reads
    // cannot make the series look short (read the other way round, it could).
    const streamed = source.connector.status().eventsTotal;
    const s = await scrape();
    const events = pick(s, 'tide_source_events_total', { connector: src.name });
    expect(events.find((e) => e.labels.table === 'public.orders' && e.labels.op === 'c')?.value).toBeGreaterThan(0);
    // Streamed events at least (snapshot reads may be counted too, as op r).
    expect(events.reduce((n, e) => n + e.value, 0)).toBeGreaterThanOrEqual(streamed);
    expect(one(s, 'tide_source_commit_to_ack_seconds_count', { connector: src.name })).toBeGreaterThan(0);
  });

  it('silver merge durations (the sink reports through its SinkObserver)', async () => {
    const s = await scrape();
    expect(one(s, 'tide_sink_merge_duration_seconds_count', { connector: sinkName, table: 'public.orders' })).toBeGreaterThan(0);
  });

  function tracked(): LocalStore {
    return new LocalStore(lakeDir);
  }
});

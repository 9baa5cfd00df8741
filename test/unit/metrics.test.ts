import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { DeltaTable } from '../../src/lake/delta/delta-table.ts';
import { LocalStore } from '../../src/lake/storage/local-store.ts';
import { TideMetrics } from '../../src/ops/metrics.ts';
import { meteredStore, observeMerge, registerSinkMetrics } from '../../src/ops/sink-metrics.ts';
import {
  observeCommitToAck,
  observeSchemaRegistered,
  registerSourceMetrics,
  sourceEventCounter,
  sourceReadiness,
  type SlotWalFigures,
} from '../../src/ops/source-metrics.ts';
import type { SinkStats } from '../../src/sink/sink-worker.ts';
import type { SourceStatus } from '../../src/source/status-file.ts';

/** The value of one series after a scrape (undefined when the series does not exist). */
async function value(metrics: TideMetrics, name: string, labels: Record<string, string | number> = {}): Promise<number | undefined> {
  const all = await metrics.registry.getMetricsAsJSON();
  const metric = all.find((m) => m.name === name);
  if (!metric) throw new Error(`no metric ${name} in the registry`);
  const want = Object.entries(labels).map(([k, v]) => [k, String(v)]);
  const hit = metric.values.find(
    (v) =>
      want.every(([k, x]) => String((v.labels as Record<string, unknown>)[k!]) === x) &&
      Object.keys(v.labels).length === want.length + ('le' in v.labels ? 1 : 0),
  );
  return hit?.value;
}

/** The series name of a histogram value (`…_bucket`, `…_sum`, `…_count`); prom-client's types omit it. */
function nameOf(v: object): string {
  return (v as { metricName?: string }).metricName ?? '';
}

function status(over: Partial<SourceStatus> = {}): SourceStatus {
  return {
    name: 'orders-source',
    pid: 1,
    state: 'streaming',
    slot: 'tide_orders',
    confirmedLsn: '1/0000000A',
    receivedLsn: '1/00000010',
    eventsTotal: 0,
    eventsPerSecond: 0,
    pendingEvents: 0,
    updatedAt: new Date().toISOString(),
    ...over,
  };
}

function stats(over: Partial<SinkStats> = {}): SinkStats {
  return { flushes: 0, messages: 0, bronzeRows: 0, silverChanges: 0, deadLetters: 0, goldRefreshes: 0, newestCommitMs: {}, ...over };
}

afterEach(() => {
  vi.useRealTimers();
});

describe('the metric definitions', () => {
  it('define every source and sink metric the issue asks for, with its type and labels', () => {
    const metrics = new TideMetrics({ processMetrics: false });
    const defined = Object.fromEntries(
      metrics.registry.getMetricsAsArray().map((m) => {
        const { type, labelNames } = m as unknown as { type: string; labelNames: string[] };
        return [m.name, `${type} ${[...labelNames].join(',')}`];
      }),
    );
    expect(defined).toEqual({
      tide_source_events_total: 'counter connector,table,op',
      tide_source_confirmed_lsn_bytes: 'gauge connector,slot',
      tide_source_received_lsn_bytes: 'gauge connector,slot',
      tide_source_slot_lag_bytes: 'gauge connector,slot',
      tide_source_retained_wal_bytes: 'gauge connector,slot',
      tide_source_slot_level: 'gauge connector,slot,level',
      tide_source_commit_to_ack_seconds: 'histogram connector',
      tide_source_snapshot_rows: 'gauge connector,table',
      tide_source_snapshot_rows_expected: 'gauge connector,table',
      tide_source_incremental_snapshot_rows: 'gauge connector,table',
      tide_source_incremental_snapshot_rows_expected: 'gauge connector,table',
      tide_source_incremental_snapshots_queued: 'gauge connector',
      tide_source_schema_versions_registered_total: 'counter connector,subject',
      tide_source_pending_events: 'gauge connector',
      tide_source_state: 'gauge connector,state',
      tide_sink_consumer_lag_messages: 'gauge connector,topic,partition',
      tide_sink_commits_total: 'counter connector,lake_table,operation',
      tide_sink_files_written_total: 'counter connector,lake_table',
      tide_sink_bytes_written_total: 'counter connector,lake_table',
      tide_sink_merge_duration_seconds: 'histogram connector,table',
      tide_sink_dead_letters_total: 'counter connector',
      tide_sink_freshness_seconds: 'gauge connector,table',
      tide_sink_gold_refreshes_total: 'counter connector',
      tide_sink_messages_total: 'counter connector',
      tide_sink_flushes_total: 'counter connector',
      tide_sink_last_flush_timestamp_seconds: 'gauge connector',
      tide_sink_history_pending_events: 'gauge connector',
      tide_connection_retries_total: 'counter connector,connection',
      tide_connection_up: 'gauge connector,connection',
      tide_metrics_collector_errors_total: 'counter collector',
    });
  });

  it('add Node process metrics unless switched off', () => {
    const names = new TideMetrics().metricNames();
    expect(names).toEqual(
      expect.arrayContaining(['process_cpu_seconds_total', 'process_resident_memory_bytes', 'nodejs_eventloop_lag_p99_seconds']),
    );
  });
});

describe('source metrics', () => {
  it('read the connector status at scrape time: state one-hot, LSNs as bytes, pending events, slot lag and retained WAL', async () => {
    const metrics = new TideMetrics({ processMetrics: false });
    let s = status({
      state: 'snapshotting',
      confirmedLsn: '0/0',
      snapshot: { table: 'public.orders', rows: 50, totalRows: 200, rowsPerSecond: 10, etaSeconds: 15 },
    });
    let slot: SlotWalFigures | undefined = { lagBytes: 4096, retainedWalBytes: 65536, level: 'warning' };
    const unregister = registerSourceMetrics({ name: 'orders-source', status: () => s, slot: async () => slot }, metrics);
    await metrics.scrape();
    const c = { connector: 'orders-source' };
    const cs = { ...c, slot: 'tide_orders' };
    expect(await value(metrics, 'tide_source_state', { ...c, state: 'snapshotting' })).toBe(1);
    expect(await value(metrics, 'tide_source_state', { ...c, state: 'streaming' })).toBe(0);
    expect(await value(metrics, 'tide_source_snapshot_rows', { ...c, table: 'public.orders' })).toBe(50);
    expect(await value(metrics, 'tide_source_snapshot_rows_expected', { ...c, table: 'public.orders' })).toBe(200);
    expect(await value(metrics, 'tide_source_slot_lag_bytes', cs)).toBe(4096);
    expect(await value(metrics, 'tide_source_retained_wal_bytes', cs)).toBe(65536);
    expect(await value(metrics, 'tide_source_slot_level', { ...cs, level: 'warning' })).toBe(1);
    expect(await value(metrics, 'tide_source_slot_level', { ...cs, level: 'ok' })).toBe(0);
    expect(await value(metrics, 'tide_source_slot_level', { ...cs, level: 'critical' })).toBe(0);

    // The snapshot moves to the next table, then streaming starts: the finished table keeps its figures.
    s = status({ state: 'snapshotting', snapshot: { table: 'public.items', rows: 7, totalRows: 9, rowsPerSecond: 1, etaSeconds: 2 } });
    await metrics.scrape();
    s = status({ state: 'streaming', confirmedLsn: '1/0000000A', receivedLsn: '1/00000010', pendingEvents: 12 });
    slot = { lagBytes: null, retainedWalBytes: 100 };
    await metrics.scrape();
    expect(await value(metrics, 'tide_source_state', { ...c, state: 'streaming' })).toBe(1);
    expect(await value(metrics, 'tide_source_state', { ...c, state: 'snapshotting' })).toBe(0);
    expect(await value(metrics, 'tide_source_confirmed_lsn_bytes', cs)).toBe(2 ** 32 + 10);
    expect(await value(metrics, 'tide_source_received_lsn_bytes', cs)).toBe(2 ** 32 + 16);
    expect(await value(metrics, 'tide_source_pending_events', c)).toBe(12);
    expect(await value(metrics, 'tide_source_snapshot_rows', { ...c, table: 'public.orders' })).toBe(50);
    expect(await value(metrics, 'tide_source_snapshot_rows', { ...c, table: 'public.items' })).toBe(7);
    // A reading the server no longer gives disappears instead of staying stale.
    expect(await value(metrics, 'tide_source_slot_lag_bytes', cs)).toBeUndefined();
    expect(await value(metrics, 'tide_source_retained_wal_bytes', cs)).toBe(100);
    expect(await value(metrics, 'tide_source_slot_level', { ...cs, level: 'warning' })).toBeUndefined();

    unregister();
    await metrics.scrape();
    expect(await value(metrics, 'tide_source_state', { ...c, state: 'streaming' })).toBeUndefined();
    expect(await value(metrics, 'tide_source_pending_events', c)).toBeUndefined();
  });

  it('count events by table and op from the hot-path tally, commit-to-ack latencies and distinct schema versions', async () => {
    const metrics = new TideMetrics({ processMetrics: false });
    const events = sourceEventCounter('src-a', metrics);
    expect(sourceEventCounter('src-a', metrics)).toBe(events);
    for (let i = 0; i < 5; i++) events.add('public.orders', 'c');
    events.add('public.orders', 'u', 3);
    sourceEventCounter('src-b', metrics).add('public.items', 'd');
    await metrics.scrape();
    expect(await value(metrics, 'tide_source_events_total', { connector: 'src-a', table: 'public.orders', op: 'c' })).toBe(5);
    expect(await value(metrics, 'tide_source_events_total', { connector: 'src-a', table: 'public.orders', op: 'u' })).toBe(3);
    expect(await value(metrics, 'tide_source_events_total', { connector: 'src-b', table: 'public.items', op: 'd' })).toBe(1);
    events.add('public.orders', 'c', 2);
    await metrics.scrape();
    expect(await value(metrics, 'tide_source_events_total', { connector: 'src-a', table: 'public.orders', op: 'c' })).toBe(7);

    observeCommitToAck('src-a', 30, metrics);
    observeCommitToAck('src-a', 700, metrics);
    observeCommitToAck('src-a', -5, metrics); // database clock ahead: counts as 0
    const hist = (await metrics.registry.getMetricsAsJSON()).find((m) => m.name === 'tide_source_commit_to_ack_seconds')!;
    const bucket = (le: number) => hist.values.find((v) => nameOf(v).endsWith('_bucket') && v.labels.le === le)?.value;
    expect(bucket(0.005)).toBe(1);
    expect(bucket(0.05)).toBe(2);
    expect(bucket(1)).toBe(3);
    expect(hist.values.find((v) => nameOf(v).endsWith('_sum'))?.value).toBeCloseTo(0.73);

    observeSchemaRegistered('src-a', 'x.public.orders-value', 7, metrics);
    observeSchemaRegistered('src-a', 'x.public.orders-value', 7, metrics);
    observeSchemaRegistered('src-a', 'x.public.orders-value', 9, metrics);
    expect(
      await value(metrics, 'tide_source_schema_versions_registered_total', { connector: 'src-a', subject: 'x.public.orders-value' }),
    ).toBe(2);
  });

  it('readiness: streaming and progressing is ready; snapshotting, paused, or a confirmed LSN stuck with events pending is not', async () => {
    vi.useFakeTimers({ now: 1_000_000 });
    let s = status({
      state: 'snapshotting',
      snapshot: { table: 'public.orders', rows: 5, totalRows: 10, rowsPerSecond: 1, etaSeconds: 5 },
    });
    const ready = sourceReadiness({ name: 'src', status: () => s }, { stallMs: 10_000 });
    expect(await ready()).toEqual({ ready: false, component: 'source src', reason: 'is snapshotting, table public.orders at 5/10 rows' });
    s = status({ pendingEvents: 3 });
    expect(await ready()).toEqual({ ready: true, component: 'source src' });
    vi.advanceTimersByTime(11_000);
    expect(await ready()).toMatchObject({
      ready: false,
      reason: expect.stringMatching(/^3 events wait for Kafka and the confirmed LSN 1\/0000000A has not moved for 11 s$/),
    });
    s = status({ pendingEvents: 3, confirmedLsn: '1/0000000B' });
    expect((await ready()).ready).toBe(true);
    vi.advanceTimersByTime(60_000);
    s = status({ pendingEvents: 0, confirmedLsn: '1/0000000B' }); // idle and caught up: ready
    expect((await ready()).ready).toBe(true);
    s = status({ state: 'paused', error: 'table public.orders: incompatible' });
    expect(await ready()).toMatchObject({ ready: false, reason: 'is paused: table public.orders: incompatible' });
  });
});

describe('sink metrics', () => {
  it('read SinkWorker.stats at scrape time: counters, last flush, freshness per table', async () => {
    const metrics = new TideMetrics({ processMetrics: false });
    const now = 1_700_000_000_000;
    let st = stats({
      messages: 10,
      flushes: 2,
      deadLetters: 1,
      goldRefreshes: 0,
      lastFlushAt: now - 500,
      newestCommitMs: { 'public.orders': now - 4000 },
      historyPendingEvents: 1234,
    });
    registerSinkMetrics({ name: 'lake', stats: () => st, now: () => now }, metrics);
    await metrics.scrape();
    const c = { connector: 'lake' };
    expect(await value(metrics, 'tide_sink_messages_total', c)).toBe(10);
    expect(await value(metrics, 'tide_sink_flushes_total', c)).toBe(2);
    expect(await value(metrics, 'tide_sink_dead_letters_total', c)).toBe(1);
    expect(await value(metrics, 'tide_sink_gold_refreshes_total', c)).toBe(0);
    expect(await value(metrics, 'tide_sink_last_flush_timestamp_seconds', c)).toBe((now - 500) / 1000);
    expect(await value(metrics, 'tide_sink_history_pending_events', c)).toBe(1234);
    expect(await value(metrics, 'tide_sink_freshness_seconds', { ...c, table: 'public.orders' })).toBe(4);
    st = stats({
      messages: 25,
      flushes: 3,
      deadLetters: 1,
      goldRefreshes: 1,
      newestCommitMs: { 'public.orders': now - 1000, 'public.items': now + 50 },
    });
    await metrics.scrape();
    expect(await value(metrics, 'tide_sink_messages_total', c)).toBe(25);
    expect(await value(metrics, 'tide_sink_gold_refreshes_total', c)).toBe(1);
    expect(await value(metrics, 'tide_sink_freshness_seconds', { ...c, table: 'public.orders' })).toBe(1);
    expect(await value(metrics, 'tide_sink_freshness_seconds', { ...c, table: 'public.items' })).toBe(0); // clocks a little apart: never negative
  });

  it('the metered store counts Delta commits (with their operation), data files and bytes per lake table, and nothing else', async () => {
    const metrics = new TideMetrics({ processMetrics: false });
    const dir = mkdtempSync(join(tmpdir(), 'tide-metered-'));
    try {
      const store = meteredStore(new LocalStore(join(dir, 'lake')), 'lake', metrics);
      const table = await DeltaTable.create(store, 'silver/orders', {
        name: 'silver.orders',
        schema: { columns: [{ name: 'id', type: { kind: 'long' }, nullable: false }] },
      });
      const local = join(dir, 'part-0.parquet');
      writeFileSync(local, Buffer.alloc(1234, 1));
      await store.putFile('silver/orders/part-0.parquet', local);
      await store.put('silver/orders/_commit_date=2026-11-24/part-1.parquet', Buffer.alloc(100));
      await store.put('silver/orders/notes.txt', Buffer.from('not data'));
      await table.commit([{ add: { path: 'part-0.parquet', partitionValues: {}, size: 1234, modificationTime: 1, dataChange: true } }], {
        operation: 'MERGE',
      });
      // A commit another writer won is not ours: putIfAbsent refuses and nothing is counted.
      expect(await store.putIfAbsent('silver/orders/_delta_log/00000000000000000001.json', Buffer.from('{}'))).toBe(false);
      await table.checkpoint();

      const t = { connector: 'lake', lake_table: 'silver/orders' };
      expect(await value(metrics, 'tide_sink_commits_total', { ...t, operation: 'CREATE TABLE' })).toBe(1);
      expect(await value(metrics, 'tide_sink_commits_total', { ...t, operation: 'MERGE' })).toBe(1);
      expect(await value(metrics, 'tide_sink_files_written_total', t)).toBe(2);
      expect(await value(metrics, 'tide_sink_bytes_written_total', t)).toBe(1334);
      expect(store.uri).toBe(`file://${join(dir, 'lake')}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('observeMerge fills the merge duration histogram per table', async () => {
    const metrics = new TideMetrics({ processMetrics: false });
    observeMerge('lake', 'public.orders', 0.2, metrics);
    observeMerge('lake', 'public.orders', 3, metrics);
    const hist = (await metrics.registry.getMetricsAsJSON()).find((m) => m.name === 'tide_sink_merge_duration_seconds')!;
    const count = hist.values.find((v) => nameOf(v).endsWith('_count') && v.labels.table === 'public.orders');
    expect(count?.value).toBe(2);
    expect(hist.values.find((v) => nameOf(v).endsWith('_bucket') && v.labels.le === 0.25)?.value).toBe(1);
  });
});

describe('collectors', () => {
  it('a failing or hanging collector is counted and logged; the others still report', async () => {
    const metrics = new TideMetrics({ processMetrics: false, collectorTimeoutMs: 50 });
    registerSinkMetrics({ name: 'ok', stats: () => stats({ messages: 3 }) }, metrics);
    metrics.addCollector('broken', () => {
      throw new Error('boom');
    });
    metrics.addCollector('slow', () => new Promise<void>(() => undefined));
    const text = await metrics.scrape();
    expect(text).toContain('tide_sink_messages_total{connector="ok"} 3');
    expect(await value(metrics, 'tide_metrics_collector_errors_total', { collector: 'broken' })).toBe(1);
    expect(await value(metrics, 'tide_metrics_collector_errors_total', { collector: 'slow' })).toBe(1);
    expect(() => metrics.addCollector('broken', () => undefined)).toThrow(/metrics collector broken: is registered already/);
  });
});

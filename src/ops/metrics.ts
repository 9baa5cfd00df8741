import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { TideError } from '../errors.ts';
import { log as rootLog, type Logger } from '../log.ts';
import { TRANSITIONS } from '../source/source-state.ts';

/**
 * Every Prometheus metric Tide exports, defined in one place (issue 5, "Metrics and health").
 *
 * Naming follows Prometheus' conventions (https://prometheus.io/docs/practices/naming/): a `tide_`
 * prefix, the layer (`source_`, `sink_`), base units in the name (`_seconds`, `_bytes`), `_total`
 * only on counters. Every series carries the `connector` label (a process may run several connectors,
 * e.g. `tide demo`); label values are table, topic, slot and subject names, never configuration values.
 *
 * Values come from two places:
 * - event-time hooks (source-metrics.ts, sink-metrics.ts) that the pipeline calls as things happen;
 * - scrape-time collectors (`addCollector`) that read a connector's own state (SourceConnector.status(),
 *   SinkWorker.stats, Kafka offsets) when `/metrics` is asked, so an idle process does no work for them.
 * `scrape()` runs the collectors, then renders the registry in the text exposition format.
 */
export const SOURCE_STATES = Object.keys(TRANSITIONS) as (keyof typeof TRANSITIONS)[];
export const SLOT_LEVELS = ['ok', 'warning', 'critical'] as const;

/** Buckets for latencies from milliseconds to minutes (commit → Kafka ack, merges). */
const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

export type Collector = () => void | Promise<void>;

export class MetricsCollectorError extends TideError {
  constructor(
    readonly collector: string,
    message: string,
    options: { cause?: unknown } = {},
  ) {
    super(`metrics collector ${collector}: ${message}`, { ...options, retriable: true });
    this.name = 'MetricsCollectorError';
  }
}

function defineSourceMetrics(registers: Registry[]) {
  return {
    events: new Counter({
      name: 'tide_source_events_total',
      help: 'Change events published to Kafka, by source table and Debezium op (c, u, d, r, t).',
      labelNames: ['connector', 'table', 'op'] as const,
      registers,
    }),
    confirmedLsn: new Gauge({
      name: 'tide_source_confirmed_lsn_bytes',
      help: 'The LSN confirmed to the replication slot (everything at or before it is acknowledged by Kafka), as a byte position in the WAL.',
      labelNames: ['connector', 'slot'] as const,
      registers,
    }),
    receivedLsn: new Gauge({
      name: 'tide_source_received_lsn_bytes',
      help: 'Start LSN of the last message received from the slot, as a byte position in the WAL.',
      labelNames: ['connector', 'slot'] as const,
      registers,
    }),
    slotLag: new Gauge({
      name: 'tide_source_slot_lag_bytes',
      help: "WAL written but not yet confirmed by the connector: pg_current_wal_lsn() - the slot's confirmed_flush_lsn.",
      labelNames: ['connector', 'slot'] as const,
      registers,
    }),
    retainedWal: new Gauge({
      name: 'tide_source_retained_wal_bytes',
      help: "WAL the server keeps for the slot: pg_current_wal_lsn() - the slot's restart_lsn. Grows without bound when the connector stops.",
      labelNames: ['connector', 'slot'] as const,
      registers,
    }),
    slotLevel: new Gauge({
      name: 'tide_source_slot_level',
      help: "The running source's own check of its slot against its thresholds (slot-watch): 1 for the current level (ok, warning, critical), 0 for the others.",
      labelNames: ['connector', 'slot', 'level'] as const,
      registers,
    }),
    commitToAck: new Histogram({
      name: 'tide_source_commit_to_ack_seconds',
      help: 'Time from a transaction commit in Postgres (its commit timestamp) to Kafka acknowledging its last event.',
      labelNames: ['connector'] as const,
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    snapshotRows: new Gauge({
      name: 'tide_source_snapshot_rows',
      help: 'Rows of a table read by the initial snapshot so far.',
      labelNames: ['connector', 'table'] as const,
      registers,
    }),
    snapshotRowsExpected: new Gauge({
      name: 'tide_source_snapshot_rows_expected',
      help: "Rows the snapshot expects to read from a table (Postgres' estimate when it started the table).",
      labelNames: ['connector', 'table'] as const,
      registers,
    }),
    incrementalRows: new Gauge({
      name: 'tide_source_incremental_snapshot_rows',
      help: 'Rows an incremental snapshot has published from a table so far (the one running, or the last that finished).',
      labelNames: ['connector', 'table'] as const,
      registers,
    }),
    incrementalRowsExpected: new Gauge({
      name: 'tide_source_incremental_snapshot_rows_expected',
      help: "Rows the running incremental snapshot expects to read from a table (Postgres' estimate; absent when unknown).",
      labelNames: ['connector', 'table'] as const,
      registers,
    }),
    incrementalQueued: new Gauge({
      name: 'tide_source_incremental_snapshots_queued',
      help: 'Incremental snapshots requested and waiting for the one running to finish.',
      labelNames: ['connector'] as const,
      registers,
    }),
    schemaVersions: new Counter({
      name: 'tide_source_schema_versions_registered_total',
      help: 'Distinct schema versions (subject, schema id) the connector registered or found in the schema registry.',
      labelNames: ['connector', 'subject'] as const,
      registers,
    }),
    pendingEvents: new Gauge({
      name: 'tide_source_pending_events',
      help: 'Events handed to the Kafka producer and not yet acknowledged.',
      labelNames: ['connector'] as const,
      registers,
    }),
    state: new Gauge({
      name: 'tide_source_state',
      help: `The connector's state: 1 for the current one, 0 for the others (${SOURCE_STATES.join(', ')}).`,
      labelNames: ['connector', 'state'] as const,
      registers,
    }),
  };
}

function defineSinkMetrics(registers: Registry[]) {
  return {
    consumerLag: new Gauge({
      name: 'tide_sink_consumer_lag_messages',
      help: "Messages in a Kafka partition not yet committed to the lake: the partition's high watermark - the next offset the lake tables need (their Delta txn versions + 1).",
      labelNames: ['connector', 'topic', 'partition'] as const,
      registers,
    }),
    commits: new Counter({
      name: 'tide_sink_commits_total',
      help: 'Delta commits written, by lake table (layer/name, e.g. silver/orders) and operation (WRITE, MERGE, CREATE TABLE, …).',
      labelNames: ['connector', 'lake_table', 'operation'] as const,
      registers,
    }),
    files: new Counter({
      name: 'tide_sink_files_written_total',
      help: 'Parquet data files written, by lake table (layer/name).',
      labelNames: ['connector', 'lake_table'] as const,
      registers,
    }),
    bytes: new Counter({
      name: 'tide_sink_bytes_written_total',
      help: 'Bytes of Parquet data files written, by lake table (layer/name).',
      labelNames: ['connector', 'lake_table'] as const,
      registers,
    }),
    mergeDuration: new Histogram({
      name: 'tide_sink_merge_duration_seconds',
      help: 'Duration of one silver merge (copy-on-write of the touched files and the Delta commit), by source table.',
      labelNames: ['connector', 'table'] as const,
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    deadLetters: new Counter({
      name: 'tide_sink_dead_letters_total',
      help: 'Messages sent to the dead-letter topic (undecodable, or not writable to the lake table).',
      labelNames: ['connector'] as const,
      registers,
    }),
    freshness: new Gauge({
      name: 'tide_sink_freshness_seconds',
      help: 'Seconds between now and the newest source commit applied to the silver table. Grows while the source table is idle too: alert on it together with consumer lag.',
      labelNames: ['connector', 'table'] as const,
      registers,
    }),
    goldRefreshes: new Counter({
      name: 'tide_sink_gold_refreshes_total',
      help: 'Rebuilds of the gold reporting tables.',
      labelNames: ['connector'] as const,
      registers,
    }),
    messages: new Counter({
      name: 'tide_sink_messages_total',
      help: 'Kafka messages committed to the lake (including tombstones and dead letters).',
      labelNames: ['connector'] as const,
      registers,
    }),
    flushes: new Counter({
      name: 'tide_sink_flushes_total',
      help: 'Flushes: one Delta commit per table holding the data and the Kafka offsets.',
      labelNames: ['connector'] as const,
      registers,
    }),
    lastFlush: new Gauge({
      name: 'tide_sink_last_flush_timestamp_seconds',
      help: 'Unix time of the last flush that committed messages to the lake.',
      labelNames: ['connector'] as const,
      registers,
    }),
    historyPending: new Gauge({
      name: 'tide_sink_history_pending_events',
      help: 'Change events silver committed that wait in memory for a background history merge (silver.history.interval.ms); 0 when history merges in every flush.',
      labelNames: ['connector'] as const,
      registers,
    }),
  };
}

function defineConnectionMetrics(registers: Registry[]) {
  return {
    retries: new Counter({
      name: 'tide_connection_retries_total',
      help: 'Failed tries on a connection (kafka, postgres, postgres replication, schema registry, lake) that were retried within errors.retry.timeout.',
      labelNames: ['connector', 'connection'] as const,
      registers,
    }),
    up: new Gauge({
      name: 'tide_connection_up',
      help: 'Whether a connection works: 1, or 0 while it is down and being retried (the connector stops when errors.retry.timeout runs out).',
      labelNames: ['connector', 'connection'] as const,
      registers,
    }),
  };
}

export type SourceMetricSet = ReturnType<typeof defineSourceMetrics>;
export type SinkMetricSet = ReturnType<typeof defineSinkMetrics>;
export type ConnectionMetricSet = ReturnType<typeof defineConnectionMetrics>;

export interface TideMetricsOptions {
  /** Also export Node's process metrics (CPU, memory, event loop lag, GC). Default true. */
  processMetrics?: boolean;
  /** Time limit for one collector during a scrape. Default 5 s. */
  collectorTimeoutMs?: number;
  log?: Logger;
}

/** One registry with Tide's metrics, and the collectors that fill it at scrape time. */
export class TideMetrics {
  readonly registry = new Registry();
  readonly source: SourceMetricSet;
  readonly sink: SinkMetricSet;
  readonly connection: ConnectionMetricSet;
  private readonly collectorErrors: Counter<'collector'>;
  private readonly collectors = new Map<string, Collector>();
  private readonly log: Logger;
  private readonly timeoutMs: number;

  constructor(opts: TideMetricsOptions = {}) {
    const registers = [this.registry];
    this.source = defineSourceMetrics(registers);
    this.sink = defineSinkMetrics(registers);
    this.connection = defineConnectionMetrics(registers);
    this.collectorErrors = new Counter({
      name: 'tide_metrics_collector_errors_total',
      help: 'Scrapes in which a collector failed (its series keep their previous values); the log says why.',
      labelNames: ['collector'] as const,
      registers,
    });
    if (opts.processMetrics ?? true) collectDefaultMetrics({ register: this.registry });
    this.log = (opts.log ?? rootLog).child({ component: 'metrics' });
    this.timeoutMs = opts.collectorTimeoutMs ?? 5000;
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** Run `collect` at every scrape, under `name` (unique). Returns the function that removes it. */
  addCollector(name: string, collect: Collector): () => void {
    if (this.collectors.has(name))
      throw new MetricsCollectorError(name, 'is registered already: each connector name may be registered once per process');
    this.collectors.set(name, collect);
    return () => this.collectors.delete(name);
  }

  /** Run every collector (a failing one is logged and counted, the others still report), then render the registry. */
  async scrape(): Promise<string> {
    await Promise.all([...this.collectors].map(([name, collect]) => this.runCollector(name, collect)));
    return this.registry.metrics();
  }

  private async runCollector(name: string, collect: Collector): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        collect(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () =>
              reject(new MetricsCollectorError(name, `did not finish within ${this.timeoutMs} ms; its series keep their previous values`)),
            this.timeoutMs,
          );
        }),
      ]);
    } catch (err) {
      this.collectorErrors.inc({ collector: name });
      this.log.warn({ err, collector: name }, 'metrics collector failed; its series keep their previous values');
    } finally {
      clearTimeout(timer);
    }
  }

  /** Names of every metric in the registry (for checks of alert rules and dashboards). */
  metricNames(): string[] {
    return this.registry.getMetricsAsArray().map((m) => m.name);
  }
}

type Labels = Record<string, string | number>;
type LabelledMetric = Gauge<string> | Counter<string>;

/**
 * The series one collector owns in a metric: `set` them at each scrape, then `sweep()` removes the
 * ones it did not set this time (a partition or table that went away), `clear()` all of them.
 * Counters are set to the absolute total the pipeline keeps (SinkWorker.stats, event tallies).
 */
export class OwnedSeries {
  private readonly owned = new Map<string, Labels>();
  private touched = new Set<string>();

  constructor(private readonly metric: LabelledMetric) {}

  set(labels: Labels, value: number): void {
    const key = JSON.stringify(labels);
    this.owned.set(key, labels);
    this.touched.add(key);
    if (this.metric instanceof Gauge) this.metric.set(labels, value);
    else {
      this.metric.remove(labels);
      this.metric.inc(labels, value);
    }
  }

  sweep(): void {
    for (const [key, labels] of this.owned)
      if (!this.touched.has(key)) {
        this.metric.remove(labels);
        this.owned.delete(key);
      }
    this.touched = new Set();
  }

  clear(): void {
    for (const labels of this.owned.values()) this.metric.remove(labels);
    this.owned.clear();
    this.touched = new Set();
  }
}

let shared: TideMetrics | undefined;

/** The process-wide metrics that the HTTP server exports and the pipeline's hooks write to. */
export function tideMetrics(): TideMetrics {
  return (shared ??= new TideMetrics());
}

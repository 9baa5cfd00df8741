import { stat } from 'node:fs/promises';
import { Kafka, logLevel, type Admin } from 'kafkajs';
import type { SinkConfig } from '../config/sink-config.ts';
import type { ConnectorFile } from '../config/source-config.ts';
import { TideError } from '../errors.ts';
import { kafkaConnection, type KafkaConnection } from '../events/kafka-connection.ts';
import { explainKafkaError } from '../events/kafka-errors.ts';
import { DeltaTable } from '../lake/delta/delta-table.ts';
import type { ObjectStore } from '../lake/storage/object-store.ts';
import { resumeOffset } from '../sink/offsets.ts';
import type { SinkObserver, SinkStats } from '../sink/sink-observer.ts';
import { bronzePath, historyPath, silverPath, tableOfTopic } from '../sink/table-layout.ts';
import { ProgressWatch, type Readiness, type ReadinessCheck } from './http-server.ts';
import { OwnedSeries, tideMetrics, type TideMetrics } from './metrics.ts';

/**
 * The sink's metrics (`tide_sink_*`, defined in metrics.ts).
 *
 * Scrape time: `registerSinkMetrics` reads `SinkWorker.stats` (messages, flushes, dead letters, gold
 * refreshes, newest commit per table → freshness) and a `SinkLagProbe` (consumer lag per partition).
 * Write time: `meteredStore` wraps the lake's ObjectStore and counts Delta commits, data files and
 * bytes per lake table as the sink (and the gold refresher) writes them, with no change to the sink.
 * `observeMerge(connector, table, seconds)` is the hook for the silver merge duration.
 */

export interface SinkMetricsSource {
  name: string;
  /** e.g. `() => worker.stats` */
  stats: () => SinkStats;
  lag?: SinkLagProbe;
  /** Clock for freshness (tests). */
  now?: () => number;
}

export function registerSinkMetrics(sink: SinkMetricsSource, metrics: TideMetrics = tideMetrics()): () => void {
  const m = metrics.sink;
  const connector = sink.name;
  const now = sink.now ?? Date.now;
  const series = {
    deadLetters: new OwnedSeries(m.deadLetters),
    gold: new OwnedSeries(m.goldRefreshes),
    messages: new OwnedSeries(m.messages),
    flushes: new OwnedSeries(m.flushes),
    lastFlush: new OwnedSeries(m.lastFlush),
    historyPending: new OwnedSeries(m.historyPending),
    freshness: new OwnedSeries(m.freshness),
    lag: new OwnedSeries(m.consumerLag),
  };
  const remove = metrics.addCollector(`sink ${connector}`, async () => {
    const s = sink.stats();
    series.deadLetters.set({ connector }, s.deadLetters);
    series.gold.set({ connector }, s.goldRefreshes);
    series.messages.set({ connector }, s.messages);
    series.flushes.set({ connector }, s.flushes);
    if (s.lastFlushAt !== undefined) series.lastFlush.set({ connector }, s.lastFlushAt / 1000);
    series.historyPending.set({ connector }, s.historyPendingEvents ?? 0);
    const t = now();
    for (const [table, ms] of Object.entries(s.newestCommitMs)) series.freshness.set({ connector, table }, Math.max(0, (t - ms) / 1000));
    if (sink.lag) {
      const lag = await sink.lag.read();
      for (const p of lag.partitions) series.lag.set({ connector, topic: p.topic, partition: p.partition }, p.lag);
      series.lag.sweep();
    }
  });
  return () => {
    remove();
    for (const s of Object.values(series)) s.clear();
  };
}

/** A Delta commit to `lakeTable` (`layer/name`, e.g. `silver/orders`) with `operation` (WRITE, MERGE, …). */
export function countCommit(connector: string, lakeTable: string, operation: string, metrics: TideMetrics = tideMetrics()): void {
  metrics.sink.commits.inc({ connector, lake_table: lakeTable, operation });
}

/** A data file of `bytes` bytes written to `lakeTable`. */
export function countFile(connector: string, lakeTable: string, bytes: number, metrics: TideMetrics = tideMetrics()): void {
  metrics.sink.files.inc({ connector, lake_table: lakeTable });
  metrics.sink.bytes.inc({ connector, lake_table: lakeTable }, bytes);
}

/** One silver merge of source table `table` (e.g. `public.orders`) took `seconds`. */
export function observeMerge(connector: string, table: string, seconds: number, metrics: TideMetrics = tideMetrics()): void {
  metrics.sink.mergeDuration.observe({ connector, table }, seconds);
}

/** The SinkObserver (src/sink/sink-observer.ts) that reports sink connector `connector`'s merges to `metrics`. */
export function sinkObserver(connector: string, metrics: TideMetrics = tideMetrics()): SinkObserver {
  return { mergeTimed: (table, seconds) => observeMerge(connector, table, seconds, metrics) };
}

const COMMIT = /^(.+)\/_delta_log\/\d{20}\.json$/;

/** The lake table a path belongs to: the lake's layout is `<layer>/<table>/…` (table-layout.ts). */
export function lakeTableOf(path: string): string {
  return path.split('/').slice(0, 2).join('/');
}

function isDataFile(path: string): boolean {
  return path.endsWith('.parquet') && !path.includes('/_delta_log/');
}

/** The commit's operation, from its commitInfo (the first action Tide writes; any line for other writers). */
function operationOf(data: Buffer | Uint8Array): string {
  for (const line of Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8').split('\n')) {
    if (!line.includes('"commitInfo"')) continue;
    try {
      return String((JSON.parse(line) as { commitInfo: { operation?: unknown } }).commitInfo.operation ?? 'UNKNOWN');
    } catch {
      return 'UNKNOWN'; // the commit file is not ours to validate; it is counted all the same
    }
  }
  return 'UNKNOWN';
}

/**
 * `store`, counting what is written through it: Delta commits (a `_delta_log/<version>.json`
 * created by putIfAbsent), Parquet data files and their bytes, per lake table. Checkpoints are
 * log maintenance, not data, and are not counted. Everything else passes through unchanged.
 */
export function meteredStore(store: ObjectStore, connector: string, metrics: TideMetrics = tideMetrics()): ObjectStore {
  return {
    get uri() {
      return store.uri;
    },
    get: (path) => store.get(path),
    async put(path, data) {
      await store.put(path, data);
      if (isDataFile(path)) countFile(connector, lakeTableOf(path), data.byteLength, metrics);
    },
    async putIfAbsent(path, data) {
      const created = await store.putIfAbsent(path, data);
      const commit = COMMIT.exec(path);
      if (created && commit) countCommit(connector, commit[1]!, operationOf(data), metrics);
      else if (created && isDataFile(path)) countFile(connector, lakeTableOf(path), data.byteLength, metrics);
      return created;
    },
    async putFile(path, localFile) {
      // The writer may delete its local copy right after the upload: take the size first.
      const size = isDataFile(path) ? (await stat(localFile)).size : 0;
      await store.putFile(path, localFile);
      if (isDataFile(path)) countFile(connector, lakeTableOf(path), size, metrics);
    },
    localFile: (path) => store.localFile(path),
    list: (prefix) => store.list(prefix),
    stat: (path) => store.stat(path),
    delete: (path) => store.delete(path),
    close: () => store.close(),
  };
}

export class SinkLagError extends TideError {
  constructor(connector: string, message: string, options: { cause?: unknown } = {}) {
    super(`sink ${connector}, consumer lag: ${message}`, { ...options, retriable: true });
    this.name = 'SinkLagError';
  }
}

export interface PartitionLag {
  topic: string;
  partition: number;
  /** Kafka's high watermark (the offset the next message will get). */
  high: number;
  /** The next offset the lake needs (lowest txn version of the topic's tables + 1; the low watermark when none committed). */
  next: number;
  lag: number;
}

export interface LagReading {
  at: number;
  partitions: PartitionLag[];
  total: number;
  /** The sink's consumer group: its state (Stable, PreparingRebalance, Empty, Dead…) and member count. */
  group: { state: string; members: number };
}

/**
 * Consumer lag the way the sink defines progress: Kafka's high watermark against the offsets the lake
 * tables committed (Delta txn actions, see sink/offsets.ts), not the group's committed offsets (which
 * exist for tooling only). Bounded cost: at most one probe per `minIntervalMs` (default 5 s) whatever
 * the scrape rate; a probe is one listTopics (only with topics.regex), one fetchTopicOffsets per topic,
 * one describeGroups, and per lake table a read of the commits since the previous probe (usually one
 * GET that finds nothing).
 */
export class SinkLagProbe {
  private readonly kafka: Kafka;
  private readonly conn: KafkaConnection;
  private admin: Admin | undefined;
  private readonly tables = new Map<string, DeltaTable | undefined>();
  private last: LagReading | undefined;
  private running: Promise<LagReading> | undefined;
  private closed = false;

  constructor(
    private readonly file: ConnectorFile<SinkConfig>,
    private readonly store: ObjectStore,
    private readonly opts: { minIntervalMs?: number } = {},
  ) {
    this.conn = kafkaConnection(file.config, { source: file.source });
    this.kafka = new Kafka(
      this.conn.kafkajs(`tide-sink-${file.name}-metrics`, {
        logLevel: logLevel.NOTHING,
        connectionTimeout: 5000,
        requestTimeout: 5000,
        retry: { retries: 1, initialRetryTime: 200 },
      }),
    );
  }

  /** The latest reading, probing again when the last one is older than minIntervalMs. */
  read(): Promise<LagReading> {
    if (this.last && Date.now() - this.last.at < (this.opts.minIntervalMs ?? 5000)) return Promise.resolve(this.last);
    this.running ??= this.probe().finally(() => (this.running = undefined));
    return this.running;
  }

  private async probe(): Promise<LagReading> {
    if (this.closed) throw new SinkLagError(this.file.name, 'the probe is closed');
    const c = this.file.config;
    const name = this.file.name;
    try {
      if (!this.admin) {
        const admin = this.kafka.admin();
        await admin.connect();
        this.admin = admin;
      }
      const admin = this.admin;
      const topics = await this.topics(admin);
      const partitions: PartitionLag[] = [];
      for (const topic of topics) {
        const table = tableOfTopic(topic) ?? topic;
        const tables = await this.lakeTables(table);
        for (const p of await admin.fetchTopicOffsets(topic)) {
          const high = Number(p.high);
          const low = Number(p.low);
          const resume = resumeOffset(tables, name, topic, p.partition);
          const next = resume === undefined ? low : Math.max(low, Number(resume));
          partitions.push({ topic, partition: p.partition, high, next, lag: Math.max(0, high - next) });
        }
      }
      const groupId = c['group.id'] ?? `tide-sink-${name}`;
      const described = (await admin.describeGroups([groupId])).groups[0];
      const reading: LagReading = {
        at: Date.now(),
        partitions,
        total: partitions.reduce((sum, p) => sum + p.lag, 0),
        group: { state: described?.state ?? 'Unknown', members: described?.members.length ?? 0 },
      };
      this.last = reading;
      return reading;
    } catch (err) {
      await this.admin?.disconnect().catch(() => undefined); // reconnect on the next probe; the error itself is thrown
      this.admin = undefined;
      throw err instanceof TideError
        ? err
        : new SinkLagError(name, `reading Kafka offsets failed: ${explainKafkaError(this.conn, err, 'reading offsets').message}`, {
            cause: err,
          });
    }
  }

  /** The sink's topics: `topics`, or what `topics.regex` matches (the filter SinkWorker applies). */
  private async topics(admin: Admin): Promise<string[]> {
    const c = this.file.config;
    if (c.topics?.length) return c.topics;
    const re = new RegExp(`^(?:${c['topics.regex']})$`);
    return (await admin.listTopics())
      .filter((t) => re.test(t) && !t.endsWith('.transaction') && !t.endsWith('.dlq') && !t.startsWith('__'))
      .sort();
  }

  /** The tables whose txn versions say where a topic resumes, as TableSink.tables() lists them. */
  private async lakeTables(qualified: string): Promise<(DeltaTable | undefined)[]> {
    const c = this.file.config;
    const roots = [
      ...(c['bronze.enabled'] ? [bronzePath(qualified)] : []),
      silverPath(qualified),
      ...(c['silver.history.tables'].some((p) => new RegExp(`^(?:${p})$`).test(qualified)) ? [historyPath(qualified)] : []),
    ];
    const out: (DeltaTable | undefined)[] = [];
    for (const root of roots) {
      let t = this.tables.get(root);
      if (t) await t.refresh();
      else this.tables.set(root, (t = await DeltaTable.open(this.store, root)));
      out.push(t);
    }
    return out;
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.running?.catch(() => undefined);
    await this.admin?.disconnect();
    this.admin = undefined;
  }
}

/**
 * Ready when the sink is connected and making progress: the consumer group has members and is
 * Stable, and either nothing waits in Kafka or a flush happened within `stallMs` (default 60 s).
 */
export function sinkReadiness(
  sink: Required<Pick<SinkMetricsSource, 'name' | 'stats' | 'lag'>>,
  opts: { stallMs?: number } = {},
): ReadinessCheck {
  const progress = new ProgressWatch(opts.stallMs ?? 60_000);
  return async (): Promise<Readiness> => {
    const component = `sink ${sink.name}`;
    const moved = progress.observe(sink.stats().flushes);
    let lag: LagReading;
    try {
      lag = await sink.lag.read();
    } catch (err) {
      return { ready: false, component, reason: (err as Error).message };
    }
    if (lag.group.members === 0 || lag.group.state !== 'Stable')
      return {
        ready: false,
        component,
        reason: `its consumer group is ${lag.group.state} with ${lag.group.members} member(s): not connected to Kafka yet`,
      };
    if (lag.total > 0 && !(moved && sink.stats().flushes > 0))
      return {
        ready: false,
        component,
        reason: `${lag.total} messages wait in Kafka and no flush happened for ${Math.round(progress.stalledMs / 1000)} s`,
      };
    return { ready: true, component };
  };
}

import { Kafka, logLevel } from 'kafkajs';
import type { ConnectorFile } from '../config/source-config.ts';
import type { SinkConfig } from '../config/sink-config.ts';
import { kafkaConnection, type KafkaConnection } from '../events/kafka-connection.ts';
import { explainKafkaError, topicCreationError, verifyKafkaConnection } from '../events/kafka-errors.ts';
import { TideError } from '../errors.ts';
import { QUIET_MONITOR, type ConnectionMonitor } from '../connection-monitor.ts';
import { KafkaRetrier, StoppedWhileWaitingError } from '../events/kafka-retry.ts';
import { registryFromConfig } from '../events/schema-registry.ts';
import { ParquetEngine } from '../lake/parquet/parquet-engine.ts';
import { openStore, s3Settings } from '../lake/storage/open-store.ts';
import type { ObjectStore } from '../lake/storage/object-store.ts';
import { closeCheckpointDuckDB } from '../lake/delta/checkpoint-duckdb.ts';
import { log as rootLog, type Logger } from '../log.ts';
import { decoderFor } from './input-format.ts';
import { FlushDecoder } from './flush-decoder.ts';
import { DeadLetterQueue } from './dead-letter.ts';
import { KafkaIntake, type RawMessage } from './kafka-intake.ts';
import { faultPoint } from './fault.ts';
import { loadReportFolder, reportDirOf } from '../reports/report-folder.ts';
import { layerPositions, resumeOffset } from './offsets.ts';
import { retryPolicyOf } from '../retry.ts';
import { historyPath, tableOfTopic } from './table-layout.ts';
import { HistoryLane } from './history-lane.ts';
import { lakeRoots, SinkGold } from './sink-gold.ts';
import { applyWithRetry, batchByTable, maxPerPartition, type Offset } from './table-batches.ts';
import { waitForTopics } from './topic-wait.ts';
import { TableSink, type DeadLetter, type SinkContext } from './table-sink.ts';
import { EventTopics } from './event-topics.ts';
import type { TopicInput } from './event-input.ts';
import { QUIET_SINK_OBSERVER, type SinkObserver, type SinkStats } from './sink-observer.ts';

export type { SinkStats } from './sink-observer.ts';

export interface SinkWorkerOptions {
  /** Override the store (tests); default: openStore(config['lake.uri']). */
  store?: ObjectStore;
  /** Called after each flush that changed silver (gold refresh hooks in here). */
  onSilverChanged?: (tables: string[]) => Promise<void>;
  /** Told about retries and recoveries of the connections (ops' ConnectionHealth: /readyz and metrics). */
  monitor?: ConnectionMonitor;
  /** Told about merge durations (ops' metrics). */
  observer?: SinkObserver;
}

/**
 * The sink: Kafka (Tide's CDC topics) → bronze and silver Delta tables, exactly once.
 * One flush = one Delta commit per table holding the data and the Kafka offsets (txn actions).
 */
export class SinkWorker {
  readonly stats: SinkStats = {
    flushes: 0,
    messages: 0,
    bronzeRows: 0,
    silverChanges: 0,
    deadLetters: 0,
    goldRefreshes: 0,
    newestCommitMs: {},
  };
  private readonly log: Logger;
  private readonly tables = new Map<string, TableSink>();
  private flushing: Promise<void> = Promise.resolve();
  private ctx: SinkContext | undefined;
  private intake: KafkaIntake | undefined;
  private dlq: DeadLetterQueue | undefined;
  private readonly decoder: FlushDecoder;
  /** The input other than Tide's own topics (input.format events), when configured. */
  private input: TopicInput | undefined;
  private readonly kafka: Kafka;
  private readonly conn: KafkaConnection;
  /** Bounds, retries and reports the sink's Kafka calls (errors.retry.timeout). */
  private readonly retrier: KafkaRetrier;
  private readonly monitor: ConnectionMonitor;
  private readonly gold = new SinkGold(this.stats);
  /** SCD2 history merges, inline after silver or on their own cadence (silver.history.interval.ms). */
  private lane: HistoryLane | undefined;

  constructor(
    readonly file: ConnectorFile<SinkConfig>,
    private readonly opts: SinkWorkerOptions = {},
  ) {
    this.log = rootLog.child({ connector: file.name });
    const c = file.config;
    this.conn = kafkaConnection(c, { source: file.source, log: this.log });
    this.kafka = new Kafka(
      this.conn.kafkajs(`tide-sink-${file.name}`, {
        // Its connection errors would repeat, unstructured, what the KafkaRetrier and the intake's CRASH handler log.
        logLevel: logLevel.NOTHING,
        // Few retries of its own: the KafkaRetrier retries with backoff and logging (the consumer sets its own, kafka-intake.ts).
        retry: { retries: 2 },
      }),
    );
    this.monitor = opts.monitor ?? QUIET_MONITOR;
    this.retrier = new KafkaRetrier(this.conn, retryPolicyOf(c), this.log, this.monitor);
    this.decoder = new FlushDecoder(decoderFor(c, registryFromConfig(c)), {
      policy: retryPolicyOf(c),
      log: this.log,
      signal: () => this.signal,
    });
  }

  /**
   * The consumer's own client. kafkajs looks the group coordinator up with the CLIENT's retry settings
   * (cluster/index.js findGroupCoordinator), not the consumer's, and gives up with
   * KafkaJSGroupCoordinatorNotFound, which is not retriable, so the consumer is not restarted: with the
   * 2 retries above, a sink started right after its broker (which creates __consumer_offsets on the first
   * group) died under load in CI ("Failed to find group coordinator"). Joining keeps trying for about two
   * minutes, as the consumer's own retries do (kafka-intake.ts).
   */
  private consumerKafka(): Kafka {
    return new Kafka(
      this.conn.kafkajs(`tide-sink-${this.file.name}`, {
        logLevel: logLevel.NOTHING,
        retry: { retries: 10, initialRetryTime: 300, maxRetryTime: 30_000 },
      }),
    );
  }

  /** Run until `signal` aborts; then flush what is buffered and close everything. */
  async run(signal: AbortSignal): Promise<void> {
    try {
      await this.work(signal);
    } catch (err) {
      // A stop asked while the sink waited for Kafka or its topics is a clean stop.
      if (!(err instanceof StoppedWhileWaitingError && signal.aborted)) throw err;
      this.log.info({ reason: err.message }, 'stopped before the sink started');
    }
  }

  private signal: AbortSignal | undefined;

  private async work(signal: AbortSignal): Promise<void> {
    this.retrier.signal = signal;
    this.signal = signal;
    const c = this.file.config;
    const store = this.opts.store ?? (await openStore(c['lake.uri'], { s3: s3Settings(c) }));
    const engine = await ParquetEngine.create({ memoryLimit: c['duckdb.memory.limit'] });
    this.ctx = {
      name: this.file.name,
      config: c,
      engine,
      store,
      log: this.log,
      sendDeadLetters: (letters) => this.sendDeadLetters(letters),
      observer: this.opts.observer ?? QUIET_SINK_OBSERVER,
    };
    const interval = c['silver.history.interval.ms'];
    this.lane = new HistoryLane({
      intervalMs: interval,
      maxEvents: c['silver.history.max.events'],
      // In the background history gets its own DuckDB instance: a merge on the flushes' would wait for them, and they for it.
      engine: interval ? () => ParquetEngine.create({ memoryLimit: c['duckdb.memory.limit'] }) : engine,
      log: this.log,
      onMerged: (sink) => {
        this.gold.noteChanged([historyPath(sink.qualified)]);
        if (interval) this.stats.historyPendingEvents = this.lane?.pendingEvents;
      },
    });
    this.dlq = new DeadLetterQueue(this.kafka, c['dead.letter.topic'] ?? `${this.file.name}.dlq`, this.log);
    let timer: NodeJS.Timeout | undefined;
    try {
      // A refused password, CA, host name or client certificate ends the start here, before anything is read or written.
      await verifyKafkaConnection(this.conn, { clientId: `tide-sink-${this.file.name}`, log: this.log });
      // A report folder with a broken file or a cycle stops the start, before anything is consumed.
      const reportDir = c['gold.reports.dir'];
      const reports = reportDir && c['gold.refresh.interval.ms'] ? loadReportFolder(reportDirOf(this.file.source, reportDir)) : [];
      const topics = await this.topics(signal);
      if (c['input.format'] === 'events')
        this.input = new EventTopics({
          name: this.file.name,
          config: c,
          connectorFile: this.file.source,
          registry: registryFromConfig(c),
          engine,
          store,
          log: this.log,
          policy: retryPolicyOf(c),
          signal,
          sendDeadLetters: (letters) => this.retrier.run('sending dead letters', () => this.dlq!.send(letters)),
        });
      for (const topic of topics) await (this.input ? this.input.open(topic) : this.tableFor(topic));
      await this.gold.openServing(c, this.log, [...this.tables.keys()]);
      await this.gold.start(c, store, this.log, reports);
      await this.retrier.run(`opening the dead-letter topic ${this.dlq.topic}`, () => this.dlq!.open(), { translate: topicCreationError });
      this.intake = new KafkaIntake(this.consumerKafka(), {
        groupId: c['group.id'] ?? `tide-sink-${this.file.name}`,
        sessionTimeoutMs: c['session.timeout.ms'],
        topics,
        maxBuffered: c['flush.max.events'],
        maxBufferedBytes: c['flush.max.bytes'],
        log: this.log,
        monitor: this.monitor,
        conn: this.conn,
        policy: retryPolicyOf(c),
        positions: (topic, partition) => {
          if (this.input) return this.input.positions(topic, partition);
          const t = this.tables.get(tableOfTopic(topic) ?? topic);
          return t ? layerPositions(t.layers(), this.file.name, topic, partition) : [];
        },
        connectorFile: this.file.source,
        onFull: () => this.flush(),
        // input.format events decodes in its own tables' code (flushInput), not with this decoder.
        onBuffered: () => {
          if (!this.input) this.decoder.predecode((max) => this.intake?.undecoded(max) ?? []);
        },
      });
      await this.retrier.run('joining the consumer group', () => this.intake!.start());
      this.log.info({ topics, lake: store.uri }, 'sink started');
      await new Promise<void>((resolve, reject) => {
        const tick = () => {
          const failure = this.intake?.error;
          // Tide's own errors (a retention gap) are already explained; Kafka's are translated.
          if (failure) return reject(failure instanceof TideError ? failure : explainKafkaError(this.conn, failure, 'consuming'));
          if (this.gold.error) return reject(this.gold.error as Error);
          if (this.lane?.error) return reject(this.lane.error);
          const due = this.intake && this.intake.size && this.intake.age >= c['flush.interval.ms'];
          if (due) this.flush().catch(reject);
          // Gold builds in the background (sink-gold.ts); it also follows a silver change after traffic stops.
          this.gold.kick();
          // So does a background history merge (history-lane.ts), when its interval passes with no flush.
          this.lane?.kick();
        };
        timer = setInterval(tick, Math.min(250, c['flush.interval.ms']));
        if (signal.aborted) resolve();
        signal.addEventListener('abort', () => resolve(), { once: true });
      });
      clearInterval(timer);
      // Clean shutdown: what was buffered is committed, in flushes of flush.max.events / flush.max.bytes at
      // most (what arrives meanwhile is not waited for: the lake's offsets say where the next start resumes).
      const size = this.intake?.size ?? 0;
      const rounds = 1 + Math.ceil(size / c['flush.max.events']) + Math.ceil((this.intake?.bytes ?? 0) / c['flush.max.bytes']);
      for (let i = 0; i < rounds && (i === 0 || this.intake?.size); i++) await this.flush();
      // … and so is what waits for a background history merge.
      await this.lane?.drain();
    } finally {
      clearInterval(timer);
      await this.flushing.catch(() => undefined);
      await this.lane?.close().catch((err: unknown) => this.log.warn({ err }, 'closing the history lane failed'));
      await this.intake?.stop().catch((err: unknown) => this.log.warn({ err }, 'closing the consumer failed'));
      await this.dlq.close().catch((err: unknown) => this.log.warn({ err }, 'closing the dead-letter producer failed'));
      await this.gold.close();
      await engine.close();
      // The DuckDB instance every table's checkpoints share (checkpoint-duckdb.ts): idle now, it closes at once.
      await closeCheckpointDuckDB().catch((err: unknown) => this.log.warn({ err }, 'closing the checkpoint DuckDB failed'));
      if (!this.opts.store) await store.close();
      this.log.info({ stats: this.stats }, 'sink stopped');
    }
  }

  /** Serialised: one flush at a time, in order. */
  flush(): Promise<void> {
    const next = this.flushing.then(() => this.flushNow()).then(() => this.intake?.resume());
    this.flushing = next.catch(() => undefined);
    return next;
  }

  /** The topics to read; waits (errors.retry.timeout) for topics that do not exist yet (topic-wait.ts). */
  private async topics(signal: AbortSignal): Promise<string[]> {
    const admin = this.kafka.admin();
    try {
      return await waitForTopics({
        connector: this.file.name,
        config: this.file.config,
        kafka: this.retrier,
        listTopics: async () => {
          await admin.connect();
          return admin.listTopics();
        },
        policy: retryPolicyOf(this.file.config),
        monitor: this.monitor,
        log: this.log,
        signal,
      });
    } finally {
      await admin.disconnect().catch(() => undefined);
    }
  }

  private async tableFor(topic: string): Promise<TableSink> {
    const qualified = tableOfTopic(topic) ?? topic;
    let t = this.tables.get(qualified);
    if (!t) {
      t = new TableSink(this.ctx!, qualified);
      await t.open();
      // A reconcile finished at open (after a crash) changed silver and history: gold follows.
      if (t.reconciledOnOpen) this.gold.noteTableChanged(qualified);
      this.tables.set(qualified, t);
    }
    return t;
  }

  private async flushNow(): Promise<void> {
    const messages = this.intake?.drain() ?? [];
    if (!messages.length) return this.gold.kick();
    if (this.input) return this.flushInput(this.input, messages);
    this.inFlight = messages;
    const started = performance.now();
    let bytes = 0;
    for (const m of messages) bytes += (m.value?.length ?? 0) + (m.key?.length ?? 0);
    // A registry that is down or rate-limits is waited for (errors.retry.timeout); nothing is dead-lettered for it.
    const { byTable, dead } = await batchByTable(messages, (m) => this.decoder.decode(m));
    const decodeMs = Math.round(performance.now() - started);
    // Dead letters are sent before the lake commit that moves past their offsets: at least once, never lost.
    await this.retrier.run('sending dead letters', () => this.dlq!.send(dead));
    this.stats.deadLetters += dead.length;
    const changed: string[] = [];
    const progress: Offset[] = [];
    const perTable: Record<string, { events: number; bronzeMs: number; silverMs: number; historyMs: number }> = {};
    for (const [qualified, { events, offsets, ends }] of byTable) {
      const sink = await this.tableFor(offsets[0]!.topic);
      const offs = offsets.map((o) => ({ topic: o.topic, partition: o.partition, offset: BigInt(o.offset) }));
      const result = await applyWithRetry(sink, events, offs, ends, this.log);
      // History takes the same batch (history-lane.ts), but not what silver sent to the dead-letter topic already.
      let historyMs = 0;
      if (sink.keepsHistory && this.lane) {
        const dead = new Set(result.deadLetters.map((d) => d.event));
        historyMs = await this.lane.add(sink, dead.size ? events.filter((e) => !dead.has(e)) : events, offs, ends);
      }
      perTable[qualified] = { events: events.length, ...sink.lastTimings, historyMs };
      this.stats.bronzeRows += result.bronzeRows;
      this.stats.silverChanges += result.silverChanges;
      if (result.bronzeRows || result.silverVersion !== undefined) this.gold.noteChanged(lakeRoots(qualified));
      if (result.silverVersion !== undefined) {
        changed.push(qualified);
        const newest = events.reduce((m, e) => Math.max(m, e.commitTsMs), 0);
        if (newest) this.stats.newestCommitMs[qualified] = newest;
      }
      // One offset per message: a flush holds up to flush.max.events of them, more than a call can take as arguments.
      for (const o of offs) progress.push(o);
    }
    faultPoint('after-commit');
    this.stats.flushes++;
    this.stats.messages += messages.length;
    this.stats.lastFlushAt = Date.now();
    const lakeMs = Math.round(performance.now() - started) - decodeMs;
    const committed = performance.now();
    this.intake?.commitProgress(this.behindHistory(maxPerPartition(progress)), this.progressFailed);
    if (changed.length && this.opts.onSilverChanged) await this.opts.onSilverChanged(changed);
    // Group offsets go in the background (kafka-intake.ts commitProgress): offsetsMs is what the flush still waits for here.
    const offsetsMs = Math.round(performance.now() - committed);
    // Where each flush's time went (bench/pipeline-sustained.ts collects these at TIDE_LOG_LEVEL=debug).
    // And where the process' memory is after it: the JS heap, V8's external memory (Buffers, the key index's
    // typed arrays), and the rest of RSS (DuckDB's own allocations, code), MiB.
    const mem = process.memoryUsage();
    const mib = (n: number) => Math.round(n / 2 ** 20);
    await this.lane?.afterFlush();
    if (this.lane && !this.lane.inline) this.stats.historyPendingEvents = this.lane.pendingEvents;
    this.log.debug(
      {
        messages: messages.length,
        bytes,
        decodeMs,
        lakeMs,
        offsetsMs,
        tables: perTable,
        heapMiB: mib(mem.heapUsed),
        externalMiB: mib(mem.external),
        nativeMiB: mib(mem.rss - mem.heapTotal - mem.external),
        ...(this.lane && !this.lane.inline ? { historyPending: this.lane.pendingEvents } : {}),
      },
      'flushed',
    );
    this.gold.kick();
  }

  /**
   * The group offsets to commit (for lag tooling) never run ahead of the lake: with history merged in the
   * background, a partition's offset is the lowest its tables committed, history's included (offsets.ts).
   */
  private behindHistory(applied: Offset[]): Offset[] {
    if (!this.lane || this.lane.inline) return applied;
    return applied.flatMap((o) => {
      const t = this.tables.get(tableOfTopic(o.topic) ?? o.topic);
      const next = t ? resumeOffset(t.tables(), this.file.name, o.topic, o.partition) : undefined;
      if (next === undefined || next <= 0n) return [];
      return [{ ...o, offset: next - 1n < o.offset ? next - 1n : o.offset }];
    });
  }

  /** A flush of an input other than Tide's own topics (event-topics.ts): it writes its own tables. */
  private async flushInput(input: TopicInput, messages: RawMessage[]): Promise<void> {
    const result = await input.write(messages);
    this.stats.bronzeRows += result.bronzeRows;
    this.stats.silverChanges += result.silverChanges;
    this.stats.deadLetters += result.deadLetters;
    Object.assign(this.stats.newestCommitMs, result.newestMs);
    if (result.changedRoots.length) this.gold.noteChanged(result.changedRoots);
    faultPoint('after-commit');
    this.stats.flushes++;
    this.stats.messages += messages.length;
    this.stats.lastFlushAt = Date.now();
    this.intake?.commitProgress(
      maxPerPartition(messages.map((m) => ({ topic: m.topic, partition: m.partition, offset: BigInt(m.offset) }))),
      this.progressFailed,
    );
    this.gold.kick();
  }

  private readonly progressFailed = (err: unknown) => this.log.warn({ err }, 'committing group offsets (for lag tooling) failed');

  /** Merge what waits for a background history merge now (tests). */
  mergeHistory(): Promise<void> {
    const next = this.flushing.then(() => this.lane?.drain());
    this.flushing = next.catch(() => undefined);
    return next;
  }

  /** Rebuild gold now if silver changed since the last build (tests, shutdown). */
  refreshGold(): Promise<void> {
    const next = this.flushing.then(() => this.gold.refreshIfDue(true));
    this.flushing = next.catch(() => undefined);
    return next;
  }

  /** The messages of the flush being written (a dead letter found while writing is sent with its raw key and value). */
  private inFlight: RawMessage[] = [];

  private async sendDeadLetters(letters: DeadLetter[]): Promise<void> {
    // Looked up only when there are dead letters (rare): no map of the flush's messages is built otherwise.
    const byPosition = new Map(this.inFlight.map((m) => [`${m.topic}\u0000${m.partition}\u0000${m.offset}`, m]));
    const raw = letters.map((d) => {
      const m = byPosition.get(`${d.event.topic}\u0000${d.event.partition}\u0000${d.event.offset}`);
      return {
        topic: d.event.topic,
        partition: d.event.partition,
        offset: d.event.offset.toString(),
        key: m?.key ?? null,
        value: m?.value ?? null,
        reason: d.reason,
      };
    });
    await this.retrier.run('sending dead letters', () => this.dlq!.send(raw));
    this.stats.deadLetters += raw.length;
  }
}

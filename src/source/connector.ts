import { join } from 'node:path';
import type pg from 'pg';
import type { ConnectorFile, SourceConfig } from '../config/source-config.ts';
import { ConfigError, TideError } from '../errors.ts';
import type { TableCodec } from '../events/envelope.ts';
import { TRANSACTION_KEY_SCHEMA, TRANSACTION_VALUE_SCHEMA, TransactionEvents } from '../events/transaction-events.ts';
import { kafkaConnection } from '../events/kafka-connection.ts';
import { PlatformaticProducer, type EventProducer } from '../events/kafka-producer.ts';
import { KafkaRetrier, RetryingProducer, StoppedWhileWaitingError } from '../events/kafka-retry.ts';
import { QUIET_MONITOR, type ConnectionMonitor } from '../connection-monitor.ts';
import { retryPolicyOf } from '../retry.ts';
import { registryFromConfig, type SchemaRegistry } from '../events/schema-registry.ts';
import { log as rootLog, type Logger } from '../log.ts';
import { checkWalLevel, MissingPrimaryKeyError, tableFilter, type CatalogTable } from './catalog.ts';
import { formatLsn, parseLsn, type Lsn } from './lsn.ts';
import { OffsetStore } from './offset-store.ts';
import { ChangeHandler } from './change-handler.ts';
import { pgoutputOptions } from './pgoutput-plugin.ts';
import type { RelationMessage } from './pgoutput-decoder.ts';
import { buildPlan, transactionTopic } from './plan.ts';
import { describeEvent, EventPublisher } from './publisher.ts';
import { isConnectionLoss, reconnectToPostgres } from './reconnect.ts';
import { findLostSlot, SlotLostError } from './slot-lost.ts';
import { readDatabaseState } from './database-state.ts';
import { QUIET_SOURCE_OBSERVER, type SourceObserver } from './source-observer.ts';
import { connectPg, endPg, pgWhere } from './pg-connection.ts';
import { isDriverError, pgTarget, translatePgError } from './pg-errors.ts';
import { checkPrerequisites, explainSlotFailure, requirePrerequisites, toastedNow } from './prerequisites.ts';
import { ReplicationStream } from './replication-stream.ts';
import { SchemaPausedError } from './schema-guard.ts';
import { describeRelationChange, lookupRelation, sameRelation, tableFromRelation } from './relation-table.ts';
import { buildTableCodec } from './table-codec-builder.ts';
import { runSnapshot } from './snapshot.ts';
import { followCapture } from './capture-follow.ts';
import type { IncrementalSnapshots } from './incremental-snapshot.ts';
import { rememberCaptured, type TableDiscovery } from './table-discovery.ts';
import { transition, type SourceEvent, type SourceState } from './source-state.ts';
import { writeStatus, type SourceStatus } from './status-file.ts';

/**
 * The source connector: Postgres WAL (pgoutput) → Avro events → Kafka.
 * Confirms an LSN to the slot only after Kafka acknowledged every event at or
 * before it, so a crash at any moment loses nothing (duplicates are possible
 * and carry the same (commit_lsn, event_index)).
 */
export interface SourceDeps {
  producer?: EventProducer;
  registry?: SchemaRegistry;
  log?: Logger;
  stateDir?: string;
  /** Told about retries and recoveries of the connections (ops' ConnectionHealth: /readyz and metrics). */
  monitor?: ConnectionMonitor;
  /** Told about published events, acknowledged commits and registered schemas (ops' metrics). */
  observer?: SourceObserver;
}

/** Wait for every task; then throw the first failure (so no task is left running unobserved). */
async function settleAll(tasks: Promise<unknown>[]): Promise<void> {
  const results = await Promise.allSettled(tasks);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}

export class SourceConnector {
  state: SourceState = 'starting';
  private readonly config: SourceConfig;
  private readonly log: Logger;
  private readonly producer: EventProducer;
  private readonly monitor: ConnectionMonitor;
  /** Bounds, retries and reports every Kafka call (errors.retry.timeout); stops waiting when run's signal aborts. */
  private readonly kafka: KafkaRetrier;
  private readonly registry: SchemaRegistry;
  private readonly store: OffsetStore;
  private readonly statusPath: string;
  private sql: pg.Client | undefined;
  private replication: ReplicationStream | undefined;
  private handler: ChangeHandler | undefined;
  private publisher: EventPublisher | undefined;
  private readonly observer: SourceObserver;
  private incremental: IncrementalSnapshots | undefined;
  private discovery: TableDiscovery | undefined;
  /** Published events by table and op, read by the metrics at scrape time. */
  private get events() {
    return this.observer.events;
  }
  /** The stream's codecs by relation oid (the initial snapshot's too): from relation messages on a running slot. */
  private readonly codecs = new Map<number, TableCodec>();
  /** The tables captured now (`schema.table`): the plan's, those found while running, those the stream names. */
  private readonly capturing = new Set<string>();
  private readonly include: (qualified: string) => boolean;
  private readonly txEvents: TransactionEvents;
  private confirmed: Lsn = 0n;
  private acked: Lsn = 0n;
  private error: string | undefined;
  private snapshotInfo: SourceStatus['snapshot'];
  private readonly timers: NodeJS.Timeout[] = [];
  private fatal: ((err: Error) => void) | undefined;
  private signal: AbortSignal | undefined;
  /** Set while a lost connection is being re-established (see reconnect). */
  private reconnecting: Promise<void> | undefined;

  constructor(
    private readonly file: ConnectorFile<SourceConfig>,
    deps: SourceDeps = {},
  ) {
    this.config = file.config;
    this.log = (deps.log ?? rootLog).child({ connector: file.name });
    const conn = kafkaConnection(this.config, { source: file.source, log: this.log });
    this.monitor = deps.monitor ?? QUIET_MONITOR;
    this.observer = deps.observer ?? QUIET_SOURCE_OBSERVER;
    this.kafka = new KafkaRetrier(conn, retryPolicyOf(this.config), this.log, this.monitor);
    this.producer =
      deps.producer ??
      new RetryingProducer(new PlatformaticProducer(conn, `tide-${file.name}`, this.log, this.config['max.message.bytes']), this.kafka);
    this.registry = deps.registry ?? registryFromConfig(this.config);
    const stateDir = deps.stateDir ?? '.tide';
    this.store = new OffsetStore(this.config['offset.storage.file.filename'] ?? join(stateDir, `${file.name}.offsets.json`));
    this.statusPath = join(stateDir, `${file.name}.status.json`);
    this.include = tableFilter(this.config['table.include.list'], this.config['table.exclude.list']);
    this.txEvents = new TransactionEvents(transactionTopic(this.config));
  }

  /** Why the connector paused or failed, if it did. */
  get lastError(): string | undefined {
    return this.error;
  }

  private to(event: SourceEvent): void {
    const from = this.state;
    this.state = transition(from, event);
    this.log.info({ from, to: this.state }, 'state');
    this.flushStatus();
  }

  private where(): string {
    return `Postgres at ${this.config['database.hostname']}:${this.config['database.port']}/${this.config['database.dbname']}`;
  }

  /** Run until `signal` aborts (clean stop), the connector pauses on an incompatible schema, or a fatal error. */
  async run(signal: AbortSignal): Promise<SourceState> {
    this.kafka.signal = signal;
    this.signal = signal;
    this.timers.push(setInterval(() => this.flushStatus(), 1000));
    try {
      await this.start(signal);
      if (this.state === 'streaming') {
        await new Promise<void>((resolve, reject) => {
          this.fatal = reject;
          // A signal that came during start-up (topics, schemas, the snapshot's last chunk) has already fired.
          if (signal.aborted) resolve();
          else signal.addEventListener('abort', () => resolve(), { once: true });
        });
      }
      if (this.state !== 'paused') this.to('stop');
    } catch (caught) {
      // Driver errors (SQLSTATE, errno) become ConnectionErrors that say what to do; bugs keep their stack.
      const err = isDriverError(caught) ? translatePgError(caught, pgWhere(this.config)) : caught;
      this.error = (err as Error).message;
      if (err instanceof SchemaPausedError) {
        if (this.state !== 'paused') this.fail(err);
      } else if (err instanceof StoppedWhileWaitingError && signal.aborted) {
        this.log.info({ reason: err.message }, 'stopped while starting');
        if (this.state !== 'stopped') this.to('stop');
      } else {
        if (this.state !== 'failed') this.to('fail');
        throw err;
      }
    } finally {
      await this.close();
    }
    return this.state;
  }

  private async start(signal: AbortSignal): Promise<void> {
    const c = this.config;
    this.sql = await this.connectSql();
    await checkWalLevel(this.sql, this.where());
    const offsets = this.store.read();
    const state = await readDatabaseState(this.sql, this.file, offsets, () => this.lostSlot());
    const plan = buildPlan(c, state);
    if (plan.captured.length === 0) {
      throw new ConfigError(
        'table.include.list',
        `matches no table in ${c['database.dbname']}. Check the patterns (anchored regexes on schema.table).`,
        this.file.source,
      );
    }
    if (plan.missingPrimaryKey.length > 0) throw new MissingPrimaryKeyError(plan.missingPrimaryKey);
    for (const t of plan.captured) this.capturing.add(t.qualified);
    requirePrerequisites(await checkPrerequisites(this.sql, c, plan, state), this.where());
    // `tide source plan` lists every table with TOAST-able columns; here only those whose values are stored out of line now.
    for (const t of await toastedNow(this.sql, plan)) {
      this.log.warn(
        { table: t.table, columns: t.columns, fix: t.fix },
        'this table holds out-of-line (TOAST) values: updates that do not touch these columns carry no value for them (see unchanged_toast)',
      );
    }
    for (const s of plan.statements.filter((s) => !s.replication)) {
      this.log.info({ sql: s.sql }, s.why);
      await this.sql.query(s.sql);
    }
    this.publisher = new EventPublisher(this.producer, {
      maxBatch: c['max.batch.size'],
      lingerMs: 5,
      // Up to 4 full batches wait behind the one in flight, so encoding goes on while Kafka acknowledges.
      maxQueuedBatches: 4,
      onConfirmable: (lsn) => this.onAcked(lsn),
      maxMessageBytes: c['max.message.bytes'],
      describe: (m) => describeEvent([...this.codecs.values(), ...(this.incremental?.chunkCodec ? [this.incremental.chunkCodec] : [])], m),
      onCommitAcked: (commitTsMs) => this.observer.commitAcked(Date.now() - commitTsMs),
      onError: (err) =>
        this.fail(
          new TideError(`delivery to Kafka failed; nothing after LSN ${formatLsn(this.confirmed)} was confirmed: ${err.message}`, {
            cause: err,
          }),
        ),
    });

    // With nothing to snapshot, open the replication stream now, held until the setup below is done: Postgres
    // decodes what is pending (a large transaction takes seconds) while topics and schemas are set up.
    const early = state.slotExists && !(plan.snapshot && offsets?.snapshot?.status !== 'done') && c['snapshot.mode'] !== 'initial_only';
    let release: (() => void) | undefined;
    if (early) await this.openStream(new Promise<void>((r) => (release = r)));

    await settleAll([
      this.producer.ensureTopics(plan.topics),
      // Restarting on an existing slot, the stream's relation messages build each codec: the catalog describes
      // today's tables, and WAL written before later DDL must be read with the schema it was written with.
      ...(early ? [] : plan.captured.map(async (t) => this.codecs.set(t.oid, await this.codecFor(t)))),
      (async () => {
        this.txEvents.keySchemaId = await this.registry.register(`${this.txEvents.topic}-key`, TRANSACTION_KEY_SCHEMA);
        this.txEvents.valueSchemaId = await this.registry.register(`${this.txEvents.topic}-value`, TRANSACTION_VALUE_SCHEMA);
      })(),
    ]);

    let exported: string | undefined;
    let repl: pg.Client | undefined;
    if (!state.slotExists) {
      repl = await connectPg(c, { replication: true, log: this.log });
      const slotSql = plan.statements.find((s) => s.replication)!.sql;
      this.log.info({ sql: slotSql }, 'creating replication slot');
      const { rows } = await repl.query<{ consistent_point: string; snapshot_name: string | null }>(slotSql).catch(async (err: unknown) => {
        throw await explainSlotFailure(translatePgError(err, pgWhere(c, true)), this.sql!);
      });
      exported = rows[0]!.snapshot_name ?? undefined;
      const fresh = {
        slot: c['slot.name'],
        ...(plan.snapshot
          ? { snapshot: { status: 'running' as const, consistentLsn: rows[0]!.consistent_point, nextIndex: 0, tables: {} } }
          : {}),
      };
      this.store.write(fresh);
    }
    try {
      const current = this.store.read() ?? { slot: c['slot.name'] };
      if (plan.snapshot && current.snapshot?.status !== 'done') {
        if (!current.snapshot) {
          const { rows } = await this.sql.query<{ lsn: string }>(
            `SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1`,
            [c['slot.name']],
          );
          current.snapshot = { status: 'running', consistentLsn: rows[0]!.lsn, nextIndex: 0, tables: {} };
        }
        this.to('snapshot');
        const snapClient = await connectPg(c, { log: this.log });
        try {
          const result = await runSnapshot({
            client: snapClient,
            exportedSnapshot: exported,
            codecs: plan.captured.map((t) => this.codecs.get(t.oid)!),
            publisher: this.publisher,
            offsets: current as typeof current & { snapshot: NonNullable<typeof current.snapshot> },
            store: this.store,
            fetchSize: c['snapshot.fetch.size'],
            partitionEnds: (topic) => this.producer.partitionEnds?.(topic) ?? Promise.resolve([]),
            connectorName: c['topic.prefix'],
            events: this.events,
            db: c['database.dbname'],
            log: this.log,
            signal,
            onProgress: (p) => {
              this.snapshotInfo = {
                table: p.table,
                rows: p.rows,
                totalRows: p.totalRows,
                rowsPerSecond: Math.round(p.rowsPerSecond),
                etaSeconds: p.etaSeconds === null ? null : Math.round(p.etaSeconds),
              };
              this.log.info(this.snapshotInfo, 'snapshot progress');
            },
          });
          if (result === 'interrupted') return;
        } finally {
          await snapClient.end();
        }
      }
    } finally {
      await repl?.end();
    }
    if (c['snapshot.mode'] === 'initial_only') {
      this.log.info('snapshot.mode=initial_only: snapshot finished, not streaming');
      return;
    }
    if (!early) await this.openStream(undefined);
    // The early stream may have failed while held (the handler reported it, but nothing was running to stop).
    if (this.state === 'failed') throw new TideError(`the replication stream failed during start-up: ${this.error}`, { retriable: true });
    this.followCapture(
      plan.joined,
      plan.captured.map((t) => t.qualified),
    );
    this.beginStreaming();
    release?.(); // after the state says streaming: the handler drops messages in any other state
    this.incremental!.start(signal);
    this.discovery!.start();
  }

  /** The SQL connection; once streaming, its loss starts a reconnect. */
  private connectSql(): Promise<pg.Client> {
    return connectPg(this.config, {
      log: this.log,
      onError: (err) => {
        if (this.state === 'streaming') this.fail(err);
      },
    });
  }

  /**
   * The connection to Postgres was lost while streaming (a restart, a failover, a network cut): reconnect
   * with backoff for at most errors.retry.timeout, as pg_recvlogical does, and resume from the slot's
   * confirmed position, exactly as a restarted source would. What was sent to Kafka meanwhile is flushed
   * first; what the server sends again is published again (duplicates carry the same commit_lsn and
   * event_index). Only when the budget runs out, or the failure cannot pass (a revoked right), does the
   * source fail.
   */
  private reconnect(cause: TideError): void {
    if (this.reconnecting || this.signal?.aborted) return;
    this.error = `reconnecting to ${this.where()}: ${cause.message}`;
    this.reconnecting = reconnectToPostgres(cause, {
      where: this.where(),
      target: pgTarget(pgWhere(this.config)),
      policy: retryPolicyOf(this.config),
      monitor: this.monitor,
      log: this.log,
      signal: this.signal,
      teardown: async () => {
        await this.replication?.stop();
        this.replication = undefined;
        await this.sql?.end().catch(() => undefined);
        this.sql = undefined;
      },
      flush: () => this.publisher!.flush(),
      reopen: async () => {
        this.sql = await this.connectSql();
        if (!this.signal?.aborted) await this.openStream(undefined);
      },
    })
      .then(() => (this.error = undefined))
      .catch((err: unknown) => {
        if (!this.signal?.aborted) this.failNow(isDriverError(err) ? translatePgError(err, pgWhere(this.config)) : (err as Error));
      })
      .finally(() => (this.reconnecting = undefined));
  }

  private async codecFor(table: CatalogTable): Promise<TableCodec> {
    const codec = await buildTableCodec(
      table,
      this.registry,
      {
        topicPrefix: this.config['topic.prefix'],
        decimalHandlingMode: this.config['decimal.handling.mode'],
        timestamptzHandlingMode: this.config['timestamptz.handling.mode'],
        excludedColumns: this.columnExcluded(),
        warn: (m, d) => this.log.warn(d, m),
      },
      this.codecs.get(table.oid),
    );
    this.observer.schemaRegistered(`${codec.topic}-value`, codec.valueSchemaId);
    return codec;
  }

  private columnExcluded(): ((q: string) => boolean) | undefined {
    const list = this.config['column.exclude.list'];
    if (!list) return undefined;
    const res = list.map((p) => new RegExp(`^(?:${p})$`));
    return (q) => res.some((r) => r.test(q));
  }

  /** Open the replication stream from the slot's confirmed position; with a `gate`, nothing is handled until it resolves. */
  private async openStream(gate: Promise<void> | undefined): Promise<void> {
    const c = this.config;
    const handler = new ChangeHandler({
      publisher: this.publisher!,
      txEvents: this.txEvents,
      codecs: this.codecs,
      topicPrefix: c['topic.prefix'],
      db: c['database.dbname'],
      tombstonesOnDelete: c['tombstones.on.delete'],
      onRelation: (msg) => this.onRelation(msg),
      isStreaming: () => this.state === 'streaming',
      // Keepalives are answered with what Kafka holds, never with what was merely received.
      confirmedLsn: () => this.confirmed,
      onError: (err) => this.fail(err),
      events: this.events,
      onChange: (xid, oid, key) => this.incremental?.windows.onChange(xid, oid, key),
      onMessage: (msg, commitLsn) => this.incremental?.onMessage(msg, commitLsn),
    });
    this.handler = handler;
    const { rows } = await this.sql!.query<{ lsn: string }>(
      `SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1`,
      [c['slot.name']],
    );
    this.confirmed = this.acked = parseLsn(rows[0]!.lsn);
    const stream = new ReplicationStream(
      (onError) => connectPg(c, { replication: true, log: this.log, onError }),
      handler,
      (err) => translatePgError(err, pgWhere(c, true)),
    );
    this.replication = stream;
    await stream.start(c['slot.name'], this.confirmed, pgoutputOptions([c['publication.name']]), gate);
  }

  /** Incremental snapshots (signals, joined tables) and the look-out for new tables (capture-follow.ts). */
  private followCapture(joined: string[], captured: string[]): void {
    ({ incremental: this.incremental, discovery: this.discovery } = followCapture({
      config: this.config,
      store: this.store,
      log: this.log,
      events: this.events,
      joined,
      captured,
      publisher: () => this.publisher,
      capturing: this.capturing,
      ensureTopics: (topics) => this.producer.ensureTopics(topics),
      partitionEnds: (topic) => this.producer.partitionEnds?.(topic) ?? Promise.resolve([]),
      codecFor: (table) => this.codecFor(table),
      fail: (err) => this.fail(err),
    }));
  }

  private beginStreaming(): void {
    this.to('stream');
    this.timers.push(setInterval(() => this.sendConfirm(), 200));
    if (this.config['heartbeat.interval.ms'] > 0) {
      this.timers.push(setInterval(() => void this.heartbeat(), this.config['heartbeat.interval.ms']));
    }
  }

  /** A relation message is the truth for the WAL after it (relation-table.ts), never today's catalog. */
  private async onRelation(msg: RelationMessage): Promise<void> {
    if (!this.include(`${msg.schema}.${msg.name}`)) return;
    const existing = this.codecs.get(msg.relationOid);
    const lookups = await lookupRelation(this.sql!, msg);
    const table = tableFromRelation(msg, existing?.table, lookups);
    if (existing && sameRelation(existing.table, table)) return;
    if (!lookups.now)
      this.log.warn(
        { table: table.qualified, oid: msg.relationOid },
        'this table was dropped after this point of the WAL: its remaining changes are delivered, then it is no longer captured',
      );
    if (!existing)
      await this.producer.ensureTopics([
        {
          topic: `${this.config['topic.prefix']}.${table.schema}.${table.name}`,
          partitions: this.config['topic.partitions'],
          replicationFactor: this.config['topic.replication.factor'],
        },
      ]);
    this.codecs.set(msg.relationOid, await this.codecFor(table));
    this.capturing.add(table.qualified);
    if (!existing) rememberCaptured(this.store, [table.qualified]);
    this.log.info({ table: table.qualified, ...describeRelationChange(existing?.table, table) }, 'schema registered for changed relation');
  }

  private onAcked(lsn: Lsn): void {
    if (lsn > this.acked) this.acked = lsn;
  }

  private sendConfirm(): void {
    if (!this.replication || this.acked <= this.confirmed) return;
    this.confirmed = this.acked;
    this.replication.confirm(this.confirmed);
  }

  private async heartbeat(): Promise<void> {
    if (this.reconnecting || !this.sql) return;
    try {
      // A tiny transactional WAL message: it comes back through the slot, so the slot advances even when captured tables are idle.
      await this.sql!.query(`SELECT pg_logical_emit_message(true, 'tide_heartbeat', '')`);
    } catch (err) {
      this.log.warn({ err }, 'heartbeat failed');
    }
  }

  /** The SlotLostError when the server has invalidated our slot (see findLostSlot). */
  private lostSlot(): Promise<SlotLostError | undefined> {
    const c = this.config;
    return findLostSlot(this.sql!, `postgres at ${c['database.hostname']}:${c['database.port']}`, {
      name: c['slot.name'],
      connector: this.file.name,
      connectorFile: this.file.source,
    });
  }

  /** A failure; when the stream broke because the server invalidated the slot, the failure says that instead. */
  private fail(err: Error): void {
    if (this.state === 'streaming' && isConnectionLoss(err)) return this.reconnect(err);
    if (err instanceof SchemaPausedError || err instanceof SlotLostError || !this.sql || this.state !== 'streaming') {
      this.failNow(err);
      return;
    }
    const timeout = new Promise<undefined>((r) => setTimeout(() => r(undefined), 3000).unref());
    void Promise.race([this.lostSlot(), timeout]).then(
      (lost) => this.failNow(lost ?? err),
      () => this.failNow(err),
    );
  }

  private failNow(err: Error): void {
    this.error = err.message;
    if (err instanceof SchemaPausedError) {
      if (this.state === 'streaming' || this.state === 'snapshotting' || this.state === 'starting') this.to('pause');
      this.log.error({ err }, 'paused: incompatible schema change');
    } else {
      this.log.error({ err }, 'source failed');
      if (this.state !== 'failed' && this.state !== 'stopped') this.to('fail');
    }
    this.fatal?.(err);
  }

  private get eventsTotal(): number {
    return this.handler?.eventsTotal ?? 0;
  }

  private rate = { at: performance.now(), total: 0, perSecond: 0 };

  /** The connector's own view: state, LSNs, counts (also written to the status file each second). */
  status(): SourceStatus {
    const now = performance.now();
    if (now - this.rate.at >= 1000) {
      this.rate = { at: now, total: this.eventsTotal, perSecond: ((this.eventsTotal - this.rate.total) * 1000) / (now - this.rate.at) };
    }
    return {
      eventsPerSecond: Math.round(this.rate.perSecond),
      name: this.file.name,
      pid: process.pid,
      state: this.state,
      slot: this.config['slot.name'],
      confirmedLsn: formatLsn(this.confirmed),
      receivedLsn: formatLsn(BigInt(this.handler?.received ?? 0)),
      eventsTotal: this.eventsTotal,
      pendingEvents: this.publisher?.pendingEvents ?? 0,
      snapshot: this.snapshotInfo,
      incrementalSnapshot: this.incremental?.status(),
      error: this.error,
      reconnecting: this.reconnecting ? true : undefined,
      updatedAt: new Date().toISOString(),
    };
  }

  private flushStatus(): void {
    writeStatus(this.statusPath, this.status());
  }

  private async close(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    // Both end at once, also after a failure or a pause (run's signal is not aborted then): a snapshot chunk
    // waiting for a high watermark from the failed stream stops waiting.
    await this.discovery?.stop();
    await this.incremental?.stop();
    await this.reconnecting;
    try {
      if (this.publisher && this.state !== 'failed') {
        await this.publisher.flush();
        this.sendConfirm();
      }
    } catch (err) {
      this.log.error({ err }, 'could not flush on shutdown; nothing unacknowledged was confirmed');
    }
    this.publisher?.close();
    await this.replication?.stop();
    await this.producer.close().catch(() => undefined);
    await endPg(this.sql);
    this.flushStatus();
    this.log.info({ confirmedLsn: formatLsn(this.confirmed), events: this.eventsTotal }, 'source closed');
  }
}

import type pg from 'pg';
import type { ConnectorFile, SourceConfig } from '../config/source-config.ts';
import { TideError } from '../errors.ts';
import type { TableCodec } from '../events/envelope.ts';
import { StoppedWhileWaitingError } from '../events/kafka-retry.ts';
import { retryPolicyOf } from '../retry.ts';
import type { Logger } from '../log.ts';
import type { CatalogTable } from './catalog.ts';
import { formatLsn, type Lsn } from './lsn.ts';
import type { ChangeHandler } from './change-handler.ts';
import type { RelationMessage } from './pgoutput-decoder.ts';
import { describeEvent, type EventPublisher } from './publisher.ts';
import { isConnectionLoss, reconnectToPostgres } from './reconnect.ts';
import { lostSlotOf, lostWithin, SlotLostError } from './slot-lost.ts';
import { connectPg, emitHeartbeat, endPg, pgWhere } from './pg-connection.ts';
import { isDriverError, pgTarget, translatePgError } from './pg-errors.ts';
import type { ReplicationStream } from './replication-stream.ts';
import { SchemaPausedError } from './schema-guard.ts';
import { buildTableCodec, codecOptionsOf } from './table-codec-builder.ts';
import { followCapture } from './capture-follow.ts';
import type { IncrementalSnapshots } from './incremental-snapshot.ts';
import type { TableDiscovery } from './table-discovery.ts';
import { transition, type SourceEvent, type SourceState } from './source-state.ts';
import { EventRate, writeStatus, type SourceStatus } from './status-file.ts';
import { prepareStart } from './start-plan.ts';
import { createSlotAndSnapshot } from './slot-snapshot.ts';
import { applyRelation } from './relation-change.ts';
import { openStream } from './open-stream.ts';
import { settleAll, sourceParts, sourcePublisher, type SourceDeps, type SourceParts } from './source-parts.ts';

export type { SourceDeps } from './source-parts.ts';

/**
 * The source connector: Postgres WAL (pgoutput) → Avro events → Kafka.
 * Confirms an LSN to the slot only after Kafka acknowledged every event at or
 * before it, so a crash at any moment loses nothing (duplicates are possible
 * and carry the same (commit_lsn, event_index)). Its parts: start-plan.ts (checks and DDL at start-up),
 * slot-snapshot.ts (the slot and the initial snapshot), relation-change.ts (schema changes in the stream),
 * source-parts.ts (what it is built from), reconnect.ts (a lost connection).
 */
export class SourceConnector {
  state: SourceState = 'starting';
  private readonly config: SourceConfig;
  /** The database in messages: `Postgres at host:port/dbname`. */
  private readonly where: string;
  private readonly log: Logger;
  /** Its producer, Kafka retrier, registry, offset store, status file, table filter (source-parts.ts). */
  private readonly parts: SourceParts;
  private sql: pg.Client | undefined;
  private replication: ReplicationStream | undefined;
  private handler: ChangeHandler | undefined;
  private publisher: EventPublisher | undefined;
  private incremental: IncrementalSnapshots | undefined;
  private discovery: TableDiscovery | undefined;
  /** The stream's codecs by relation oid (the initial snapshot's too): from relation messages on a running slot. */
  private readonly codecs = new Map<number, TableCodec>();
  /** The tables captured now (`schema.table`): the plan's, those found while running, those the stream names. */
  private readonly capturing = new Set<string>();
  private confirmed: Lsn = 0n;
  private acked: Lsn = 0n;
  private error: string | undefined;
  private snapshotInfo: SourceStatus['snapshot'];
  private readonly timers: NodeJS.Timeout[] = [];
  private fatal: ((err: Error) => void) | undefined;
  private signal: AbortSignal | undefined;
  private readonly rate = new EventRate();
  /** Set while a lost connection is being re-established (see reconnect). */
  private reconnecting: Promise<void> | undefined;

  constructor(
    private readonly file: ConnectorFile<SourceConfig>,
    deps: SourceDeps = {},
  ) {
    this.config = file.config;
    this.where = `Postgres at ${this.config['database.hostname']}:${this.config['database.port']}/${this.config['database.dbname']}`;
    this.parts = sourceParts(file, deps);
    this.log = this.parts.log;
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

  /** Run until `signal` aborts (clean stop), the connector pauses on an incompatible schema, or a fatal error. */
  async run(signal: AbortSignal): Promise<SourceState> {
    this.parts.kafka.signal = signal;
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
    const { offsets, state, plan } = await prepareStart(this.sql, this.file, this.parts.store, {
      where: this.where,
      lostSlot: () => lostSlotOf(this.sql!, this.file),
      log: this.log,
    });
    for (const t of plan.captured) this.capturing.add(t.qualified);
    this.publisher = sourcePublisher(this.config, this.parts.producer, {
      onConfirmable: (lsn) => {
        if (lsn > this.acked) this.acked = lsn;
      },
      describe: (m) => describeEvent([...this.codecs.values(), ...(this.incremental?.chunkCodec ? [this.incremental.chunkCodec] : [])], m),
      onCommitAcked: (commitTsMs) => this.parts.observer.commitAcked(Date.now() - commitTsMs),
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
      this.parts.producer.ensureTopics(plan.topics),
      // Restarting on an existing slot, the stream's relation messages build each codec: the catalog describes
      // today's tables, and WAL written before later DDL must be read with the schema it was written with.
      ...(early ? [] : plan.captured.map(async (t) => this.codecs.set(t.oid, await this.codecFor(t)))),
      this.parts.txEvents.registerSchemas(this.parts.registry),
    ]);

    const snapshot = await createSlotAndSnapshot({
      config: c,
      sql: this.sql,
      state,
      plan,
      store: this.parts.store,
      codecs: this.codecs,
      publisher: this.publisher,
      producer: this.parts.producer,
      events: this.parts.observer.events,
      log: this.log,
      signal,
      onSnapshotStart: () => this.to('snapshot'),
      onProgress: (info) => (this.snapshotInfo = info),
    });
    if (snapshot === 'interrupted') return;
    if (c['snapshot.mode'] === 'initial_only') {
      this.log.info('snapshot.mode=initial_only: snapshot finished, not streaming');
      return;
    }
    // Held as well: the server may send changes in the same socket read as its answer to START_REPLICATION, and
    // the handler drops whatever reaches it before the state says streaming (a later commit's confirm would skip them).
    if (!early) await this.openStream(new Promise<void>((r) => (release = r)));
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
    this.error = `reconnecting to ${this.where}: ${cause.message}`;
    this.reconnecting = reconnectToPostgres(cause, {
      where: this.where,
      target: pgTarget(pgWhere(this.config)),
      policy: retryPolicyOf(this.config),
      monitor: this.parts.monitor,
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
    const codec = await buildTableCodec(table, this.parts.registry, codecOptionsOf(this.config, this.log), this.codecs.get(table.oid));
    this.parts.observer.schemaRegistered(`${codec.topic}-value`, codec.valueSchemaId);
    return codec;
  }

  /** Open the replication stream (open-stream.ts); with a `gate`, nothing is handled until it resolves. */
  private openStream(gate: Promise<void> | undefined): Promise<void> {
    return openStream({
      config: this.config,
      sql: this.sql!,
      log: this.log,
      gate,
      handler: {
        publisher: this.publisher!,
        txEvents: this.parts.txEvents,
        codecs: this.codecs,
        onRelation: (msg) => this.onRelation(msg),
        isStreaming: () => this.state === 'streaming',
        // Keepalives are answered with what Kafka holds, never with what was merely received.
        confirmedLsn: () => this.confirmed,
        onError: (err) => this.fail(err),
        events: this.parts.observer.events,
        onChange: (xid, oid, key) => this.incremental?.windows.onChange(xid, oid, key),
        onMessage: (msg, commitLsn) => this.incremental?.onMessage(msg, commitLsn),
      },
      onHandler: (handler) => (this.handler = handler),
      onPosition: (lsn) => (this.confirmed = this.acked = lsn),
      onStream: (stream) => (this.replication = stream),
    });
  }

  /** Incremental snapshots (signals, joined tables) and the look-out for new tables (capture-follow.ts). */
  private followCapture(joined: string[], captured: string[]): void {
    ({ incremental: this.incremental, discovery: this.discovery } = followCapture({
      config: this.config,
      store: this.parts.store,
      log: this.log,
      events: this.parts.observer.events,
      joined,
      captured,
      publisher: () => this.publisher,
      capturing: this.capturing,
      ensureTopics: (topics) => this.parts.producer.ensureTopics(topics),
      partitionEnds: (topic) => this.parts.producer.partitionEnds?.(topic) ?? Promise.resolve([]),
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

  /** A relation message is the truth for the WAL after it (relation-change.ts), never today's catalog. */
  private onRelation(msg: RelationMessage): Promise<void> {
    return applyRelation(msg, {
      config: this.config,
      sql: this.sql!,
      codecs: this.codecs,
      capturing: this.capturing,
      include: this.parts.include,
      store: this.parts.store,
      producer: this.parts.producer,
      codecFor: (table) => this.codecFor(table),
      log: this.log,
    });
  }

  private sendConfirm(): void {
    if (!this.replication || this.acked <= this.confirmed) return;
    this.confirmed = this.acked;
    this.replication.confirm(this.confirmed);
  }

  private async heartbeat(): Promise<void> {
    if (!this.reconnecting && this.sql) await emitHeartbeat(this.sql, this.log);
  }

  /** A failure; when the stream broke because the server invalidated the slot, the failure says that instead. */
  private fail(err: Error): void {
    if (this.state === 'streaming' && isConnectionLoss(err)) return this.reconnect(err);
    if (err instanceof SchemaPausedError || err instanceof SlotLostError || !this.sql || this.state !== 'streaming') {
      this.failNow(err);
      return;
    }
    // The SlotLostError when the server has invalidated our slot.
    void lostWithin(lostSlotOf(this.sql!, this.file), 3000).then((lost) => this.failNow(lost ?? err));
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

  /** The connector's own view: state, LSNs, counts (also written to the status file each second). */
  status(): SourceStatus {
    return {
      eventsPerSecond: this.rate.of(this.handler?.eventsTotal ?? 0),
      name: this.file.name,
      pid: process.pid,
      state: this.state,
      slot: this.config['slot.name'],
      confirmedLsn: formatLsn(this.confirmed),
      receivedLsn: formatLsn(BigInt(this.handler?.received ?? 0)),
      eventsTotal: this.handler?.eventsTotal ?? 0,
      pendingEvents: this.publisher?.pendingEvents ?? 0,
      snapshot: this.snapshotInfo,
      incrementalSnapshot: this.incremental?.status(),
      error: this.error,
      reconnecting: this.reconnecting ? true : undefined,
      updatedAt: new Date().toISOString(),
    };
  }

  private flushStatus(): void {
    writeStatus(this.parts.statusPath, this.status());
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
    await this.parts.producer.close().catch(() => undefined);
    await endPg(this.sql);
    this.flushStatus();
    this.log.info({ confirmedLsn: formatLsn(this.confirmed), events: this.handler?.eventsTotal ?? 0 }, 'source closed');
  }
}

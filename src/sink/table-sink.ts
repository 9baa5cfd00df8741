import { DeltaTable } from '../lake/delta/delta-table.ts';
import type { LakeColumn } from '../lake/lake-schema.ts';
import type { ParquetEngine } from '../lake/parquet/parquet-engine.ts';
import { appendBronze, bronzeColumns, bronzeRowColumns } from './bronze-writer.ts';
import type { ChangeEvent } from './change-event.ts';
import { maskedColumn, masksFor, type ColumnMask } from './masking.ts';
import { txnActions, txnAppId, uncommitted } from './offsets.ts';
import { reconcileHistory, reconcileSilver, withMarkersCounted, type SnapshotEndAt } from './snapshot-reconcile.ts';
import { MissingKeyError, reduceToChanges } from './silver-changes.ts';
import { mergeSilver } from './silver-merge.ts';
import { compactAfterMerge } from './silver-compaction.ts';
import { alignDeletionVectors, ENABLE_DELETION_VECTORS } from './silver-dv-merge.ts';
import { TIDE_PROTOCOL, withDeletionVectors } from '../lake/delta/protocol-check.ts';
import { DeleteMarkers } from './delete-markers.ts';
import { evolveSchema, incomingColumns, renameColumns, silverColumns } from './schema-evolution.ts';
import type { ApplyResult, SinkContext } from './sink-context.ts';
import { historyColumns, historyVersionsInTurns, mergeHistory } from './history-merge.ts';
import { bronzePath, HISTORY_META, historyPath, SILVER_META, silverPath } from './table-layout.ts';

export type { ApplyResult, DeadLetter, SinkContext } from './sink-context.ts';

const KEY_CONFIG = 'tide.primaryKey';
/** How often one batch re-plans against a table that other writers keep moving. */
const MAX_REPLANS = 5;

/**
 * The lake tables of one source table: bronze (append) and silver (merge). Tables are created on the
 * first event, from the event's schema; a column added upstream is added to both (Delta metaData update
 * in the same commit as the data, no restart); a column whose type changed cannot be written, so the
 * events carrying it go to the dead-letter topic and the other events of the table go on.
 */
export class TableSink {
  private bronze: DeltaTable | undefined;
  private silver: DeltaTable | undefined;
  private history: DeltaTable | undefined;
  private markers: DeleteMarkers | undefined;

  constructor(
    private readonly ctx: SinkContext,
    readonly qualified: string,
  ) {}

  async open(): Promise<void> {
    if (this.ctx.config['bronze.enabled']) this.bronze = await DeltaTable.open(this.ctx.store, bronzePath(this.qualified));
    this.silver = await DeltaTable.open(this.ctx.store, silverPath(this.qualified));
    if (this.silver) await alignDeletionVectors(this.silver, this.deletionVectors, this.ctx.log);
    if (this.keepsHistory) this.history = await DeltaTable.open(this.ctx.store, historyPath(this.qualified));
    // History follows its table's delta.enableDeletionVectors (history-dv-merge.ts).
    if (this.history) await alignDeletionVectors(this.history, this.deletionVectors, this.ctx.log);
    // A re-snapshot's reconcile that a crash interrupted (its markers are committed, its delete is not) is finished now,
    // also when no message of the table comes again.
    const result: ApplyResult = { deadLetters: [], bronzeRows: 0, silverChanges: 0, rewrittenFiles: 0 };
    await this.reconcile(result);
    this.reconciledOnOpen = result.silverVersion !== undefined;
  }

  /** open() finished a re-snapshot's reconcile: silver changed (gold is due). */
  reconciledOnOpen = false;

  /** Re-snapshots reconcile (snapshot-reconcile.ts): silver, then history, each when its markers are all in. */
  private async reconcile(result: ApplyResult): Promise<void> {
    await this.reconcileSilver(result);
    await this.reconcileHistory(this.ctx.engine, result);
  }

  private async reconcileSilver(result: ApplyResult): Promise<void> {
    if (this.silver) {
      const silver = this.silver;
      const keys = this.silverKey([]);
      await this.replanned(
        () => this.silver,
        result,
        async () => {
          const markers = (this.markers ??= await DeleteMarkers.open(
            this.ctx.store,
            this.qualified,
            keys.map((k) => silver.schema.columns.find((c) => c.name === k)!),
          ));
          const done = await reconcileSilver(this.ctx.engine, silver, keys, markers, this.ctx.log);
          if (done) result.silverVersion = done.version;
        },
      );
    }
  }

  private async reconcileHistory(engine: ParquetEngine, result: ApplyResult): Promise<void> {
    if (this.history && this.keepsHistory) {
      const history = this.history;
      await this.replanned(
        () => this.history,
        result,
        async () => void (await reconcileHistory(engine, history, this.silverKey([]), this.ctx.log)),
      );
    }
  }

  /** The markers (of `ends`) that `table` has not committed yet. */
  private pendingEnds(table: DeltaTable, ends: SnapshotEndAt[]): SnapshotEndAt[] {
    return ends.filter((m) => m.offset > BigInt(table.txnVersion(txnAppId(this.ctx.name, m.topic, m.partition)) ?? -1));
  }

  /** The tables whose txn versions decide where the table's partitions resume. */
  tables(): (DeltaTable | undefined)[] {
    return [...(this.ctx.config['bronze.enabled'] ? [this.bronze] : []), this.silver, ...(this.keepsHistory ? [this.history] : [])];
  }

  /** The tables with their names (`bronze.public.orders`, …), for the seek and the retention-gap check. */
  layers(): { name: string; table: DeltaTable | undefined }[] {
    return [
      ...(this.ctx.config['bronze.enabled'] ? [{ name: `bronze.${this.qualified}`, table: this.bronze }] : []),
      { name: `silver.${this.qualified}`, table: this.silver },
      ...(this.keepsHistory ? [{ name: `silver.${this.qualified}_history`, table: this.history }] : []),
    ];
  }

  /** Silver and history merges write deletion vectors when the table matches delta.enableDeletionVectors. */
  get deletionVectors(): boolean {
    return this.ctx.config['delta.enableDeletionVectors'].some((p) => new RegExp(`^(?:${p})$`).test(this.qualified));
  }

  /** silver.<table>_history is kept when the table matches silver.history.tables. */
  get keepsHistory(): boolean {
    return this.ctx.config['silver.history.tables'].some((p) => new RegExp(`^(?:${p})$`).test(this.qualified));
  }

  get silverTable(): DeltaTable | undefined {
    return this.silver;
  }

  /** Where the last apply() spent its time (ms): the sink's per-flush log (sink-worker.ts). */
  lastTimings = { bronzeMs: 0, silverMs: 0 };

  /**
   * Write a batch (events of this table, plus the offsets of every message of its topics in the batch) to
   * bronze and silver. History takes the same batch in applyHistory, on its own cadence (history-lane.ts).
   */
  async apply(
    events: ChangeEvent[],
    offsets: { topic: string; partition: number; offset: bigint }[],
    /** End-of-snapshot markers among the batch's messages (events/snapshot-end.ts). */
    ends: SnapshotEndAt[] = [],
  ): Promise<ApplyResult> {
    const result: ApplyResult = { deadLetters: [], bronzeRows: 0, silverChanges: 0, rewrittenFiles: 0 };
    const timings = (this.lastTimings = { bronzeMs: 0, silverMs: 0 });
    let t = performance.now();
    const lap = () => {
      const now = performance.now();
      const ms = Math.round(now - t);
      t = now;
      return ms;
    };
    const incoming = incomingColumns(events);
    const keyColumns = events.find((e) => e.keyColumns.length)?.keyColumns ?? [];

    if (this.ctx.config['bronze.enabled']) {
      // Created (or, when another sink worker created it since open() or creates it now, loaded) before the
      // pending events are chosen: what another worker committed already must be skipped here.
      if (!this.bronze && offsets.length)
        this.bronze = await DeltaTable.create(this.ctx.store, bronzePath(this.qualified), {
          name: `bronze.${this.qualified}`,
          schema: { columns: bronzeColumns(incoming) },
          partitionColumns: ['_commit_date'],
          description: `Every change event of ${this.qualified}, append-only (Tide sink ${this.ctx.name})`,
          configuration: { 'delta.checkpointInterval': String(this.ctx.config['delta.checkpoint.interval']) },
        });
      const pending = uncommitted(this.bronze, this.ctx.name, events);
      const pendingOffsets = uncommitted(this.bronze, this.ctx.name, offsets);
      if (this.bronze && pendingOffsets.length) {
        const current = bronzeRowColumns(this.bronze.schema);
        const { schema, evolved, good } = evolveSchema(
          this.qualified,
          this.ctx.log,
          this.bronze,
          current,
          incoming,
          pending,
          result,
          (cols) => bronzeColumns(cols),
        );
        await this.sendNewDeadLetters(result);
        result.bronzeVersion = await appendBronze(
          this.ctx.engine,
          this.bronze,
          schema,
          good,
          txnActions(this.ctx.name, pendingOffsets),
          evolved,
        );
        result.bronzeRows = good.length;
      }
    }
    timings.bronzeMs = lap();

    // Silver, then (history-lane.ts) history, each on its own txn versions: a crash between their commits
    // leaves history behind silver, and the replayed batch must still bring history up (it is not skipped
    // because silver has nothing left to do). Each re-plans when the table moved under it (see replanned).
    await this.replanned(
      () => this.silver,
      result,
      () => this.applySilver(events, offsets, incoming, keyColumns, result, ends),
    );
    timings.silverMs = lap();
    await this.reconcileSilver(result);
    return result;
  }

  /**
   * SCD2 history for a batch that silver took already (history-lane.ts calls this, inline after silver or
   * later for several flushes at once, on `engine`); then a re-snapshot's reconcile of history when its
   * markers are all in. Dead letters are sent as silver's are; events silver dead-lettered are not passed in.
   */
  async applyHistory(
    engine: ParquetEngine,
    events: ChangeEvent[],
    offsets: { topic: string; partition: number; offset: bigint }[],
    ends: SnapshotEndAt[],
  ): Promise<ApplyResult> {
    const result: ApplyResult = { deadLetters: [], bronzeRows: 0, silverChanges: 0, rewrittenFiles: 0 };
    if (!this.silver || !this.keepsHistory) return result;
    const incoming = incomingColumns(events);
    const keyColumns = events.find((e) => e.keyColumns.length)?.keyColumns ?? [];
    const silverKey = this.silverKey(keyColumns);
    const masks = masksFor(this.ctx.config, this.qualified, incoming, silverKey);
    await this.replanned(
      () => this.history,
      result,
      () => this.mergeIntoHistory(engine, events, offsets, incoming, silverKey, masks, result, ends),
    );
    await this.reconcileHistory(engine, result);
    return result;
  }

  /** Re-read the history table's log (a concurrent writer won a history commit: history-lane.ts retries). */
  async reopenHistory(): Promise<void> {
    if (this.keepsHistory) this.history = await DeltaTable.open(this.ctx.store, historyPath(this.qualified));
  }

  private silverKey(keyColumns: string[]): string[] {
    return (this.silver?.metadata.configuration[KEY_CONFIG] ?? keyColumns.join(',')).split(',').filter(Boolean);
  }

  /**
   * Run `work` (which plans from `table()`'s snapshot and commits); if it fails and the table has moved
   * since (another process committed: `lake optimize`, a second sink worker), re-read the log and run it
   * again from the new snapshot. A merge planned from an old snapshot fails either at the commit (a
   * conflict with the winner's removes) or before it, reading a data file that the other commit replaced
   * and vacuum then deleted. Work that fails on an unchanged table fails for real: the error is thrown.
   */
  private async replanned(table: () => DeltaTable | undefined, result: ApplyResult, work: () => Promise<void>): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const before = table()?.version;
      const letters = result.deadLetters.length;
      try {
        return await work();
      } catch (err) {
        const t = table();
        if (!t || before === undefined || attempt >= MAX_REPLANS) throw err;
        result.deadLetters.length = letters; // the new plan finds them again (at least once, as dead letters are)
        result.deadLettersSent = Math.min(result.deadLettersSent ?? 0, letters);
        await t.refresh();
        if (t.version === before) throw err;
        this.ctx.log.info(
          { table: t.label, from: before, to: t.version, err: err instanceof Error ? err.message : String(err) },
          'the table moved under this sink (another writer committed): re-reading its log and planning again',
        );
      }
    }
  }

  private async applySilver(
    events: ChangeEvent[],
    offsets: { topic: string; partition: number; offset: bigint }[],
    incoming: LakeColumn[],
    keyColumns: string[],
    result: ApplyResult,
    ends: SnapshotEndAt[],
  ): Promise<void> {
    // Created or loaded before the pending events are chosen (see apply()).
    if (!this.silver) {
      if (!offsets.length || !keyColumns.length) return; // only truncates so far: nothing to keep yet
      const masks = masksFor(this.ctx.config, this.qualified, incoming, keyColumns);
      this.silver = await DeltaTable.create(this.ctx.store, silverPath(this.qualified), {
        name: `silver.${this.qualified}`,
        schema: { columns: silverColumns(incoming, masks, keyColumns) },
        description: `Current state of ${this.qualified} per primary key (Tide sink ${this.ctx.name})`,
        configuration: {
          [KEY_CONFIG]: keyColumns.join(','),
          'delta.checkpointInterval': String(this.ctx.config['delta.checkpoint.interval']),
          ...(this.deletionVectors ? { [ENABLE_DELETION_VECTORS]: 'true' } : {}),
        },
        ...(this.deletionVectors ? { protocol: withDeletionVectors(TIDE_PROTOCOL) } : {}),
      });
      // Another worker (or an older Tide) may have created it without the setting.
      await alignDeletionVectors(this.silver, this.deletionVectors, this.ctx.log);
    }
    const pending = uncommitted(this.silver, this.ctx.name, events);
    const pendingOffsets = uncommitted(this.silver, this.ctx.name, offsets);
    if (!pendingOffsets.length) return;
    await renameColumns(this.ctx.engine, this.ctx.log, this.silver, pending, SILVER_META);
    const silverKey = this.silverKey(keyColumns);
    const meta = new Set(SILVER_META.map((c) => c.name));
    const current = this.silver.schema.columns.filter((c) => !meta.has(c.name));
    const masks = masksFor(this.ctx.config, this.qualified, incoming, silverKey);
    const maskedIncoming = incoming.map((c) => maskedColumn(c, masks));
    const evolution = evolveSchema(
      this.qualified,
      this.ctx.log,
      this.silver,
      current,
      maskedIncoming,
      pending,
      result,
      (cols) => silverColumns(cols, [], silverKey),
      (c) => maskedColumn(c, masks),
    );
    const { schema, good } = evolution;
    // The markers are counted in the commit that moves the offsets past them (exactly once).
    const counted = withMarkersCounted(
      evolution.evolved && 'metaData' in evolution.evolved ? evolution.evolved.metaData : this.silver.metadata,
      this.pendingEnds(this.silver, ends),
    );
    const evolved = counted ? { metaData: counted } : evolution.evolved;
    let batch;
    try {
      batch = reduceToChanges(good, silverKey, masks);
    } catch (err) {
      if (!(err instanceof MissingKeyError)) throw err;
      result.deadLetters.push({ event: err.event, reason: err.message });
      batch = reduceToChanges(
        good.filter((e) => e !== err.event),
        silverKey,
        masks,
      );
    }
    await this.sendNewDeadLetters(result);
    // Deletes leave markers before silver commits (a replay then finds them); new keys check them.
    const markers = (this.markers ??= await DeleteMarkers.open(
      this.ctx.store,
      this.qualified,
      silverKey.map((k) => schema.columns.find((c) => c.name === k)!),
    ));
    await markers.record(
      this.ctx.engine,
      batch.changes.filter((c) => c.deleted),
      silverKey,
    );
    await markers.createView(this.ctx.engine, 'silver_deleted');
    const mergeStarted = performance.now();
    const merged = await mergeSilver(
      this.ctx.engine,
      this.silver,
      schema,
      silverKey,
      batch,
      txnActions(this.ctx.name, pendingOffsets),
      evolved,
      'silver_deleted',
      { maxRows: this.ctx.config['silver.key.index.max.rows'], log: this.ctx.log },
    );
    this.ctx.observer.mergeTimed(this.qualified, (performance.now() - mergeStarted) / 1000);
    await compactAfterMerge(this.ctx.engine, this.silver, this.ctx.config, this.ctx.log);
    result.silverVersion = merged.version;
    result.silverChanges = batch.changes.length;
    result.rewrittenFiles = merged.rewrittenFiles;
  }

  /** SCD type 2 history: every version of every row, with its validity interval. */
  private async mergeIntoHistory(
    engine: ParquetEngine,
    events: ChangeEvent[],
    offsets: { topic: string; partition: number; offset: bigint }[],
    incoming: LakeColumn[],
    keyColumns: string[],
    masks: ColumnMask[],
    result: ApplyResult,
    ends: SnapshotEndAt[],
  ): Promise<void> {
    // Created or loaded before the pending events are chosen (see apply()).
    if (!offsets.length) return;
    if (!this.history) {
      this.history = await DeltaTable.create(this.ctx.store, historyPath(this.qualified), {
        name: `silver.${this.qualified}_history`,
        schema: {
          columns: historyColumns(silverColumns(incoming, masks, keyColumns).filter((c) => !SILVER_META.some((m) => m.name === c.name))),
        },
        description: `Every version of each row of ${this.qualified} (SCD type 2; Tide sink ${this.ctx.name})`,
        configuration: {
          [KEY_CONFIG]: keyColumns.join(','),
          'delta.checkpointInterval': String(this.ctx.config['delta.checkpoint.interval']),
          ...(this.deletionVectors ? { [ENABLE_DELETION_VECTORS]: 'true' } : {}),
        },
        ...(this.deletionVectors ? { protocol: withDeletionVectors(TIDE_PROTOCOL) } : {}),
      });
      // Another worker (or an older Tide) may have created it without the setting.
      await alignDeletionVectors(this.history, this.deletionVectors, this.ctx.log);
    }
    // One table object for the whole plan and its commit: the flush's conflict retry (applyWithRetry) may
    // open the table again meanwhile, and a plan made on one snapshot must be checked against it.
    const history = this.history;
    const pending = uncommitted(history, this.ctx.name, events);
    const pendingOffsets = uncommitted(history, this.ctx.name, offsets);
    if (!pendingOffsets.length) return;
    await renameColumns(engine, this.ctx.log, history, pending, HISTORY_META);
    const meta = new Set(HISTORY_META.map((c) => c.name));
    const current = history.schema.columns.filter((c) => !meta.has(c.name));
    const maskedIncoming = incoming.map((c) => maskedColumn(c, masks));
    const evolution = evolveSchema(
      this.qualified,
      this.ctx.log,
      history,
      current,
      maskedIncoming,
      pending,
      result,
      (cols) => historyColumns(cols.map((c) => ({ ...c, nullable: !keyColumns.includes(c.name) }))),
      (c) => maskedColumn(c, masks),
    );
    const { schema, good } = evolution;
    const counted = withMarkersCounted(
      evolution.evolved && 'metaData' in evolution.evolved ? evolution.evolved.metaData : history.metadata,
      this.pendingEnds(history, ends),
    );
    const evolved = counted ? { metaData: counted } : evolution.evolved;
    await this.sendNewDeadLetters(result);
    const batch = await historyVersionsInTurns(
      good.filter((e) => !result.deadLetters.some((d) => d.event === e)),
      keyColumns,
      masks,
    );
    await mergeHistory(engine, history, schema, keyColumns, batch, txnActions(this.ctx.name, pendingOffsets), evolved, {
      maxRows: this.ctx.config['silver.key.index.max.rows'],
      log: this.ctx.log,
    });
  }

  private async sendNewDeadLetters(result: ApplyResult): Promise<void> {
    const sent = result.deadLettersSent ?? 0;
    if (result.deadLetters.length > sent) await this.ctx.sendDeadLetters(result.deadLetters.slice(sent));
    result.deadLettersSent = result.deadLetters.length;
  }
}

import { DeltaConflictError } from '../lake/delta/delta-errors.ts';
import type { ParquetEngine } from '../lake/parquet/parquet-engine.ts';
import type { Logger } from '../log.ts';
import type { ChangeEvent } from './change-event.ts';
import type { SnapshotEndAt } from './snapshot-reconcile.ts';
import type { Offset } from './table-batches.ts';
import type { TableSink } from './table-sink.ts';

/** What the lane holds for one table until its next history merge. */
interface Pending {
  sink: TableSink;
  events: ChangeEvent[];
  offsets: Offset[];
  ends: SnapshotEndAt[];
  /** When the oldest of them was added (ms). */
  since: number;
}

export interface HistoryLaneOptions {
  /**
   * silver.history.interval.ms: 0 merges each table's history right after its silver, in the flush (on the
   * flush's engine); above 0 history merges run in the background, on their own engine, at most this often.
   */
  intervalMs: number;
  /** silver.history.max.events: a merge starts at this many waiting events; flushes wait at twice as many. */
  maxEvents: number;
  /** The flush's engine (inline), or a factory for the lane's own (background; made on the first merge). */
  engine: ParquetEngine | (() => Promise<ParquetEngine>);
  log: Logger;
  /** A history merge committed (gold reads history: its reports become due). */
  onMerged(sink: TableSink): void;
}

/**
 * SCD2 history merges on their own cadence (silver.history.interval.ms), behind silver.
 *
 * A history merge's cost is mostly per file it touches (random updates close a version in nearly every file:
 * README "The whole pipeline, sustained"), not per change, so merging a minute of changes at once costs little
 * more than merging one flush; and in the background, on its own DuckDB instance, silver's latency no longer
 * waits for it.
 *
 * Exactly once as before: history's commit carries its own txn versions, and a partition resumes at the lowest
 * version of its tables (offsets.ts resumeOffset), so after a crash the consumer re-reads what history had not
 * committed and bronze and silver skip it. Re-read messages the lane already holds (a rebalance seeks back to
 * history's position) are dropped here by offset; anything history already holds is dropped by the merge itself
 * (its txn versions, and a version not newer than history's is a replay: history-merge.ts).
 */
export class HistoryLane {
  private readonly pending = new Map<string, Pending>();
  /** The highest offset handed to the lane per topic and partition: a re-read message below it is held already. */
  private readonly highest = new Map<string, Map<number, bigint>>();
  private running: Promise<void> | undefined;
  private ownEngine: ParquetEngine | undefined;
  private closed = false;
  /** A background merge failed: the sink stops with it (the lake's txn versions say where a restart resumes). */
  error: Error | undefined;
  /** Committed history merges and the events they took (stats). */
  merges = 0;

  constructor(private readonly opts: HistoryLaneOptions) {}

  get inline(): boolean {
    return this.opts.intervalMs === 0;
  }

  /** Events waiting for a history merge, over all tables. */
  get pendingEvents(): number {
    let n = 0;
    for (const p of this.pending.values()) n += p.events.length;
    return n;
  }

  /**
   * A flush applied `events` (its messages `offsets`, snapshot-end markers `ends`) to the table's bronze and
   * silver; history takes them now (inline) or at its next merge.
   */
  async add(sink: TableSink, events: ChangeEvent[], offsets: Offset[], ends: SnapshotEndAt[]): Promise<number> {
    const fresh = offsets.filter((o) => this.isNew(o));
    if (!fresh.length) return 0;
    const isFresh = (e: { topic: string; partition: number; offset: bigint }) => e.offset > this.highestOf(e.topic, e.partition);
    const freshEvents = events.filter(isFresh);
    const freshEnds = ends.filter(isFresh);
    for (const o of fresh) this.note(o);
    let p = this.pending.get(sink.qualified);
    if (!p) this.pending.set(sink.qualified, (p = { sink, events: [], offsets: [], ends: [], since: Date.now() }));
    // One at a time: a flush holds up to flush.max.events of them, more than a call can take as arguments.
    for (const e of freshEvents) p.events.push(e);
    for (const o of fresh) p.offsets.push(o);
    for (const m of freshEnds) p.ends.push(m);
    if (!this.inline) return 0;
    const started = performance.now();
    await this.mergeTable(sink.qualified, this.opts.engine as ParquetEngine);
    return Math.round(performance.now() - started);
  }

  /**
   * After a flush (background lane): start a merge when one is due and none runs; wait for the running one when
   * twice silver.history.max.events are waiting (memory stays bounded; the consumer pauses behind the flush).
   */
  async afterFlush(): Promise<void> {
    if (this.inline) return;
    this.kick();
    while (this.running && this.pendingEvents >= 2 * this.opts.maxEvents) {
      await this.running;
      this.kick();
    }
  }

  /** Start a background merge if one is due (also called by the sink's timer when traffic stopped). */
  kick(): void {
    if (this.inline || this.running || this.closed || this.error || !this.due()) return;
    void this.serially();
  }

  /** Merge everything waiting now (shutdown, tests), after a running merge. */
  async drain(): Promise<void> {
    await this.serially();
    if (this.error) throw this.error;
  }

  /**
   * One merge of everything waiting, after the running one: two merges of one table must never overlap (a newer
   * batch committed first would move the txn versions past an older one, which would then be skipped). A failure
   * is kept in `error` and stops the sink.
   */
  private serially(): Promise<void> {
    const next = (this.running ?? Promise.resolve())
      .then(() => (this.error ? undefined : this.mergeAll()))
      .catch((err: unknown) => {
        this.error = err instanceof Error ? err : new Error(String(err));
        this.opts.log.error({ err: this.error.message }, 'a history merge failed: the sink stops (a restart resumes from the lake)');
      })
      .finally(() => {
        if (this.running === next) this.running = undefined;
      });
    this.running = next;
    return next;
  }

  /** Wait for a running merge and close the lane's own engine (pending events are left: the lake's offsets resume them). */
  async close(): Promise<void> {
    this.closed = true;
    await this.running;
    await this.ownEngine?.close();
    this.ownEngine = undefined;
  }

  private due(): boolean {
    let oldest = Infinity;
    let events = 0;
    for (const p of this.pending.values()) {
      if (!p.offsets.length) continue;
      oldest = Math.min(oldest, p.since);
      events += p.events.length;
    }
    return events >= this.opts.maxEvents || Date.now() - oldest >= this.opts.intervalMs;
  }

  private async mergeAll(): Promise<void> {
    const engine = await this.engine();
    for (const qualified of [...this.pending.keys()]) await this.mergeTable(qualified, engine);
  }

  private async engine(): Promise<ParquetEngine> {
    if (typeof this.opts.engine !== 'function') return this.opts.engine;
    return (this.ownEngine ??= await this.opts.engine());
  }

  /** One table's waiting events into its history: one commit, re-planned on a concurrent writer's commit. */
  private async mergeTable(qualified: string, engine: ParquetEngine): Promise<void> {
    const p = this.pending.get(qualified);
    if (!p || !p.offsets.length) return;
    // Taken before the merge: what flushes add meanwhile waits for the next one.
    this.pending.delete(qualified);
    const started = performance.now();
    try {
      await p.sink.applyHistory(engine, p.events, p.offsets, p.ends);
    } catch (err) {
      if (!(err instanceof DeltaConflictError)) throw err;
      this.opts.log.warn({ table: qualified, err: err.message }, 'concurrent history commit: re-reading the history table and retrying');
      await p.sink.reopenHistory();
      await p.sink.applyHistory(engine, p.events, p.offsets, p.ends);
    }
    this.merges++;
    this.opts.onMerged(p.sink);
    if (!this.inline)
      this.opts.log.debug(
        { table: qualified, events: p.events.length, waitedMs: Date.now() - p.since, ms: Math.round(performance.now() - started) },
        'history merged',
      );
  }

  private highestOf(topic: string, partition: number): bigint {
    return this.highest.get(topic)?.get(partition) ?? -1n;
  }

  private isNew(o: Offset): boolean {
    return o.offset > this.highestOf(o.topic, o.partition);
  }

  private note(o: Offset): void {
    let byPartition = this.highest.get(o.topic);
    if (!byPartition) this.highest.set(o.topic, (byPartition = new Map()));
    if (o.offset > (byPartition.get(o.partition) ?? -1n)) byPartition.set(o.partition, o.offset);
  }
}

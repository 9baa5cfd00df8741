/**
 * How the sink reports what it does to whoever measures it, without knowing who that is. ops implements
 * it (src/ops/sink-metrics.ts: `sinkObserver`, the `tide_sink_*` metrics) and reads `SinkStats` at
 * scrape time; the CLI hands the implementation in. The sink never imports ops (the import rule in
 * /work/shared/docs/style.md): this module is all it sees.
 */
export interface SinkStats {
  flushes: number;
  messages: number;
  bronzeRows: number;
  silverChanges: number;
  deadLetters: number;
  goldRefreshes: number;
  lastFlushAt?: number;
  /** Newest source commit time (ms) applied to silver, per table. */
  newestCommitMs: Record<string, number>;
  /** Change events waiting for a background history merge (silver.history.interval.ms above 0; else 0). */
  historyPendingEvents?: number;
}

export interface SinkObserver {
  /** One silver merge of source table `table` (e.g. `public.orders`) took `seconds`. */
  mergeTimed(table: string, seconds: number): void;
}

/** An observer that tells no one (tests, one-shot tools). */
export const QUIET_SINK_OBSERVER: SinkObserver = { mergeTimed: () => undefined };

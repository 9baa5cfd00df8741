import type { SinkStats } from '../../sink/sink-observer.ts';
import type { SourceStatus } from '../../source/status-file.ts';

/**
 * What the pipeline panel shows per connector, as the process hosting the dashboard knows it: the
 * source connectors' status (the same object `tide source status` reads from the status file) and the
 * sink workers' counters. The page turns the cumulative counters into rates between two polls, the
 * way Prometheus' rate() does.
 */

export type SourceView = Pick<
  SourceStatus,
  | 'name'
  | 'state'
  | 'slot'
  | 'confirmedLsn'
  | 'eventsTotal'
  | 'eventsPerSecond'
  | 'pendingEvents'
  | 'error'
  | 'updatedAt'
  | 'incrementalSnapshot'
>;

export interface SinkView {
  name: string;
  state: 'starting' | 'running' | 'stopped' | 'failed';
  messages: number;
  flushes: number;
  bronzeRows: number;
  silverChanges: number;
  deadLetters: number;
  goldRefreshes: number;
  lastFlushAt: string | null;
  /** Messages in Kafka not yet committed to the lake (consumer lag), when the host knows it. */
  lagMessages: number | null;
  /** Seconds between now and the newest source commit applied to silver, per source table. */
  freshnessSeconds: Record<string, number>;
  error?: string | undefined;
}

export interface PipelineStatus {
  sources: SourceView[];
  sinks: SinkView[];
}

/** Source status as the page gets it (the status file carries more: pid, snapshot progress). */
export function sourceView(status: SourceStatus): SourceView {
  const { name, state, slot, confirmedLsn, eventsTotal, eventsPerSecond, pendingEvents, error, updatedAt, incrementalSnapshot } = status;
  return { name, state, slot, confirmedLsn, eventsTotal, eventsPerSecond, pendingEvents, error, updatedAt, incrementalSnapshot };
}

/** A sink worker's counters as the page gets them; freshness is computed at `nowMs`. */
export function sinkView(
  name: string,
  state: SinkView['state'],
  stats: SinkStats,
  opts: { lagMessages?: number | null; error?: string; nowMs?: number } = {},
): SinkView {
  const now = opts.nowMs ?? Date.now();
  const freshnessSeconds: Record<string, number> = {};
  for (const [table, ms] of Object.entries(stats.newestCommitMs)) freshnessSeconds[table] = Math.max(0, (now - ms) / 1000);
  return {
    name,
    state,
    messages: stats.messages,
    flushes: stats.flushes,
    bronzeRows: stats.bronzeRows,
    silverChanges: stats.silverChanges,
    deadLetters: stats.deadLetters,
    goldRefreshes: stats.goldRefreshes,
    lastFlushAt: stats.lastFlushAt === undefined ? null : new Date(stats.lastFlushAt).toISOString(),
    lagMessages: opts.lagMessages ?? null,
    freshnessSeconds,
    error: opts.error,
  };
}

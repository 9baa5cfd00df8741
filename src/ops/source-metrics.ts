import { parseLsn } from '../source/lsn.ts';
import type { EventTally, SourceObserver } from '../source/source-observer.ts';
import type { SourceStatus } from '../source/status-file.ts';
import { ProgressWatch, type Readiness, type ReadinessCheck } from './http-server.ts';
import { OwnedSeries, SLOT_LEVELS, SOURCE_STATES, tideMetrics, type TideMetrics } from './metrics.ts';

/**
 * The source connector's metrics (`tide_source_*`, defined in metrics.ts).
 *
 * Scrape time: `registerSourceMetrics` reads the connector's own `status()` (the object the status
 * file holds) and, when given, the slot's lag and retained WAL (a callback onto slot-watch).
 * Event time: the pipeline calls
 *   - `sourceEventCounter(connector).add(table, op)` once per published change event (a plain
 *     in-memory tally on the hot path; it becomes `tide_source_events_total` at scrape time);
 *   - `observeCommitToAck(connector, ms)` when a transaction becomes confirmable (Kafka acknowledged
 *     its last event), with ms = now - the transaction's commit timestamp;
 *   - `observeSchemaRegistered(connector, subject, id)` after each schema registration.
 */

/** What slot-watch knows about the connector's slot (its SlotReading fits); null when the server did not say. */
export interface SlotWalFigures {
  lagBytes: number | null;
  retainedWalBytes: number | null;
  /** slot-watch's verdict against the connector's thresholds. */
  level?: (typeof SLOT_LEVELS)[number];
}

export interface SourceMetricsSource {
  /** The connector's name (the `connector` label). */
  name: string;
  /** The connector's own view, e.g. `() => connector.status()`. */
  status: () => SourceStatus;
  /** The slot's lag and retained WAL, e.g. `() => watch.last` (slot-watch); asked at each scrape. */
  slot?: () => SlotWalFigures | undefined | Promise<SlotWalFigures | undefined>;
}

/** Export `source`'s state at every scrape. Returns the function that stops it and removes its series. */
export function registerSourceMetrics(source: SourceMetricsSource, metrics: TideMetrics = tideMetrics()): () => void {
  const m = metrics.source;
  const connector = source.name;
  const series = {
    state: new OwnedSeries(m.state),
    confirmed: new OwnedSeries(m.confirmedLsn),
    received: new OwnedSeries(m.receivedLsn),
    pending: new OwnedSeries(m.pendingEvents),
    snapshotRows: new OwnedSeries(m.snapshotRows),
    snapshotExpected: new OwnedSeries(m.snapshotRowsExpected),
    incrementalRows: new OwnedSeries(m.incrementalRows),
    incrementalExpected: new OwnedSeries(m.incrementalRowsExpected),
    incrementalQueued: new OwnedSeries(m.incrementalQueued),
    lag: new OwnedSeries(m.slotLag),
    retained: new OwnedSeries(m.retainedWal),
    level: new OwnedSeries(m.slotLevel),
  };
  // The status carries the table being snapshotted now; the finished tables keep their last figures.
  const snapshot = new Map<string, { rows: number; totalRows: number }>();

  const remove = metrics.addCollector(`source ${connector}`, async () => {
    const s = source.status();
    const slot = s.slot;
    for (const state of SOURCE_STATES) series.state.set({ connector, state }, state === s.state ? 1 : 0);
    series.confirmed.set({ connector, slot }, lsnBytes(s.confirmedLsn));
    series.received.set({ connector, slot }, lsnBytes(s.receivedLsn));
    series.pending.set({ connector }, s.pendingEvents);
    if (s.snapshot) snapshot.set(s.snapshot.table, { rows: s.snapshot.rows, totalRows: s.snapshot.totalRows });
    for (const [table, p] of snapshot) {
      series.snapshotRows.set({ connector, table }, p.rows);
      series.snapshotExpected.set({ connector, table }, p.totalRows);
    }
    const inc = s.incrementalSnapshot;
    series.incrementalQueued.set({ connector }, inc ? inc.queued.length : 0);
    if (inc && inc.startedAt) {
      series.incrementalRows.set({ connector, table: inc.table }, inc.rows);
      if (inc.totalRows !== null) series.incrementalExpected.set({ connector, table: inc.table }, inc.totalRows);
    }
    const reading = await source.slot?.();
    if (reading?.lagBytes != null) series.lag.set({ connector, slot }, reading.lagBytes);
    if (reading?.retainedWalBytes != null) series.retained.set({ connector, slot }, reading.retainedWalBytes);
    if (reading?.level) for (const level of SLOT_LEVELS) series.level.set({ connector, slot, level }, level === reading.level ? 1 : 0);
    // A value the server no longer reports disappears rather than staying stale.
    series.lag.sweep();
    series.retained.sweep();
    series.level.sweep();
  });
  return () => {
    remove();
    for (const s of Object.values(series)) s.clear();
  };
}

/** An LSN (`16/B374D848`) as a byte position. Exact up to 2^53 bytes (8 PiB of WAL). */
function lsnBytes(lsn: string): number {
  return Number(parseLsn(lsn));
}

/** Change events per source table and op, counted on the hot path without touching prom-client. */
export class SourceEventTally implements EventTally {
  private readonly byTable = new Map<string, Record<string, number>>();

  add(table: string, op: string, n = 1): void {
    let counts = this.byTable.get(table);
    if (!counts) this.byTable.set(table, (counts = {}));
    counts[op] = (counts[op] ?? 0) + n;
  }

  *entries(): Generator<[table: string, op: string, count: number]> {
    for (const [table, counts] of this.byTable) for (const [op, n] of Object.entries(counts)) yield [table, op, n];
  }
}

const tallies = new WeakMap<TideMetrics, Map<string, SourceEventTally>>();

/** The event tally of `connector`: keep it and call `.add(table, op)` for each event published. */
export function sourceEventCounter(connector: string, metrics: TideMetrics = tideMetrics()): SourceEventTally {
  let byConnector = tallies.get(metrics);
  if (!byConnector) {
    const all = new Map<string, SourceEventTally>();
    byConnector = all;
    tallies.set(metrics, all);
    const series = new OwnedSeries(metrics.source.events);
    metrics.addCollector('source events', () => {
      for (const [name, tally] of all) for (const [table, op, n] of tally.entries()) series.set({ connector: name, table, op }, n);
    });
  }
  let tally = byConnector.get(connector);
  if (!tally) byConnector.set(connector, (tally = new SourceEventTally()));
  return tally;
}

/** Count `n` change events of `table` with Debezium op `op` (c, u, d, r, t). */
export function countSourceEvent(connector: string, table: string, op: string, n = 1, metrics: TideMetrics = tideMetrics()): void {
  sourceEventCounter(connector, metrics).add(table, op, n);
}

/**
 * A transaction committed at `commitTsMs` (Postgres' clock) is now acknowledged by Kafka.
 * Negative differences (the database clock ahead of ours) count as 0.
 */
export function observeCommitToAck(connector: string, ms: number, metrics: TideMetrics = tideMetrics()): void {
  metrics.source.commitToAck.observe({ connector }, Math.max(0, ms) / 1000);
}

const seenSchemas = new WeakMap<TideMetrics, Set<string>>();

/** The connector registered (or found) schema `schemaId` under `subject`; each pair counts once. */
export function observeSchemaRegistered(connector: string, subject: string, schemaId: number, metrics: TideMetrics = tideMetrics()): void {
  let seen = seenSchemas.get(metrics);
  if (!seen) seenSchemas.set(metrics, (seen = new Set()));
  const key = `${connector}\u0000${subject}\u0000${schemaId}`;
  if (seen.has(key)) return;
  seen.add(key);
  metrics.source.schemaVersions.inc({ connector, subject });
}

/** The SourceObserver (src/source/source-observer.ts) that reports connector `connector`'s events to `metrics`. */
export function sourceObserver(connector: string, metrics: TideMetrics = tideMetrics()): SourceObserver {
  return {
    events: sourceEventCounter(connector, metrics),
    commitAcked: (ms) => observeCommitToAck(connector, ms, metrics),
    schemaRegistered: (subject, schemaId) => observeSchemaRegistered(connector, subject, schemaId, metrics),
  };
}

/**
 * Ready when the connector streams and makes progress: nothing is waiting for Kafka, or the
 * confirmed LSN moved within `stallMs` (default 60 s). Snapshotting, paused, failed: not ready.
 */
export function sourceReadiness(source: Pick<SourceMetricsSource, 'name' | 'status'>, opts: { stallMs?: number } = {}): ReadinessCheck {
  const progress = new ProgressWatch(opts.stallMs ?? 60_000);
  return (): Readiness => {
    const s = source.status();
    const component = `source ${source.name}`;
    const moved = progress.observe(lsnBytes(s.confirmedLsn));
    if (s.state !== 'streaming') {
      const snap = s.snapshot ? `, table ${s.snapshot.table} at ${s.snapshot.rows}/${s.snapshot.totalRows} rows` : '';
      return { ready: false, component, reason: `is ${s.state}${snap}${s.error ? `: ${s.error}` : ''}` };
    }
    if (s.reconnecting) return { ready: false, component, reason: `is reconnecting to Postgres: ${s.error ?? ''}` };
    if (s.pendingEvents > 0 && !moved)
      return {
        ready: false,
        component,
        reason: `${s.pendingEvents} events wait for Kafka and the confirmed LSN ${s.confirmedLsn} has not moved for ${Math.round(progress.stalledMs / 1000)} s`,
      };
    return { ready: true, component };
  };
}

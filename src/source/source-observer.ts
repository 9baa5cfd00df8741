/**
 * How the source reports what it does to whoever measures it, without knowing who that is. The connector,
 * the snapshot and the change handler call it; ops implements it (src/ops/source-metrics.ts:
 * `sourceObserver`, the `tide_source_*` metrics) and the CLI hands that implementation in. The source never
 * imports ops (the import rule in /work/shared/docs/style.md): this interface is all it sees.
 */
export interface EventTally {
  /** `n` change events of `table` (e.g. `public.orders`) with Debezium op `op` (c, u, d, r, t) were published. Hot path: no I/O. */
  add(table: string, op: string, n?: number): void;
}

export interface SourceObserver {
  /** Counts published change events; kept by the connector and called per event. */
  readonly events: EventTally;
  /** A transaction committed `ms` milliseconds ago (Postgres' clock) is now acknowledged by Kafka. */
  commitAcked(ms: number): void;
  /** The value schema of `subject` is registered with id `schemaId`. */
  schemaRegistered(subject: string, schemaId: number): void;
}

/** An observer that tells no one (tests, one-shot tools). */
export const QUIET_SOURCE_OBSERVER: SourceObserver = {
  events: { add: () => undefined },
  commitAcked: () => undefined,
  schemaRegistered: () => undefined,
};

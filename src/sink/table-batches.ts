import { DeltaConflictError } from '../lake/delta/delta-errors.ts';
import type { Logger } from '../log.ts';
import { readSnapshotEnd } from '../events/snapshot-end.ts';
import { UndecodableMessageError, type ChangeEvent } from './change-event.ts';
import type { DeadLetterMessage } from './dead-letter.ts';
import type { RawMessage } from './kafka-intake.ts';
import type { SnapshotEndAt } from './snapshot-reconcile.ts';
import type { TableSink } from './table-sink.ts';
import { tableOfTopic } from './table-layout.ts';

/** A Kafka position the sink has applied. */
export interface Offset {
  topic: string;
  partition: number;
  offset: bigint;
}

/** One source table's share of a flush of Tide's own topics. */
export interface TableBatch {
  /** The decoded change events (tombstones and snapshot-end markers have none). */
  events: ChangeEvent[];
  /** Every message of the table, in order: the offsets its commit records. */
  offsets: RawMessage[];
  /** Snapshot-end markers (the source's snapshot of the table ended at that offset). */
  ends: SnapshotEndAt[];
}

/**
 * The messages of one flush, grouped by source table (`schema.table`) and decoded by `decode`; a message
 * it finds undecodable (UndecodableMessageError) becomes a dead letter, any other error is thrown.
 */
export async function batchByTable(
  messages: RawMessage[],
  /** A promise only when it must wait (a schema fetch): most messages decode without one. */
  decode: (m: RawMessage) => ChangeEvent | undefined | Promise<ChangeEvent | undefined>,
): Promise<{ byTable: Map<string, TableBatch>; dead: DeadLetterMessage[] }> {
  const byTable = new Map<string, TableBatch>();
  const dead: DeadLetterMessage[] = [];
  for (const m of messages) {
    const qualified = tableOfTopic(m.topic) ?? m.topic;
    let entry = byTable.get(qualified);
    if (!entry) byTable.set(qualified, (entry = { events: [], offsets: [], ends: [] }));
    entry.offsets.push(m);
    const end = readSnapshotEnd(m.value, m.headers);
    if (end) {
      entry.ends.push({ ...end, topic: m.topic, partition: m.partition, offset: BigInt(m.offset) });
      continue;
    }
    try {
      const decoded = decode(m);
      const e = decoded instanceof Promise ? await decoded : decoded;
      if (e) entry.events.push(e);
    } catch (err) {
      if (!(err instanceof UndecodableMessageError)) throw err;
      dead.push({ ...m, reason: err.message });
    }
  }
  return { byTable, dead };
}

/** A concurrent writer (another sink instance after a rebalance) may win a commit: re-read the tables and apply what is still missing. */
export async function applyWithRetry(sink: TableSink, events: ChangeEvent[], offsets: Offset[], ends: SnapshotEndAt[], log: Logger) {
  try {
    return await sink.apply(events, offsets, ends);
  } catch (err) {
    if (!(err instanceof DeltaConflictError)) throw err;
    log.warn({ table: sink.qualified, err: err.message }, 'concurrent commit: re-reading the tables and retrying');
    await sink.open();
    return await sink.apply(events, offsets, ends);
  }
}

/** The highest offset of each partition among `offsets`. */
export function maxPerPartition(offsets: Offset[]): Offset[] {
  const max = new Map<string, Offset>();
  for (const o of offsets) {
    const k = `${o.topic}\u0000${o.partition}`;
    const have = max.get(k);
    if (!have || o.offset > have.offset) max.set(k, o);
  }
  return [...max.values()];
}

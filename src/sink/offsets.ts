import type { TxnAction } from '../lake/delta/actions.ts';
import type { DeltaTable } from '../lake/delta/delta-table.ts';
import type { ChangeEvent } from './change-event.ts';
import type { LayerPosition } from './retention-gap.ts';

/**
 * Exactly once into the lake (the kafka-delta-ingest pattern): each table's Delta commit carries,
 * for every Kafka partition it consumed, a `txn` action with appId `<sink>-<topic>-<partition>` and
 * version = the last offset written. Data and offsets land in one atomic commit, so after any crash
 * the table itself says where to resume, and an event at or below that version is skipped.
 */
export function txnAppId(sink: string, topic: string, partition: number): string {
  return `${sink}-${topic}-${partition}`;
}

/** Events (or offsets) the table has not committed yet (offset above its txn version for that partition). */
export function uncommitted<T extends Pick<ChangeEvent, 'topic' | 'partition' | 'offset'>>(
  table: DeltaTable | undefined,
  sink: string,
  events: T[],
): T[] {
  if (!table) return events;
  // Events come in runs of one partition: the last partition's committed offset is kept as a bigint,
  // the others per topic and partition (no key string or BigInt per event).
  const versions = new Map<string, Map<number, bigint | undefined>>();
  let last: { topic: string; partition: number; v: bigint | undefined } | undefined;
  return events.filter((e) => {
    if (last?.topic !== e.topic || last.partition !== e.partition) {
      let byPartition = versions.get(e.topic);
      if (!byPartition) versions.set(e.topic, (byPartition = new Map()));
      if (!byPartition.has(e.partition)) {
        const v = table.txnVersion(txnAppId(sink, e.topic, e.partition));
        byPartition.set(e.partition, v === undefined ? undefined : BigInt(v));
      }
      last = { topic: e.topic, partition: e.partition, v: byPartition.get(e.partition) };
    }
    return last.v === undefined || e.offset > last.v;
  });
}

/**
 * The txn actions for a batch: the highest offset per partition among `offsets` (every message of the
 * batch that belongs to this table, including ones that produced no row, e.g. dead letters).
 */
export function txnActions(
  sink: string,
  offsets: Iterable<{ topic: string; partition: number; offset: bigint }>,
  now = Date.now(),
): TxnAction[] {
  // Offsets come in runs of one partition, but a batch may also alternate partitions offset by offset:
  // the highest offset per topic, then partition number, without a key string per switch.
  const byTopic = new Map<string, Map<number, { topic: string; partition: number; offset: bigint }>>();
  const max: { topic: string; partition: number; offset: bigint }[] = [];
  let run: { topic: string; partition: number; offset: bigint } | undefined;
  for (const o of offsets) {
    if (run && run.topic === o.topic && run.partition === o.partition) {
      if (o.offset > run.offset) run.offset = o.offset;
      continue;
    }
    let partitions = byTopic.get(o.topic);
    if (!partitions) byTopic.set(o.topic, (partitions = new Map()));
    run = partitions.get(o.partition);
    if (!run) {
      partitions.set(o.partition, (run = { topic: o.topic, partition: o.partition, offset: o.offset }));
      max.push(run);
    } else if (o.offset > run.offset) run.offset = o.offset;
  }
  return max.map((o) => ({ appId: txnAppId(sink, o.topic, o.partition), version: Number(o.offset), lastUpdated: now }));
}

/** Where a partition's consumer must resume: one past the lowest version any of the topic's tables committed. */
export function resumeOffset(tables: (DeltaTable | undefined)[], sink: string, topic: string, partition: number): bigint | undefined {
  let lowest: number | undefined;
  for (const t of tables) {
    const v = t?.txnVersion(txnAppId(sink, topic, partition));
    if (v === undefined) return undefined; // a table that never committed this partition: read it from the start
    lowest = lowest === undefined ? v : Math.min(lowest, v);
  }
  return lowest === undefined ? undefined : BigInt(lowest) + 1n;
}

/** Each table's next offset on a partition (undefined: it never committed the partition, e.g. a layer switched on later). */
export function layerPositions(
  layers: { name: string; table: DeltaTable | undefined }[],
  sink: string,
  topic: string,
  partition: number,
): LayerPosition[] {
  return layers.map(({ name, table }) => {
    const v = table?.txnVersion(txnAppId(sink, topic, partition));
    return { table: name, next: v === undefined ? undefined : BigInt(v) + 1n };
  });
}

import type { OutgoingMessage } from './kafka-producer.ts';

/**
 * The end-of-snapshot marker of one table (issue 11 item 14, "re-snapshots reconcile"), sent when the table's
 * topic already held records before the snapshot began (a re-snapshot: consumers may hold keys it will not read
 * again); a topic that never held a record has no consumer to reconcile.
 *
 * A snapshot that re-reads a table (the first start after `tide source resnapshot`) sends every row that
 * exists, but nothing for a row deleted while the slot could not see it: downstream, such a key would stay
 * for ever. Once the table's last snapshot row is sent, the source writes this marker to **every
 * partition** of the table's topic, behind that partition's snapshot rows (the producer keeps each
 * partition's order). A consumer that has read the marker on every partition has seen every snapshot row
 * of the table: a key it holds whose last change is older than the snapshot (`commit_lsn` below) was not
 * re-read and did not change since, so it no longer exists in Postgres.
 *
 * Debezium's `source.snapshot=last` cannot tell that: it is one record, on the partition of the last key;
 * the other partitions may still be behind when a consumer reads it. Debezium itself writes no such marker
 * into a data topic (its heartbeats and transaction metadata have their own topics, which are ordered with
 * no data partition). So the marker is a record a Debezium consumer already skips: **null key, null value**
 * (consumers treat a null value as a tombstone, and a null key matches no row), with Kafka record headers
 * that carry the facts. Tide's sink reads the headers; other consumers may ignore the record.
 */
export const CONTROL_HEADER = 'tide.control';
export const SNAPSHOT_END = 'snapshot.end';

export interface SnapshotEnd {
  /** `schema.table`. */
  table: string;
  /**
   * A position at or below every snapshot row's commit_lsn and above every change the snapshot did not see: the
   * initial snapshot's own commit_lsn (every row carries it), or a full incremental snapshot's first low watermark.
   */
  commitLsn: bigint;
  /** How many partitions the topic had, each of which got this marker. */
  partitions: number;
  /** When the source finished reading the table (ms): the close time of versions the snapshot did not see. */
  tsMs: number;
}

const H = {
  table: 'tide.snapshot.table',
  commitLsn: 'tide.snapshot.commit_lsn',
  partitions: 'tide.snapshot.partitions',
  tsMs: 'tide.snapshot.ts_ms',
} as const;

/** One marker per partition of `topic` (0 … partitions-1). */
export function snapshotEndMessages(topic: string, end: SnapshotEnd): OutgoingMessage[] {
  const headers = {
    [CONTROL_HEADER]: Buffer.from(SNAPSHOT_END),
    [H.table]: Buffer.from(end.table),
    [H.commitLsn]: Buffer.from(end.commitLsn.toString()),
    [H.partitions]: Buffer.from(String(end.partitions)),
    [H.tsMs]: Buffer.from(String(end.tsMs)),
  };
  return Array.from({ length: end.partitions }, (_, partition) => ({ topic, partition, key: null, value: null, headers }));
}

/**
 * The marker a record carries, undefined for any other record. A record that says it is a marker but
 * lacks a field is undefined too: it is then only a tombstone, which changes nothing.
 */
export function readSnapshotEnd(
  value: Buffer | null,
  headers: Record<string, Buffer | string | (Buffer | string)[] | undefined> | undefined,
): SnapshotEnd | undefined {
  if ((value !== null && value.length > 0) || !headers) return undefined;
  const get = (name: string): string | undefined => {
    const v = headers[name];
    const one = Array.isArray(v) ? v[0] : v;
    return one === undefined ? undefined : String(one);
  };
  if (get(CONTROL_HEADER) !== SNAPSHOT_END) return undefined;
  const table = get(H.table);
  const lsn = get(H.commitLsn);
  const partitions = Number(get(H.partitions));
  const tsMs = Number(get(H.tsMs));
  if (!table || !lsn || !/^\d+$/.test(lsn) || !Number.isInteger(partitions) || partitions < 1 || !Number.isFinite(tsMs)) return undefined;
  return { table, commitLsn: BigInt(lsn), partitions, tsMs };
}

import { describe, expect, it } from 'vitest';
import { readSnapshotEnd, snapshotEndMessages } from '../../src/events/snapshot-end.ts';
import { countMarkers, pendingReconcile, RECONCILED_AT, type SnapshotEndAt } from '../../src/sink/snapshot-reconcile.ts';

const marker = (partition: number, commitLsn = 100n, partitions = 3): SnapshotEndAt => ({
  table: 'public.orders',
  commitLsn,
  partitions,
  tsMs: 1_000 + partition,
  topic: 't.public.orders',
  partition,
  offset: 10n,
});

/** Apply batches of markers the way the sink commits them: each batch's configuration is the next one's start. */
function run(batches: SnapshotEndAt[][], start: Record<string, string> = {}): Record<string, string> {
  let conf = start;
  for (const b of batches) conf = countMarkers(conf, b) ?? conf;
  return conf;
}

describe('end-of-snapshot markers', () => {
  it('one per partition, null key and value, and read back from the headers kafkajs delivers', () => {
    const msgs = snapshotEndMessages('t.public.orders', { table: 'public.orders', commitLsn: 123456789n, partitions: 3, tsMs: 42 });
    expect(msgs.map((m) => [m.partition, m.key, m.value])).toEqual([
      [0, null, null],
      [1, null, null],
      [2, null, null],
    ]);
    expect(readSnapshotEnd(null, msgs[1]!.headers)).toEqual({ table: 'public.orders', commitLsn: 123456789n, partitions: 3, tsMs: 42 });
    // kafkajs hands headers over as Buffers; a record with a value or without the header is no marker.
    expect(readSnapshotEnd(Buffer.from('x'), msgs[0]!.headers)).toBeUndefined();
    expect(readSnapshotEnd(null, {})).toBeUndefined();
    expect(readSnapshotEnd(null, { ...msgs[0]!.headers, 'tide.snapshot.commit_lsn': Buffer.from('12a') })).toBeUndefined();
  });
});

describe('counting the markers of a table', () => {
  it('is pending once every partition delivered its marker, in any batches, each counted once', () => {
    expect(pendingReconcile(run([[marker(0)], [marker(0), marker(2)]]))).toBeUndefined();
    const conf = run([[marker(0)], [marker(2), marker(0)], [marker(1)]]);
    expect(pendingReconcile(conf)).toEqual({ commitLsn: 100n, tsMs: 1_002 });
  });

  it('is done once reconciledAt reaches the snapshot; replayed markers of it change nothing', () => {
    const done = { ...run([[marker(0), marker(1), marker(2)]]), [RECONCILED_AT]: '100' };
    expect(pendingReconcile(done)).toBeUndefined();
    expect(countMarkers(done, [marker(0), marker(1), marker(2)])).toBeUndefined();
  });

  it('a newer snapshot replaces an unfinished older one; late markers of the older one are ignored', () => {
    const conf = run([[marker(0, 100n)], [marker(0, 200n)], [marker(1, 100n), marker(2, 100n)]]);
    expect(pendingReconcile(conf)).toBeUndefined();
    expect(pendingReconcile(run([[marker(1, 200n), marker(2, 200n)]], conf))).toEqual({ commitLsn: 200n, tsMs: 1_002 });
  });
});

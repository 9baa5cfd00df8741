import { describe, expect, it } from 'vitest';
import type { ParquetEngine } from '../../src/lake/parquet/parquet-engine.ts';
import { log } from '../../src/log.ts';
import type { ChangeEvent } from '../../src/sink/change-event.ts';
import { HistoryLane } from '../../src/sink/history-lane.ts';
import type { TableSink } from '../../src/sink/table-sink.ts';

/**
 * The lane's scheduling over a recording stand-in for TableSink.applyHistory (pure logic: the merges
 * themselves run on the real stack in sink-history-lane.test and the history tests).
 */
const ENGINE = {} as ParquetEngine;
const quiet = log.child({});
quiet.level = 'silent';

function recordingSink(qualified: string, opts: { fail?: Error; gate?: Promise<void> } = {}) {
  const merges: { offsets: number[]; events: number[] }[] = [];
  let active = 0;
  let overlapped = false;
  const sink = {
    qualified,
    async applyHistory(_engine: ParquetEngine, events: ChangeEvent[], offsets: { offset: bigint }[]) {
      active++;
      if (active > 1) overlapped = true;
      try {
        await opts.gate;
        if (opts.fail) throw opts.fail;
        merges.push({ offsets: offsets.map((o) => Number(o.offset)), events: events.map((e) => Number(e.offset)) });
      } finally {
        active--;
      }
    },
    async reopenHistory() {},
  };
  return { sink: sink as unknown as TableSink, merges, overlapped: () => overlapped };
}

/** Lets a merge that kick() started take what waits (it starts a microtask later). */
const tick = () => new Promise((r) => setImmediate(r));
const at = (offsets: number[], partition = 0) => offsets.map((o) => ({ topic: 't', partition, offset: BigInt(o) }));
const events = (offsets: number[], partition = 0) => at(offsets, partition) as unknown as ChangeEvent[];

function lane(intervalMs: number, maxEvents = 1000, merged: string[] = []) {
  return new HistoryLane({ intervalMs, maxEvents, engine: ENGINE, log: quiet, onMerged: (s) => merged.push(s.qualified) });
}

describe('HistoryLane', () => {
  it('inline (interval 0): merges each flush at once, and tells who follows history', async () => {
    const merged: string[] = [];
    const l = lane(0, 1000, merged);
    const s = recordingSink('public.orders');
    await l.add(s.sink, events([1, 2]), at([1, 2, 3]), []);
    await l.add(s.sink, events([4]), at([4]), []);
    expect(s.merges).toEqual([
      { offsets: [1, 2, 3], events: [1, 2] },
      { offsets: [4], events: [4] },
    ]);
    expect(merged).toEqual(['public.orders', 'public.orders']);
    expect(l.pendingEvents).toBe(0);
  });

  it('in the background: waits for the interval or the count, then one merge takes every flush since', async () => {
    const l = lane(3_600_000, 5);
    const s = recordingSink('public.orders');
    await l.add(s.sink, events([1, 2]), at([1, 2]), []);
    await l.afterFlush();
    await l.add(s.sink, events([3, 4]), at([3, 4]), []);
    await l.afterFlush();
    expect(s.merges).toEqual([]);
    expect(l.pendingEvents).toBe(4);
    await l.add(s.sink, events([5, 6]), at([5, 6]), []);
    await l.afterFlush(); // 6 waiting >= 5: a merge starts
    await l.drain();
    expect(s.merges).toEqual([{ offsets: [1, 2, 3, 4, 5, 6], events: [1, 2, 3, 4, 5, 6] }]);
  });

  it('drops messages it holds already (a rebalance seeks back to history’s position), per partition', async () => {
    const l = lane(3_600_000);
    const s = recordingSink('public.orders');
    await l.add(s.sink, events([10, 11]), at([10, 11, 12]), []);
    await l.add(s.sink, events([5, 6], 1), at([5, 6], 1), []);
    // Re-read from offset 8 on partition 0 (and 5 on partition 1) after a rebalance.
    await l.add(s.sink, events([8, 9, 10, 11, 13]), at([8, 9, 10, 11, 12, 13]), []);
    await l.add(s.sink, events([5, 6, 7], 1), at([5, 6, 7], 1), []);
    await l.drain();
    expect(s.merges).toEqual([{ offsets: [10, 11, 12, 5, 6, 13, 7], events: [10, 11, 5, 6, 13, 7] }]);
  });

  it('never runs two merges of a table at once, and keeps their order', async () => {
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const l = lane(3_600_000, 1);
    const s = recordingSink('public.orders', { gate });
    await l.add(s.sink, events([1]), at([1]), []);
    l.kick(); // a merge of [1] starts and waits at the gate
    await tick();
    await l.add(s.sink, events([2]), at([2]), []);
    l.kick(); // one runs: nothing new starts
    const drained = l.drain(); // queued behind the running one
    open();
    await drained;
    expect(s.overlapped()).toBe(false);
    expect(s.merges).toEqual([
      { offsets: [1], events: [1] },
      { offsets: [2], events: [2] },
    ]);
  });

  it('holds flushes back at twice silver.history.max.events while a merge runs', async () => {
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const l = lane(3_600_000, 2);
    const s = recordingSink('public.orders', { gate });
    await l.add(s.sink, events([1, 2]), at([1, 2]), []);
    await l.afterFlush(); // starts a merge of [1, 2], held at the gate
    await tick();
    await l.add(s.sink, events([3, 4, 5, 6]), at([3, 4, 5, 6]), []);
    let released = false;
    const flush = l.afterFlush().then(() => (released = true));
    await tick();
    expect(released).toBe(false);
    open();
    await flush;
    await l.drain();
    expect(s.merges.map((m) => m.offsets)).toEqual([
      [1, 2],
      [3, 4, 5, 6],
    ]);
  });

  it('a failed background merge is kept: no further merge starts and drain throws it', async () => {
    const l = lane(3_600_000, 1);
    const s = recordingSink('public.orders', { fail: new Error('disk full') });
    await l.add(s.sink, events([1]), at([1]), []);
    await l.afterFlush();
    await expect(l.drain()).rejects.toThrow('disk full');
    expect(l.error?.message).toBe('disk full');
    await l.add(s.sink, events([2]), at([2]), []);
    l.kick();
    await expect(l.drain()).rejects.toThrow('disk full');
  });
});

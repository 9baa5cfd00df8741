import { describe, expect, it } from 'vitest';
import { parseSignal, snapshotSignal } from '../../src/source/signals.ts';
import { parsePgSnapshot, SnapshotWindows, visibleIn, type Chunk } from '../../src/source/snapshot-window.ts';

const OID = 42;
/** A framed key as the stream has it: 5 bytes of Confluent frame, then the Avro bytes. */
const key = (k: string) => Buffer.concat([Buffer.from([0, 0, 0, 0, 7]), Buffer.from(k)]);
const chunk = (keys: string[], snapshot = '100:110:'): Chunk => ({
  rows: keys.map((k) => ({ id: k })),
  keys: keys,
  snapshot: parsePgSnapshot(snapshot),
  columns: 'id',
});

function harness() {
  const w = new SnapshotWindows('run1');
  w.follow(OID);
  const published: { rows: string[]; lsn: bigint }[] = [];
  const publish = async (rows: { id?: string | null }[], lsn: bigint) => {
    published.push({ rows: rows.map((r) => r.id!), lsn });
    return 'published' as const;
  };
  return { w, published, publish };
}

describe('incremental snapshot windows (DBLog watermarks)', () => {
  it('drops the keys streamed between the watermarks and publishes the rest at the high watermark', async () => {
    const { w, published, publish } = harness();
    const { id, done } = w.open(0);
    w.onChange(90, OID, key('a')); // before L, visible in the chunk's snapshot: kept
    expect(w.onWatermark(id, 'low', 1000n, publish)).toBeUndefined();
    w.onChange(105, OID, key('b'));
    w.onChange(106, OID + 1, key('c')); // another table
    w.setChunk(id, chunk(['a', 'b', 'c']));
    await w.onWatermark(id, 'high', 2000n, publish);
    expect(await done).toBe('published');
    expect(published).toEqual([{ rows: ['a', 'c'], lsn: 2000n }]);
  });

  it('drops the keys of a transaction streamed before the low watermark that the chunk did not see', async () => {
    const { w, published, publish } = harness();
    const { id } = w.open(0);
    w.onChange(104, OID, key('a')); // in xip: committed in the WAL, not yet visible to the read
    w.onChange(112, OID, key('b')); // at or above xmax: not visible either
    w.onChange(99, OID, key('c')); // visible
    w.onWatermark(id, 'low', 1000n, publish);
    w.setChunk(id, chunk(['a', 'b', 'c', 'd'], '100:110:104,107'));
    await w.onWatermark(id, 'high', 2000n, publish);
    expect(published[0]!.rows).toEqual(['c', 'd']);
  });

  it('waits at the high watermark for a chunk that is not there yet', async () => {
    const { w, published, publish } = harness();
    const { id } = w.open(0);
    w.onWatermark(id, 'low', 1n, publish);
    const held = w.onWatermark(id, 'high', 2n, publish);
    expect(held).toBeInstanceOf(Promise);
    expect(published).toEqual([]);
    w.setChunk(id, chunk(['x']));
    await held;
    expect(published).toEqual([{ rows: ['x'], lsn: 2n }]);
  });

  it('lets a high watermark that waits for its chunk go on when the window is abandoned (the read failed, or the source stops)', async () => {
    const { w, published, publish } = harness();
    const { id, done } = w.open(0);
    w.onWatermark(id, 'low', 1n, publish);
    const held = w.onWatermark(id, 'high', 2n, publish);
    w.abandon(new Error('the source is stopping'));
    await held; // before the fix: pending for ever, and the stream with it
    expect(await done).toBe('stale');
    expect(published).toEqual([]);
  });

  it('publishes nothing of a chunk whose table was truncated inside the window', async () => {
    const { w, published, publish } = harness();
    const { id } = w.open(0);
    w.onWatermark(id, 'low', 1n, publish);
    w.onChange(105, OID, null);
    w.setChunk(id, chunk(['x', 'y']));
    await w.onWatermark(id, 'high', 2n, publish);
    expect(published[0]!.rows).toEqual([]);
  });

  it("ignores another run's watermarks and reads a chunk again when the stream resumed past its low watermark", async () => {
    const { w, published, publish } = harness();
    const { id, done } = w.open(3);
    expect(w.onWatermark('other:3', 'high', 2n, publish)).toBeUndefined();
    w.setChunk(id, chunk(['x']));
    expect(w.onWatermark(id, 'high', 2n, publish)).toBeUndefined();
    expect(await done).toBe('stale');
    expect(published).toEqual([]);
  });

  it('reads pg_current_snapshot() with 64-bit xids as the 32-bit xids pgoutput sends', () => {
    const s = parsePgSnapshot(`${2n ** 32n + 5n}:${2n ** 32n + 9n}:${2n ** 32n + 7n}`);
    expect(s).toEqual({ xmin: 5, xmax: 9, xip: new Set([7]) });
    expect([visibleIn(s, 6), visibleIn(s, 7), visibleIn(s, 9)]).toEqual([true, false, false]);
  });
});

describe('signals', () => {
  it('reads the execute-snapshot signal tide source snapshot sends, and Debezium-shaped ones', () => {
    const now = new Date('2026-01-01T00:00:00Z');
    expect(parseSignal(snapshotSignal('tide', ['public.orders', 'public.items'], 'id > 5'), 'tide', now)).toEqual([
      { table: 'public.orders', where: 'id > 5', reason: 'signal', requestedAt: '2026-01-01T00:00:00.000Z' },
      { table: 'public.items', where: 'id > 5', reason: 'signal', requestedAt: '2026-01-01T00:00:00.000Z' },
    ]);
    expect(parseSignal('{"type":"execute-snapshot","data":{"data-collections":["public.a"]}}', 'any', now)).toHaveLength(1);
    expect(parseSignal(snapshotSignal('other', ['public.a']), 'tide', now)).toEqual([]);
    expect(() => parseSignal('{"type":"stop-snapshot"}', 'tide', now)).toThrowErrorMatchingInlineSnapshot(
      `[TideError: signal "{\\"type\\":\\"stop-snapshot\\"}" is not an execute-snapshot signal: type: Invalid input: expected "execute-snapshot"; data: Invalid input: expected object, received undefined]`,
    );
  });
});

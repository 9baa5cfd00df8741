import { describe, expect, it } from 'vitest';
import { compareVersion, KeyIndex, split } from '../../src/sink/key-index.ts';

/** The silver key index's hash table (src/sink/key-index.ts) against a Map, with keys across the int64 range. */
describe('key index', () => {
  it('splits 64-bit integers into halves, negative and large ones too', () => {
    expect(split(0n)).toEqual([0, 0]);
    expect(split(-1n)).toEqual([-1, -1]);
    expect(split(1n << 32n)).toEqual([0, 1]);
    expect(split(2n ** 63n - 1n)).toEqual([-1, 0x7fffffff]);
    expect(split(-(2n ** 63n))).toEqual([0, -0x80000000]);
    expect(split(4294967295)).toEqual([-1, 0]);
  });

  it('orders versions by LSN (unsigned 64-bit), then event index', () => {
    const v = (lsn: bigint, event: number) => {
      const [lsnLo, lsnHi] = split(lsn);
      return { lsnLo, lsnHi, event };
    };
    const cmp = (a: [bigint, number], b: [bigint, number]) => {
      const x = v(...a);
      return Math.sign(compareVersion(x.lsnLo, x.lsnHi, x.event, v(...b)));
    };
    expect(cmp([5n, 0], [4n, 9])).toBe(1);
    expect(cmp([5n, 1], [5n, 0])).toBe(1);
    expect(cmp([5n, 0], [5n, 0])).toBe(0);
    expect(cmp([4n, 0], [5n, 0])).toBe(-1);
    expect(cmp([0xffffffffn, 0], [0x1_0000_0000n, 0])).toBe(-1); // the low half's top bit is not a sign
    expect(cmp([2n ** 63n + 1n, 0], [2n ** 63n - 1n, 0])).toBe(1); // LSNs are unsigned
    expect(cmp([1n, 0x80000000], [1n, 0x7fffffff])).toBe(1); // event indexes too
  });

  it('finds, replaces nothing on a second insert, removes, purges by file and keeps all through resizes', () => {
    const index = new KeyIndex();
    const model = new Map<bigint, [number, number]>();
    let seed = 7;
    const rand = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 4294967296;
    const keyOf = () => {
      const r = rand();
      if (r < 0.3) return BigInt(Math.floor(rand() * 2000)); // small keys collide often
      if (r < 0.5) return -BigInt(Math.floor(rand() * 2000));
      return BigInt.asIntN(64, (BigInt(Math.floor(rand() * 2 ** 32)) << 32n) | BigInt(Math.floor(rand() * 2 ** 32)));
    };
    for (let step = 0; step < 20_000; step++) {
      const key = keyOf();
      const [lo, hi] = split(key);
      const op = rand();
      if (op < 0.6) {
        const file = 1 + Math.floor(rand() * 20);
        const row = Math.floor(rand() * 1e6);
        const added = index.insert(lo, hi, file, row, step, 0, step);
        if (added === model.has(key)) expect({ key, added }).toEqual({ key, added: !model.has(key) });
        if (added) model.set(key, [file, row]);
      } else if (op < 0.95) {
        const removed = index.remove(lo, hi);
        if (removed !== model.delete(key)) expect({ key, removed }).toEqual({ key, removed: !removed });
      } else if (op < 0.955) {
        const files = new Set([1 + Math.floor(rand() * 20), 1 + Math.floor(rand() * 20)]);
        let n = 0;
        for (const [k, [f]] of model)
          if (files.has(f)) {
            model.delete(k);
            n++;
          }
        expect(index.purge(files)).toBe(n);
      }
      if (step % 1000 === 0) expect(index.size).toBe(model.size);
    }
    expect(index.size).toBe(model.size);
    for (const [key, [file, row]] of model) {
      const s = index.find(...split(key));
      expect(s).toBeGreaterThanOrEqual(0);
      expect([index.fileAt(s), index.rowAt(s)]).toEqual([file, row]);
    }
    expect(index.find(...split(123456789012345n))).toBe(model.has(123456789012345n) ? expect.any(Number) : -1);
    expect(index.bytes).toBeLessThan(Math.max(1000, model.size) * 28 * 3);
  });

  it('sizes ahead: 1M keys take about 40 bytes each', () => {
    const index = new KeyIndex();
    index.reserve(1_000_000);
    for (let i = 0; i < 1_000_000; i++) index.insert(i, 0, 1, i, 0, 0, 0);
    expect(index.size).toBe(1_000_000);
    expect(index.bytes / index.size).toBeLessThan(42);
    expect(index.rowAt(index.find(765_432, 0))).toBe(765_432);
  });

  it('keepNewer adds a key, replaces its row only with a newer version, and leaves equal or older ones', () => {
    const index = new KeyIndex();
    const [lo, hi] = split(-5n);
    const [l1, h1] = split(0x1_0000_0000n);
    expect(index.keepNewer(lo, hi, 1, 10, l1, h1, 3)).toBe(true);
    expect(index.keepNewer(lo, hi, 2, 20, l1, h1, 2)).toBe(false);
    expect(index.keepNewer(lo, hi, 2, 21, l1, h1, 3)).toBe(false);
    let s = index.find(lo, hi);
    expect([index.fileAt(s), index.rowAt(s), index.versionAt(s)]).toEqual([1, 10, { lsnLo: l1, lsnHi: h1, event: 3 }]);
    expect(index.keepNewer(lo, hi, 3, 30, l1, h1, 4)).toBe(true);
    s = index.find(lo, hi);
    expect([index.fileAt(s), index.rowAt(s), index.versionAt(s).event]).toEqual([3, 30, 4]);
    expect(index.size).toBe(1);
    index.remove(lo, hi);
    expect(index.keepNewer(lo, hi, 4, 40, 0, 0, 0)).toBe(true);
    expect(index.size).toBe(1);
  });
});

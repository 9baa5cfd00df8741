import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { produceV11 } from '@platformatic/kafka';
import { encodeProduceRequest, type ProduceMessage, type ProduceOptions } from '../../src/events/produce-request.ts';

/**
 * Tide writes Produce requests in one pass (produce-request.ts) instead of through @platformatic/kafka's
 * Writer. The reference is the library's own produce-v11 createRequest: the two must write the same bytes.
 */

/** A small deterministic PRNG (mulberry32), so failures reproduce. */
function rng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function bytes(r: () => number, max: number): Buffer {
  const n = Math.floor(r() * max);
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(r() * 256);
  return b;
}

/** The library mutates its messages (timestamp, partition): each encoder gets its own copies. */
const copy = (ms: ProduceMessage[]) => ms.map((m) => ({ ...m, ...(m.headers ? { headers: new Map(m.headers) } : {}) }));

class Sequences extends Map<string, number> {
  getWithDefault(key: string, fallback: number) {
    return this.get(key) ?? fallback;
  }
}

function same(messages: ProduceMessage[], options: ProduceOptions, acks = -1, timeout = 30_000) {
  const ours = encodeProduceRequest(acks, timeout, copy(messages), options);
  expect(ours).toBeDefined();
  const theirs = produceV11.createRequest(
    acks,
    timeout,
    copy(messages) as Parameters<typeof produceV11.createRequest>[2],
    options as Parameters<typeof produceV11.createRequest>[3],
  );
  expect(ours!.buffer.toString('hex')).toBe(theirs.buffer.toString('hex'));
  expect(ours!.context.noResponse).toBe(theirs.context.noResponse);
}

describe('encodeProduceRequest writes what @platformatic/kafka writes', () => {
  beforeEach(() => {
    vi.useFakeTimers();
    vi.setSystemTime(new Date('2026-12-06T12:00:00.123Z'));
  });
  afterEach(() => vi.useRealTimers());

  it('one topic, one partition, keys and values of every length class', () => {
    const r = rng(1);
    const messages: ProduceMessage[] = [];
    for (const n of [0, 1, 63, 64, 127, 128, 8191, 8192, 20_000])
      messages.push({ topic: 'shop.public.orders', partition: 0, key: bytes(r, 20), value: Buffer.alloc(n, 7) });
    same(messages, { producerId: 4242n, producerEpoch: 3, sequences: new Sequences([['shop.public.orders:0', 17]]) });
  });

  it('null keys and values (tombstones), headers, several topics and partitions out of order', () => {
    const r = rng(2);
    const messages: ProduceMessage[] = [];
    for (let i = 0; i < 3000; i++) {
      const m: ProduceMessage = {
        topic: i % 7 === 0 ? 'shop.transaction' : 'shop.public.order_lines',
        partition: Math.floor(r() * 5),
        key: r() < 0.1 ? null : bytes(r, 40),
        value: r() < 0.1 ? null : bytes(r, 400),
      };
      if (r() < 0.05) m.headers = new Map([[Buffer.from('__debezium.newkey'), bytes(r, 30)]]);
      if (r() < 0.02) m.headers = new Map([[Buffer.from('empty'), null]]);
      messages.push(m);
    }
    const sequences = new Sequences([
      ['shop.public.order_lines:3', 2_000_000_000],
      ['shop.transaction:0', 5],
    ]);
    same(messages, { producerId: 9_007_199_254_740_993n, producerEpoch: 32767, sequences });
  });

  // Deltas within ±2^31 ms: beyond that the library's int64ZigZagEncode (`>> 31n` where Kafka's varlong shifts
  // by 63) writes another value than Kafka's spec; Tide never sets timestamps (all deltas are 0).
  it('no idempotence, a transactional id, acks 0 and 1, explicit timestamps', () => {
    const base = Date.parse('2026-01-01T00:00:00Z');
    const messages: ProduceMessage[] = [
      { topic: 't', key: Buffer.from('a'), value: Buffer.from('1'), timestamp: BigInt(base) },
      { topic: 't', key: Buffer.from('b'), value: Buffer.from('2'), timestamp: BigInt(base) + 2_000_000_000n },
      { topic: 't', key: Buffer.from('c'), value: Buffer.from('3'), timestamp: BigInt(base) - 2n ** 30n },
      { topic: 't', key: Buffer.from('d'), value: Buffer.from('4'), timestamp: base + 1 },
    ];
    same(messages, {});
    same(messages, { transactionalId: 'tide-tx-ü' }, 1);
    same(messages, {}, 0);
  });

  it('leaves to the library what it does not cover: compression, headers that are not bytes', () => {
    const m = { topic: 't', key: Buffer.from('k'), value: Buffer.from('v') };
    expect(encodeProduceRequest(-1, 1000, [m], { compression: 'gzip' })).toBeUndefined();
    expect(encodeProduceRequest(-1, 1000, [{ ...m, headers: new Map([['text', 'value']]) }], {})).toBeUndefined();
  });
});

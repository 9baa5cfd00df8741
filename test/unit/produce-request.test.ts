import { describe, expect, it } from 'vitest';
import { produceV11 } from '@platformatic/kafka';
import { encodeProduceBatches, type BatchOptions, type PartitionBatch } from '../../src/events/produce-request.ts';

/**
 * Tide writes Produce requests in one pass from whole partition batches (produce-request.ts) instead of
 * through @platformatic/kafka's `Producer#send` and Writer. The reference is the library's own produce-v11
 * createRequest, given the same records as the library's `send` hands it (a message object per record, headers
 * as a Map of byte keys, the sequence numbers in a `topic:partition` map): the two must write the same bytes.
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

class Sequences extends Map<string, number> {
  getWithDefault(key: string, fallback: number) {
    return this.get(key) ?? fallback;
  }
}

/** The batches as the library's send hands them to createRequest: topics in first-seen order, partitions ascending. */
function libraryArguments(batches: PartitionBatch[], o: BatchOptions) {
  const messages = batches.flatMap((b) =>
    b.records.map((r) => ({
      topic: b.topic,
      partition: b.partition,
      key: r.key ?? undefined,
      value: r.value ?? undefined,
      timestamp: b.timestamp,
      headers: new Map(Object.entries(r.headers ?? {}).map(([k, v]) => [Buffer.from(k), v])),
    })),
  );
  const sequences = new Sequences(batches.map((b) => [`${b.topic}:${b.partition}`, b.baseSequence]));
  const options = o.producerId === -1n ? {} : { producerId: o.producerId, producerEpoch: o.producerEpoch, sequences };
  return { messages, options };
}

function same(batches: PartitionBatch[], o: BatchOptions, acks = -1, timeout = 30_000) {
  const ours = encodeProduceBatches(acks, timeout, batches, o);
  const { messages, options } = libraryArguments(batches, o);
  const theirs = produceV11.createRequest(
    acks,
    timeout,
    messages as Parameters<typeof produceV11.createRequest>[2],
    options as Parameters<typeof produceV11.createRequest>[3],
  );
  expect(ours.buffer.toString('hex')).toBe(theirs.buffer.toString('hex'));
  expect(ours.context.noResponse).toBe(theirs.context.noResponse);
}

const T = BigInt(Date.parse('2026-12-06T12:00:00.123Z'));

describe('encodeProduceBatches writes what @platformatic/kafka writes', () => {
  it('one topic, one partition, keys and values of every length class', () => {
    const r = rng(1);
    const records = [0, 1, 63, 64, 127, 128, 8191, 8192, 20_000].map((n) => ({ key: bytes(r, 20), value: Buffer.alloc(n, 7) }));
    same([{ topic: 'shop.public.orders', partition: 0, baseSequence: 17, timestamp: T, records }], { producerId: 4242n, producerEpoch: 3 });
  });

  it('null keys and values (tombstones), headers, several topics and partitions, large sequence numbers', () => {
    const r = rng(2);
    const batches: PartitionBatch[] = [];
    for (const topic of ['shop.public.order_lines', 'shop.transaction'])
      for (let partition = 0; partition < 5; partition++) {
        const records = [];
        for (let i = 0; i < 300; i++) {
          const record: PartitionBatch['records'][number] = {
            key: r() < 0.1 ? null : bytes(r, 40),
            value: r() < 0.1 ? null : bytes(r, 400),
          };
          if (r() < 0.05) record.headers = { '__debezium.newkey': bytes(r, 30) };
          if (r() < 0.02) record.headers = { 'ü-name': bytes(r, 3), other: Buffer.alloc(0) };
          records.push(record);
        }
        batches.push({ topic, partition, baseSequence: partition === 3 ? 2_000_000_000 : partition * 11, timestamp: T, records });
      }
    same(batches, { producerId: 9_007_199_254_740_993n, producerEpoch: 32767 });
  });

  it('no idempotence (producer id -1), acks 0 and 1, a record count past one varint byte', () => {
    const records = Array.from({ length: 200 }, (_, i) => ({ key: Buffer.from(`k${i}`), value: Buffer.from(`v${i}`) }));
    const batches: PartitionBatch[] = [{ topic: 't', partition: 2, baseSequence: 0, timestamp: T, records }];
    same(batches, { producerId: -1n, producerEpoch: 0 });
    same(batches, { producerId: -1n, producerEpoch: 0 }, 1);
    same(batches, { producerId: -1n, producerEpoch: 0 }, 0);
  });
});

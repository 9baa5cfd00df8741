import { afterAll, describe, expect, it } from 'vitest';
import { KafkajsProducer, PlatformaticProducer, type EventProducer } from '../../src/events/kafka-producer.ts';
import { kafka, plaintextConnection } from '../support/kafka.ts';

/**
 * Java clients must find a key on the partition Tide put it on. Kafka's murmur2 vectors (Kafka's own
 * UtilsTest): partition = (murmur2(key) & 0x7fffffff) % partitions.
 */
const JAVA_MURMUR2: [string, number][] = [
  ['21', -973932308],
  ['foobar', -790332482],
  ['a-little-bit-long-string', -985981536],
  ['a-little-bit-longer-string', -1486304829],
  ['lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8', -58897971],
  ['abc', 479470107],
];
const PARTITIONS = 7;

describe.each([
  ['@platformatic/kafka', (b: string[]) => new PlatformaticProducer(plaintextConnection(b), 'tide-test')],
  ['kafkajs', (b: string[]) => new KafkajsProducer(plaintextConnection(b), 'tide-test')],
])('%s producer', (_name, make) => {
  const brokers = (process.env.KAFKA_BROKERS ?? '127.0.0.1:59092').split(',');
  const topic = `t_producer_${_name.replace(/\W/g, '')}_${Date.now().toString(36)}`;
  let producer: EventProducer;
  afterAll(async () => {
    await producer?.close();
    const admin = kafka().admin();
    await admin.connect();
    await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
    await admin.disconnect();
  });

  it("puts each key on Java's murmur2 partition, keeps tombstones null, and acknowledges everything", async () => {
    producer = make(brokers);
    await producer.ensureTopics([{ topic, partitions: PARTITIONS, replicationFactor: 1 }]);
    await producer.send(JAVA_MURMUR2.map(([key]) => ({ topic, key: Buffer.from(key), value: Buffer.from(`v-${key}`) })));
    await producer.send([{ topic, key: Buffer.from('abc'), value: null }]);

    const consumer = kafka().consumer({ groupId: `${topic}-check` });
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    const seen: { key: string; partition: number; value: string | null }[] = [];
    await new Promise<void>((resolve) => {
      void consumer.run({
        eachMessage: async ({ partition, message }) => {
          seen.push({ key: message.key!.toString(), partition, value: message.value === null ? null : message.value.toString() });
          if (seen.length === JAVA_MURMUR2.length + 1) resolve();
        },
      });
    });
    await consumer.disconnect();
    for (const [key, hash] of JAVA_MURMUR2) {
      expect(seen.find((s) => s.key === key && s.value !== null)?.partition, key).toBe((hash & 0x7fffffff) % PARTITIONS);
    }
    const tombstone = seen.find((s) => s.value === null);
    expect(tombstone).toEqual({ key: 'abc', partition: (479470107 & 0x7fffffff) % PARTITIONS, value: null });
  });
});

import { afterAll, describe, expect, it } from 'vitest';
import { NetworkError, Producer, ProduceAcks, kGetConnection, type Connection } from '@platformatic/kafka';
import { IdempotentBatchSender, type SendRecord } from '../../src/events/idempotent-send.ts';
import { KafkajsProducer } from '../../src/events/kafka-producer.ts';
import { kafka, plaintextConnection } from '../support/kafka.ts';

/**
 * Tide keeps the idempotent producer's sequence numbers itself (idempotent-send.ts). When the broker wrote a
 * batch but its answer was lost, the resend must carry the same producer id and sequence numbers, so that the
 * broker answers it as a duplicate instead of writing it twice (KIP-98), and the next batch must follow on.
 * The lost answer is made here, against the real broker: the first Produce answer is replaced by a network
 * error after the broker has written the batch; the library's retry sends it again.
 */
const brokers = (process.env.KAFKA_BROKERS ?? '127.0.0.1:59092').split(',');
const topic = `t_idempotence_${Date.now().toString(36)}`;
const PARTITIONS = 3;

describe('Tide-kept sequence numbers', () => {
  const client = new Producer<Buffer, Buffer, Buffer, Buffer>({
    clientId: 'tide-test-idempotence',
    bootstrapBrokers: brokers,
    idempotent: true,
    acks: ProduceAcks.ALL,
    retries: 3,
    retryDelay: 200,
  });
  const admin = new KafkajsProducer(plaintextConnection(brokers), 'tide-test-idempotence-admin');
  afterAll(async () => {
    await client.close();
    await admin.close();
    const a = kafka().admin();
    await a.connect();
    await a.deleteTopics({ topics: [topic] }).catch(() => undefined);
    await a.disconnect();
  });

  it('a batch whose acknowledgement was lost is resent and written once; the next batch follows on', async () => {
    await admin.ensureTopics([{ topic, partitions: PARTITIONS, replicationFactor: 1 }]);
    let lost = 0;
    // The client as the sender sees it, except that the first Produce answer is lost after the broker wrote the batch.
    const faulty = new Proxy(client, {
      get(target, prop) {
        if (prop === kGetConnection)
          return (broker: unknown, callback: (err: Error | null, connection?: Connection) => void) =>
            target[kGetConnection](broker as never, (err, connection) => {
              if (err || !connection) return callback(err);
              const send = connection.send.bind(connection);
              const wrapped = new Proxy(connection, {
                get: (c, p) =>
                  p === 'send'
                    ? (apiKey: number, ...rest: unknown[]) => {
                        const cb = rest.pop() as (err: Error | null, result?: unknown) => void;
                        (send as (...a: unknown[]) => void)(apiKey, ...rest, (e: Error | null, result: unknown) => {
                          if (!e && apiKey === 0 && lost++ === 0) cb(new NetworkError('answer lost (test)'));
                          else cb(e, result);
                        });
                      }
                    : (Reflect.get(c, p) as unknown),
              });
              callback(null, wrapped);
            });
        const value = Reflect.get(target, prop) as unknown;
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
    const sender = new IdempotentBatchSender(faulty, () => client.initIdempotentProducer({}));
    const batch = (from: number): SendRecord[] =>
      Array.from({ length: 40 }, (_, i) => ({
        topic,
        key: Buffer.from(`k${(from + i) % 13}`),
        value: Buffer.from(`v${from + i}`),
        ...(i === 5 ? { headers: { '__debezium.newkey': Buffer.from('x') } } : {}),
      }));

    await sender.send(batch(0));
    expect(lost).toBe(2); // the lost answer, then the resend's (a duplicate to the broker)
    expect(await admin.partitionEnds(topic).then((ends) => ends.reduce((a, b) => a + b, 0n))).toBe(40n);
    await sender.send(batch(40));
    expect(await admin.partitionEnds(topic).then((ends) => ends.reduce((a, b) => a + b, 0n))).toBe(80n);

    const consumer = kafka().consumer({ groupId: `${topic}-check` });
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    const seen: { partition: number; key: string; value: string; headers: string[] }[] = [];
    await new Promise<void>((resolve) => {
      void consumer.run({
        eachMessage: async ({ partition, message }) => {
          seen.push({
            partition,
            key: message.key!.toString(),
            value: message.value!.toString(),
            headers: Object.keys(message.headers ?? {}),
          });
          if (seen.length === 80) resolve();
        },
      });
    });
    await consumer.disconnect();
    // Each event once, and in the order sent within its partition (one key is always on one partition).
    expect(seen.map((s) => s.value).sort()).toEqual(Array.from({ length: 80 }, (_, i) => `v${i}`).sort());
    for (let p = 0; p < PARTITIONS; p++) {
      const values = seen.filter((s) => s.partition === p).map((s) => Number(s.value.slice(1)));
      expect(values).toEqual([...values].sort((a, b) => a - b));
    }
    // The two events with a header (on partitions of their own keys: the consumer may see them in either order).
    expect(
      seen
        .filter((s) => s.headers.length > 0)
        .map((s) => s.value)
        .sort(),
    ).toEqual(['v45', 'v5']);
  });
});

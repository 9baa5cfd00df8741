/**
 * The local Kafka broker (src/stack/kafka.ts) against kafkajs, the client Tide
 * uses: topic creation with explicit partitions and configs, an idempotent
 * producer and a consumer group. Needs the stack up (`npm run stack:up`).
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigResourceTypes, Kafka, Partitioners, logLevel, type Admin } from 'kafkajs';

const brokers = (process.env.KAFKA_BROKERS ?? '127.0.0.1:59092').split(',');
const runId = `${Date.now()}-${randomBytes(3).toString('hex')}`;
const topic = `tide-it-kafka-${runId}`;
const groupId = `tide-it-kafka-${runId}`;
const PARTITIONS = 3;
const KEYS = 12;
const PER_KEY = 25;
const TOPIC_CONFIG = {
  'cleanup.policy': 'compact',
  // Keeps the compactor away from this test's records, so all of them can be read back.
  'min.compaction.lag.ms': '3600000',
};

// kafkajs logs transient retries (e.g. "coordinator is loading" on a fresh broker) at ERROR; real failures still throw.
const kafka = new Kafka({ clientId: 'tide-it-kafka', brokers, logLevel: logLevel.NOTHING });
let admin: Admin;

/** What the producer sent: key and per-key sequence number, in send order. */
const sent: { key: string; seq: number }[] = [];

beforeAll(async () => {
  admin = kafka.admin();
  await admin.connect();
}, 30_000);

afterAll(async () => {
  // Cleanup if a test failed before 'deletes the topic' (deleting a missing topic makes kafkajs retry for seconds).
  if ((await admin.listTopics()).includes(topic)) await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
  await admin.deleteGroups([groupId]).catch(() => undefined);
  await admin.disconnect();
}, 30_000);

describe('kafka broker', () => {
  it('creates a topic with the requested partitions and config', async () => {
    const configEntries = Object.entries(TOPIC_CONFIG).map(([name, value]) => ({ name, value }));
    const created = await admin.createTopics({
      waitForLeaders: true,
      topics: [{ topic, numPartitions: PARTITIONS, replicationFactor: 1, configEntries }],
    });
    expect(created).toBe(true);

    const metadata = await admin.fetchTopicMetadata({ topics: [topic] });
    expect(metadata.topics).toHaveLength(1);
    const partitions = metadata.topics[0]!.partitions;
    expect(partitions.map((p) => p.partitionId).sort()).toEqual([0, 1, 2]);
    for (const p of partitions) expect(p.leader).toBeGreaterThanOrEqual(0);

    const { resources } = await admin.describeConfigs({
      includeSynonyms: false,
      resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configNames: Object.keys(TOPIC_CONFIG) }],
    });
    const applied = Object.fromEntries(resources[0]!.configEntries.map((e) => [e.configName, e.configValue]));
    expect(applied).toEqual(TOPIC_CONFIG);
    // Set on the topic itself, not inherited from the broker default.
    for (const entry of resources[0]!.configEntries) expect(entry.isDefault).toBe(false);
  }, 60_000);

  it('round-trips keyed messages from an idempotent producer, in order per partition', async () => {
    const producer = kafka.producer({
      idempotent: true,
      maxInFlightRequests: 1,
      createPartitioner: Partitioners.DefaultPartitioner,
    });
    await producer.connect();
    try {
      // Interleave keys so every partition gets records of several keys; send in a few batches.
      for (let seq = 0; seq < PER_KEY; seq += 5) {
        const batch: { key: string; seq: number }[] = [];
        for (let s = seq; s < seq + 5; s++) for (let k = 0; k < KEYS; k++) batch.push({ key: `key-${k}`, seq: s });
        const acks = await producer.send({
          topic,
          acks: -1,
          messages: batch.map((m) => ({ key: m.key, value: JSON.stringify(m) })),
        });
        expect(acks.every((a) => a.errorCode === 0)).toBe(true);
        sent.push(...batch);
      }
    } finally {
      await producer.disconnect();
    }
    const total = KEYS * PER_KEY;
    expect(sent).toHaveLength(total);

    // The idempotent producer wrote each record exactly once: high watermarks add up.
    const offsets = await admin.fetchTopicOffsets(topic);
    expect(offsets).toHaveLength(PARTITIONS);
    expect(offsets.reduce((sum, o) => sum + Number(o.high), 0)).toBe(total);

    const received = new Map<number, { offset: number; kafkaKey: string | undefined; key: string; seq: number }[]>();
    let count = 0;
    const consumer = kafka.consumer({ groupId });
    await consumer.connect();
    try {
      await consumer.subscribe({ topic, fromBeginning: true });
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`consumed ${count} of ${total} messages in 45 s`)), 45_000);
        consumer
          .run({
            eachMessage: async ({ partition, message }) => {
              // No expect() in here: kafkajs would catch a failure and retry the message.
              const value = JSON.parse(message.value!.toString()) as { key: string; seq: number };
              const list = received.get(partition) ?? [];
              list.push({ offset: Number(message.offset), kafkaKey: message.key?.toString(), ...value });
              received.set(partition, list);
              if (++count === total) {
                clearTimeout(timer);
                resolve();
              }
            },
          })
          .catch(reject);
      });
    } finally {
      await consumer.disconnect();
    }

    expect(count).toBe(total);
    // More than one partition was used, so ordering is checked across partitions too.
    expect(received.size).toBeGreaterThan(1);
    const partitionOfKey = new Map<string, number>();
    for (const [partition, records] of received) {
      // Offsets 0..n-1 with no gaps or duplicates, delivered in order.
      expect(records.map((r) => r.offset)).toEqual(records.map((_, i) => i));
      // Within a partition, records appear in send order.
      const sendIndex = records.map((r) => sent.findIndex((s) => s.key === r.key && s.seq === r.seq));
      expect(sendIndex.every((idx) => idx >= 0)).toBe(true);
      expect(sendIndex).toEqual([...sendIndex].sort((a, b) => a - b));
      for (const r of records) {
        expect(r.kafkaKey).toBe(r.key);
        expect(partitionOfKey.get(r.key) ?? partition).toBe(partition);
        partitionOfKey.set(r.key, partition);
      }
    }
    // Every key landed in exactly one partition and all its records came back.
    expect(partitionOfKey.size).toBe(KEYS);
    for (let k = 0; k < KEYS; k++) {
      const seqs = received
        .get(partitionOfKey.get(`key-${k}`)!)!
        .filter((r) => r.key === `key-${k}`)
        .map((r) => r.seq);
      expect(seqs).toEqual(Array.from({ length: PER_KEY }, (_, i) => i));
    }
  }, 90_000);

  it('deletes the topic', async () => {
    await admin.deleteTopics({ topics: [topic], timeout: 15_000 });
    // The broker's metadata cache follows the controller shortly after the delete returns.
    let topics = await admin.listTopics();
    for (let i = 0; i < 40 && topics.includes(topic); i++) {
      await sleep(250);
      topics = await admin.listTopics();
    }
    expect(topics).not.toContain(topic);
  }, 30_000);
});

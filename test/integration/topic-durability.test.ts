import { afterAll, describe, expect, it } from 'vitest';
import { KafkajsProducer } from '../../src/events/kafka-producer.ts';
import { readTopicDurability } from '../../src/events/topic-durability.ts';
import { kafka, plaintextConnection } from '../support/kafka.ts';

/** Topics get the cluster's default replication factor unless told, and Tide reads back what protects them. */
describe('topic durability on the real broker', () => {
  const id = Date.now().toString(36);
  const topics = [`t_durability_default_${id}`, `t_durability_isr_${id}`];
  const admin = kafka().admin();
  afterAll(async () => {
    await admin.deleteTopics({ topics }).catch(() => undefined);
    await admin.disconnect();
  });

  it("creates a topic with the cluster's default replication factor when none is set, and reads replication factor and min.insync.replicas", async () => {
    const producer = new KafkajsProducer(plaintextConnection(), 'tide-test-durability');
    try {
      await producer.ensureTopics([
        { topic: topics[0]!, partitions: 2 },
        { topic: topics[1]!, partitions: 1, replicationFactor: 1, config: { 'min.insync.replicas': '2' } },
      ]);
    } finally {
      await producer.close();
    }
    await admin.connect();
    const report = await readTopicDurability(admin, topics);
    expect(report.brokers).toBe(1);
    // The local broker's default.replication.factor is Kafka's default, 1; min.insync.replicas is the stack's 1.
    expect(report.topics.sort((a, b) => a.topic.localeCompare(b.topic))).toEqual([
      { topic: topics[0], replicationFactor: 1, minInsyncReplicas: 1 },
      { topic: topics[1], replicationFactor: 1, minInsyncReplicas: 2 },
    ]);
    expect(report.weak).toHaveLength(2);
  });
});

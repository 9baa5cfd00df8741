import type { Kafka, Producer } from 'kafkajs';
import type { Logger } from '../log.ts';
import { logTopicDurability, readTopicDurability } from '../events/topic-durability.ts';

/**
 * Messages the sink cannot write go to a dead-letter topic, unchanged (key and value bytes as
 * consumed), with the reason and origin in headers, as Kafka Connect's DLQ does
 * (`__connect.errors.*`; Tide uses `tide.error.*`). Never dropped silently: each is logged and counted.
 * Delivery is at least once: a dead letter whose offset was not yet committed to the lake may be
 * sent again after a crash.
 */
export interface DeadLetterMessage {
  topic: string;
  partition: number;
  offset: string;
  key: Buffer | null;
  value: Buffer | null;
  reason: string;
}

export class DeadLetterQueue {
  private producer: Producer | undefined;
  count = 0;

  constructor(
    private readonly kafka: Kafka,
    readonly topic: string,
    private readonly log: Logger,
  ) {}

  async open(): Promise<void> {
    const admin = this.kafka.admin();
    await admin.connect();
    try {
      const existing = await admin.listTopics();
      if (!existing.includes(this.topic)) {
        // Replication factor: the cluster's default (kafkajs sends -1).
        await admin.createTopics({ topics: [{ topic: this.topic, numPartitions: 1 }], waitForLeaders: true });
        this.log.info({ topic: this.topic }, 'created the dead-letter topic');
      }
      await readTopicDurability(admin, [this.topic])
        .then((report) => logTopicDurability(report, this.log))
        .catch((err: unknown) =>
          this.log.info({ err: (err as Error).message }, "could not read the dead-letter topic's replication settings"),
        );
    } finally {
      await admin.disconnect();
    }
    this.producer = this.kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    await this.producer.connect();
  }

  async send(messages: DeadLetterMessage[]): Promise<void> {
    if (!messages.length) return;
    if (!this.producer) throw new Error('DeadLetterQueue.send before open');
    for (const m of messages)
      this.log.warn(
        { topic: m.topic, partition: m.partition, offset: m.offset, reason: m.reason, deadLetterTopic: this.topic },
        'dead letter',
      );
    await this.producer.send({
      topic: this.topic,
      acks: -1,
      messages: messages.map((m) => ({
        key: m.key,
        value: m.value,
        headers: {
          'tide.error.reason': m.reason,
          'tide.error.topic': m.topic,
          'tide.error.partition': String(m.partition),
          'tide.error.offset': m.offset,
          'tide.error.time': new Date().toISOString(),
        },
      })),
    });
    this.count += messages.length;
  }

  async close(): Promise<void> {
    await this.producer?.disconnect();
    this.producer = undefined;
  }
}

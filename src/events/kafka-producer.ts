import { Producer as PlatformaticKafkaProducer, ProduceAcks, compatibilityPartitioner, type ProducerInfo } from '@platformatic/kafka';
import { Kafka, Partitioners, logLevel, type Producer, type Admin, CompressionTypes } from 'kafkajs';
import { TideError } from '../errors.ts';
import type { KafkaConnection } from './kafka-connection.ts';
import { explainKafkaError, verifyKafkaConnection } from './kafka-errors.ts';
import { keyHash } from './murmur2.ts';
import { IdempotentBatchSender } from './idempotent-send.ts';
import { log as rootLog, type Logger } from '../log.ts';
import { logTopicDurability, readTopicDurability } from './topic-durability.ts';
import {
  chunkBySize,
  isTooLarge,
  KAFKA_DEFAULT_MAX_MESSAGE_BYTES,
  MessageTooLargeError,
  raiseTopicLimits,
  recordBytes,
} from './message-size.ts';

/** Record batch compression codecs @platformatic/kafka writes (zstd needs Node 22's zlib). */
export type CompressionType = 'none' | 'gzip' | 'snappy' | 'lz4' | 'zstd';

/**
 * The narrow slice of Kafka that the source uses. The rest of Tide does not
 * know which client sits underneath, so benchmarks can compare clients.
 */
export interface OutgoingMessage {
  topic: string;
  key: Buffer | null;
  value: Buffer | null;
  /** Record headers, e.g. Debezium's `__debezium.newkey` / `__debezium.oldkey` on a primary-key change. */
  headers?: Record<string, Buffer>;
  /** An explicit partition (the end-of-snapshot markers, one per partition); otherwise the key's murmur2 hash decides. */
  partition?: number;
}

export interface TopicSpec {
  topic: string;
  partitions: number;
  /** undefined: the cluster's default.replication.factor (CreateTopics with -1). */
  replicationFactor?: number;
  config?: Record<string, string>;
}

export interface EventProducer {
  /** Create missing topics (existing ones are left as they are). */
  ensureTopics(specs: TopicSpec[]): Promise<void>;
  /** The end offset (high watermark) of each partition of `topic`, by partition (it exists: ensureTopics ran). */
  partitionEnds?(topic: string): Promise<bigint[]>;
  /** Resolves once Kafka has acknowledged every message (acks from all in-sync replicas). */
  send(messages: OutgoingMessage[]): Promise<void>;
  close(): Promise<void>;
}

export class KafkaDeliveryError extends TideError {
  constructor(message: string, cause: unknown) {
    super(`kafka: ${message}`, { cause, retriable: true });
    this.name = 'KafkaDeliveryError';
  }
}

/**
 * kafkajs, with an idempotent producer (acks=-1, retries, one request in flight
 * so order per partition holds across retries). Keys are hashed with kafkajs'
 * DefaultPartitioner, which is Kafka's murmur2 partitioner, so Java and Python
 * clients put a key on the same partition.
 */
export class KafkajsProducer implements EventProducer {
  private readonly kafka: Kafka;
  private producer: Producer | undefined;
  private admin: Admin | undefined;
  private verified: Promise<void> | undefined;
  private durabilityChecked = false;

  constructor(
    private readonly conn: KafkaConnection,
    private readonly clientId = 'tide-source',
    private readonly log: Logger = rootLog,
    /** The connector's max.message.bytes: topics are created with it and raised to it (message-size.ts). */
    private readonly maxMessageBytes = KAFKA_DEFAULT_MAX_MESSAGE_BYTES,
  ) {
    // Few retries of its own: KafkaRetrier (kafka-retry.ts) retries with backoff, logs what it waits for and stops at the budget.
    this.kafka = new Kafka(conn.kafkajs(clientId, { logLevel: logLevel.NOTHING, retry: { retries: 2, initialRetryTime: 200 } }));
  }

  /** The TLS/SASL pre-flight, once: a refused credential fails in a second, before kafkajs' retries. */
  verify(): Promise<void> {
    this.verified ??= verifyKafkaConnection(this.conn, { clientId: this.clientId });
    return this.verified;
  }

  private async getProducer(): Promise<Producer> {
    if (!this.producer) {
      const producer = this.kafka.producer({
        idempotent: true,
        maxInFlightRequests: 1,
        createPartitioner: Partitioners.DefaultPartitioner,
        allowAutoTopicCreation: false,
      });
      await producer.connect();
      this.producer = producer;
    }
    return this.producer;
  }

  async ensureTopics(specs: TopicSpec[]): Promise<void> {
    await this.verify();
    try {
      await this.createMissing(specs);
    } catch (err) {
      throw explainKafkaError(this.conn, err, `creating topics ${specs.map((s) => s.topic).join(', ')}`);
    }
    if (this.maxMessageBytes > KAFKA_DEFAULT_MAX_MESSAGE_BYTES)
      await raiseTopicLimits(
        this.conn,
        specs.map((s) => s.topic),
        this.maxMessageBytes,
        this.log,
      );
    if (!this.durabilityChecked && specs.length) {
      // Once, for the topics the connector starts with.
      this.durabilityChecked = true;
      await readTopicDurability(
        this.admin!,
        specs.map((s) => s.topic),
      )
        .then((report) => logTopicDurability(report, this.log))
        .catch((err: unknown) =>
          this.log.info({ err: (err as Error).message }, "could not read the topics' replication settings; durability not checked"),
        );
    }
  }

  private async createMissing(specs: TopicSpec[]): Promise<void> {
    if (!this.admin) {
      this.admin = this.kafka.admin();
      await this.admin.connect();
    }
    const existing = new Set(await this.admin.listTopics());
    const missing = specs.filter((s) => !existing.has(s.topic));
    if (missing.length === 0) return;
    await this.admin.createTopics({
      waitForLeaders: true,
      topics: missing.map((s) => ({
        topic: s.topic,
        numPartitions: s.partitions,
        replicationFactor: s.replicationFactor ?? -1,
        configEntries: Object.entries({
          ...(this.maxMessageBytes > KAFKA_DEFAULT_MAX_MESSAGE_BYTES ? { 'max.message.bytes': String(this.maxMessageBytes) } : {}),
          ...s.config,
        }).map(([name, value]) => ({ name, value })),
      })),
    });
  }

  async send(messages: OutgoingMessage[]): Promise<void> {
    if (messages.length === 0) return;
    const byTopic = new Map<string, { key: Buffer | null; value: Buffer | null; headers?: Record<string, Buffer>; partition?: number }[]>();
    for (const m of messages) {
      let list = byTopic.get(m.topic);
      if (!list) byTopic.set(m.topic, (list = []));
      list.push({
        key: m.key,
        value: m.value,
        ...(m.headers ? { headers: m.headers } : {}),
        ...(m.partition !== undefined ? { partition: m.partition } : {}),
      });
    }
    const producer = await this.getProducer();
    try {
      await producer.sendBatch({
        acks: -1,
        compression: CompressionTypes.None,
        topicMessages: [...byTopic].map(([topic, msgs]) => ({ topic, messages: msgs })),
      });
    } catch (err) {
      throw new KafkaDeliveryError(`could not deliver ${messages.length} messages: ${(err as Error).message}`, err);
    }
  }

  async partitionEnds(topic: string): Promise<bigint[]> {
    if (!this.admin) {
      this.admin = this.kafka.admin();
      await this.admin.connect();
    }
    const ends: bigint[] = [];
    for (const p of await this.admin.fetchTopicOffsets(topic)) ends[p.partition] = BigInt(p.high);
    return ends;
  }

  async close(): Promise<void> {
    await this.producer?.disconnect();
    await this.admin?.disconnect();
    this.producer = undefined;
    this.admin = undefined;
  }
}

/**
 * The default: @platformatic/kafka for producing (measured ~2.3x less CPU per message than kafkajs on
 * this machine, which is what bounds the source's drain rate), idempotent with acks from all in-sync
 * replicas, keys partitioned with Kafka's Java murmur2 partitioner (murmur2.ts). Uncompressed events (the
 * default) go out in whole partition batches through idempotent-send.ts and produce-request.ts, past the
 * library's per-record work in `Producer#send`; compressed ones through the library's `send`. Topics are
 * still created through kafkajs' admin client.
 */
export class PlatformaticProducer implements EventProducer {
  private readonly admin: KafkajsProducer;
  private readonly producer: PlatformaticKafkaProducer<Buffer, Buffer, Buffer, Buffer>;
  private ready: Promise<ProducerInfo> | undefined;
  /** Uncompressed batches (the default) go through Tide's sender and encoder; compressed ones through the library's send. */
  private readonly batches: IdempotentBatchSender | undefined;

  constructor(
    private readonly conn: KafkaConnection,
    clientId = 'tide-source',
    log: Logger = rootLog,
    private readonly maxMessageBytes = KAFKA_DEFAULT_MAX_MESSAGE_BYTES,
    /** Record batch compression (compression.type); 'none' keeps produce-request.ts' one-pass encoder. */
    compression: CompressionType = 'none',
  ) {
    this.admin = new KafkajsProducer(conn, `${clientId}-admin`, log, maxMessageBytes);
    this.producer = new PlatformaticKafkaProducer({
      clientId,
      compression,
      ...conn.platformatic(),
      idempotent: true,
      acks: ProduceAcks.ALL,
      partitioner: compatibilityPartitioner, // used only when a message comes without a partition; send() always sets one
      autocreateTopics: false,
      // A try ends after ~2 s of its own retries; KafkaRetrier resends the same batch (same sequence numbers) within errors.retry.timeout.
      retries: 3,
      retryDelay: 500,
    });
    if (compression === 'none') this.batches = new IdempotentBatchSender(this.producer, () => this.producerInfo());
  }

  /** The idempotent producer's id and epoch (InitProducerId), once. */
  private producerInfo(): Promise<ProducerInfo> {
    if (!this.ready) {
      const ready = this.producer.initIdempotentProducer({});
      ready.catch(() => {
        if (this.ready === ready) this.ready = undefined; // the next send asks again
      });
      this.ready = ready;
    }
    return this.ready;
  }

  async ensureTopics(specs: TopicSpec[]): Promise<void> {
    await this.admin.ensureTopics(specs);
    try {
      // Fetch metadata and the idempotent producer id now rather than on the first event.
      await this.producer.metadata({ topics: specs.map((s) => s.topic) });
      await this.producerInfo();
    } catch (err) {
      throw explainKafkaError(this.conn, err, 'starting the producer');
    }
  }

  async send(messages: OutgoingMessage[]): Promise<void> {
    if (messages.length === 0) return;
    // The client puts a request's messages for one partition into one record batch, whatever its size, and the
    // broker refuses a batch over the topic's max.message.bytes: so send in runs under the limit, in order.
    for (const chunk of chunkBySize(messages, this.maxMessageBytes)) await this.sendChunk(chunk);
  }

  private async sendChunk(messages: OutgoingMessage[]): Promise<void> {
    const first = messages[0]!;
    if (messages.length === 1 && recordBytes(first) > this.maxMessageBytes)
      throw new MessageTooLargeError(first.topic, '(unknown)', recordBytes(first), this.maxMessageBytes, 'connector', first);
    try {
      if (this.batches) return await this.batches.send(messages);
      const out = new Array<{ topic: string; key?: Buffer; value?: Buffer; partition: number; headers?: Map<Buffer, Buffer> }>(
        messages.length,
      );
      for (let i = 0; i < messages.length; i++) {
        const m = messages[i]!;
        // The Java partitioner's hash, computed here (murmur2.ts); the client takes it modulo the partition count.
        // An explicit partition p (below the partition count) stays p under the modulo.
        out[i] = { topic: m.topic, key: m.key ?? undefined, value: m.value ?? undefined, partition: m.partition ?? keyHash(m.key) };
        // The client writes header keys as bytes as given (no serializer is configured): hand it Buffers.
        if (m.headers) out[i]!.headers = new Map(Object.entries(m.headers).map(([k, v]) => [Buffer.from(k), v]));
      }
      await this.producer.send({ messages: out });
    } catch (err) {
      if (isTooLarge(err)) {
        const largest = messages.reduce((a, b) => (recordBytes(b) > recordBytes(a) ? b : a));
        throw new MessageTooLargeError(largest.topic, '(unknown)', recordBytes(largest), this.maxMessageBytes, 'broker', largest);
      }
      throw new KafkaDeliveryError(`could not deliver ${messages.length} messages: ${(err as Error).message}`, err);
    }
  }

  partitionEnds(topic: string): Promise<bigint[]> {
    return this.admin.partitionEnds(topic);
  }

  async close(): Promise<void> {
    await this.producer.close();
    await this.admin.close();
  }
}

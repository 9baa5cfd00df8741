import {
  GenericError,
  createAPI,
  kGetApi,
  kGetConnection,
  kMetadata,
  kOptions,
  kPerformWithRetry,
  produceV9,
  produceV10,
  produceV11,
  type ClusterMetadata,
  type Connection,
  type Producer,
  type ProducerInfo,
} from '@platformatic/kafka';
import { TideError } from '../errors.ts';
import { keyHash } from './murmur2.ts';
import { encodeProduceBatches, type BatchOptions, type BatchRecord, type PartitionBatch } from './produce-request.ts';

/** An event to send (kafka-producer.ts' OutgoingMessage): without a partition, its key's murmur2 hash decides. */
export interface SendRecord extends BatchRecord {
  topic: string;
  partition?: number;
}

/**
 * Sends whole partition batches through @platformatic/kafka's connections, keeping the idempotent
 * producer's sequence numbers in Tide.
 *
 * Why Tide does what the library's `Producer#send` also does: per record, `send` builds a message object,
 * two Maps (headers, serialized headers), a `topic:partition` string and a NumericMap update for the
 * sequence numbers, then groups the records again by destination; for the source's 1M-row drain that cost
 * more CPU than encoding the records (bench/source/hot-path.ts; README, Performance → Source). Here a
 * record is hashed to its partition and pushed onto that partition's list, and the rest is per batch.
 *
 * What stays the library's: the producer id and epoch (`initIdempotentProducer`, which the caller awaits
 * first), metadata and partition leaders (`[kMetadata]`, cached), the connection to each leader
 * (`[kGetConnection]`), the Produce API version (`[kGetApi]`) and its response parser, which turns a
 * partition's error code into the library's errors, and the retries (`[kPerformWithRetry]`, with a fresh
 * metadata on a stale leader, as `#performSingleDestinationSend` does). These are the symbols the library
 * exports for subclasses (clients/base/index.js).
 *
 * Idempotence (KIP-98): each partition's batch carries the producer id, epoch and the sequence number of its
 * first record; a partition's next sequence number moves on by the batch's record count only once the whole
 * send was acknowledged. A retry, the library's or the caller's (KafkaRetrier resends the same events),
 * therefore sends the same batches with the same numbers, and the broker answers a batch it already wrote
 * as a duplicate instead of writing it again (the library moves on per acknowledged partition even when
 * another leader failed, so its resend after a partial failure is written twice). Sequence numbers wrap
 * from 2^31-1 to 0, as Kafka's `DefaultRecordBatch.incrementSequence` does. Nothing is sent concurrently
 * from one producer (EventPublisher sends one batch at a time), so per partition the order holds.
 */
export class IdempotentBatchSender {
  /** The next sequence number per topic and partition. */
  private readonly sequences = new Map<string, number[]>();

  constructor(
    private readonly client: Producer<Buffer, Buffer, Buffer, Buffer>,
    private readonly producerInfo: () => Promise<ProducerInfo>,
  ) {}

  /** Deliver `messages` (keys hashed to partitions, explicit partitions kept) and resolve once Kafka acknowledged all. */
  async send(messages: readonly SendRecord[]): Promise<void> {
    const info = await this.producerInfo();
    const topics = [...new Set(messages.map((m) => m.topic))];
    const metadata = await this.metadata(topics);
    const timestamp = BigInt(Date.now());
    // topic → partition → records, then one batch per (topic, partition), grouped by topic as the request wants.
    const byTopic = new Map<string, PartitionBatch[]>();
    for (const topic of topics) byTopic.set(topic, []);
    let topic = '';
    let slots: PartitionBatch[] = [];
    let count = 0;
    for (let i = 0; i < messages.length; i++) {
      const m = messages[i]!;
      if (m.topic !== topic) {
        topic = m.topic;
        slots = byTopic.get(topic)!;
        count = metadata.topics.get(topic)!.partitionsCount;
      }
      // The Java partitioner's hash (murmur2.ts) modulo the partition count; an explicit partition stays as it is.
      const partition = (m.partition ?? keyHash(m.key)) % count;
      let batch = slots[partition];
      if (!batch) {
        batch = slots[partition] = { topic, partition, baseSequence: this.next(topic, partition), timestamp, records: [] };
      }
      batch.records.push(m);
    }
    // By leader: one request to each, all at once (as the library does).
    const byLeader = new Map<number, PartitionBatch[]>();
    for (const list of byTopic.values())
      for (const batch of list) {
        if (!batch) continue; // a partition without records (a hole in the array)
        const leader = metadata.topics.get(batch.topic)!.partitions[batch.partition]!.leader;
        let destination = byLeader.get(leader);
        if (!destination) byLeader.set(leader, (destination = []));
        destination.push(batch);
      }
    const options: BatchOptions = { producerId: info.producerId, producerEpoch: info.producerEpoch };
    // Every leader's answer is awaited before a failure is passed on: a resend (KafkaRetrier) then never races
    // a request of this send that is still in flight.
    const results = await Promise.allSettled([...byLeader.values()].map((batches) => this.sendTo(topics, batches, options, true)));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    for (const batches of byLeader.values())
      for (const b of batches) this.sequences.get(b.topic)![b.partition] = (b.baseSequence + b.records.length) % 2 ** 31;
  }

  private next(topic: string, partition: number): number {
    let list = this.sequences.get(topic);
    if (!list) this.sequences.set(topic, (list = []));
    return (list[partition] ??= 0);
  }

  private metadata(topics: string[]): Promise<ClusterMetadata> {
    return new Promise((resolve, reject) =>
      this.client[kMetadata]({ topics, autocreateTopics: false }, (err, metadata) => (err ? reject(err) : resolve(metadata!))),
    );
  }

  /** One request to the leader of `batches`, with the library's retries; a stale leader refreshes the metadata once. */
  private sendTo(topics: string[], batches: PartitionBatch[], options: BatchOptions, repeatOnStale: boolean): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const acks = -1;
      const timeout = this.client[kOptions].timeout ?? 5000;
      const stale = (err: unknown) => GenericError.isGenericError(err as Error) && !!(err as GenericError).findBy('hasStaleMetadata', true);
      this.client[kPerformWithRetry]<unknown>(
        'produce',
        (retry) =>
          this.client[kMetadata]({ topics, autocreateTopics: false }, (err, metadata) => {
            if (err || !metadata) return retry(err ?? new TideError('kafka: no metadata'));
            const b0 = batches[0]!;
            const broker = metadata.brokers.get(metadata.topics.get(b0.topic)!.partitions[b0.partition]!.leader);
            if (!broker) return retry(new TideError(`kafka: no leader known for ${b0.topic}-${b0.partition}`, { retriable: true }));
            this.client[kGetConnection](broker, (err, connection) => {
              if (err || !connection) return retry(err ?? new TideError(`kafka: no connection to broker ${broker.host}:${broker.port}`));
              this.client[kGetApi]('Produce', (err, api) => {
                if (err || !api) return retry(err ?? new Error('no Produce API'));
                const produce = PRODUCE_APIS.get(api.version);
                if (!produce)
                  return retry(new TideError(`kafka: the broker answers Produce v${api.version}; Tide writes v9-v11 (Kafka 2.1 or later)`));
                produce(connection, acks, timeout, batches, options, retry);
              });
            });
          }),
        (err) => {
          if (!err) return resolve();
          if (repeatOnStale && stale(err)) {
            this.client.clearMetadata();
            this.sendTo(topics, batches, options, false).then(resolve, reject);
          } else reject(err);
        },
        0,
        [],
        (err: Error) => repeatOnStale && stale(err),
      );
    });
  }
}

type BatchApi = (
  connection: Connection,
  acks: number,
  timeout: number,
  batches: PartitionBatch[],
  options: BatchOptions,
  callback: (err: Error | null, result?: unknown) => void,
) => void;

/** Produce v9-v11 share one request layout; Kafka 2.1 and later (KIP-110's v7 is older) answer at least v9. */
const PRODUCE_APIS = new Map(
  [produceV9, produceV10, produceV11].map((lib) => {
    const createRequest = (acks: number, timeout: number, batches: PartitionBatch[], options: BatchOptions) =>
      encodeProduceBatches(acks, timeout, batches, options);
    const api = createAPI(0, lib.api.version, createRequest as never, lib.parseResponse) as unknown as BatchApi;
    return [lib.api.version, api] as const;
  }),
);

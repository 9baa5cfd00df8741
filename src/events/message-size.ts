import { Admin } from '@platformatic/kafka';
import { TideError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { KafkaConnection } from './kafka-connection.ts';

/**
 * Kafka's size limit on what Tide produces: `max.message.bytes`, the largest record batch a topic accepts
 * (topic config; the brokers' `message.max.bytes` is its default, 1048588 bytes). A topic-level value
 * overrides the broker's for that topic, so Tide raises its topics to the connector's `max.message.bytes`.
 * The producer must keep each batch under it too: @platformatic/kafka sends one record batch per partition
 * per request whatever its size, so Tide splits its sends by size (see chunkBySize).
 */
export const KAFKA_DEFAULT_MAX_MESSAGE_BYTES = 1_048_588;
/** Record batch header (61 bytes, Kafka's DefaultRecordBatch) plus a record's own framing (attributes, varints: at most 21 bytes). */
const BATCH_OVERHEAD = 61;
const RECORD_OVERHEAD = 21;
const TOPIC_RESOURCE = 2; // ConfigResourceTypes.TOPIC
const SET = 0; // IncrementalAlterConfigOperationTypes.SET

export interface SizedMessage {
  topic: string;
  key: Buffer | null;
  value: Buffer | null;
  headers?: Record<string, Buffer>;
}

/** The bytes a message takes as the only record of a batch: what a topic's max.message.bytes is compared with. */
export function recordBytes(m: SizedMessage): number {
  let n = BATCH_OVERHEAD + RECORD_OVERHEAD + (m.key?.length ?? 0) + (m.value?.length ?? 0);
  if (m.headers) for (const k in m.headers) n += 10 + k.length + m.headers[k]!.length;
  return n;
}

/** Consecutive runs of `messages` of at most `limit` bytes each (a larger message alone), in order. */
export function chunkBySize<M extends SizedMessage>(messages: M[], limit: number): M[][] {
  const chunks: M[][] = [];
  let chunk: M[] = [];
  let size = BATCH_OVERHEAD;
  for (const m of messages) {
    const n = recordBytes(m) - BATCH_OVERHEAD;
    if (chunk.length > 0 && size + n > limit) {
      chunks.push(chunk);
      chunk = [];
      size = BATCH_OVERHEAD;
    }
    chunk.push(m);
    size += n;
  }
  if (chunk.length) chunks.push(chunk);
  return chunks;
}

/** A change event larger than Kafka takes: the source stops before it, and confirms nothing past it. */
export class MessageTooLargeError extends TideError {
  constructor(
    readonly table: string,
    readonly key: string,
    readonly size: number,
    readonly limit: number,
    readonly refusedBy: 'connector' | 'broker',
    /** The message, so that a layer that knows the table can name its key (see EventPublisher). */
    readonly offending?: SizedMessage,
  ) {
    super(
      `table ${table}: the change event for key ${key} is ${size} bytes, over ${
        refusedBy === 'connector'
          ? `the connector's max.message.bytes=${limit}`
          : `what the broker accepts for its topic (the topic's max.message.bytes, or the brokers' message.max.bytes; the connector's max.message.bytes is ${limit})`
      }. ` +
        'The source stopped before it: nothing from this transaction on was confirmed, so the slot keeps the row and a restart delivers it. ' +
        `Fix: raise max.message.bytes in the source connector to at least ${size} (Tide raises its topics' max.message.bytes to it at start, ` +
        'where the broker allows topic config changes; otherwise kafka-configs --alter --entity-type topics --add-config max.message.bytes=…), ' +
        "and make sure the topic's consumers fetch as much (Tide's sink does: a fetch returns a record batch whole, even over its limit), then restart.",
      { retriable: false },
    );
    this.name = 'MessageTooLargeError';
  }
}

/** Kafka's MESSAGE_TOO_LARGE (10) or RECORD_LIST_TOO_LARGE (18) somewhere in an error's causes. */
export function isTooLarge(err: unknown): boolean {
  const seen = new Set<unknown>();
  const walk = (e: unknown): boolean => {
    if (!e || typeof e !== 'object' || seen.has(e)) return false;
    seen.add(e);
    const o = e as { code?: unknown; apiCode?: unknown; errors?: unknown; cause?: unknown; message?: unknown };
    if (o.apiCode === 10 || o.apiCode === 18) return true;
    if (typeof o.message === 'string' && /MESSAGE_TOO_LARGE|RECORD_LIST_TOO_LARGE|larger than the max message size/i.test(o.message))
      return true;
    if (Array.isArray(o.errors) && o.errors.some(walk)) return true;
    if (o.errors && typeof o.errors === 'object' && Object.values(o.errors).some(walk)) return true;
    return walk(o.cause);
  };
  return walk(err);
}

/**
 * Give `topics` a max.message.bytes of at least `limit`: read each topic's value, raise the lower ones
 * (IncrementalAlterConfigs SET, which leaves the topic's other settings alone; kafkajs has only the
 * non-incremental AlterConfigs, which would reset them). Where the broker refuses (no ALTER_CONFIGS right,
 * a policy), warn and leave it: an event over the topic's limit then stops the source with a MessageTooLargeError.
 */
export async function raiseTopicLimits(conn: KafkaConnection, topics: string[], limit: number, log: Logger): Promise<void> {
  if (topics.length === 0) return;
  const admin = new Admin({ clientId: 'tide-topic-limits', ...conn.platformatic() });
  try {
    const described = await admin.describeConfigs({
      resources: topics.map((name) => ({ resourceType: TOPIC_RESOURCE, resourceName: name, configurationKeys: ['max.message.bytes'] })),
    });
    const low = described
      .map((r) => ({ topic: r.resourceName, value: Number(r.configs.find((c) => c.name === 'max.message.bytes')?.value ?? NaN) }))
      .filter((t) => Number.isFinite(t.value) && t.value < limit);
    if (low.length === 0) return;
    try {
      await admin.incrementalAlterConfigs({
        resources: low.map((t) => ({
          resourceType: TOPIC_RESOURCE,
          resourceName: t.topic,
          configs: [{ name: 'max.message.bytes', configOperation: SET, value: String(limit) }],
        })),
      });
      log.info({ topics: low, to: limit }, "raised the topics' max.message.bytes to the connector's max.message.bytes");
    } catch (err) {
      log.warn(
        { topics: low, wanted: limit, err: (err as Error).message },
        "could not raise the topics' max.message.bytes to the connector's max.message.bytes (the broker refused): events over a topic's own limit will stop the source; raise it with kafka-configs --alter --entity-type topics --add-config max.message.bytes=…",
      );
    }
  } catch (err) {
    log.warn({ err: (err as Error).message }, "could not read the topics' max.message.bytes; they are left as they are");
  } finally {
    await admin.close().catch(() => undefined);
  }
}

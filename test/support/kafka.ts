import { CONTROL_HEADER } from '../../src/events/snapshot-end.ts';
import { SchemaRegistry, SchemaType } from '@kafkajs/confluent-schema-registry';
import avro from 'avsc';
import { Kafka, logLevel } from 'kafkajs';
import { kafkaConnection, type KafkaConnection } from '../../src/events/kafka-connection.ts';

export interface ConsumedEvent {
  topic: string;
  partition: number;
  offset: string;
  key: Record<string, unknown> | null;
  /** null for a tombstone */
  value: Record<string, unknown> | null;
  rawKey: Buffer | null;
  rawValue: Buffer | null;
  /** Record headers (kafkajs gives each value as a Buffer). */
  headers?: Record<string, unknown>;
}

export function kafka(): Kafka {
  return new Kafka({
    clientId: 'tide-test',
    brokers: (process.env.KAFKA_BROKERS ?? '127.0.0.1:59092').split(','),
    logLevel: logLevel.NOTHING,
  });
}

/** The local stack's plaintext listener as a KafkaConnection (what Tide's clients are built from). */
export function plaintextConnection(brokers = (process.env.KAFKA_BROKERS ?? '127.0.0.1:59092').split(',')): KafkaConnection {
  return kafkaConnection({
    'kafka.bootstrap.servers': brokers,
    'kafka.security.protocol': 'PLAINTEXT',
    'kafka.ssl.endpoint.identification.algorithm': 'https',
  });
}

/**
 * Avro longs for the test decoder: a number when it is a safe integer, else a bigint. avsc's default long
 * throws beyond 2^53 (int8 extremes, infinity timestamps), which would make a consumer retry forever.
 */
const int64 = avro.types.LongType.__with({
  fromBuffer: (buf: Buffer) => {
    const n = buf.readBigInt64LE(0);
    return n >= BigInt(Number.MIN_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n;
  },
  toBuffer: (n: number | bigint) => {
    const buf = Buffer.alloc(8);
    buf.writeBigInt64LE(BigInt(n));
    return buf;
  },
  fromJSON: (v: unknown) => Number(v),
  toJSON: (n: number | bigint) => Number(n),
  isValid: (n: unknown) => typeof n === 'bigint' || Number.isSafeInteger(n),
  compare: (a: number | bigint, b: number | bigint) => (a < b ? -1 : a > b ? 1 : 0),
}) as unknown as avro.Type;
const longHook = (schema: unknown): avro.Type | undefined =>
  schema === 'long' || (typeof schema === 'object' && schema !== null && (schema as { type?: unknown }).type === 'long')
    ? int64
    : undefined;

/** An independent decoder (Confluent wire format + registry lookups), not Tide's own code. */
export function registryClient(): SchemaRegistry {
  return new SchemaRegistry(
    { host: process.env.SCHEMA_REGISTRY_URL ?? 'http://127.0.0.1:58081/apis/ccompat/v7' },
    { [SchemaType.AVRO]: { typeHook: longHook } },
  );
}

/**
 * Read every message of `topics` from the beginning until `done(events)` holds
 * (or `timeoutMs` passes, which fails with what was seen). Decodes with the registry.
 */
export async function consumeUntil(
  topics: string[],
  done: (events: ConsumedEvent[]) => boolean,
  timeoutMs = 60_000,
  /**
   * keepControl: also the end-of-snapshot markers (null key and value, header tide.control: src/events/snapshot-end.ts),
   * which are left out by default: the tests read the topics as a consumer of change events does.
   */
  opts: { returnOnTimeout?: boolean; keepControl?: boolean } = {},
): Promise<ConsumedEvent[]> {
  const registry = registryClient();
  const consumer = kafka().consumer({ groupId: `tide-test-${Date.now()}-${Math.random().toString(36).slice(2)}` });
  const events: ConsumedEvent[] = [];
  await consumer.connect();
  try {
    for (const topic of topics) await consumer.subscribe({ topic, fromBeginning: true });
    let resolveDone!: () => void;
    const finished = new Promise<void>((r) => (resolveDone = r));
    await consumer.run({
      eachBatch: async ({ batch }) => {
        // Decode the whole batch before keeping any of it: a retried batch must not be counted twice.
        const decoded: ConsumedEvent[] = [];
        for (const m of batch.messages) {
          if (!opts.keepControl && m.value === null && m.headers?.[CONTROL_HEADER] !== undefined) continue;
          decoded.push({
            topic: batch.topic,
            partition: batch.partition,
            offset: m.offset,
            rawKey: m.key,
            rawValue: m.value,
            headers: m.headers as Record<string, unknown> | undefined,
            key: m.key ? ((await registry.decode(m.key)) as Record<string, unknown>) : null,
            value: m.value ? ((await registry.decode(m.value)) as Record<string, unknown>) : null,
          });
        }
        events.push(...decoded);
        if (done(events)) resolveDone();
      },
    });
    if (done(events)) resolveDone();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      finished,
      new Promise<void>((_, reject) => {
        timer = setTimeout(
          () =>
            opts.returnOnTimeout
              ? resolveDone()
              : reject(new Error(`timed out after ${timeoutMs} ms with ${events.length} events on ${topics.join(', ')}`)),
          timeoutMs,
        );
      }),
    ]).finally(() => clearTimeout(timer));
    return events;
  } finally {
    await consumer.disconnect();
  }
}

/** Wait until `check` holds, polling. Fails with `what` after `timeoutMs`. */
export async function waitFor(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Read `topics` from the beginning up to their current high watermarks (everything Kafka holds right now). */
export async function consumeAll(topics: string[], timeoutMs = 120_000, keepControl = false): Promise<ConsumedEvent[]> {
  const admin = kafka().admin();
  await admin.connect();
  const ends = new Map<string, number>();
  try {
    for (const topic of topics) for (const p of await admin.fetchTopicOffsets(topic)) ends.set(`${topic}/${p.partition}`, Number(p.high));
  } finally {
    await admin.disconnect();
  }
  const total = [...ends.values()].reduce((a, b) => a + b, 0);
  // A consumer group may deliver a batch again after a rebalance (a session that timed out on a loaded machine):
  // count each (topic, partition, offset) once, or the copies make up the count before every topic is read.
  const seen = new Map<string, ConsumedEvent>();
  const below = (e: ConsumedEvent) => Number(e.offset) < (ends.get(`${e.topic}/${e.partition}`) ?? 0);
  let foldedUpTo = 0;
  const fold = (es: ConsumedEvent[]) => {
    for (let i = foldedUpTo; i < es.length; i++) {
      const e = es[i]!;
      if (below(e)) seen.set(`${e.topic}/${e.partition}/${e.offset}`, e);
    }
    foldedUpTo = es.length;
    return seen.size;
  };
  await consumeUntil(topics, (es) => fold(es) >= total, timeoutMs, { keepControl: true });
  return [...seen.values()].filter((e) => keepControl || !(e.value === null && e.headers?.[CONTROL_HEADER] !== undefined));
}

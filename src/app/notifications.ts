import avro from 'avsc';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Kafka, logLevel, type Producer } from 'kafkajs';
import type { SinkConfig } from '../config/sink-config.ts';
import { kafkaConnection } from '../events/kafka-connection.ts';
import { registryFromConfig } from '../events/schema-registry.ts';
import { ConfigError } from '../errors.ts';

/**
 * The notification platform's event source, for the second example (README "The notification platform"):
 * a topic of notifications sent to the platform's customers, as the design describes them (customer_id,
 * message_id, customer_name, channel, payload, event_datetime), in Avro through the registry (subject
 * `<topic>-value`), keyed by customer_id so that a customer's events share a partition.
 *
 * It produces at a steady rate, with bursts (a higher rate for a while, at a period) and a share of late
 * events (event_datetime up to `lateByMs` in the past, as when a device was offline). The rate is kept by
 * sending, every tick, what the elapsed time calls for; a producer that falls behind catches up.
 */
export const NOTIFICATION_SCHEMA = {
  type: 'record',
  name: 'Notification',
  namespace: 'tide.example.notifications',
  doc: 'A notification sent to a customer of the notification platform.',
  fields: [
    { name: 'customer_id', type: 'long' },
    { name: 'message_id', type: 'string' },
    { name: 'customer_name', type: 'string' },
    { name: 'channel', type: 'string', doc: 'sms, email, push or whatsapp' },
    { name: 'payload', type: 'string', doc: 'the message as JSON text' },
    { name: 'event_datetime', type: { type: 'long', logicalType: 'timestamp-millis' }, doc: 'when the notification was sent' },
  ],
} as const;

export interface NotificationOptions {
  /** Steady events per second. */
  rate: number;
  /** Bursts: `rate` events per second for `forMs`, every `everyMs`. */
  burst?: { rate: number; everyMs: number; forMs: number };
  durationMs?: number;
  /** Stop after this many events. */
  count?: number;
  customers?: number;
  /** Share of events whose event_datetime lies up to lateByMs in the past. */
  lateFraction?: number;
  lateByMs?: number;
  /** Partitions of the topic when it is created. */
  partitions?: number;
  signal?: AbortSignal;
  reportEveryMs?: number;
  onReport?: (stats: NotificationStats) => void;
  /** The clock (tests). */
  now?: () => number;
}

export interface NotificationStats {
  topic: string;
  sent: number;
  late: number;
  elapsedMs: number;
  achievedRate: number;
  /** event_datetime of the newest event sent (ms), the generator's clock. */
  newestEventMs: number;
}

/** Events per produce request at most (~200 bytes each: well under the broker's 1 MB message.max.bytes per partition batch). */
const MAX_SEND = 2000;
const CHANNELS = ['email', 'email', 'email', 'sms', 'sms', 'push', 'push', 'push', 'whatsapp'];
const FIRST = ['Ada', 'Bao', 'Chidi', 'Dana', 'Emil', 'Farah', 'Goran', 'Hana', 'Ines', 'Jonas', 'Kemal', 'Lena'];
const LAST = ['Logistics', 'Foods', 'Travel', 'Bank', 'Clinic', 'Telecom', 'Retail', 'Energy'];
const TEMPLATES = ['order_shipped', 'payment_due', 'appointment_reminder', 'otp', 'promo', 'delivery_window'];

/** customer_name of a customer id: stable, so reports can group by either. */
export function customerName(id: number): string {
  return `${FIRST[id % FIRST.length]} ${LAST[Math.floor(id / FIRST.length) % LAST.length]} #${id}`;
}

/** The target rate at `elapsedMs` after the start. */
export function rateAt(elapsedMs: number, opts: Pick<NotificationOptions, 'rate' | 'burst'>): number {
  const b = opts.burst;
  return b && elapsedMs % b.everyMs < b.forMs ? b.rate : opts.rate;
}

/** Events the schedule calls for between the start and `elapsedMs` (integral of rateAt). */
export function dueBy(elapsedMs: number, opts: Pick<NotificationOptions, 'rate' | 'burst'>): number {
  const b = opts.burst;
  if (!b) return Math.floor((elapsedMs / 1000) * opts.rate);
  const periods = Math.floor(elapsedMs / b.everyMs);
  const into = elapsedMs - periods * b.everyMs;
  const perPeriod = (b.forMs * b.rate + (b.everyMs - b.forMs) * opts.rate) / 1000;
  const partial = (Math.min(into, b.forMs) * b.rate + Math.max(0, into - b.forMs) * opts.rate) / 1000;
  return Math.floor(periods * perPeriod + partial);
}

/** Produce notifications to the first topic of the sink connector file until the duration, the count or the signal ends it. */
export async function runNotifications(
  file: { name: string; config: SinkConfig; source: string },
  opts: NotificationOptions,
): Promise<NotificationStats> {
  const c = file.config;
  const topic = c.topics?.[0];
  if (!topic) throw new ConfigError('topics', 'names no topic: the generator writes to the first topic of the list', file.source);
  const now = opts.now ?? Date.now;
  const conn = kafkaConnection(c, { source: file.source });
  const kafka = new Kafka(conn.kafkajs('tide-app-notifications', { logLevel: logLevel.NOTHING }));
  const admin = kafka.admin();
  await admin.connect();
  try {
    if (!(await admin.listTopics()).includes(topic))
      await admin.createTopics({ topics: [{ topic, numPartitions: opts.partitions ?? 6 }], waitForLeaders: true });
  } finally {
    await admin.disconnect();
  }
  const id = await registryFromConfig(c).register(`${topic}-value`, NOTIFICATION_SCHEMA);
  const type = avro.Type.forSchema(NOTIFICATION_SCHEMA as unknown as avro.Schema);
  const header = Buffer.alloc(5);
  header.writeInt32BE(id, 1);
  const producer: Producer = kafka.producer({ allowAutoTopicCreation: false });
  await producer.connect();
  const customers = opts.customers ?? 200;
  const lateFraction = opts.lateFraction ?? 0.01;
  const lateByMs = opts.lateByMs ?? 5 * 60_000;
  const stats: NotificationStats = { topic, sent: 0, late: 0, elapsedMs: 0, achievedRate: 0, newestEventMs: 0 };
  const started = now();
  let lastReport = started;
  try {
    while (!opts.signal?.aborted) {
      const t = now();
      stats.elapsedMs = t - started;
      if (opts.durationMs !== undefined && stats.elapsedMs >= opts.durationMs) break;
      if (opts.count !== undefined && stats.sent >= opts.count) break;
      let due = dueBy(stats.elapsedMs, opts) - stats.sent;
      if (opts.count !== undefined) due = Math.min(due, opts.count - stats.sent);
      // One produce request per tick, never more than MAX_SEND: a generator that fell behind (a loaded machine)
      // would otherwise send its whole deficit at once, beyond the broker's message.max.bytes (MESSAGE_TOO_LARGE).
      due = Math.min(due, MAX_SEND);
      if (due <= 0) {
        await sleep(20);
        continue;
      }
      const messages = [];
      for (let i = 0; i < due; i++) {
        // Skewed: a few customers send most notifications (the square of a uniform number).
        const customer = 1 + Math.floor(customers * Math.random() ** 2);
        const late = Math.random() < lateFraction;
        const at = late ? t - Math.floor(1000 + Math.random() * (lateByMs - 1000)) : t;
        if (late) stats.late++;
        const value = type.toBuffer({
          customer_id: customer,
          message_id: randomUUID(),
          customer_name: customerName(customer),
          channel: CHANNELS[Math.floor(Math.random() * CHANNELS.length)]!,
          payload: JSON.stringify({ template: TEMPLATES[customer % TEMPLATES.length], locale: 'en', attempt: 1 }),
          event_datetime: at,
        });
        messages.push({ key: String(customer), value: Buffer.concat([header, value]) });
        if (at > stats.newestEventMs) stats.newestEventMs = at;
      }
      await producer.send({ topic, messages });
      stats.sent += messages.length;
      if (opts.onReport && now() - lastReport >= (opts.reportEveryMs ?? 5000)) {
        lastReport = now();
        stats.achievedRate = stats.sent / (Math.max(1, now() - started) / 1000);
        opts.onReport({ ...stats });
      }
    }
  } finally {
    await producer.disconnect();
  }
  stats.elapsedMs = now() - started;
  stats.achievedRate = stats.sent / (Math.max(1, stats.elapsedMs) / 1000);
  return stats;
}

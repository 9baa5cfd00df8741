import { randomUUID } from 'node:crypto';
import type { IHeaders, Kafka } from 'kafkajs';
import { TideError } from '../errors.ts';

/**
 * `tide lake dlq replay`: re-drive a sink's dead letters once their cause is fixed.
 *
 * Each dead letter (dead-letter.ts: the original key and value bytes, `tide.error.topic` and
 * `tide.error.partition` headers) is produced again to the partition it came from, and the running (or
 * next) sink reads it like any other message. Going through Kafka rather than writing the lake directly
 * keeps one writer per table and gives the re-driven message every step a message gets: decoding, schema
 * evolution, masks, delete markers, history.
 *
 * Order per key holds because silver and the history never apply by arrival: a change is applied only
 * when its (commit LSN, event index) is newer than the key's current row. A dead letter older than
 * silver's current row therefore changes neither silver nor the history's current version (bronze records
 * it, as the Kafka event it now is); a newer one is applied.
 *
 * Idempotent: how far the dead-letter topic was replayed is kept as the committed offsets of the group
 * `tide-dlq-replay-<sink>` (a group without members, written with the admin API after the messages are
 * acknowledged), so a second replay re-drives only dead letters written since. A crash between the two
 * re-drives the same messages once more: silver and the history ignore them (same positions), bronze
 * holds them twice under different Kafka offsets. Kafka transactions (sendOffsets) would close that
 * window; with kafkajs 2.2.4 against Kafka 4.4 the transactional offset commit did not show in the group.
 */
export interface ReplayOptions {
  kafka: Kafka;
  sinkName: string;
  deadLetterTopic: string;
  /** Whether a topic is one this sink reads (others are skipped: they do not belong to it). */
  isSinkTopic: (topic: string) => boolean;
  dryRun: boolean;
}

export interface DeadLetterRecord {
  /** Where it sits in the dead-letter topic. */
  dlqPartition: number;
  dlqOffset: string;
  /** Where it came from. */
  topic: string | undefined;
  partition: number | undefined;
  offset: string | undefined;
  reason: string;
  key: Buffer | null;
  value: Buffer | null;
}

export interface ReplayReport {
  group: string;
  /** Per dead-letter partition: the offsets read [from, to). */
  ranges: { partition: number; from: bigint; to: bigint }[];
  redriven: DeadLetterRecord[];
  skipped: { record: DeadLetterRecord; why: string }[];
}

export const replayGroup = (sinkName: string): string => `tide-dlq-replay-${sinkName}`;

const header = (headers: IHeaders | undefined, name: string): string | undefined => {
  const v = headers?.[name];
  const one = Array.isArray(v) ? v[0] : v;
  return one === undefined ? undefined : one.toString();
};

/** Read the dead letters not replayed yet, re-drive them (unless dryRun), and record how far it got. */
export async function replayDeadLetters(opts: ReplayOptions): Promise<ReplayReport> {
  const { kafka, deadLetterTopic: dlq } = opts;
  const group = replayGroup(opts.sinkName);
  const admin = kafka.admin();
  await admin.connect();
  try {
    const topics = await admin.listTopics();
    if (!topics.includes(dlq))
      throw new TideError(
        `kafka topic ${dlq}: the dead-letter topic does not exist (the sink creates it at start): check dead.letter.topic in the sink connector file`,
      );
    const ends = await admin.fetchTopicOffsets(dlq);
    const committed = (await admin.fetchOffsets({ groupId: group, topics: [dlq] }))[0]?.partitions ?? [];
    const ranges = ends
      .map((e) => {
        const done = BigInt(committed.find((c) => c.partition === e.partition)?.offset ?? '-1');
        const from = done >= 0n ? done : BigInt(e.low);
        return { partition: e.partition, from: from < BigInt(e.low) ? BigInt(e.low) : from, to: BigInt(e.high) };
      })
      .filter((r) => r.from < r.to);
    const report: ReplayReport = { group, ranges, redriven: [], skipped: [] };
    if (!ranges.length) return report;

    const records = await readRanges(kafka, dlq, ranges);
    for (const r of records) {
      const why =
        r.topic === undefined || r.partition === undefined
          ? 'no tide.error.topic / tide.error.partition header: not written by a Tide sink'
          : !opts.isSinkTopic(r.topic)
            ? `its topic ${r.topic} is not one this sink reads`
            : !topics.includes(r.topic)
              ? `its topic ${r.topic} no longer exists`
              : r.value === null
                ? 'a tombstone (nothing to apply)'
                : undefined;
      if (why) report.skipped.push({ record: r, why });
      else report.redriven.push(r);
    }
    if (opts.dryRun) return report;

    if (report.redriven.length) {
      const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
      await producer.connect();
      try {
        // In dead-letter order, to the partition the message came from (same key bytes, same partition as the source chose).
        await producer.sendBatch({
          acks: -1,
          topicMessages: [...new Set(report.redriven.map((r) => r.topic!))].map((topic) => ({
            topic,
            messages: report.redriven
              .filter((r) => r.topic === topic)
              .map((r) => ({
                key: r.key,
                value: r.value,
                partition: r.partition!,
                headers: { 'tide.replay.of': `${dlq}/${r.dlqPartition}@${r.dlqOffset}`, 'tide.replay.reason': r.reason },
              })),
          })),
        });
      } finally {
        await producer.disconnect();
      }
    }
    await admin.setOffsets({
      groupId: group,
      topic: dlq,
      partitions: ranges.map((r) => ({ partition: r.partition, offset: r.to.toString() })),
    });
    return report;
  } finally {
    await admin.disconnect();
  }
}

/** The dead letters in `ranges`, read by a throwaway consumer group (kafkajs consumers always join one). */
async function readRanges(kafka: Kafka, dlq: string, ranges: ReplayReport['ranges']): Promise<DeadLetterRecord[]> {
  const groupId = `tide-dlq-read-${randomUUID()}`;
  const consumer = kafka.consumer({ groupId, sessionTimeout: 10_000 });
  const out: DeadLetterRecord[] = [];
  const pending = new Map(ranges.map((r) => [r.partition, r]));
  await consumer.connect();
  try {
    await consumer.subscribe({ topics: [dlq], fromBeginning: true });
    let finish: () => void = () => undefined;
    const finished = new Promise<void>((resolve) => (finish = resolve));
    await consumer.run({
      autoCommit: false,
      eachMessage: async ({ partition, message }) => {
        const range = pending.get(partition);
        const offset = BigInt(message.offset);
        if (!range || offset < range.from) return;
        if (offset < range.to) {
          const p = header(message.headers, 'tide.error.partition');
          out.push({
            dlqPartition: partition,
            dlqOffset: message.offset,
            topic: header(message.headers, 'tide.error.topic'),
            partition: p === undefined ? undefined : Number(p),
            offset: header(message.headers, 'tide.error.offset'),
            reason: header(message.headers, 'tide.error.reason') ?? '',
            key: message.key,
            value: message.value,
          });
        }
        if (offset >= range.to - 1n) pending.delete(partition);
        if (!pending.size) finish();
      },
    });
    for (const r of ranges) consumer.seek({ topic: dlq, partition: r.partition, offset: r.from.toString() });
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new TideError(
              `kafka topic ${dlq}: could not read the dead letters up to offset ${ranges.map((r) => `${r.partition}:${r.to - 1n}`).join(', ')} within 120 s; nothing was re-driven. Is Kafka reachable (tide stack status)?`,
            ),
          ),
        120_000,
      );
    });
    try {
      await Promise.race([finished, timedOut]);
    } finally {
      clearTimeout(timer);
    }
  } finally {
    await consumer.disconnect();
    const admin = kafka.admin();
    await admin.connect();
    await admin.deleteGroups([groupId]).catch(() => undefined);
    await admin.disconnect();
  }
  return out.sort((a, b) => a.dlqPartition - b.dlqPartition || Number(BigInt(a.dlqOffset) - BigInt(b.dlqOffset)));
}

/**
 * Kafka side of the freshness benchmark (bench/sink-freshness.ts): switch a topic to LogAppendTime,
 * read its records back with an independent decoder (test/support/kafka.ts), and clean up the run's
 * topics, consumer groups and registry subjects.
 */
import type { Admin } from 'kafkajs';
import { kafka, registryClient } from '../test/support/kafka.ts';
import { BenchError, say } from './bench-common.ts';

export interface KafkaRecord {
  partition: number;
  offset: number;
  appendMs: number;
  commitMs: number;
}

/** The records of `topic` in [start, end) per partition, with LogAppendTime and source.ts_ms, decoded by the test decoder. */
export async function readRecords(
  topic: string,
  groupId: string,
  start: Map<number, number>,
  end: { partition: number; high: number }[],
): Promise<KafkaRecord[]> {
  const out: KafkaRecord[] = [];
  await forEachRecord(topic, groupId, start, end, (r) => void out.push(r));
  return out;
}

/**
 * Hand each record of `topic` in [start, end) per partition to `each`, as readRecords does, without keeping
 * them (a 15-minute run has millions). Returns how many were handed over; fails when they do not all
 * arrive within `timeoutMs`.
 */
export async function forEachRecord(
  topic: string,
  groupId: string,
  start: Map<number, number>,
  end: { partition: number; high: number }[],
  each: (r: KafkaRecord) => void,
  timeoutMs = 180_000,
): Promise<number> {
  const ends = new Map(end.map((p) => [p.partition, p.high]));
  const total = end.reduce((a, p) => a + p.high - (start.get(p.partition) ?? 0), 0);
  const registry = registryClient();
  const consumer = kafka().consumer({ groupId, maxBytes: 32 * 2 ** 20 });
  await consumer.connect();
  let seen = 0;
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    let resolveDone!: () => void;
    const done = new Promise<void>((r) => (resolveDone = r));
    await consumer.run({
      eachBatch: async ({ batch }) => {
        const from = start.get(batch.partition) ?? 0;
        const to = ends.get(batch.partition) ?? 0;
        for (const m of batch.messages) {
          const offset = Number(m.offset);
          if (offset < from || offset >= to || !m.value) continue;
          const v = (await registry.decode(m.value)) as { source: { ts_ms: number | bigint } };
          each({ partition: batch.partition, offset, appendMs: Number(m.timestamp), commitMs: Number(v.source.ts_ms) });
          seen++;
        }
        if (seen >= total) resolveDone();
      },
    });
    if (total === 0) resolveDone();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      done,
      new Promise<void>((_, reject) => {
        timer = setTimeout(
          () => reject(new BenchError('kafka read-back', `read ${seen} of ${total} records of ${topic} in ${timeoutMs / 1000} s`)),
          timeoutMs,
        );
      }),
    ]).finally(() => clearTimeout(timer));
    return seen;
  } finally {
    await consumer.disconnect();
  }
}

/** Drop the run's topics, consumer groups and registry subjects. */
export async function cleanKafka(admin: Admin, prefix: string, sinkName: string, groups: string[]): Promise<void> {
  const topics = (await admin.listTopics()).filter((t) => t.startsWith(`${prefix}.`) || t === `${sinkName}.dlq`);
  if (topics.length)
    await admin.deleteTopics({ topics }).catch((err: Error) => say(`could not delete topics ${topics.join(', ')}: ${err.message}`));
  await admin.deleteGroups(groups).catch((err: Error) => say(`could not delete consumer groups ${groups.join(', ')}: ${err.message}`));
  const registry = process.env.SCHEMA_REGISTRY_URL ?? 'http://127.0.0.1:58081/apis/ccompat/v7';
  try {
    const subjects = ((await (await fetch(`${registry}/subjects`)).json()) as string[]).filter((s) => s.startsWith(`${prefix}.`));
    for (const s of subjects) {
      await fetch(`${registry}/subjects/${encodeURIComponent(s)}`, { method: 'DELETE' });
      await fetch(`${registry}/subjects/${encodeURIComponent(s)}?permanent=true`, { method: 'DELETE' });
    }
  } catch (err) {
    say(`could not delete registry subjects ${prefix}.*: ${(err as Error).message}`);
  }
}

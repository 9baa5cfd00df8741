import type { Admin, ConfigResourceTypes } from 'kafkajs';
import type { Logger } from '../log.ts';

/** kafkajs' ConfigResourceTypes.TOPIC (Kafka's resource type 2): its CommonJS export is not visible to Node's ESM named imports. */
const TOPIC_RESOURCE = 2 as ConfigResourceTypes;
/**
 * What `acks=all` really protects. Tide's producers wait for every in-sync replica, but "all" is only as
 * many as the topic's replication factor, and the broker lets a write through with as few in-sync
 * replicas as `min.insync.replicas` allows: with a replication factor of 1, or min.insync.replicas of 1,
 * one lost disk or broker can lose acknowledged events (Kafka's documentation, "Replication" and the
 * min.insync.replicas topic config). Tide creates topics with the cluster's default replication factor
 * unless `topic.replication.factor` says otherwise, and says at start-up when the result is weak.
 */
export interface TopicDurability {
  topic: string;
  replicationFactor: number;
  /** undefined when the cluster did not answer DescribeConfigs. */
  minInsyncReplicas: number | undefined;
}

export interface DurabilityReport {
  brokers: number;
  topics: TopicDurability[];
  /** Topics below replication factor 3 or min.insync.replicas 2. */
  weak: TopicDurability[];
}

export const RECOMMENDED_REPLICATION_FACTOR = 3;
export const RECOMMENDED_MIN_INSYNC_REPLICAS = 2;

export function weakTopics(topics: TopicDurability[]): TopicDurability[] {
  return topics.filter(
    (t) =>
      t.replicationFactor < RECOMMENDED_REPLICATION_FACTOR ||
      (t.minInsyncReplicas !== undefined && t.minInsyncReplicas < RECOMMENDED_MIN_INSYNC_REPLICAS),
  );
}

/** Read the replication factor and min.insync.replicas of `topics` (existing ones) through a kafkajs admin. */
export async function readTopicDurability(admin: Admin, topics: string[]): Promise<DurabilityReport> {
  const cluster = await admin.describeCluster();
  const metadata = await admin.fetchTopicMetadata({ topics });
  const minIsr = new Map<string, number>();
  try {
    const described = await admin.describeConfigs({
      includeSynonyms: false,
      resources: topics.map((name) => ({ type: TOPIC_RESOURCE, name, configNames: ['min.insync.replicas'] })),
    });
    for (const r of described.resources) {
      const v = r.configEntries.find((e) => e.configName === 'min.insync.replicas')?.configValue;
      if (v !== undefined && v !== null) minIsr.set(r.resourceName, Number(v));
    }
  } catch {
    // Some Kafka-compatible services do not answer DescribeConfigs for every topic; the replication factor still counts.
  }
  const out = metadata.topics.map((t) => ({
    topic: t.name,
    replicationFactor: Math.min(...t.partitions.map((p) => p.replicas.length)),
    minInsyncReplicas: minIsr.get(t.name),
  }));
  return { brokers: cluster.brokers.length, topics: out, weak: weakTopics(out) };
}

/** Log the report once: a warning listing weak topics, or one info line on a single-broker cluster (the local stack). */
export function logTopicDurability(report: DurabilityReport, log: Logger): void {
  if (!report.weak.length) return;
  if (report.brokers === 1) {
    log.info(
      { brokers: 1, topics: report.weak.length },
      'single-broker Kafka cluster: every topic has one replica, so acks=all waits for that one broker only (fine for a local stack; use a cluster of 3 or more brokers in production)',
    );
    return;
  }
  log.warn(
    { topics: report.weak, brokers: report.brokers },
    `topics Tide writes have a replication factor under ${RECOMMENDED_REPLICATION_FACTOR} or min.insync.replicas under ${RECOMMENDED_MIN_INSYNC_REPLICAS}: acks=all then survives fewer broker failures than it seems. Raise the replication factor (kafka-reassign-partitions) and set min.insync.replicas=2 on these topics, or create them so before Tide starts`,
  );
}

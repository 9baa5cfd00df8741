import { describe, expect, it } from 'vitest';
import { logTopicDurability, weakTopics, type DurabilityReport } from '../../src/events/topic-durability.ts';
import type { Logger } from '../../src/log.ts';

/** Records what would be logged (the decision under test is which level and what it lists). */
function recorder() {
  const lines: { level: string; obj: unknown; msg: string }[] = [];
  const at = (level: string) => (obj: unknown, msg: string) => lines.push({ level, obj, msg });
  return { lines, log: { info: at('info'), warn: at('warn') } as unknown as Logger };
}

describe('topic durability', () => {
  const strong = { topic: 'a', replicationFactor: 3, minInsyncReplicas: 2 };
  const rf2 = { topic: 'b', replicationFactor: 2, minInsyncReplicas: 2 };
  const isr1 = { topic: 'c', replicationFactor: 3, minInsyncReplicas: 1 };
  const unknownIsr = { topic: 'd', replicationFactor: 3, minInsyncReplicas: undefined };

  it('calls a topic weak below replication factor 3 or min.insync.replicas 2 (an unreadable min.insync.replicas is not held against it)', () => {
    expect(weakTopics([strong, rf2, isr1, unknownIsr]).map((t) => t.topic)).toEqual(['b', 'c']);
  });

  it('warns once, listing the weak topics, on a multi-broker cluster', () => {
    const r = recorder();
    const report: DurabilityReport = { brokers: 3, topics: [strong, rf2, isr1], weak: [rf2, isr1] };
    logTopicDurability(report, r.log);
    expect(r.lines).toHaveLength(1);
    expect(r.lines[0]!.level).toBe('warn');
    expect(r.lines[0]!.obj).toEqual({ topics: [rf2, isr1], brokers: 3 });
    expect(r.lines[0]!.msg).toMatch(
      /replication factor under 3 or min.insync.replicas under 2: acks=all then survives fewer broker failures/,
    );
  });

  it('says it once at info level on a single broker (the local stack), and nothing when all is well', () => {
    const r = recorder();
    logTopicDurability({ brokers: 1, topics: [rf2], weak: [rf2] }, r.log);
    logTopicDurability({ brokers: 3, topics: [strong], weak: [] }, r.log);
    expect(r.lines.map((l) => l.level)).toEqual(['info']);
    expect(r.lines[0]!.msg).toMatch(/^single-broker Kafka cluster/);
  });
});

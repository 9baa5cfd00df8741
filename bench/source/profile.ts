/**
 * Where a Tide child's CPU went, from the V8 .cpuprofile that `node --cpu-prof` writes (bench/source-drain.ts
 * --profile): time per pipeline stage and per innermost Tide or package function.
 */
import { readFileSync } from 'node:fs';
import { round } from '../bench-common.ts';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

/**
 * Where the child's CPU went, from a V8 .cpuprofile: each sample goes to the stage of the innermost
 * frame that belongs to one (a Buffer copy inside kafkajs counts as Kafka, avsc called from the
 * envelope as Avro). `window` (CLOCK_MONOTONIC µs, as V8 and process.hrtime use) keeps only the
 * samples taken while the big transaction drained.
 */
const STAGES: [string, RegExp][] = [
  [
    'kafka produce (client, Tide producer and Produce request encoder)',
    /node_modules\/(kafkajs|@platformatic\/kafka|@platformatic\/dynamic-buffer|@node-rs\/crc32)\/|(src|dist\/\w+)\/events\/(kafka-producer|produce-request|idempotent-send|message-size|murmur2)\.[tj]s/,
  ],
  [
    'avro encode (envelope, type mapping, avsc)',
    /node_modules\/avsc\/|(src|dist\/\w+)\/events\/(envelope|avro-types|avro-writer|row-event-writer|schema-registry|transaction-events)\.[tj]s|(src|dist\/\w+)\/source\/(type-mapping|numeric-mapping|pg-text|pg-text-bytes|pg-numeric|pg-array)\.[tj]s/,
  ],
  [
    'pgoutput decode (pg-protocol, pgoutput decoder)',
    /node_modules\/(pg-protocol|pg)\/|output-plugins\/|(src|dist\/\w+)\/source\/(pgoutput-plugin|pgoutput-decoder)\.[tj]s/,
  ],
  [
    'per-event pipeline (replication stream, change handler, connector, publisher)',
    /node_modules\/(eventemitter2|pg-logical-replication)\/|(src|dist\/\w+)\/source\/(connector|publisher|lsn|change-handler|replication-stream)\.[tj]s/,
  ],
];

export function summarizeProfile(path: string, window?: [number, number]) {
  const prof = JSON.parse(readFileSync(path, 'utf8')) as {
    nodes: ProfileNode[];
    samples: number[];
    timeDeltas: number[];
    startTime: number;
  };
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const where = (u: string) => {
    const m = /node_modules\/(.*)$/.exec(u);
    const d = /\/dist\/\w+\/(.*)$/.exec(u); // the precompiled CLI (bin/cli-build.js): dist/<digest>/src/events/x.js is src/events/x.ts
    return m ? m[1]! : d ? d[1]!.replace(/^(?!src\/)/, 'src/') : u.includes('/src/') ? u.slice(u.indexOf('/src/') + 1) : u;
  };
  const stageOf = new Map<number, { stage: string; owner: string }>();
  const classify = (leaf: number) => {
    let hit = stageOf.get(leaf);
    if (hit) return hit;
    const fn = byId.get(leaf)!.callFrame.functionName;
    if (fn === '(garbage collector)') hit = { stage: 'gc', owner: 'gc' };
    else if (fn === '(idle)') hit = { stage: 'idle (waiting for Postgres or Kafka)', owner: 'idle' };
    else if (fn === '(program)') hit = { stage: 'v8 (program)', owner: 'program' };
    for (let id: number | undefined = leaf; !hit && id !== undefined; id = parent.get(id)) {
      const f = byId.get(id)!.callFrame;
      const stage = STAGES.find(([, re]) => re.test(f.url));
      if (stage) hit = { stage: stage[0], owner: `${f.functionName || '(anonymous)'} ${where(f.url)}:${f.lineNumber + 1}` };
    }
    hit ??= { stage: 'other (start-up, module loading, timers, status file)', owner: 'other' };
    stageOf.set(leaf, hit);
    return hit;
  };
  const perStage = new Map<string, number>();
  const perOwner = new Map<string, number>();
  let t = prof.startTime;
  let total = 0;
  prof.samples.forEach((s, i) => {
    const dt = prof.timeDeltas[i] ?? 0;
    t += dt;
    if (window && (t < window[0] || t > window[1])) return;
    const { stage, owner } = classify(s);
    perStage.set(stage, (perStage.get(stage) ?? 0) + dt);
    perOwner.set(owner, (perOwner.get(owner) ?? 0) + dt);
    total += dt;
  });
  const top = (m: Map<string, number>, k: number) =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, k)
      .map(([name, us]) => ({ name, ms: Math.round(us / 1000), pct: round((100 * us) / total, 1) }));
  return {
    window: window ? 'drain (first event to confirm)' : 'whole run',
    totalMs: Math.round(total / 1000),
    stages: top(perStage, 10),
    functions: top(perOwner, 25),
  };
}

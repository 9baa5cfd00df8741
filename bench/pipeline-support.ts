/**
 * Pieces of bench/pipeline-sustained.ts that hold no pipeline: a latency histogram with bounded memory
 * (a 15-minute run has ~10.8M changes, too many to keep), /proc samples of a child process (RSS, CPU),
 * the trend test behind "RSS flat", and a self-time summary of a V8 .cpuprofile.
 */
import { readFileSync } from 'node:fs';
import { round } from './bench-common.ts';

/**
 * Counts of latencies in fixed buckets of `resolutionMs` up to `maxMs` (above: the last bucket, and the
 * true maximum is kept apart). 1 ms buckets up to 20 minutes take 4.8 MB, whatever the number of values.
 */
export class Histogram {
  private readonly counts: Uint32Array;
  count = 0;
  max = -Infinity;
  negative = 0;
  constructor(
    private readonly resolutionMs = 1,
    maxMs = 20 * 60_000,
  ) {
    this.counts = new Uint32Array(Math.ceil(maxMs / resolutionMs) + 1);
  }

  add(ms: number): void {
    if (ms < 0) this.negative++;
    const i = Math.min(this.counts.length - 1, Math.max(0, Math.floor(ms / this.resolutionMs)));
    this.counts[i]!++;
    this.count++;
    if (ms > this.max) this.max = ms;
  }

  /** Nearest-rank percentile, to the bucket's upper edge (so never below the true value). */
  percentile(p: number): number | null {
    if (!this.count) return null;
    const rank = Math.max(1, Math.ceil((p / 100) * this.count));
    let seen = 0;
    for (let i = 0; i < this.counts.length; i++) {
      seen += this.counts[i]!;
      if (seen >= rank) return Math.min((i + 1) * this.resolutionMs, this.max);
    }
    return this.max;
  }

  summary() {
    return {
      count: this.count,
      p50ms: this.percentile(50),
      p95ms: this.percentile(95),
      p99ms: this.percentile(99),
      maxMs: this.count ? round(this.max, 1) : null,
      ...(this.negative ? { negative: this.negative } : {}),
    };
  }
}

const TICKS_PER_S = 100; // USER_HZ: /proc/<pid>/stat counts CPU time in 1/100 s on Linux

/** RSS (MiB) and CPU time so far (s) of a process, from /proc; null once it has exited. */
export function procSample(pid: number): { rssMiB: number; cpuS: number } | null {
  try {
    const kb = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    // Fields after the command name (which may hold spaces, so split after its closing parenthesis): utime is the 14th field, stime the 15th.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { rssMiB: round(Number(kb) / 1024, 1), cpuS: (Number(f[11]) + Number(f[12])) / TICKS_PER_S };
  } catch {
    return null;
  }
}

export interface ProcPoint {
  tS: number;
  rssMiB: number;
  cores: number;
}

/**
 * First minute vs last minute vs max of a child's RSS, and whether it is flat: the least-squares slope
 * of RSS over the run after its first minute, extrapolated over that span, grows by less than 10 % of the
 * first minute's mean (and less than 32 MiB). A heap that saw-tooths between collections is flat; one
 * that climbs minute after minute is not.
 */
export function rssTrend(points: ProcPoint[]) {
  if (!points.length) return null;
  const endS = points.at(-1)!.tS;
  const mean = (xs: number[]) => (xs.length ? round(xs.reduce((a, b) => a + b, 0) / xs.length, 1) : null);
  const first = points.filter((p) => p.tS <= 60).map((p) => p.rssMiB);
  const last = points.filter((p) => p.tS >= endS - 60).map((p) => p.rssMiB);
  const after = points.filter((p) => p.tS > 60);
  let slopePerMin: number | null = null;
  if (after.length >= 3) {
    const mx = after.reduce((a, p) => a + p.tS, 0) / after.length;
    const my = after.reduce((a, p) => a + p.rssMiB, 0) / after.length;
    const sxy = after.reduce((a, p) => a + (p.tS - mx) * (p.rssMiB - my), 0);
    const sxx = after.reduce((a, p) => a + (p.tS - mx) ** 2, 0);
    slopePerMin = sxx ? round((sxy / sxx) * 60, 2) : 0;
  }
  const spanMin = after.length ? (after.at(-1)!.tS - after[0]!.tS) / 60 : 0;
  const firstMean = mean(first);
  const growth = slopePerMin === null ? null : round(slopePerMin * spanMin, 1);
  return {
    firstMinuteMeanMiB: firstMean,
    lastMinuteMeanMiB: mean(last),
    maxMiB: Math.max(...points.map((p) => p.rssMiB)),
    slopeMiBPerMinute: slopePerMin,
    trendGrowthMiB: growth,
    flat: growth === null || firstMean === null ? null : growth < Math.min(0.1 * firstMean, 32),
    meanCores: mean(points.map((p) => p.cores)),
  };
}

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

/** Self time per function and per file (node_modules package or src/ file) of a .cpuprofile, top first. */
export function selfTime(path: string, top = 20) {
  const prof = JSON.parse(readFileSync(path, 'utf8')) as { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] };
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const where = (u: string) => {
    const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(u);
    if (m) return m[1]!;
    return u.includes('/src/') ? u.slice(u.indexOf('/src/') + 1) : u || '(native)';
  };
  const perFn = new Map<string, number>();
  const perFile = new Map<string, number>();
  let total = 0;
  prof.samples.forEach((s, i) => {
    const dt = prof.timeDeltas[i] ?? 0;
    const f = byId.get(s)!.callFrame;
    const file = f.functionName.startsWith('(') ? f.functionName : where(f.url);
    const fn = f.functionName.startsWith('(') ? f.functionName : `${f.functionName || '(anonymous)'} ${file}:${f.lineNumber + 1}`;
    perFn.set(fn, (perFn.get(fn) ?? 0) + dt);
    perFile.set(file, (perFile.get(file) ?? 0) + dt);
    total += dt;
  });
  const rank = (m: Map<string, number>) =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, us]) => ({ name, ms: Math.round(us / 1000), pct: round((100 * us) / total, 1) }));
  return { totalMs: Math.round(total / 1000), files: rank(perFile), functions: rank(perFn) };
}

import { recordCount, type AddAction } from '../delta/actions.ts';
import { deletedRatio } from './optimize.ts';

/**
 * Which files one step of a table's ongoing compaction rewrites (the sink runs one step after a silver
 * merge: silver-compaction.ts). Size-tiered, as LSM stores compact: a file's tier is the power of
 * `fanout` its row count is of the step's base size (`maxStepRows / fanout²`), so a flush's small file is
 * in tier 0 and `fanout` of them merged make a file one tier up. When a tier holds `fanout` files, the
 * smallest of them (at most `fanout`, at most `maxStepRows` live rows together) are merged into one. Files of
 * `maxStepRows / 2` rows or more are full: never merged again, only purged. When no tier is due, the files
 * whose deletion vector deletes more than `maxDeletedRatio` of their rows are rewritten without them (most
 * deleted first, as many as fit in `maxStepRows`). A step never rewrites more than `maxStepRows` live rows, so
 * its cost in the flush loop is bounded; a file larger than that (an initial load, Spark) is left alone.
 *
 * With uniformly random updates every file gets a new vector in nearly every flush, so the per-file work of a
 * merge (vectors, remove+add pairs, snapshot, checkpoints, key index) follows the file count: this keeps it
 * about `(fanout - 1) × tiers + live rows / (maxStepRows / 2)` files instead of one more per flush.
 */
export interface CompactionPolicy {
  /** Files merged at once, and the size ratio between tiers (≥ 2). */
  fanout: number;
  /** Live rows one step rewrites at most (its latency bound); also the largest file it writes. */
  maxStepRows: number;
  /** Files whose vector deletes more than this share of their rows are purged (0-1). */
  maxDeletedRatio: number;
}

export interface CompactionPlan {
  files: AddAction[];
  /** 'merge': a tier's small files; 'purge': files with many deleted rows. */
  reason: 'merge' | 'purge';
  /** Live rows the step rewrites. */
  liveRows: number;
  /** The tier merged (for 'merge'). */
  tier?: number;
}

/** Rows of a file that its deletion vector does not delete (numRecords unknown: undefined). */
export function liveRows(f: AddAction): number | undefined {
  const n = recordCount(f);
  return n === undefined ? undefined : n - (f.deletionVector?.cardinality ?? 0);
}

/** The files of the next step, or undefined when none is due. Only unpartitioned tables (silver) are planned. */
export function planCompaction(files: AddAction[], policy: CompactionPolicy): CompactionPlan | undefined {
  const { fanout, maxStepRows, maxDeletedRatio } = policy;
  const base = Math.max(1, maxStepRows / (fanout * fanout));
  const tiers = new Map<number, { f: AddAction; live: number }[]>();
  const purgeable: { f: AddAction; live: number; ratio: number }[] = [];
  for (const f of files) {
    const n = recordCount(f);
    const live = liveRows(f);
    if (n === undefined || live === undefined || live > maxStepRows) continue; // unknown size, or too big for one step
    const ratio = deletedRatio(f);
    if (ratio > maxDeletedRatio) purgeable.push({ f, live, ratio });
    if (n >= maxStepRows / 2) continue; // full
    const tier = Math.max(0, Math.floor(Math.log(n / base) / Math.log(fanout)));
    const t = tiers.get(tier);
    if (t) t.push({ f, live });
    else tiers.set(tier, [{ f, live }]);
  }
  for (const tier of [...tiers.keys()].sort((a, b) => a - b)) {
    const members = tiers.get(tier)!;
    if (members.length < fanout) continue;
    members.sort((a, b) => a.live - b.live);
    const picked = take(members, fanout, maxStepRows);
    if (picked.files.length >= 2) return { ...picked, reason: 'merge', tier };
  }
  if (!purgeable.length) return undefined;
  purgeable.sort((a, b) => b.ratio - a.ratio);
  const picked = take(purgeable, Infinity, maxStepRows);
  return picked.files.length ? { ...picked, reason: 'purge' } : undefined;
}

function take(candidates: { f: AddAction; live: number }[], most: number, maxRows: number): { files: AddAction[]; liveRows: number } {
  const files: AddAction[] = [];
  let rows = 0;
  for (const c of candidates) {
    if (files.length >= most || rows + c.live > maxRows) break;
    files.push(c.f);
    rows += c.live;
  }
  return { files, liveRows: rows };
}

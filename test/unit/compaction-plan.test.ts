import { describe, expect, it } from 'vitest';
import type { AddAction } from '../../src/lake/delta/actions.ts';
import { planCompaction, type CompactionPolicy } from '../../src/lake/maintenance/compaction-plan.ts';

/** The sink's compaction policy (compaction-plan.ts) on made-up file lists: which files one step takes. */
const policy: CompactionPolicy = { fanout: 4, maxStepRows: 1000, maxDeletedRatio: 0.3 };
let n = 0;
const file = (rows: number, deleted = 0): AddAction => ({
  path: `part-${++n}.parquet`,
  partitionValues: {},
  size: rows * 100,
  modificationTime: 0,
  dataChange: true,
  stats: JSON.stringify({ numRecords: rows }),
  ...(deleted ? { deletionVector: { storageType: 'u', pathOrInlineDv: 'x', offset: 1, sizeInBytes: 10, cardinality: deleted } } : {}),
});

describe('planCompaction', () => {
  it('takes nothing while no tier holds fanout files and no file passes the deleted ratio', () => {
    expect(planCompaction([file(50), file(60), file(70), file(400, 100)], policy)).toBeUndefined();
  });

  it('merges the smallest files of the lowest full tier, at most fanout of them', () => {
    // base = 1000 / 4² = 62.5: tier 0 below 250 rows, tier 1 from 250 to 499, full (never merged) from 500.
    const small = [file(90), file(20), file(40), file(30), file(10)];
    const plan = planCompaction([file(600), file(300), ...small], policy)!;
    expect(plan.reason).toBe('merge');
    expect(plan.tier).toBe(0);
    expect(plan.files.map((f) => f.path)).toEqual([small[4], small[1], small[3], small[2]].map((f) => f!.path));
    expect(plan.liveRows).toBe(100);
  });

  it('counts live rows against the step bound and stops before passing it', () => {
    const mid = [file(300), file(320), file(340), file(360)];
    const plan = planCompaction(mid, policy)!;
    expect(plan.tier).toBe(1);
    expect(plan.files.map((f) => f.path)).toEqual(mid.slice(0, 3).map((f) => f.path));
    expect(plan.liveRows).toBe(960);
    // Deleted rows do not count: with vectors the fourth fits too.
    const decayed = [file(300, 100), file(320, 100), file(340, 100), file(360, 100)];
    expect(planCompaction(decayed, policy)!.files).toHaveLength(4);
  });

  it('purges the most deleted files past the ratio when no tier is due, within the bound; full and too big files only so', () => {
    const a = file(900, 450);
    const b = file(800, 600);
    const c = file(600, 100);
    const huge = file(5000, 3000); // 2000 live rows: more than one step may rewrite
    const plan = planCompaction([a, b, c, huge, file(100)], policy)!;
    expect(plan.reason).toBe('purge');
    expect(plan.files.map((f) => f.path)).toEqual([b.path, a.path]);
    expect(plan.liveRows).toBe(650);
  });

  it('leaves files without numRecords alone', () => {
    const unknown = { ...file(10), stats: undefined };
    expect(planCompaction([unknown, unknown, unknown, unknown], policy)).toBeUndefined();
  });
});

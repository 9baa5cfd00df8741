import type { Action } from '../lake/delta/actions.ts';
import type { DeltaTable } from '../lake/delta/delta-table.ts';
import { DeltaConflictError } from '../lake/delta/delta-errors.ts';
import { planCompaction, type CompactionPlan, type CompactionPolicy } from '../lake/maintenance/compaction-plan.ts';
import type { ParquetEngine } from '../lake/parquet/parquet-engine.ts';
import type { SinkConfig } from '../config/sink-config.ts';
import type { Logger } from '../log.ts';
import { usesDeletionVectors } from './silver-dv-merge.ts';
import { keyIndexOf } from './silver-key-index.ts';

/**
 * One bounded compaction step of a silver table with deletion vectors, run by the sink right after its merge
 * commit (README "Deletion vectors", "Compaction between flushes"). The policy (compaction-plan.ts) picks a
 * tier's small files or files with many deleted rows; their live rows (the view leaves out what the vectors
 * delete) are written to one new file, and the commit removes the old (file, vector) pairs and adds it, all
 * with `dataChange: false` (PROTOCOL.md "Add File and Remove File": a rearrangement of data, as OPTIMIZE
 * commits) and no txn: the rows keep their `_commit_lsn`/`_event_index`, so replays stay no-ops.
 *
 * A concurrent writer (a second sink worker, `tide lake optimize`, Spark) that removed one of the same files
 * wins: the commit fails with DeltaConflictError, the step is skipped (its written file deleted) and the
 * flush goes on; the next step plans again on the newer snapshot. The key index forgets the removed files at
 * once; its next `sync` reads the new file (key, position and version columns only).
 */

export const DEFAULT_COMPACTION_POLICY: CompactionPolicy = { fanout: 8, maxStepRows: 500_000, maxDeletedRatio: 0.3 };

export interface CompactionStep {
  plan: CompactionPlan;
  filesOut: number;
  /** The commit's version; undefined when a concurrent commit won (the step was skipped). */
  version?: number;
  /** Why it was skipped. */
  conflict?: string;
  ms: number;
}

export async function compactSilver(
  engine: ParquetEngine,
  table: DeltaTable,
  policy: CompactionPolicy,
  log?: Logger,
): Promise<CompactionStep | undefined> {
  if (!usesDeletionVectors(table) || table.partitionColumns.length) return undefined;
  const plan = planCompaction(table.files(), policy);
  if (!plan) return undefined;
  const started = performance.now();
  const schema = table.schema;
  const cols = schema.columns.map((c) => `"${c.name.replace(/"/g, '""')}"`).join(', ');
  const view = 'tide_compact_input';
  await engine.createView(view, table.store, table.root, plan.files, schema, []);
  // At most maxStepRows live rows: one file, COPY'd straight from the view (no work table).
  const adds = await engine.writeFiles(`SELECT ${cols} FROM ${view}`, {
    store: table.store,
    root: table.root,
    schema,
    targetFileRows: policy.maxStepRows,
    maxRows: plan.liveRows,
    dataChange: false,
  });
  const now = Date.now();
  const actions: Action[] = [
    ...plan.files.map((f) => ({
      remove: { path: f.path, deletionTimestamp: now, dataChange: false, partitionValues: f.partitionValues, size: f.size },
    })),
    ...adds.map((add) => ({ add })),
  ];
  const step: CompactionStep = { plan, filesOut: adds.length, ms: 0 };
  try {
    step.version = await table.commit(actions, {
      operation: 'OPTIMIZE',
      parameters: { predicate: '[]', auto: true, reason: plan.reason, maxStepRows: policy.maxStepRows },
    });
    const index = keyIndexOf(table);
    if (index && index !== 'off') index.committed([], actions);
  } catch (err) {
    if (!(err instanceof DeltaConflictError)) throw err;
    step.conflict = err.reason;
    // Nothing references the new files: delete them now rather than leave them to VACUUM.
    for (const a of adds) await table.store.delete(`${table.root}/${decodeURIComponent(a.path)}`).catch(() => undefined);
  }
  step.ms = Math.round(performance.now() - started);
  log?.debug(
    {
      table: table.label,
      reason: plan.reason,
      filesIn: plan.files.length,
      filesOut: step.filesOut,
      rows: plan.liveRows,
      ms: step.ms,
      version: step.version,
      ...(step.conflict ? { skipped: step.conflict } : {}),
    },
    step.conflict ? 'compaction skipped: a concurrent commit removed one of its files' : 'compacted',
  );
  return step;
}

/** The compaction policy of the sink's settings; undefined when `silver.compaction.max.step.rows` is 0 (off). */
export function compactionPolicy(config: SinkConfig): CompactionPolicy | undefined {
  const maxStepRows = config['silver.compaction.max.step.rows'];
  if (maxStepRows <= 0) return undefined;
  return { maxStepRows, fanout: config['silver.compaction.fanout'], maxDeletedRatio: config['silver.compaction.max.deleted.ratio'] };
}

/**
 * The sink's step after a silver merge commit (table-sink.ts). It never fails the flush, whose merge is
 * committed already: a lost race is skipped (logged at debug), any other error is logged as a warning and
 * the step is left to the next flush.
 */
export async function compactAfterMerge(engine: ParquetEngine, table: DeltaTable, config: SinkConfig, log: Logger): Promise<void> {
  const policy = compactionPolicy(config);
  if (!policy) return;
  try {
    await compactSilver(engine, table, policy, log);
  } catch (err) {
    log.warn(
      { table: table.label, err },
      `${table.label}: a compaction step failed and is left to the next flush (the merge is committed); set silver.compaction.max.step.rows = 0 to turn compaction off if it keeps failing`,
    );
  }
}

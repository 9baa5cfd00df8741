import { recordCount, type Action, type AddAction } from '../delta/actions.ts';
import type { DeltaTable } from '../delta/delta-table.ts';
import type { ParquetEngine } from '../parquet/parquet-engine.ts';

/**
 * OPTIMIZE (bin-packing compaction): per partition, files smaller than `minFileBytes` are read and
 * rewritten into as few files as possible, in one commit whose remove and add actions carry
 * dataChange=false — readers and streaming consumers see no new data, and appends committed
 * meanwhile do not conflict (they only add). A concurrent merge that removed one of the same files
 * does conflict; the commit then fails with DeltaConflictError and nothing changes (run it again).
 *
 * Files with a deletion vector that deletes more than `maxDeletedRowsRatio` of their rows (Delta's
 * `optimize.maxDeletedRowsRatio`, default 0.05) are rewritten too, whatever their size and even
 * alone: the rewrite leaves out the deleted rows and its adds carry no vector (the purge), and the
 * old (file, vector) is removed. VACUUM later deletes the old files and vector files.
 */
export interface OptimizeOptions {
  /** Files below this size are compacted (default 64 MiB). */
  minFileBytes?: number;
  /** Rows per output file (default 1,000,000). */
  targetFileRows?: number;
  /** Files whose deletion vector deletes more than this share of their rows are rewritten (default 0.05). */
  maxDeletedRowsRatio?: number;
}

/** Delta's default `spark.databricks.delta.optimize.maxDeletedRowsRatio` (DeltaSQLConf.scala). */
export const DEFAULT_MAX_DELETED_ROWS_RATIO = 0.05;

/** The share of a file's rows its deletion vector deletes (0 without one; 1 when numRecords is unknown). */
export function deletedRatio(f: AddAction): number {
  const dv = f.deletionVector;
  if (!dv) return 0;
  const n = recordCount(f);
  return n ? dv.cardinality / n : 1;
}

export interface OptimizeResult {
  table: string;
  partitions: number;
  filesRemoved: number;
  filesAdded: number;
  /** Files rewritten because of their deletion vectors (part of filesRemoved). */
  purged: number;
  bytesBefore: number;
  bytesAfter: number;
  version?: number;
}

export async function optimizeTable(engine: ParquetEngine, table: DeltaTable, opts: OptimizeOptions = {}): Promise<OptimizeResult> {
  const minBytes = opts.minFileBytes ?? 64 << 20;
  const maxRatio = opts.maxDeletedRowsRatio ?? DEFAULT_MAX_DELETED_ROWS_RATIO;
  const groups = new Map<string, AddAction[]>();
  for (const f of table.files()) {
    const purged = deletedRatio(f) > maxRatio;
    if (f.size >= minBytes && !purged) continue;
    const key = JSON.stringify(table.partitionColumns.map((c) => f.partitionValues[c] ?? null));
    const g = groups.get(key);
    if (g) g.push(f);
    else groups.set(key, [f]);
  }
  const result: OptimizeResult = {
    table: table.root,
    partitions: 0,
    filesRemoved: 0,
    filesAdded: 0,
    purged: 0,
    bytesBefore: 0,
    bytesAfter: 0,
  };
  const actions: Action[] = [];
  const now = Date.now();
  const schema = table.schema;
  const cols = schema.columns.map((c) => `"${c.name.replace(/"/g, '""')}"`).join(', ');
  for (const files of groups.values()) {
    const purging = files.filter((f) => deletedRatio(f) > maxRatio).length;
    if (files.length < 2 && !purging) continue; // a lone small file without deleted rows gains nothing
    await engine.createView('optimize_input', table.store, table.root, files, schema, table.partitionColumns);
    const adds = await engine.writeFiles(`SELECT ${cols} FROM optimize_input`, {
      store: table.store,
      root: table.root,
      schema,
      partitionColumns: table.partitionColumns,
      targetFileRows: opts.targetFileRows,
      dataChange: false,
    });
    for (const f of files)
      actions.push({
        remove: { path: f.path, deletionTimestamp: now, dataChange: false, partitionValues: f.partitionValues, size: f.size },
      });
    actions.push(...adds.map((add) => ({ add })));
    result.partitions++;
    result.purged += purging;
    result.filesRemoved += files.length;
    result.filesAdded += adds.length;
    result.bytesBefore += files.reduce((n, f) => n + f.size, 0);
    result.bytesAfter += adds.reduce((n, f) => n + f.size, 0);
  }
  if (!actions.length) return result;
  result.version = await table.commit(actions, {
    operation: 'OPTIMIZE',
    parameters: { predicate: '[]', targetSize: String(minBytes) },
  });
  return result;
}

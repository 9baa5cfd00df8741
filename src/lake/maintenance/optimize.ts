import type { Action, AddAction } from '../delta/actions.ts';
import type { DeltaTable } from '../delta/delta-table.ts';
import type { ParquetEngine } from '../parquet/parquet-engine.ts';

/**
 * OPTIMIZE (bin-packing compaction): per partition, files smaller than `minFileBytes` are read and
 * rewritten into as few files as possible, in one commit whose remove and add actions carry
 * dataChange=false — readers and streaming consumers see no new data, and appends committed
 * meanwhile do not conflict (they only add). A concurrent merge that removed one of the same files
 * does conflict; the commit then fails with DeltaConflictError and nothing changes (run it again).
 */
export interface OptimizeOptions {
  /** Files below this size are compacted (default 64 MiB). */
  minFileBytes?: number;
  /** Rows per output file (default 1,000,000). */
  targetFileRows?: number;
}

export interface OptimizeResult {
  table: string;
  partitions: number;
  filesRemoved: number;
  filesAdded: number;
  bytesBefore: number;
  bytesAfter: number;
  version?: number;
}

export async function optimizeTable(engine: ParquetEngine, table: DeltaTable, opts: OptimizeOptions = {}): Promise<OptimizeResult> {
  const minBytes = opts.minFileBytes ?? 64 << 20;
  const groups = new Map<string, AddAction[]>();
  for (const f of table.files()) {
    if (f.size >= minBytes) continue;
    const key = JSON.stringify(table.partitionColumns.map((c) => f.partitionValues[c] ?? null));
    const g = groups.get(key);
    if (g) g.push(f);
    else groups.set(key, [f]);
  }
  const result: OptimizeResult = { table: table.root, partitions: 0, filesRemoved: 0, filesAdded: 0, bytesBefore: 0, bytesAfter: 0 };
  const actions: Action[] = [];
  const now = Date.now();
  const schema = table.schema;
  const cols = schema.columns.map((c) => `"${c.name.replace(/"/g, '""')}"`).join(', ');
  for (const files of groups.values()) {
    if (files.length < 2) continue; // a lone small file gains nothing
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

import { assertWritable } from '../delta/protocol-check.ts';
import type { DeltaTable } from '../delta/delta-table.ts';
import { dvRelativePath, type DeletionVectorDescriptor } from '../delta/deletion-vector.ts';

/**
 * VACUUM: delete data files that no version within the retention period references.
 * A file is deleted when it is
 *  - not part of the current snapshot, and
 *  - not removed within the retention (a remove tombstone newer than the cutoff keeps it: time travel
 *    and readers still on an older snapshot need it), and
 *  - older than the cutoff itself (so a writer's freshly written, not yet committed file survives).
 * That covers files replaced by merges, optimize and overwrites, and the orphans a crash leaves between
 * writing a data file and committing it. Deletion vector files (`deletion_vector_<uuid>.bin`) follow
 * the same rule: kept while an active file or a tombstone within the retention names them. The log (`_delta_log/`) is never touched. Follows the
 * protocol's VACUUM description (PROTOCOL.md, "Add File and Remove File": tombstones and retention).
 */
export interface VacuumOptions {
  retainHours: number;
  dryRun?: boolean;
  now?: number;
}

export interface VacuumResult {
  deleted: string[];
  bytes: number;
}

export async function vacuumTable(table: DeltaTable, opts: VacuumOptions): Promise<VacuumResult> {
  const now = opts.now ?? Date.now();
  const cutoff = now - opts.retainHours * 3_600_000;
  await table.refresh();
  // A table feature Tide does not know may reference files in ways it cannot see (deletion vectors,
  // sidecar checkpoints): deleting what looks unreferenced would lose data. Delta's VACUUM is a writer too.
  assertWritable(table.label, table.protocol);
  const keep = new Set(table.files().map((f) => decodeURIComponent(f.path)));
  const keepVector = (dv: DeletionVectorDescriptor | undefined) => {
    const rel = dv && dvRelativePath(dv);
    if (rel) keep.add(rel);
  };
  for (const f of table.files()) keepVector(f.deletionVector);
  for (const t of table.tombstones())
    if (t.deletionTimestamp > cutoff) {
      keep.add(decodeURIComponent(t.path));
      keepVector(t.deletionVector);
    }
  const prefix = `${table.root}/`;
  const result: VacuumResult = { deleted: [], bytes: 0 };
  for (const o of await table.store.list(prefix)) {
    const rel = o.path.slice(prefix.length);
    if (rel.startsWith('_delta_log/')) continue;
    const base = rel.slice(rel.lastIndexOf('/') + 1);
    if (base.startsWith('.') || base.startsWith('_')) continue; // hidden files are not Delta's (Spark's _SUCCESS, .crc)
    if (keep.has(rel) || o.modified >= cutoff) continue;
    result.deleted.push(rel);
    result.bytes += o.size;
  }
  if (!opts.dryRun) for (const rel of result.deleted) await table.store.delete(`${prefix}${rel}`);
  return result;
}

import { recordCount, type Action, type AddAction } from '../lake/delta/actions.ts';
import { DeletionVectorReader, unionRowIndexes, writeDeletionVectors, type SerializedVector } from '../lake/delta/deletion-vector.ts';
import type { DeltaTable } from '../lake/delta/delta-table.ts';
import { DeltaConflictError } from '../lake/delta/delta-errors.ts';
import { declaresDeletionVectors, withDeletionVectors } from '../lake/delta/protocol-check.ts';
import type { Logger } from '../log.ts';
import type { LakeSchema } from '../lake/lake-schema.ts';
import type { DataFile, ParquetEngine } from '../lake/parquet/parquet-engine.ts';
import { localPaths } from '../lake/parquet/table-view.ts';
import { SILVER_META } from './table-layout.ts';
import { dropDeletedHits } from './dv-hits.ts';
import type { IndexHit } from './silver-key-index.ts';

/**
 * A silver merge with deletion vectors (PROTOCOL.md "Deletion Vectors"): the rows a batch changes
 * are marked deleted in the files that hold them, and their new versions (and new keys) go to new
 * files. No existing file is rewritten.
 *
 *  1. DuckDB reads only the key, `_commit_lsn` and `_event_index` columns (and each row's file and
 *     `file_row_number`) of the candidate files (file statistics prune them), semi-joined with the
 *     batch: the hits. Hits that a file's current vector already deletes are dropped.
 *  2. A change applies to its key's live row when it is newer (replays are no-ops); those rows' positions
 *     go into the files' vectors (old vector ∪ new rows), written as one `deletion_vector_<uuid>.bin`.
 *  3. The new rows come from the changes; only a change that leaves columns out (unchanged TOAST)
 *     reads its old row, by (file, row index). A file all of whose rows end up deleted is removed.
 *  4. Each touched file is removed with its old vector and re-added with the new one, in the
 *     same commit ("Writer Requirement for Deletion Vectors": the add keeps the file's numRecords;
 *     its min/max become wide bounds, `tightBounds: false`).
 */

export const ENABLE_DELETION_VECTORS = 'delta.enableDeletionVectors';

/** Whether merges into this table write deletion vectors: the table declares the feature and enables it. */
export function usesDeletionVectors(table: DeltaTable): boolean {
  return declaresDeletionVectors(table.protocol) && table.metadata.configuration[ENABLE_DELETION_VECTORS]?.trim().toLowerCase() === 'true';
}

/**
 * Make the table's `delta.enableDeletionVectors` match the sink's setting, in one commit (as Spark's
 * `ALTER TABLE … SET TBLPROPERTIES` does). Turning it on for a table that does not declare the
 * feature upgrades its protocol to reader 3 / writer 7 with `deletionVectors` (readers then need
 * deletion vector support), and says so in the log. Turning it off only sets the property to false:
 * the protocol cannot go back, and the vectors already written stay valid. Another worker doing
 * the same at once is a conflict: the table is re-read and checked again.
 */
export async function alignDeletionVectors(table: DeltaTable, wanted: boolean, log: Logger): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    const enabled = table.metadata.configuration[ENABLE_DELETION_VECTORS]?.trim().toLowerCase() === 'true';
    if (wanted === usesDeletionVectors(table) && (wanted || !enabled)) return;
    const actions: Action[] = [];
    if (wanted && !declaresDeletionVectors(table.protocol)) {
      const protocol = withDeletionVectors(table.protocol);
      actions.push({ protocol });
      log.info(
        { table: table.label, from: table.protocol, to: protocol },
        `upgrading the Delta protocol of ${table.label} to reader version 3 / writer version 7 with the table feature deletionVectors (delta.enableDeletionVectors): its readers must support deletion vectors from now on`,
      );
    }
    const configuration = { ...table.metadata.configuration, [ENABLE_DELETION_VECTORS]: String(wanted) };
    actions.push({ metaData: { ...table.metadata, configuration } });
    try {
      await table.commit(actions, {
        operation: 'SET TBLPROPERTIES',
        parameters: { properties: JSON.stringify({ [ENABLE_DELETION_VECTORS]: String(wanted) }) },
      });
      log.info({ table: table.label }, `${table.label}: ${ENABLE_DELETION_VECTORS} = ${wanted}`);
      return;
    } catch (e) {
      if (!(e instanceof DeltaConflictError) || attempt >= 5) throw e;
      await table.refresh();
    }
  }
}

const q = (name: string): string => `"${name.replace(/"/g, '""')}"`;
const lit = (s: string): string => `'${s.replace(/'/g, "''")}'`;

export interface DvMergeResult {
  actions: Action[];
  adds: DataFile[];
  /** Files that got a new deletion vector (or were removed when every row was deleted). */
  touched: number;
  /** Rows marked deleted by this merge. */
  deletedRows: number;
}

export async function mergeWithDeletionVectors(
  engine: ParquetEngine,
  table: DeltaTable,
  schema: LakeSchema,
  keyColumns: string[],
  candidates: AddAction[],
  staged: string,
  /** A SQL condition on `c` (the change) that keeps a new key's insert; '' for none (delete markers). */
  insertFilter: string,
  targetFileRows: number,
  /** The changed keys' live rows from the key index (silver-key-index.ts): no file is scanned for them. */
  indexHits?: IndexHit[],
  /** The staged batch's row count: no more rows than this are written (one per change at most), so up to `targetFileRows` need no work table. */
  stagedRows?: number,
): Promise<DvMergeResult> {
  const HITS = 'tide_dv_hits';
  let hits = HITS;
  const on = (a: string, b: string) => keyColumns.map((k) => `${a}.${q(k)} = ${b}.${q(k)}`).join(' AND ');
  const newer = `(c._commit_lsn > h._commit_lsn OR (c._commit_lsn = h._commit_lsn AND c._event_index > h._event_index))`;
  // Each file the merge touches by an id (`__f` in SQL): its local path where DuckDB reads it, else its log path.
  const byLocal = new Map<string, AddAction>();
  const localOf = new Map<string, string>();
  const read = indexHits ? filesToRead(indexHits) : candidates;
  const locals = await localPaths(table.store, table.root, read);
  read.forEach((f, i) => {
    byLocal.set(locals[i]!, f);
    localOf.set(f.path, locals[i]!);
  });
  // With the key index no other file is read: it knows the rows' positions, and the vectors are read by
  // descriptor. Their log paths (relative, never a local path) name them, so a merge resolves (for an object
  // store: downloads) no file it only marks rows deleted in.
  for (const h of indexHits ?? [])
    if (!localOf.has(h.file.path)) {
      byLocal.set(h.file.path, h.file);
      localOf.set(h.file.path, h.file.path);
    }
  const reader = new DeletionVectorReader(table.store, table.root, table.label);
  await engine.run(`DROP TABLE IF EXISTS ${HITS}`);
  try {
    if (indexHits) {
      // The key index found the live rows: staged column by column, that table is the hits (they hold no row a vector deletes).
      hits = await stageIndexHits(engine, schema, keyColumns[0]!, indexHits, localOf);
    } else if (byLocal.size) {
      const list = [...byLocal.keys()].map(lit).join(', ');
      const keys = keyColumns.map((k) => `f.${q(k)}`).join(', ');
      await engine.run(
        `CREATE TEMP TABLE ${hits} AS SELECT f.filename AS __f, f.file_row_number AS __r, ${keys}, f._commit_lsn, f._event_index ` +
          `FROM read_parquet([${list}], filename = true, file_row_number = true, union_by_name = true) f ` +
          `WHERE EXISTS (SELECT 1 FROM ${staged} c WHERE ${on('f', 'c')})`,
      );
      // Hits in rows a vector already deletes are old versions: drop them (only files with hits and a vector are read).
      await dropDeletedHits(engine, table, hits, byLocal);
    } else {
      const keys = keyColumns.map((k) => `c.${q(k)}`).join(', ');
      await engine.run(
        `CREATE TEMP TABLE ${hits} AS SELECT ''::VARCHAR AS __f, 0::BIGINT AS __r, ${keys}, c._commit_lsn, c._event_index FROM ${staged} c WHERE false`,
      );
    }
    // The live rows the batch replaces or deletes.
    const applied = `(SELECT h.__f, h.__r, c.* FROM ${hits} h JOIN ${staged} c ON ${on('h', 'c')} WHERE ${newer})`;
    // One row per touched file with its replaced row indexes as a list: far fewer values to bring into JS than a row each.
    // With the key index the hits and their changes are in JS already: no query (it was ~15% of a 10k-change commit).
    const perFile = indexHits
      ? appliedPerFile(indexHits, localOf)
      : await engine.query(
          `SELECT __f, list(__r ORDER BY __r) AS rows, bool_or(len(_unchanged) > 0) AS toast FROM ${applied} a GROUP BY __f`,
        );
    const names = schema.columns.map((c) => q(c.name));
    const meta = new Set(SILVER_META.map((c) => c.name));
    const toast = perFile.filter((p) => p.toast === true);
    let updated: string;
    if (toast.length) {
      // Some changes lack columns (unchanged TOAST): read their old rows by position, from their files only.
      const files = [...new Set(toast.map((p) => String(p.__f)))].map((l) => byLocal.get(l)!);
      await engine.createView('tide_dv_old', table.store, table.root, files, schema, [], { positions: true });
      const cols = schema.columns.map((col) => {
        const name = q(col.name);
        if (meta.has(col.name)) return `a.${name}`;
        return `CASE WHEN list_contains(a._unchanged, ${lit(col.name)}) THEN o.${name} ELSE a.${name} END AS ${name}`;
      });
      updated =
        `SELECT ${cols.join(', ')} FROM ${applied} a LEFT JOIN tide_dv_old o ` +
        `ON o.__tide_file = a.__f AND o.__tide_row = a.__r WHERE NOT a._deleted`;
    } else {
      updated = `SELECT ${names.map((n) => `a.${n}`).join(', ')} FROM ${applied} a WHERE NOT a._deleted`;
    }
    const inserted = `SELECT ${names.map((n) => `c.${n}`).join(', ')} FROM ${staged} c WHERE NOT c._deleted AND NOT EXISTS (SELECT 1 FROM ${hits} h WHERE ${on('h', 'c')})${insertFilter}`;
    const select = `${updated}\nUNION ALL\n${inserted}\nORDER BY ${keyColumns.map(q).join(', ')}`;
    const adds = await engine.writeFiles(select, { store: table.store, root: table.root, schema, targetFileRows, maxRows: stagedRows });

    // New vectors: each touched file's old rows ∪ the rows replaced now.
    const byFile = new Map<string, number[]>();
    let deletedRows = 0;
    for (const p of perFile) {
      const rows = (p.rows as (bigint | number)[]).map(Number);
      byFile.set(String(p.__f), rows);
      deletedRows += rows.length;
    }
    const actions = await deleteRows(
      table,
      [...byFile].map(([local, rows]) => ({ file: byLocal.get(local)!, rows })),
      reader,
    );
    return { actions, adds, touched: byFile.size, deletedRows };
  } finally {
    await engine.drop(hits);
  }
}

/**
 * A key index's hits staged as a merge's hits table: `__f` (the file's local path), `__r` (row position),
 * the key, `_commit_lsn`, `_event_index`, then `extra` columns of the schema. Shared with the history
 * merge (history-dv-merge.ts), whose index adds `_is_current`.
 */
export function stageIndexHits<H extends { file: AddAction; row: number; key: unknown; commitLsn: bigint; eventIndex: number }>(
  engine: ParquetEngine,
  schema: LakeSchema,
  keyColumn: string,
  found: H[],
  localOf: Map<string, string>,
  extra: { name: string; cell: (h: H) => unknown }[] = [],
): Promise<string> {
  const column = (name: string) => schema.columns.find((c) => c.name === name)!;
  return engine.stageColumns(
    {
      columns: [
        { name: '__f', type: { kind: 'string' }, nullable: false },
        { name: '__r', type: { kind: 'long' }, nullable: false },
        column(keyColumn),
        column('_commit_lsn'),
        column('_event_index'),
        ...extra.map((e) => column(e.name)),
      ],
    },
    found.length,
    [
      (r) => localOf.get(found[r]!.file.path)!,
      (r) => found[r]!.row,
      (r) => found[r]!.key,
      (r) => found[r]!.commitLsn,
      (r) => found[r]!.eventIndex,
      ...extra.map((e) => (r: number) => e.cell(found[r]!)),
    ],
  );
}

/** The files whose old rows a merge through the key index reads: those holding a row a change leaves columns out of (TOAST). */
function filesToRead(hits: IndexHit[]): AddAction[] {
  const files = new Map<string, AddAction>();
  for (const h of hits) if (h.change.unchanged.length > 0) files.set(h.file.path, h.file);
  return [...files.values()];
}

/**
 * The key index's hits a change applies to (it is newer than the live row: `newer` in the SQL), per file
 * (by local path) with their row indexes in order and whether a change leaves columns out (TOAST).
 */
function appliedPerFile(hits: IndexHit[], localOf: Map<string, string>): { __f: string; rows: number[]; toast: boolean }[] {
  const byFile = new Map<string, { __f: string; rows: number[]; toast: boolean }>();
  for (const h of hits) {
    const c = h.change;
    if (!(c.commitLsn > h.commitLsn || (c.commitLsn === h.commitLsn && c.eventIndex > h.eventIndex))) continue;
    const local = localOf.get(h.file.path)!;
    let entry = byFile.get(local);
    if (!entry) byFile.set(local, (entry = { __f: local, rows: [], toast: false }));
    entry.rows.push(h.row);
    if (c.unchanged.length > 0) entry.toast = true;
  }
  for (const e of byFile.values()) e.rows.sort((a, b) => a - b);
  return [...byFile.values()];
}

/**
 * The actions that delete `rows` (row indexes) of each file through its deletion vector: the file is
 * removed and re-added with its new vector (old rows ∪ these), or only removed when no row is left.
 * Shared by silver and history merges (history-dv-merge.ts).
 */
export async function deleteRows(
  table: DeltaTable,
  perFile: { file: AddAction; rows: number[] }[],
  reader = new DeletionVectorReader(table.store, table.root, table.label),
): Promise<Action[]> {
  const actions: Action[] = [];
  const now = Date.now();
  const vectors: (SerializedVector & { file: AddAction })[] = [];
  for (const { file, rows } of perFile) {
    const old = file.deletionVector ? (await reader.bytes(file.deletionVector)).data : undefined;
    const all = unionRowIndexes(old, rows);
    actions.push({
      remove: { path: file.path, deletionTimestamp: now, dataChange: true, partitionValues: file.partitionValues, size: file.size },
    });
    // PROTOCOL.md requires numRecords for a file with a vector; unknown, the file is never taken as all deleted.
    if (all.cardinality < (recordCount(file) ?? Infinity)) vectors.push({ file, ...all });
  }
  const descriptors = vectors.length ? await writeDeletionVectors(table.store, table.root, vectors) : [];
  vectors.forEach((v, i) =>
    actions.push({ add: { ...v.file, dataChange: true, stats: wideBounds(v.file.stats), deletionVector: descriptors[i]! } }),
  );
  return actions;
}

/** Stats of a file that now has deleted rows: min/max may be wider than the live rows ("Per-file Statistics": tightBounds). */
function wideBounds(stats: string | undefined): string | undefined {
  if (!stats) return stats;
  try {
    return JSON.stringify({ ...(JSON.parse(stats) as Record<string, unknown>), tightBounds: false });
  } catch {
    return stats;
  }
}

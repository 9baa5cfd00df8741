import type { Action, AddAction } from '../lake/delta/actions.ts';
import type { DeltaTable } from '../lake/delta/delta-table.ts';
import type { LakeSchema } from '../lake/lake-schema.ts';
import type { DataFile, ParquetEngine } from '../lake/parquet/parquet-engine.ts';
import { localPaths } from '../lake/parquet/table-view.ts';
import { dropDeletedHits } from './dv-hits.ts';
import { deleteRows, stageIndexHits } from './silver-dv-merge.ts';
import { q } from './silver-merge.ts';
import type { HistoryHit } from './history-key-index.ts';

/**
 * A history (SCD type 2) merge with deletion vectors (README "Deletion vectors"), for history tables
 * whose table has `delta.enableDeletionVectors`: a current version that closes is marked deleted in
 * its file's vector and written again, closed (`_valid_to` set, `_is_current` false), to a new file
 * together with the batch's new versions. No existing file is rewritten, so a merge costs what the
 * batch changes plus a scan of five narrow columns, not a rewrite of every file a closing version is in.
 *
 *  1. The hits: key, `_is_current`, `_commit_lsn`, `_event_index` and position (file, `file_row_number`)
 *     of every version of the batch's keys in the candidate files (pruned by key statistics, as the
 *     copy-on-write merge does; all files for a truncate, which closes every open version). Rows a
 *     file's vector already deletes are dropped: they are versions written again elsewhere.
 *  2. The closing rows: current hits with a change newer than them (or a truncate), with their close time.
 *  3. The new versions, as in the copy-on-write merge: not already in history (replays), newer than the
 *     key's current version. Unchanged-TOAST columns come from the current version, which closes.
 *  4. Only the closing rows are read in full, by position; they and the new versions go to new files;
 *     the files they were in get new vectors (silver-dv-merge.ts `deleteRows`).
 */

export interface HistoryDvInput {
  /** Staged new versions (the table's columns and `_unchanged`). */
  versions: string;
  /** Staged changes (key columns, `_f_lsn`, `_f_idx`, `_f_at`). */
  changes: string;
  candidates: AddAction[];
  /** SQL: the close time of current version alias `o`, NULL when it stays open. */
  closeTime: (o: string) => string;
  /** SQL: the key columns of `a` equal those of `b`. */
  on: (a: string, b: string) => string;
  truncate: boolean;
  /**
   * The batch's keys' latest live versions from the key index (history-key-index.ts; not with a
   * truncate): they are the hits, no file is scanned.
   */
  indexHits?: HistoryHit[];
}

const lit = (s: string): string => `'${s.replace(/'/g, "''")}'`;
const HITS = 'tide_history_hits';
const CLOSING = 'tide_history_closing';
const OLD = 'tide_history_old_rows';

export async function historyDvMerge(
  engine: ParquetEngine,
  table: DeltaTable,
  schema: LakeSchema,
  keyColumns: string[],
  meta: Set<string>,
  input: HistoryDvInput,
): Promise<{ adds: DataFile[]; actions: Action[]; closed: number }> {
  const { on, versions, changes, indexHits } = input;
  const byLocal = await localFiles(table, indexHits ? [...new Set(indexHits.map((h) => h.file))] : input.candidates);
  const keys = (a: string) => keyColumns.map((k) => `${a}.${q(k)}`).join(', ');
  await dropWork(engine);
  let hits = HITS;
  try {
    if (indexHits) {
      // The key index found the keys' latest live versions: staged, they are the hits (no vector applies to them).
      const localOf = new Map([...byLocal].map(([local, f]) => [f.path, local]));
      hits = await stageIndexHits(engine, schema, keyColumns[0]!, indexHits, localOf, [{ name: '_is_current', cell: (h) => h.current }]);
    } else if (byLocal.size) {
      const batchKeys = `EXISTS (SELECT 1 FROM ${changes} f WHERE ${on('h', 'f')})`;
      await scanHits(engine, table, byLocal, keyColumns, input.truncate ? `h._is_current OR ${batchKeys}` : batchKeys);
    } else {
      await engine.run(
        `CREATE TEMP TABLE ${HITS} AS SELECT ''::VARCHAR AS __f, 0::BIGINT AS __r, ${keys('f')}, false AS _is_current, ` +
          `f._f_lsn AS _commit_lsn, f._f_idx AS _event_index FROM ${changes} f WHERE false`,
      );
    }
    await engine.run(
      `CREATE TEMP TABLE ${CLOSING} AS SELECT * FROM (SELECT o.__f, o.__r, ${input.closeTime('o')} AS __to FROM ${hits} o WHERE o._is_current) WHERE __to IS NOT NULL`,
    );
    const perFile = await engine.query(`SELECT __f, list(__r ORDER BY __r) AS rows FROM ${CLOSING} GROUP BY __f`);
    const names = schema.columns.map((c) => q(c.name));
    // New versions: newer than every version history holds of the key (a replay, or older than what history holds).
    const fresh = `SELECT v.* FROM ${versions} v WHERE ${newerThanHistory('v', hits, on)}`;
    let select: string;
    if (perFile.length) {
      await readClosing(engine, table, schema, byLocal, perFile);
      const old = OLD;
      const closedCols = closedColumns(schema);
      // A new version's unchanged-TOAST columns: the current version's (it closes, so it is among the closing rows).
      const newCols = schema.columns.map((c) =>
        meta.has(c.name)
          ? `v.${q(c.name)}`
          : `CASE WHEN list_contains(v._unchanged, ${lit(c.name)}) THEN cur.${q(c.name)} ELSE v.${q(c.name)} END AS ${q(c.name)}`,
      );
      select = [
        `SELECT ${closedCols.join(', ')} FROM ${old} o`,
        `UNION ALL BY NAME`,
        `SELECT ${newCols.join(', ')} FROM (${fresh}) v LEFT JOIN ${old} cur ON ${on('v', 'cur')}`,
      ].join('\n');
    } else {
      select = fresh;
    }
    select = `SELECT ${names.join(', ')} FROM (${select}) ORDER BY ${keyColumns.map(q).join(', ')}, _valid_from`;
    const adds = await engine.writeFiles(select, { store: table.store, root: table.root, schema });
    const { actions, closed } = await vectorDeletes(table, byLocal, perFile);
    return { adds, actions, closed };
  } finally {
    await dropWork(engine);
    await engine.drop(hits);
  }
}

/**
 * SQL: staged version `v` is newer than every live version of its key in `hits` (alias h). A version not
 * newer than the key's latest one is in history already (a replay: versions are never removed, only
 * closed and written again with the same _commit_lsn/_event_index) or older than what history holds (it
 * would open a version that a newer one has replaced): either way it is dropped. The copy-on-write merge
 * applies the same rule (history-merge.ts), and the key index (history-key-index.ts) holds only the
 * latest version for it.
 */
export function newerThanHistory(v: string, hits: string, on: (a: string, b: string) => string): string {
  return (
    `NOT EXISTS (SELECT 1 FROM ${hits} h WHERE ${on('h', v)} AND ` +
    `(h._commit_lsn > ${v}._commit_lsn OR (h._commit_lsn = ${v}._commit_lsn AND h._event_index >= ${v}._event_index)))`
  );
}

/**
 * Close the current versions matching `where` (alias h) at `closeAt` (SQL), through deletion vectors: a
 * re-snapshot's reconcile (snapshot-reconcile.ts) on a history with vectors. Every file is scanned (key,
 * `_is_current`, `_commit_lsn`, `_event_index`, position); only the closing rows are read in full.
 */
export async function closeVersionsWithVectors(
  engine: ParquetEngine,
  table: DeltaTable,
  keyColumns: string[],
  where: string,
  closeAt: string,
): Promise<{ adds: DataFile[]; actions: Action[]; closed: number }> {
  const byLocal = await localFiles(table, table.files());
  if (!byLocal.size) return { adds: [], actions: [], closed: 0 };
  await dropWork(engine);
  try {
    await scanHits(engine, table, byLocal, keyColumns, `h._is_current AND (${where})`);
    await engine.run(`CREATE TEMP TABLE ${CLOSING} AS SELECT __f, __r, ${closeAt} AS __to FROM ${HITS}`);
    const perFile = await engine.query(`SELECT __f, list(__r ORDER BY __r) AS rows FROM ${CLOSING} GROUP BY __f`);
    if (!perFile.length) return { adds: [], actions: [], closed: 0 };
    const schema = table.schema;
    await readClosing(engine, table, schema, byLocal, perFile);
    const adds = await engine.writeFiles(
      `SELECT ${closedColumns(schema).join(', ')} FROM ${OLD} o ORDER BY ${keyColumns.map((k) => `o.${q(k)}`).join(', ')}, o._valid_from`,
      { store: table.store, root: table.root, schema },
    );
    const { actions, closed } = await vectorDeletes(table, byLocal, perFile);
    return { adds, actions, closed };
  } finally {
    await dropWork(engine);
  }
}

/** Each file by its local path (read by DuckDB), resolved concurrently (table-view.ts localPaths: a download each on an object store). */
async function localFiles(table: DeltaTable, files: AddAction[]): Promise<Map<string, AddAction>> {
  const locals = await localPaths(table.store, table.root, files);
  return new Map(files.map((f, i) => [locals[i]!, f]));
}

async function dropWork(engine: ParquetEngine): Promise<void> {
  for (const t of [HITS, CLOSING, OLD]) await engine.drop(t);
}

/** HITS: key, `_is_current`, `_commit_lsn`, `_event_index` and position of the rows of `byLocal`'s files matching `where` (alias h) that no vector deletes. */
async function scanHits(
  engine: ParquetEngine,
  table: DeltaTable,
  byLocal: Map<string, AddAction>,
  keyColumns: string[],
  where: string,
): Promise<void> {
  const list = [...byLocal.keys()].map(lit).join(', ');
  const keys = keyColumns.map((k) => `h.${q(k)}`).join(', ');
  await engine.run(
    `CREATE TEMP TABLE ${HITS} AS SELECT h.filename AS __f, h.file_row_number AS __r, ${keys}, h._is_current, h._commit_lsn, h._event_index ` +
      `FROM read_parquet([${list}], filename = true, file_row_number = true, union_by_name = true) h WHERE ${where}`,
  );
  // Rows a vector already deletes are versions written again elsewhere: drop them (only files with hits and a vector are read).
  await dropDeletedHits(engine, table, HITS, byLocal);
}

/** OLD: the closing versions (CLOSING) in full with their close time `__to`, read by position from their files only. */
async function readClosing(
  engine: ParquetEngine,
  table: DeltaTable,
  schema: LakeSchema,
  byLocal: Map<string, AddAction>,
  perFile: Record<string, unknown>[],
): Promise<void> {
  // The closing rows are live: the view need not leave out the rows the files' vectors delete (an anti-join less).
  const files = perFile.map((p) => ({ ...byLocal.get(String(p.__f))!, deletionVector: undefined }));
  await engine.createView('tide_history_dv_old', table.store, table.root, files, schema, [], { positions: true });
  await engine.run(
    `CREATE TEMP TABLE ${OLD} AS SELECT o.*, x.__to FROM tide_history_dv_old o JOIN ${CLOSING} x ON o.__tide_file = x.__f AND o.__tide_row = x.__r`,
  );
}

/** The columns of a closing version (alias o, from OLD) written again, closed. */
function closedColumns(schema: LakeSchema): string[] {
  return schema.columns.map((c) => {
    if (c.name === '_valid_to') return `o.__to AS _valid_to`;
    if (c.name === '_is_current') return `false AS _is_current`;
    return `o.${q(c.name)}`;
  });
}

/** The vector actions that delete the closing rows from their files. */
async function vectorDeletes(
  table: DeltaTable,
  byLocal: Map<string, AddAction>,
  perFile: Record<string, unknown>[],
): Promise<{ actions: Action[]; closed: number }> {
  let closed = 0;
  const deletes = perFile.map((p) => {
    const rows = (p.rows as (bigint | number)[]).map(Number);
    closed += rows.length;
    return { file: byLocal.get(String(p.__f))!, rows };
  });
  return { actions: await deleteRows(table, deletes), closed };
}

import type { Action, AddAction, TxnAction } from '../lake/delta/actions.ts';
import type { DeltaTable } from '../lake/delta/delta-table.ts';
import type { LakeColumn, LakeSchema } from '../lake/lake-schema.ts';
import type { ParquetEngine } from '../lake/parquet/parquet-engine.ts';
import { faultPoint } from './fault.ts';
import { candidateFiles } from './key-pruning.ts';
import { comparePosition, type KeyChange, type SilverBatch } from './silver-changes.ts';
import { SILVER_META } from './table-layout.ts';
import { mergeWithDeletionVectors, usesDeletionVectors } from './silver-dv-merge.ts';
import { syncedKeyIndex, type KeyIndexOptions, type SilverKeyIndex } from './silver-key-index.ts';

/**
 * Copy-on-write merge of a batch of key changes into a silver Delta table, in one commit:
 *  1. prune: only files whose key range (file stats min/max) may hold a changed key are candidates (key-pruning.ts);
 *  2. DuckDB finds which candidates really hold one (the touched files);
 *  3. the touched files are rewritten — their rows with the changes applied, plus new keys — and
 *     replaced (remove + add), so untouched files are never rewritten.
 * A change applies only when it is newer than the row's (_commit_lsn, _event_index): replays are no-ops.
 */
export const SILVER_TARGET_FILE_ROWS = 250_000;

/**
 * A batch changing more than this share of an indexed table's existing keys (inserts of new keys do not
 * count) finds them by scanning instead (the index is still kept in step). Half: in a table as the sink's
 * flushes leave it (each flush's file spans the whole key range; older files carry vectors), merges of 50,000
 * changes, half of them updates of 5-50 % of the keys, took 0.2-0.5 s through the index against 0.8-2.8 s
 * scanning (bench/silver-flushes.ts, README "Silver merges as the sink's flushes leave the table"). Only on a
 * table DuckDB wrote sorted by key, with no vectors yet, was the scan faster at 10-50 % (bench/silver-merge.ts).
 */
const INDEX_LOOKUP_MAX_SHARE = 0.5;

export const q = (name: string): string => `"${name.replace(/"/g, '""')}"`;
const lit = (s: string): string => `'${s.replace(/'/g, "''")}'`;

/** The staging columns for a batch: the silver columns, plus the change's flags. */
export function changeColumns(schema: LakeSchema): LakeColumn[] {
  return [
    ...schema.columns,
    { name: '_deleted', type: { kind: 'boolean' }, nullable: false },
    { name: '_unchanged', type: { kind: 'array', element: { kind: 'string' } }, nullable: false },
  ];
}

/**
 * Stage a batch's changes (`changeColumns` order) straight from the KeyChange objects, column by
 * column (ParquetEngine.stageColumns): no row array per change and no BigInt per position; the same
 * values `changeRows` gives. Returns the staged table's name (drop it with `engine.drop`).
 */
export async function stageChanges(engine: ParquetEngine, schema: LakeSchema, changes: KeyChange[]): Promise<string> {
  const cells = schema.columns.map((col): ((r: number) => unknown) => {
    const name = col.name;
    if (name === '_commit_lsn') return (r) => changes[r]!.commitLsn;
    if (name === '_event_index') return (r) => changes[r]!.eventIndex;
    // Milliseconds × 1000 stays a safe integer until the year 2255; the stager writes it as int64 without a BigInt.
    if (name === '_commit_ts') return (r) => changes[r]!.commitTsMs * 1000;
    return (r) => changes[r]!.row[name] ?? null;
  });
  cells.push(
    (r) => changes[r]!.deleted,
    (r) => changes[r]!.unchanged,
  );
  return engine.stageColumns({ columns: changeColumns(schema) }, changes.length, cells);
}

export function changeRows(schema: LakeSchema, changes: KeyChange[]): unknown[][] {
  return changes.map((c) => [
    ...schema.columns.map((col) => {
      if (col.name === '_commit_lsn') return c.commitLsn;
      if (col.name === '_event_index') return BigInt(c.eventIndex);
      if (col.name === '_commit_ts') return BigInt(c.commitTsMs) * 1000n;
      return c.row[col.name] ?? null;
    }),
    c.deleted,
    c.unchanged,
  ]);
}

/** SQL producing the new content of the touched files (`old`) merged with the changes (`changes`), plus new keys. */
export function mergeSql(schema: LakeSchema, keyColumns: string[], old: string, changes: string, deleted?: string): string {
  const meta = new Set(SILVER_META.map((c) => c.name));
  const on = keyColumns.map((k) => `o.${q(k)} = c.${q(k)}`).join(' AND ');
  const newer = `(c._commit_lsn > o._commit_lsn OR (c._commit_lsn = o._commit_lsn AND c._event_index > o._event_index))`;
  const applies = `(c._deleted IS NOT NULL AND ${newer})`;
  const cols = schema.columns.map((col) => {
    const name = q(col.name);
    if (meta.has(col.name)) return `CASE WHEN ${applies} THEN c.${name} ELSE o.${name} END AS ${name}`;
    return `CASE WHEN NOT ${applies} OR list_contains(c._unchanged, ${lit(col.name)}) THEN o.${name} ELSE c.${name} END AS ${name}`;
  });
  const names = schema.columns.map((c) => q(c.name)).join(', ');
  const keys = keyColumns.map(q).join(', ');
  return [
    `SELECT ${names} FROM (`,
    `  SELECT ${cols.join(',\n    ')}, (${applies} AND c._deleted) AS _drop`,
    `  FROM ${old} o LEFT JOIN ${changes} c ON ${on}`,
    `) WHERE NOT _drop`,
    `UNION ALL`,
    `SELECT ${names} FROM ${changes} c WHERE NOT c._deleted AND NOT EXISTS (SELECT 1 FROM ${old} o WHERE ${on})${notDeletedLater(keyColumns, deleted)}`,
    `ORDER BY ${keys}`,
  ].join('\n');
}

/**
 * A new key's insert is kept only when no delete marker of that key sits at or after it (delete-markers.ts):
 * silver holds no row for a deleted key, so a replayed older insert would otherwise bring it back.
 */
function notDeletedLater(keyColumns: string[], deleted: string | undefined): string {
  if (!deleted) return '';
  const on = keyColumns.map((k) => `d.${q(k)} = c.${q(k)}`).join(' AND ');
  return ` AND NOT EXISTS (SELECT 1 FROM ${deleted} d WHERE ${on} AND (d._commit_lsn > c._commit_lsn OR (d._commit_lsn = c._commit_lsn AND d._event_index >= c._event_index)))`;
}

/** Table property: the position of the last truncate applied, `<commit LSN>/<event index>`. */
export const TRUNCATED_AT = 'tide.truncatedAt';

function truncatedAt(configuration: Record<string, string>): { commitLsn: bigint; eventIndex: number } | undefined {
  const m = /^(\d+)\/(\d+)$/.exec(configuration[TRUNCATED_AT] ?? '');
  return m ? { commitLsn: BigInt(m[1]!), eventIndex: Number(m[2]) } : undefined;
}

/** The largest _commit_lsn in a file, from its stats; undefined when unknown. */
function maxCommitLsn(f: AddAction): bigint | undefined {
  if (!f.stats) return undefined;
  try {
    const v = (JSON.parse(f.stats) as { maxValues?: Record<string, unknown> }).maxValues?._commit_lsn;
    return typeof v === 'number' || typeof v === 'string' ? BigInt(v) : undefined;
  } catch {
    return undefined;
  }
}

export interface MergeResult {
  version: number;
  rewrittenFiles: number;
  addedFiles: number;
  /** Files that got a new deletion vector instead of a rewrite (tables with delta.enableDeletionVectors). */
  vectorFiles: number;
}

export async function mergeSilver(
  engine: ParquetEngine,
  table: DeltaTable,
  schema: LakeSchema,
  keyColumns: string[],
  batch: SilverBatch,
  txns: TxnAction[],
  evolved?: Action,
  /** A view of the table's delete markers (delete-markers.ts), when it keeps them. */
  deleted?: string,
  /** The key index for tables with deletion vectors (silver-key-index.ts); without it, merges scan. */
  keyIndex?: KeyIndexOptions,
): Promise<MergeResult> {
  const now = Date.now();
  const actions: Action[] = [];
  let files = table.files();
  // A truncate the table already applied: changes from before it (late, from another partition) stay gone.
  const cut = truncatedAt(table.metadata.configuration);
  const changes = cut ? batch.changes.filter((c) => comparePosition(c, cut) > 0) : batch.changes;
  const truncate = batch.truncate && (!cut || comparePosition(batch.truncate, cut) > 0) ? batch.truncate : undefined;
  let metaData = evolved && 'metaData' in evolved ? evolved.metaData : undefined;
  let survivors: AddAction[] = [];
  if (truncate) {
    // Every file goes; rows committed after the truncate (another partition's, applied by an earlier batch) are kept.
    for (const f of files)
      actions.push({
        remove: { path: f.path, deletionTimestamp: now, dataChange: true, partitionValues: f.partitionValues, size: f.size },
      });
    survivors = files.filter((f) => maxCommitLsn(f) === undefined || maxCommitLsn(f)! >= truncate.commitLsn);
    files = [];
    const base = metaData ?? table.metadata;
    metaData = { ...base, configuration: { ...base.configuration, [TRUNCATED_AT]: `${truncate.commitLsn}/${truncate.eventIndex}` } };
  }
  if (metaData) actions.push({ metaData });
  else if (evolved) actions.push(evolved);
  const after = (alias: string, t: { commitLsn: bigint; eventIndex: number }) =>
    `(${alias}._commit_lsn > ${t.commitLsn} OR (${alias}._commit_lsn = ${t.commitLsn} AND ${alias}._event_index > ${t.eventIndex}))`;
  let touched: AddAction[] = [];
  let adds: AddAction[] = [];
  let vectorFiles = 0;
  let index: SilverKeyIndex | undefined;
  if (changes.length || survivors.length) {
    const staged = await stageChanges(engine, schema, changes);
    try {
      let select: string;
      let maxRows: number | undefined;
      if (truncate) {
        // Every file is removed above: the survivors (rows committed after the truncate) merged with the changes.
        await engine.createView('silver_old', table.store, table.root, survivors, schema);
        select = mergeSql(schema, keyColumns, `(SELECT * FROM silver_old s WHERE ${after('s', truncate)})`, staged, deleted);
      } else {
        const keyColumn = keyColumns.length === 1 ? schema.columns.find((c) => c.name === keyColumns[0]) : undefined;
        // Only merges that look for the changed keys in the files need them (not a merge through the key index).
        const candidatesOf = (): AddAction[] =>
          keyColumn
            ? candidateFiles(
                files,
                keyColumn,
                changes.map((c) => c.key[0]),
              )
            : files;
        if (usesDeletionVectors(table)) {
          // Deletion vectors: changed rows are marked deleted, nothing is rewritten (silver-dv-merge.ts).
          const keys = keyColumns.map((k) => schema.columns.find((c) => c.name === k)!);
          index = keyIndex ? await syncedKeyIndex(engine, table, keys, keyIndex) : undefined;
          const hitList = index?.hits(changes, table, index.size * (keyIndex?.lookupMaxShare ?? INDEX_LOOKUP_MAX_SHARE));
          const r = await mergeWithDeletionVectors(
            engine,
            table,
            schema,
            keyColumns,
            hitList ? [] : candidatesOf(),
            staged,
            notDeletedLater(keyColumns, deleted),
            SILVER_TARGET_FILE_ROWS,
            hitList,
            changes.length,
          );
          actions.push(...r.actions);
          vectorFiles = r.touched;
          adds = r.adds;
          select = '';
        } else {
          const candidates = candidatesOf();
          touched = candidates.length ? await touchedFiles(engine, table, schema, candidates, keyColumns, staged) : [];
          if (touched.length) {
            await engine.createView('silver_old', table.store, table.root, touched, schema);
            select = mergeSql(schema, keyColumns, 'silver_old', staged, deleted);
          } else {
            select = `SELECT ${schema.columns.map((c) => q(c.name)).join(', ')} FROM ${staged} c WHERE NOT _deleted${notDeletedLater(keyColumns, deleted)} ORDER BY ${keyColumns.map(q).join(', ')}`;
            // New keys only: at most one row per change.
            maxRows = changes.length;
          }
        }
      }
      if (select)
        adds = await engine.writeFiles(select, {
          store: table.store,
          root: table.root,
          schema,
          targetFileRows: SILVER_TARGET_FILE_ROWS,
          maxRows,
        });
    } finally {
      await engine.drop(staged);
    }
  }
  for (const f of touched)
    actions.push({ remove: { path: f.path, deletionTimestamp: now, dataChange: true, partitionValues: f.partitionValues, size: f.size } });
  actions.push(...adds.map((add) => ({ add })), ...txns.map((txn) => ({ txn })));
  faultPoint('before-commit');
  const version = await table.commit(actions, {
    operation: truncate ? 'TRUNCATE+MERGE' : 'MERGE',
    parameters: { predicate: `key(${keyColumns.join(', ')})`, changes: changes.length },
  });
  // Only a committed merge changes the index: a failed commit leaves it as it was.
  index?.committed(changes, actions);
  return { version, rewrittenFiles: touched.length, addedFiles: adds.length, vectorFiles };
}

/** The candidates that really hold a changed key. */
async function touchedFiles(
  engine: ParquetEngine,
  table: DeltaTable,
  schema: LakeSchema,
  candidates: AddAction[],
  keyColumns: string[],
  staged: string,
): Promise<AddAction[]> {
  const byLocal = new Map<string, AddAction>();
  for (const f of candidates) byLocal.set(await table.store.localFile(`${table.root}/${decodeURIComponent(f.path)}`), f);
  const list = [...byLocal.keys()].map(lit).join(', ');
  const on = keyColumns.map((k) => `f.${q(k)} = c.${q(k)}`).join(' AND ');
  void schema;
  const rows = await engine.query(
    `SELECT DISTINCT f.filename FROM read_parquet([${list}], filename = true, union_by_name = true) f WHERE EXISTS (SELECT 1 FROM ${staged} c WHERE ${on})`,
  );
  return rows.map((r) => byLocal.get(String(r.filename))!).filter(Boolean);
}

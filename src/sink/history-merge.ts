import type { Action, AddAction, TxnAction } from '../lake/delta/actions.ts';
import type { DeltaTable } from '../lake/delta/delta-table.ts';
import type { LakeColumn, LakeSchema } from '../lake/lake-schema.ts';
import type { ParquetEngine } from '../lake/parquet/parquet-engine.ts';
import type { ChangeEvent } from './change-event.ts';
import { faultPoint } from './fault.ts';
import type { ColumnMask } from './masking.ts';
import { comparePosition, keyOf, keyString } from './silver-changes.ts';
import { candidateFiles } from './key-pruning.ts';
import { q } from './silver-merge.ts';
import { HISTORY_META } from './table-layout.ts';

/**
 * `silver.<table>_history`: slowly changing dimension type 2. Every version of a row is kept with its
 * validity interval [_valid_from, _valid_to) in source commit time; the current version has
 * _valid_to NULL and _is_current true; a delete closes the current version without opening a new one.
 *
 * A batch becomes (1) the new versions, each closed by the key's next change in the batch, and (2) per
 * key, the time of its first change, which closes the version that was current before the batch. Only
 * files holding a touched key's current version are rewritten. Events at or before a key's current
 * version (a replay) change nothing. Unchanged-TOAST columns take the previous version's value.
 */
export interface HistoryVersion {
  key: unknown[];
  row: Record<string, unknown>;
  unchanged: string[];
  validFrom: number;
  validTo: number | null;
  commitLsn: bigint;
  eventIndex: number;
}

export interface HistoryBatch {
  versions: HistoryVersion[];
  /** Per key: the first change's position and time (what closes the version current before the batch). */
  firsts: { key: unknown[]; commitLsn: bigint; eventIndex: number; at: number }[];
  /** A truncate: every open version is closed at this time (history is kept). */
  truncateAt?: { commitLsn: bigint; eventIndex: number; at: number };
}

export function historyVersions(events: ChangeEvent[], keyColumns: string[], masks: ColumnMask[]): HistoryBatch {
  const sorted = [...events].sort(comparePosition);
  const versions: HistoryVersion[] = [];
  const open = new Map<string, HistoryVersion>();
  const firsts = new Map<string, HistoryBatch['firsts'][number]>();
  let truncateAt: HistoryBatch['truncateAt'];
  for (const e of sorted) {
    if (e.op === 't') {
      for (const v of open.values()) v.validTo = e.commitTsMs;
      open.clear();
      truncateAt = { commitLsn: e.commitLsn, eventIndex: e.eventIndex, at: e.commitTsMs };
      continue;
    }
    const image = e.op === 'd' ? e.before : e.after;
    if (!image) continue;
    const key = keyOf(e, image, keyColumns);
    const id = keyString(key);
    if (!firsts.has(id)) firsts.set(id, { key, commitLsn: e.commitLsn, eventIndex: e.eventIndex, at: e.commitTsMs });
    const prior = open.get(id);
    if (prior) prior.validTo = e.commitTsMs;
    open.delete(id);
    if (e.op === 'd') continue;
    const row = { ...image };
    let unchanged = e.unchangedToast;
    for (const m of masks) if (m.column in row && !unchanged.includes(m.column)) row[m.column] = m.apply(row[m.column]);
    if (unchanged.length && prior) {
      for (const c of unchanged) if (!prior.unchanged.includes(c)) row[c] = prior.row[c];
      unchanged = unchanged.filter((c) => prior.unchanged.includes(c));
    }
    const v: HistoryVersion = {
      key,
      row,
      unchanged: [...unchanged],
      validFrom: e.commitTsMs,
      validTo: null,
      commitLsn: e.commitLsn,
      eventIndex: e.eventIndex,
    };
    versions.push(v);
    open.set(id, v);
  }
  return { versions, firsts: [...firsts.values()], ...(truncateAt ? { truncateAt } : {}) };
}

export function historyColumns(rowColumns: LakeColumn[]): LakeColumn[] {
  return [...rowColumns, ...HISTORY_META];
}

const US = (ms: number | null): bigint | null => (ms === null ? null : BigInt(ms) * 1000n);

export async function mergeHistory(
  engine: ParquetEngine,
  table: DeltaTable,
  schema: LakeSchema,
  keyColumns: string[],
  batch: HistoryBatch,
  txns: TxnAction[],
  evolved?: Action,
): Promise<number> {
  const meta = new Set(HISTORY_META.map((c) => c.name));
  const rowCols = schema.columns.filter((c) => !meta.has(c.name));
  const versionCols: LakeColumn[] = [
    ...schema.columns,
    { name: '_unchanged', type: { kind: 'array', element: { kind: 'string' } }, nullable: false },
  ];
  const versionRows = batch.versions.map((v) => [
    ...schema.columns.map((c) => {
      switch (c.name) {
        case '_valid_from':
          return US(v.validFrom);
        case '_valid_to':
          return US(v.validTo);
        case '_is_current':
          return v.validTo === null;
        case '_commit_lsn':
          return v.commitLsn;
        case '_event_index':
          return BigInt(v.eventIndex);
        default:
          return v.row[c.name] ?? null;
      }
    }),
    v.unchanged,
  ]);
  const keyCols = rowCols.filter((c) => keyColumns.includes(c.name));
  const firstCols: LakeColumn[] = [
    ...keyCols,
    { name: '_f_lsn', type: { kind: 'long' }, nullable: false },
    { name: '_f_idx', type: { kind: 'long' }, nullable: false },
    { name: '_f_at', type: { kind: 'timestamp' }, nullable: false },
  ];
  const firstRows = batch.firsts.map((f) => [...f.key, f.commitLsn, BigInt(f.eventIndex), US(f.at)]);
  const versions = await engine.stage({ columns: versionCols }, versionRows);
  const firsts = await engine.stage({ columns: firstCols }, firstRows);
  try {
    const files = table.files();
    const keyColumn = keyColumns.length === 1 ? schema.columns.find((c) => c.name === keyColumns[0]) : undefined;
    // A truncate closes every open version: all files are touched.
    let touched: AddAction[] = batch.truncateAt
      ? files
      : keyColumn
        ? candidateFiles(
            files,
            keyColumn,
            batch.firsts.map((f) => f.key[0]),
          )
        : files;
    if (!batch.truncateAt && touched.length && batch.firsts.length) {
      await engine.createView('history_candidates', table.store, table.root, touched, schema);
      const on = keyColumns.map((k) => `h.${q(k)} = f.${q(k)}`).join(' AND ');
      const hit = await engine.query(`SELECT count(*) AS n FROM history_candidates h JOIN ${firsts} f ON ${on} WHERE h._is_current`);
      if (Number(hit[0]!.n) === 0) touched = [];
    } else if (!batch.firsts.length && !batch.truncateAt) touched = [];
    const names = schema.columns.map((c) => q(c.name)).join(', ');
    let select: string;
    if (touched.length) {
      await engine.createView('history_old', table.store, table.root, touched, schema);
      const on = (a: string, b: string) => keyColumns.map((k) => `${a}.${q(k)} = ${b}.${q(k)}`).join(' AND ');
      const newerF = `(f._f_lsn > o._commit_lsn OR (f._f_lsn = o._commit_lsn AND f._f_idx > o._event_index))`;
      const closeAt = batch.truncateAt ? `TIMESTAMPTZ '${new Date(batch.truncateAt.at).toISOString()}'` : 'NULL';
      const closes = batch.truncateAt ? `o._is_current` : `(o._is_current AND f._f_lsn IS NOT NULL AND ${newerF})`;
      // Under a truncate, a key changed earlier in the batch closes at that change, the others at the truncate.
      const closeTime = batch.truncateAt ? `CASE WHEN f._f_lsn IS NOT NULL AND ${newerF} THEN f._f_at ELSE ${closeAt} END` : 'f._f_at';
      const oldCols = schema.columns.map((c) => {
        if (c.name === '_valid_to') return `CASE WHEN ${closes} THEN ${closeTime} ELSE o._valid_to END AS _valid_to`;
        if (c.name === '_is_current') return `CASE WHEN ${closes} THEN false ELSE o._is_current END AS _is_current`;
        return `o.${q(c.name)}`;
      });
      const newerV = `(cur._commit_lsn IS NULL OR v._commit_lsn > cur._commit_lsn OR (v._commit_lsn = cur._commit_lsn AND v._event_index > cur._event_index))`;
      const newCols = schema.columns.map((c) =>
        meta.has(c.name)
          ? `v.${q(c.name)}`
          : `CASE WHEN list_contains(v._unchanged, '${c.name.replace(/'/g, "''")}') THEN cur.${q(c.name)} ELSE v.${q(c.name)} END AS ${q(c.name)}`,
      );
      select = [
        `SELECT ${oldCols.join(', ')} FROM history_old o LEFT JOIN ${firsts} f ON ${on('o', 'f')}`,
        `UNION ALL BY NAME`,
        `SELECT ${newCols.join(', ')} FROM ${versions} v LEFT JOIN (SELECT * FROM history_old WHERE _is_current) cur ON ${on('v', 'cur')} WHERE ${newerV}`,
      ].join('\n');
      select = `SELECT ${names} FROM (${select}) ORDER BY ${keyColumns.map(q).join(', ')}, _valid_from`;
    } else {
      select = `SELECT ${names} FROM ${versions} ORDER BY ${keyColumns.map(q).join(', ')}, _valid_from`;
    }
    const adds = await engine.writeFiles(select, { store: table.store, root: table.root, schema });
    const now = Date.now();
    const actions: Action[] = evolved ? [evolved] : [];
    for (const f of touched)
      actions.push({
        remove: { path: f.path, deletionTimestamp: now, dataChange: true, partitionValues: f.partitionValues, size: f.size },
      });
    actions.push(...adds.map((add) => ({ add })), ...txns.map((txn) => ({ txn })));
    faultPoint('before-commit');
    return await table.commit(actions, { operation: 'MERGE', parameters: { predicate: `scd2(${keyColumns.join(', ')})` } });
  } finally {
    await engine.drop(versions);
    await engine.drop(firsts);
  }
}

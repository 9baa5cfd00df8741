import type { Action, AddAction, TxnAction } from '../lake/delta/actions.ts';
import type { DeltaTable } from '../lake/delta/delta-table.ts';
import type { LakeColumn, LakeSchema } from '../lake/lake-schema.ts';
import type { DataFile, ParquetEngine } from '../lake/parquet/parquet-engine.ts';
import type { ChangeEvent } from './change-event.ts';
import { faultPoint } from './fault.ts';
import type { ColumnMask } from './masking.ts';
import { comparePosition, keyId, keyOf, NO_COLUMNS } from './silver-changes.ts';
import { candidateFiles } from './key-pruning.ts';
import { q } from './silver-merge.ts';
import { HISTORY_META } from './table-layout.ts';
import { historyDvMerge, newerThanHistory } from './history-dv-merge.ts';
import { syncedHistoryIndex, type HistoryIndexOptions } from './history-key-index.ts';
import { usesDeletionVectors } from './silver-dv-merge.ts';
import { atOnce, inTurns, TURN_EVERY } from './event-loop-turns.ts';

/**
 * `silver.<table>_history`: slowly changing dimension type 2. Every version of a row is kept with its
 * validity interval [_valid_from, _valid_to) in source commit time; the current version has
 * _valid_to NULL and _is_current true; a delete closes the current version without opening a new one.
 *
 * A batch becomes (1) the new versions, each closed by the key's next change in the batch, and (2) every
 * change's position and time: the version current before the batch is closed by the first change newer
 * than it. Only files holding a current version that closes are rewritten. Replays change nothing: a
 * version whose (commit LSN, event index) history already holds, or that is older than the key's current
 * version, is dropped (the source re-sends events after a crash, at new Kafka offsets, so the sink's txn
 * versions cannot catch them), and a replayed change older than the current version closes nothing.
 * Unchanged-TOAST columns take the previous version's value.
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
  /**
   * Every change's key, position and time, deletes included: the version current before the batch is
   * closed by the first of them that is newer than it (a replayed older change closes nothing).
   */
  changes: { key: unknown[]; commitLsn: bigint; eventIndex: number; at: number }[];
  /** A truncate: every open version is closed at this time (history is kept). */
  truncateAt?: { commitLsn: bigint; eventIndex: number; at: number };
}

export function historyVersions(events: ChangeEvent[], keyColumns: string[], masks: ColumnMask[]): HistoryBatch {
  return atOnce(historySteps(events, keyColumns, masks, Infinity));
}

/**
 * `historyVersions` with a turn of the event loop every `every` events (event-loop-turns.ts): the background
 * lane's ~400,000 events otherwise hold the main thread for most of a second, and flushes wait. The batch is
 * the same. Between turns a flush may run, but it changes nothing used here: the events are the lane's alone
 * (taken out of its pending list before the merge: history-lane.ts), and the maps and versions are local.
 */
export function historyVersionsInTurns(
  events: ChangeEvent[],
  keyColumns: string[],
  masks: ColumnMask[],
  every = TURN_EVERY,
): Promise<HistoryBatch> {
  return inTurns(historySteps(events, keyColumns, masks, every));
}

/** historyVersions' work, yielding after every `every` events (and after the sort). */
export function* historySteps(
  events: ChangeEvent[],
  keyColumns: string[],
  masks: ColumnMask[],
  every: number,
): Generator<void, HistoryBatch, void> {
  const sorted = [...events].sort(comparePosition);
  if (sorted.length > every) yield;
  const versions: HistoryVersion[] = [];
  const open = new Map<string | number, HistoryVersion>();
  const changes: HistoryBatch['changes'] = [];
  let truncateAt: HistoryBatch['truncateAt'];
  // The position of each key's last change: the same change twice (the source re-sends after a crash, at new
  // Kafka offsets) is taken once. Positions are unique per change of a key, not per event (a Debezium snapshot
  // gives all its rows one position), and sorted a key's copies are neighbours among its changes.
  const lastOf = new Map<string | number, { commitLsn: bigint; eventIndex: number }>();
  for (let i = 0; i < sorted.length; i++) {
    if (i > 0 && i % every === 0) yield;
    const e = sorted[i]!;
    if (e.op === 't') {
      for (const v of open.values()) v.validTo = e.commitTsMs;
      open.clear();
      truncateAt = { commitLsn: e.commitLsn, eventIndex: e.eventIndex, at: e.commitTsMs };
      continue;
    }
    const image = e.op === 'd' ? e.before : e.after;
    if (!image) continue;
    const key = keyOf(e, image, keyColumns);
    const id = keyId(key);
    const last = lastOf.get(id);
    if (last && last.commitLsn === e.commitLsn && last.eventIndex === e.eventIndex) continue;
    lastOf.set(id, e);
    changes.push({ key, commitLsn: e.commitLsn, eventIndex: e.eventIndex, at: e.commitTsMs });
    const prior = open.get(id);
    if (prior) prior.validTo = e.commitTsMs;
    open.delete(id);
    if (e.op === 'd') continue;
    let unchanged = e.unchangedToast;
    // The event's own image, unless this change masks or fills values: nothing writes to a change's row later,
    // and a copy per event was garbage the sink's main thread collected (its CPU profile: GC ~23 %).
    const row = masks.length || unchanged.length ? { ...image } : image;
    for (const m of masks) if (m.column in row && !unchanged.includes(m.column)) row[m.column] = m.apply(row[m.column]);
    if (unchanged.length && prior) {
      for (const c of unchanged) if (!prior.unchanged.includes(c)) row[c] = prior.row[c];
      unchanged = unchanged.filter((c) => prior.unchanged.includes(c));
    }
    const v: HistoryVersion = {
      key,
      row,
      unchanged: unchanged.length ? [...unchanged] : NO_COLUMNS,
      validFrom: e.commitTsMs,
      validTo: null,
      commitLsn: e.commitLsn,
      eventIndex: e.eventIndex,
    };
    versions.push(v);
    open.set(id, v);
  }
  return { versions, changes, ...(truncateAt ? { truncateAt } : {}) };
}

export function historyColumns(rowColumns: LakeColumn[]): LakeColumn[] {
  return [...rowColumns, ...HISTORY_META];
}

export async function mergeHistory(
  engine: ParquetEngine,
  table: DeltaTable,
  schema: LakeSchema,
  keyColumns: string[],
  batch: HistoryBatch,
  txns: TxnAction[],
  evolved?: Action,
  /** The key index for tables with deletion vectors (history-key-index.ts); none: the merge scans. */
  keyIndex?: HistoryIndexOptions,
): Promise<number> {
  const meta = new Set(HISTORY_META.map((c) => c.name));
  const rowCols = schema.columns.filter((c) => !meta.has(c.name));
  const versionCols: LakeColumn[] = [
    ...schema.columns,
    { name: '_unchanged', type: { kind: 'array', element: { kind: 'string' } }, nullable: false },
  ];
  // Staged column by column (ParquetEngine.stageColumns): no row array per version and no BigInt per time or
  // position (a history merge in the background takes ~400,000 versions at a time). Times are microseconds as
  // numbers: milliseconds × 1000 stays a safe integer until the year 2255.
  const vs = batch.versions;
  const versionCells = schema.columns.map((c): ((r: number) => unknown) => {
    switch (c.name) {
      case '_valid_from':
        return (r) => vs[r]!.validFrom * 1000;
      case '_valid_to':
        return (r) => (vs[r]!.validTo === null ? null : vs[r]!.validTo! * 1000);
      case '_is_current':
        return (r) => vs[r]!.validTo === null;
      case '_commit_lsn':
        return (r) => vs[r]!.commitLsn;
      case '_event_index':
        return (r) => vs[r]!.eventIndex;
      default: {
        const name = c.name;
        return (r) => vs[r]!.row[name] ?? null;
      }
    }
  });
  versionCells.push((r) => vs[r]!.unchanged);
  const keyCols = rowCols.filter((c) => keyColumns.includes(c.name));
  const firstCols: LakeColumn[] = [
    ...keyCols,
    { name: '_f_lsn', type: { kind: 'long' }, nullable: false },
    { name: '_f_idx', type: { kind: 'long' }, nullable: false },
    { name: '_f_at', type: { kind: 'timestamp' }, nullable: false },
  ];
  const cs = batch.changes;
  const changeCells: ((r: number) => unknown)[] = [
    ...keyCols.map((c) => {
      const i = keyColumns.indexOf(c.name);
      return (r: number) => cs[r]!.key[i];
    }),
    (r) => cs[r]!.commitLsn,
    (r) => cs[r]!.eventIndex,
    (r) => cs[r]!.at * 1000,
  ];
  const versions = await engine.stageColumns({ columns: versionCols }, vs.length, versionCells);
  const changes = await engine.stageColumns({ columns: firstCols }, cs.length, changeCells);
  try {
    const files = table.files();
    const keyColumn = keyColumns.length === 1 ? schema.columns.find((c) => c.name === keyColumns[0]) : undefined;
    // The files that may hold any version of a batch's key: replays are looked up there, current versions
    // found there. A truncate closes every open version: then every file is read and rewritten.
    const candidatesOf = () =>
      keyColumn && !batch.truncateAt
        ? candidateFiles(
            files,
            keyColumn,
            batch.changes.map((f) => f.key[0]),
          )
        : files;
    const on = (a: string, b: string) => keyColumns.map((k) => `${a}.${q(k)} = ${b}.${q(k)}`).join(' AND ');
    const newer = (a: string, b: string) =>
      `(${a}._f_lsn > ${b}._commit_lsn OR (${a}._f_lsn = ${b}._commit_lsn AND ${a}._f_idx > ${b}._event_index))`;
    const beforeTruncate = batch.truncateAt
      ? `AND (f._f_lsn < ${batch.truncateAt.commitLsn} OR (f._f_lsn = ${batch.truncateAt.commitLsn} AND f._f_idx < ${batch.truncateAt.eventIndex}))`
      : '';
    // When the current version `o` closes: at the first change newer than it (before the truncate, if any).
    const firstNewer = (o: string) =>
      `(SELECT first(f._f_at ORDER BY f._f_lsn, f._f_idx) FROM ${changes} f WHERE ${on(o, 'f')} AND ${newer('f', o)} ${beforeTruncate})`;
    const closeAt = batch.truncateAt ? `TIMESTAMPTZ '${new Date(batch.truncateAt.at).toISOString()}'` : 'NULL';
    const closeTime = (o: string) => `COALESCE(${firstNewer(o)}, ${closeAt})`;
    if (usesDeletionVectors(table)) {
      // Deletion vectors: closing versions are deleted through their files' vectors and written again, closed (history-dv-merge.ts).
      // The key index finds the batch's keys' latest versions without a scan; a truncate (rare) scans every file.
      const keys = keyColumns.map((k) => schema.columns.find((c) => c.name === k)!);
      const index = keyIndex && !batch.truncateAt ? await syncedHistoryIndex(engine, table, keys, keyIndex) : undefined;
      const indexHits = await index?.hits(batch.changes, table);
      const r = await historyDvMerge(engine, table, schema, keyColumns, meta, {
        versions,
        changes,
        candidates: indexHits ? [] : candidatesOf(),
        closeTime,
        on,
        truncate: !!batch.truncateAt,
        ...(indexHits ? { indexHits } : {}),
      });
      const version = await commitHistory(table, keyColumns, [...(evolved ? [evolved] : []), ...r.actions], r.adds, txns);
      // Only a committed merge changes the index: a failed commit leaves it as it was (the next sync starts over).
      await index?.committed(batch.changes, r.actions);
      return version;
    }
    const candidates = candidatesOf();
    await engine.createView('history_candidates', table.store, table.root, candidates, schema);
    let touched: AddAction[] = batch.truncateAt ? files : [];
    if (!batch.truncateAt && candidates.length && batch.changes.length)
      touched = await filesClosing(
        engine,
        table,
        candidates,
        `h._is_current AND EXISTS (SELECT 1 FROM ${changes} f WHERE ${on('h', 'f')} AND ${newer('f', 'h')})`,
      );
    // New versions: newer than every version history holds of the key (not a replay, not older than history).
    const fresh = `SELECT v.* FROM ${versions} v WHERE ${newerThanHistory('v', 'history_candidates', on)}`;
    const names = schema.columns.map((c) => q(c.name)).join(', ');
    let select: string;
    if (touched.length) {
      await engine.createView('history_old', table.store, table.root, touched, schema);
      const oldCols = schema.columns.map((c) => {
        if (c.name === '_valid_to')
          return `CASE WHEN o._is_current THEN COALESCE(${closeTime('o')}, o._valid_to) ELSE o._valid_to END AS _valid_to`;
        if (c.name === '_is_current')
          return `CASE WHEN o._is_current AND ${closeTime('o')} IS NOT NULL THEN false ELSE o._is_current END AS _is_current`;
        return `o.${q(c.name)}`;
      });
      const newCols = schema.columns.map((c) =>
        meta.has(c.name)
          ? `v.${q(c.name)}`
          : `CASE WHEN list_contains(v._unchanged, '${c.name.replace(/'/g, "''")}') THEN cur.${q(c.name)} ELSE v.${q(c.name)} END AS ${q(c.name)}`,
      );
      select = [
        `SELECT ${oldCols.join(', ')} FROM history_old o`,
        `UNION ALL BY NAME`,
        `SELECT ${newCols.join(', ')} FROM (${fresh}) v LEFT JOIN (SELECT * FROM history_old WHERE _is_current) cur ON ${on('v', 'cur')}`,
      ].join('\n');
      select = `SELECT ${names} FROM (${select}) ORDER BY ${keyColumns.map(q).join(', ')}, _valid_from`;
    } else {
      select = `SELECT ${names} FROM (${fresh}) ORDER BY ${keyColumns.map(q).join(', ')}, _valid_from`;
    }
    const adds = await engine.writeFiles(select, { store: table.store, root: table.root, schema });
    const now = Date.now();
    const removes: Action[] = touched.map((f) => ({
      remove: { path: f.path, deletionTimestamp: now, dataChange: true, partitionValues: f.partitionValues, size: f.size },
    }));
    return await commitHistory(table, keyColumns, [...(evolved ? [evolved] : []), ...removes], adds, txns);
  } finally {
    await engine.drop(versions);
    await engine.drop(changes);
  }
}

async function commitHistory(
  table: DeltaTable,
  keyColumns: string[],
  actions: Action[],
  adds: DataFile[],
  txns: TxnAction[],
): Promise<number> {
  const all: Action[] = [...actions, ...adds.map((add) => ({ add })), ...txns.map((txn) => ({ txn }))];
  faultPoint('before-commit');
  return await table.commit(all, { operation: 'MERGE', parameters: { predicate: `scd2(${keyColumns.join(', ')})` } });
}

/** The candidate files that hold a row matching `where` (alias h, with the batch's changes in scope). */
async function filesClosing(engine: ParquetEngine, table: DeltaTable, candidates: AddAction[], where: string): Promise<AddAction[]> {
  const byLocal = new Map<string, AddAction>();
  for (const f of candidates) byLocal.set(await table.store.localFile(`${table.root}/${decodeURIComponent(f.path)}`), f);
  const list = [...byLocal.keys()].map((p) => `'${p.replace(/'/g, "''")}'`).join(', ');
  const rows = await engine.query(
    `SELECT DISTINCT h.filename FROM read_parquet([${list}], filename = true, union_by_name = true) h WHERE ${where}`,
  );
  return rows.map((r) => byLocal.get(String(r.filename))!).filter(Boolean);
}

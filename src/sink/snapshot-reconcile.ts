import type { Action, AddAction, MetaDataAction } from '../lake/delta/actions.ts';
import type { DeltaTable } from '../lake/delta/delta-table.ts';
import type { ParquetEngine } from '../lake/parquet/parquet-engine.ts';
import type { Logger } from '../log.ts';
import type { SnapshotEnd } from '../events/snapshot-end.ts';
import type { DeleteMarkers } from './delete-markers.ts';
import { faultPoint } from './fault.ts';
import { q } from './silver-merge.ts';
import { closeVersionsWithVectors } from './history-dv-merge.ts';
import { usesDeletionVectors } from './silver-dv-merge.ts';

/**
 * Re-snapshots reconcile (issue 11 item 14): after a snapshot re-read a table, the keys it did not see are
 * gone from Postgres (deleted while the slot could not see it, e.g. before `tide source resnapshot`), and
 * leave silver, are closed in history, and so drop out of gold.
 *
 * The source puts an end-of-snapshot marker behind the table's snapshot rows on every partition of its topic
 * (events/snapshot-end.ts), carrying the commit LSN C of the snapshot rows. Each lake table counts the
 * partitions whose marker it has committed, in a table property written in the same commit as the Kafka
 * offsets that move past the marker (so a replayed marker is skipped by the txn versions, and a marker seen
 * twice counts once). When every partition's marker is in, every snapshot row of the table is applied: a
 * silver row, or a current history version, whose `_commit_lsn` is below C was neither re-read by the snapshot
 * (its rows carry C) nor changed since (streamed changes sort after C). Silver deletes those rows and history
 * closes those versions, each in one commit that also records `tide.reconciledAt = C`.
 *
 * Crash safety: the commit that completes the set of partitions and the reconcile commit are two commits.
 * A crash between them leaves the set complete and `tide.reconciledAt` below C: the sink reconciles when it
 * opens the table and after every batch, until the reconcile commit is in. Silver's delete markers (item 13)
 * are written first and are idempotent (the newest per key wins), so a redone reconcile writes the same.
 */
export const SNAPSHOT_END_PROPERTY = 'tide.snapshotEnd';
export const RECONCILED_AT = 'tide.reconciledAt';

/** A marker as the sink read it: which partition, at which offset. */
export interface SnapshotEndAt extends SnapshotEnd {
  topic: string;
  partition: number;
  offset: bigint;
}

interface EndState {
  commitLsn: bigint;
  partitions: number;
  tsMs: number;
  seen: number[];
}

function readState(configuration: Record<string, string>): { end?: EndState; reconciledAt?: bigint } {
  const out: { end?: EndState; reconciledAt?: bigint } = {};
  const r = configuration[RECONCILED_AT];
  if (r && /^\d+$/.test(r)) out.reconciledAt = BigInt(r);
  const raw = configuration[SNAPSHOT_END_PROPERTY];
  if (raw) {
    const j = JSON.parse(raw) as { commitLsn: string; partitions: number; tsMs: number; seen: number[] };
    out.end = { commitLsn: BigInt(j.commitLsn), partitions: j.partitions, tsMs: j.tsMs, seen: j.seen };
  }
  return out;
}

/**
 * The table's configuration with `markers` counted, or undefined when they change nothing: a marker of a
 * snapshot already reconciled, or older than the one being counted (a newer snapshot subsumes it), is ignored.
 */
export function countMarkers(configuration: Record<string, string>, markers: SnapshotEndAt[]): Record<string, string> | undefined {
  const { end, reconciledAt } = readState(configuration);
  let next = end;
  for (const m of markers) {
    if (reconciledAt !== undefined && m.commitLsn <= reconciledAt) continue;
    if (!next || m.commitLsn > next.commitLsn)
      next = { commitLsn: m.commitLsn, partitions: m.partitions, tsMs: m.tsMs, seen: [m.partition] };
    else if (m.commitLsn === next.commitLsn && !next.seen.includes(m.partition))
      next = { ...next, tsMs: Math.max(next.tsMs, m.tsMs), seen: [...next.seen, m.partition].sort((a, b) => a - b) };
  }
  if (next === end) return undefined;
  return {
    ...configuration,
    [SNAPSHOT_END_PROPERTY]: JSON.stringify({ ...next!, commitLsn: next!.commitLsn.toString() }),
  };
}

/** The snapshot whose markers are all in and that the table has not reconciled yet. */
export function pendingReconcile(configuration: Record<string, string>): { commitLsn: bigint; tsMs: number } | undefined {
  const { end, reconciledAt } = readState(configuration);
  if (!end || new Set(end.seen).size < end.partitions) return undefined;
  if (reconciledAt !== undefined && reconciledAt >= end.commitLsn) return undefined;
  return { commitLsn: end.commitLsn, tsMs: end.tsMs };
}

/** `base` (the table's metaData, or an evolved one) with the markers counted; undefined when unchanged. */
export function withMarkersCounted(base: MetaDataAction, markers: SnapshotEndAt[]): MetaDataAction | undefined {
  const configuration = countMarkers(base.configuration, markers);
  return configuration ? { ...base, configuration } : undefined;
}

/** The smallest _commit_lsn of a file from its stats; undefined when unknown. */
function minCommitLsn(f: AddAction): number | undefined {
  if (!f.stats) return undefined;
  try {
    const v = (JSON.parse(f.stats) as { minValues?: Record<string, unknown> }).minValues?._commit_lsn;
    return typeof v === 'number' ? v : typeof v === 'string' ? Number(v) : undefined;
  } catch {
    return undefined;
  }
}

/** The files that hold a row matching `where` (alias t): stats prune on _commit_lsn, DuckDB confirms. */
async function filesWhere(engine: ParquetEngine, table: DeltaTable, below: bigint, where: string): Promise<AddAction[]> {
  // JSON numbers lose precision above 2^53: a file whose minimum is near C is read, not skipped.
  const candidates = table.files().filter((f) => {
    const min = minCommitLsn(f);
    return min === undefined || min <= Number(below);
  });
  if (!candidates.length) return [];
  const byLocal = new Map<string, AddAction>();
  for (const f of candidates) byLocal.set(await table.store.localFile(`${table.root}/${decodeURIComponent(f.path)}`), f);
  const list = [...byLocal.keys()].map((p) => `'${p.replace(/'/g, "''")}'`).join(', ');
  const rows = await engine.query(
    `SELECT DISTINCT t.filename FROM read_parquet([${list}], filename = true, union_by_name = true) t WHERE ${where}`,
  );
  return rows.map((r) => byLocal.get(String(r.filename))!).filter(Boolean);
}

function removes(files: AddAction[], now: number): Action[] {
  return files.map((f) => ({
    remove: { path: f.path, deletionTimestamp: now, dataChange: true, partitionValues: f.partitionValues, size: f.size },
  }));
}

function reconciled(table: DeltaTable, commitLsn: bigint): Action {
  return { metaData: { ...table.metadata, configuration: { ...table.metadata.configuration, [RECONCILED_AT]: commitLsn.toString() } } };
}

/**
 * Silver: delete the rows older than the snapshot, after leaving a delete marker for each (at the snapshot's
 * position, just before its first row: an older change of the key can then never bring it back, a snapshot
 * row of it could). Returns the commit's version and how many keys left, or undefined when nothing is pending.
 */
export async function reconcileSilver(
  engine: ParquetEngine,
  table: DeltaTable,
  keyColumns: string[],
  markers: DeleteMarkers,
  log: Logger,
): Promise<{ version: number; deleted: number } | undefined> {
  const pending = pendingReconcile(table.metadata.configuration);
  if (!pending) return undefined;
  const c = pending.commitLsn;
  const stale = `t._commit_lsn < ${c}`;
  const touched = await filesWhere(engine, table, c, stale);
  let deleted = 0;
  let adds: AddAction[] = [];
  if (touched.length) {
    await engine.createView('silver_reconcile', table.store, table.root, touched, table.schema);
    deleted = Number((await engine.query(`SELECT count(*) AS n FROM silver_reconcile t WHERE ${stale}`))[0]!.n);
    const keys = keyColumns.map((k) => `t.${q(k)}`).join(', ');
    await markers.recordSelect(
      engine,
      `SELECT ${keys}, ${c}::BIGINT AS _commit_lsn, -1::BIGINT AS _event_index, now() AS _deleted_at FROM silver_reconcile t WHERE ${stale}`,
      keyColumns,
    );
    const names = table.schema.columns.map((col) => q(col.name)).join(', ');
    adds = await engine.writeFiles(
      `SELECT ${names} FROM silver_reconcile t WHERE NOT (${stale}) ORDER BY ${keyColumns.map(q).join(', ')}`,
      { store: table.store, root: table.root, schema: table.schema },
    );
  }
  faultPoint('reconcile-commit');
  const version = await table.commit([...removes(touched, Date.now()), ...adds.map((add) => ({ add })), reconciled(table, c)], {
    operation: 'DELETE',
    parameters: { predicate: `_commit_lsn < ${c} (keys a re-snapshot did not read)` },
  });
  log.info(
    { table: table.label, snapshotCommitLsn: c.toString(), deletedKeys: deleted, version },
    're-snapshot reconciled: keys the snapshot did not read are deleted',
  );
  return { version, deleted };
}

/** History: close the current versions older than the snapshot, at the time the snapshot finished the table. */
export async function reconcileHistory(
  engine: ParquetEngine,
  table: DeltaTable,
  keyColumns: string[],
  log: Logger,
): Promise<number | undefined> {
  const pending = pendingReconcile(table.metadata.configuration);
  if (!pending) return undefined;
  const c = pending.commitLsn;
  const stale = `t._is_current AND t._commit_lsn < ${c}`;
  const at = `TIMESTAMPTZ '${new Date(pending.tsMs).toISOString()}'`;
  let closed = 0;
  let adds: AddAction[] = [];
  let touched: AddAction[] = [];
  let vectors: Action[] = [];
  if (usesDeletionVectors(table)) {
    // A history with deletion vectors closes them through the vectors too (history-dv-merge.ts): no file is rewritten.
    const r = await closeVersionsWithVectors(engine, table, keyColumns, `h._commit_lsn < ${c}`, at);
    ({ adds, closed } = r);
    vectors = r.actions;
  } else touched = await filesWhere(engine, table, c, stale);
  if (touched.length) {
    await engine.createView('history_reconcile', table.store, table.root, touched, table.schema);
    closed = Number((await engine.query(`SELECT count(*) AS n FROM history_reconcile t WHERE ${stale}`))[0]!.n);
    const cols = table.schema.columns.map((col) => {
      if (col.name === '_valid_to') return `CASE WHEN ${stale} THEN ${at} ELSE t._valid_to END AS _valid_to`;
      if (col.name === '_is_current') return `CASE WHEN ${stale} THEN false ELSE t._is_current END AS _is_current`;
      return `t.${q(col.name)}`;
    });
    adds = await engine.writeFiles(
      `SELECT ${cols.join(', ')} FROM history_reconcile t ORDER BY ${keyColumns.map((k) => `t.${q(k)}`).join(', ')}, t._valid_from`,
      {
        store: table.store,
        root: table.root,
        schema: table.schema,
      },
    );
  }
  faultPoint('reconcile-commit');
  const version = await table.commit([...removes(touched, Date.now()), ...vectors, ...adds.map((add) => ({ add })), reconciled(table, c)], {
    operation: 'MERGE',
    parameters: { predicate: `close current versions with _commit_lsn < ${c} (keys a re-snapshot did not read)` },
  });
  log.info(
    { table: table.label, snapshotCommitLsn: c.toString(), closedVersions: closed, version },
    're-snapshot reconciled: versions the snapshot did not read are closed',
  );
  return version;
}

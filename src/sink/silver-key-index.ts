import type { Action, AddAction } from '../lake/delta/actions.ts';
import type { DeltaTable } from '../lake/delta/delta-table.ts';
import type { LakeColumn } from '../lake/lake-schema.ts';
import type { Logger } from '../log.ts';
import type { ParquetEngine } from '../lake/parquet/parquet-engine.ts';
import { commitLsnOf, compareVersion, split } from './key-index.ts';
import { CoveringKeyIndex, numRecords, readLiveKeys, syncedIndexOf, type SyncResult } from './key-index-scan.ts';
import type { KeyChange } from './silver-changes.ts';

/**
 * The key index of a silver table with deletion vectors (README "Deletion vectors"): for every live
 * key, the file and row position that hold it and the row's (_commit_lsn, _event_index), so a merge
 * finds the rows it replaces by lookup instead of scanning the key column of every file.
 *
 * It covers a known set of files, each with the deletion vector it had when read. `sync` brings it in
 * step with the table's current snapshot before every merge, whoever committed since: files that are
 * gone or whose vector changed (another worker, `tide lake optimize`, Spark) leave the index, files it
 * does not cover are read (key, LSN, event index and position only) and added. After this sink's own
 * commit, `committed` applies the merge: the replaced keys leave, the touched files keep their new
 * vector, files removed whole leave; the new files are read by the next `sync`. Nothing is applied
 * before the commit succeeded, so a failed commit leaves no trace.
 *
 * Only tables with one integer key column (long/integer/short) are indexed; any other key falls back
 * to scanning (silver-dv-merge.ts), as do tables with more live rows than `silver.key.index.max.rows`.
 */

/** A changed key's live row, found in the index. */
export interface IndexHit {
  file: AddAction;
  row: number;
  key: unknown;
  commitLsn: bigint;
  eventIndex: number;
  /** The change that found it. */
  change: KeyChange;
}

export type { SyncResult };

export class SilverKeyIndex extends CoveringKeyIndex {
  /** Bring the index in step with the table's snapshot; `ok: false` when it cannot serve (then drop it). */
  async sync(engine: ParquetEngine, table: DeltaTable): Promise<SyncResult> {
    const current = new Map(table.files().map((f) => [f.path, f]));
    const dropped = this.index.purge(this.files.dropChanged(current));
    const fresh = [...current.values()].filter((f) => !this.files.has(f.path));
    if (!fresh.length) return { ok: true, read: 0, dropped };
    const rows = fresh.reduce((n, f) => n + numRecords(f), 0);
    if (this.index.size + rows > this.maxRows)
      return { ok: false, reason: `more than silver.key.index.max.rows = ${this.maxRows} rows (${this.index.size + rows})` };
    this.index.reserve(rows);
    const ids = this.files.newIds(fresh.length);
    let duplicate: string | undefined;
    await readLiveKeys(engine, table, fresh, this.keyColumn, [], (c, r) => {
      const [file, row, kLo, kHi, lLo, lHi, ev] = c as [Int32Array, Int32Array, Int32Array, Int32Array, Int32Array, Int32Array, Int32Array];
      const fi = file[r]!;
      if (!this.index.insert(kLo[r]!, kHi[r]!, ids[fi]!, row[r]!, lLo[r]!, lHi[r]!, ev[r]!))
        duplicate ??= `key ${(BigInt(kHi[r]!) << 32n) | BigInt(kLo[r]! >>> 0)} is live in two rows (${fresh[fi]!.path} and another file)`;
    });
    this.files.cover(fresh, ids);
    if (duplicate) return { ok: false, reason: duplicate };
    return { ok: true, read: fresh.length, dropped };
  }

  /**
   * The live rows of the changed keys (after `sync`); a key with no live row has no hit. Undefined when
   * there are more than `limit` hits: the merge then scans (inserts of new keys are no hits, so they do
   * not count against it).
   */
  hits(changes: KeyChange[], table: DeltaTable, limit = Infinity): IndexHit[] | undefined {
    const byPath = new Map(table.files().map((f) => [f.path, f]));
    const out: IndexHit[] = [];
    for (const c of changes) {
      const [lo, hi] = split(c.key[0] as bigint | number);
      const s = this.index.find(lo, hi);
      if (s < 0) continue;
      if (out.length >= limit) return undefined;
      const file = byPath.get(this.files.pathOf(this.index.fileAt(s))!)!;
      const v = this.index.versionAt(s);
      const commitLsn = commitLsnOf(v);
      out.push({ file, row: this.index.rowAt(s), key: c.key[0], commitLsn, eventIndex: v.event >>> 0, change: c });
    }
    return out;
  }

  /**
   * Apply this sink's committed merge: keys whose live row a change replaced or deleted leave; files
   * the commit removes leave, or keep their new vector when re-added at the same path. New files stay
   * unread until the next `sync`.
   */
  committed(changes: KeyChange[], actions: Action[]): void {
    for (const c of changes) {
      const [lo, hi] = split(c.key[0] as bigint | number);
      const s = this.index.find(lo, hi);
      if (s < 0) continue;
      const [cLo, cHi] = split(c.commitLsn);
      if (compareVersion(cLo, cHi, c.eventIndex, this.index.versionAt(s)) > 0) this.index.remove(lo, hi);
    }
    this.index.purge(this.files.followCommit(actions));
  }
}

/** The index of each silver table this process writes, while the table object lives. */
const indexes = new WeakMap<DeltaTable, SilverKeyIndex | 'off'>();

export interface KeyIndexOptions {
  /** `silver.key.index.max.rows`: above this many live rows the table is not indexed (0: never). */
  maxRows: number;
  /** Batches changing more than this share of the keys scan instead (silver-merge.ts); tests set 1 to look up always. */
  lookupMaxShare?: number;
  log?: Logger;
}

/** The table's index, synced with its snapshot; undefined when the table is not (or no longer) indexed. */
export async function syncedKeyIndex(
  engine: ParquetEngine,
  table: DeltaTable,
  keyColumns: LakeColumn[],
  opts: KeyIndexOptions,
): Promise<SilverKeyIndex | undefined> {
  const synced = await syncedIndexOf(
    indexes,
    (column, maxRows) => new SilverKeyIndex(column, maxRows),
    engine,
    table,
    keyColumns,
    opts,
    'silver merges find changed keys',
  );
  if (!synced) return undefined;
  const { index, known, seconds } = synced;
  if (!known)
    opts.log?.info(
      { table: table.label, keys: index.size, megabytes: Math.round(index.bytes / 1e6), seconds },
      `${table.label}: key index built`,
    );
  return index;
}

/** The table's index as it stands ('off' after a fallback); for tests. */
export function keyIndexOf(table: DeltaTable): SilverKeyIndex | 'off' | undefined {
  return indexes.get(table);
}

/** Forget a table's index (tests, and a table dropped or recreated). */
export function dropKeyIndex(table: DeltaTable): void {
  indexes.delete(table);
}

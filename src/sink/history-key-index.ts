import type { Action, AddAction } from '../lake/delta/actions.ts';
import type { DeltaTable } from '../lake/delta/delta-table.ts';
import type { LakeColumn } from '../lake/lake-schema.ts';
import type { Logger } from '../log.ts';
import type { ParquetEngine } from '../lake/parquet/parquet-engine.ts';
import { commitLsnOf, compareVersion, split } from './key-index.ts';
import { nextTurn, TURN_EVERY } from './event-loop-turns.ts';
import { CoveringKeyIndex, readLiveKeys, syncedIndexOf, type SyncResult } from './key-index-scan.ts';

/**
 * The key index of a history (SCD2) table with deletion vectors (README "History merges, copy-on-write
 * against deletion vectors"): for every key, where its **latest** live version is (file, row position),
 * that version's (_commit_lsn, _event_index) and whether it is current. A merge then needs no scan:
 *  - a key the index does not hold has no version at all (the index covers every file): its new
 *    versions are appended and nothing closes;
 *  - the latest version is the one that closes when it is current and a change is newer (history holds
 *    one current version per key, and it is the latest: a new version closes the one before it in the
 *    same commit, a delete closes it without opening one, a truncate closes them all);
 *  - a staged version not newer than the latest is in history already (a replay) or older than what
 *    history holds (history-dv-merge.ts): it is dropped.
 *
 * Like the silver index (silver-key-index.ts) it covers a known set of files with the vector each had
 * when read, and `sync` reads the files it does not cover before every merge, keeping per key the newest
 * version it sees (`KeyIndex.keepNewer`). A covered file that another commit removed or gave another
 * vector (another worker, `tide lake optimize`, this sink's own truncate or reconcile, Spark) loses its
 * keys and is read again when it is still there. That is exact as long as a history row that leaves a
 * file reappears in a file the same commit adds (every Tide writer: a closing version is written again,
 * closed; optimize copies the live rows; Spark's UPDATE and OPTIMIZE too). A row deleted for good by hand
 * (Spark `DELETE FROM` on the history) drops its key's entry while older versions of the key remain: the
 * key then counts as without history (its replays would be appended again); rebuild by restarting the sink.
 * After this sink's own merge, `committed` removes the keys whose latest version closed (their closed copy
 * and any newer version are in the new files, read by the next `sync`) and follows the vectors it wrote.
 *
 * Memory: one slot per key (not per version), about 40 bytes; more keys than `silver.key.index.max.rows`
 * turn it off for the table (the merge scans, as without it).
 */

/** A changed key's latest live version, found in the index. */
export interface HistoryHit {
  file: AddAction;
  row: number;
  key: unknown;
  commitLsn: bigint;
  eventIndex: number;
  current: boolean;
}

/** Row positions are kept doubled with the current bit below them: one int32 for both. */
const MAX_ROW = 2 ** 30;

export class HistoryKeyIndex extends CoveringKeyIndex {
  /** Bring the index in step with the table's snapshot; `ok: false` when it cannot serve (then drop it). */
  async sync(engine: ParquetEngine, table: DeltaTable): Promise<SyncResult> {
    const current = new Map(table.files().map((f) => [f.path, f]));
    // Keys whose latest version was in a file that changed leave; the file (if still there) is read again.
    const dropped = this.index.purge(this.files.dropChanged(current));
    const fresh = [...current.values()].filter((f) => !this.files.has(f.path));
    if (!fresh.length) return { ok: true, read: 0, dropped };
    const ids = this.files.newIds(fresh.length);
    let problem: string | undefined;
    const keyOf = (lo: number, hi: number) => (BigInt(hi) << 32n) | BigInt(lo >>> 0);
    await readLiveKeys(engine, table, fresh, this.keyColumn, ['_is_current'], (c, r) => {
      if (problem) return;
      const [file, row, kLo, kHi, lLo, lHi, ev, cur] = c as Int32Array[] as [
        Int32Array,
        Int32Array,
        Int32Array,
        Int32Array,
        Int32Array,
        Int32Array,
        Int32Array,
        Int32Array,
      ];
      const fi = file[r]!;
      const lo = kLo[r]!;
      const hi = kHi[r]!;
      if (row[r]! >= MAX_ROW) problem = `${fresh[fi]!.path} has more than ${MAX_ROW} rows`;
      else if (!this.index.keepNewer(lo, hi, ids[fi]!, row[r]! * 2 + (cur[r]! ? 1 : 0), lLo[r]!, lHi[r]!, ev[r]!)) {
        // Not newer: an older version (normal), or the same version live twice, which no merge writes.
        const s = this.index.find(lo, hi);
        if (compareVersion(lLo[r]!, lHi[r]!, ev[r]!, this.index.versionAt(s)) === 0)
          problem = `version (${BigInt.asUintN(64, keyOf(lLo[r]!, lHi[r]!))}, ${ev[r]! >>> 0}) of key ${keyOf(lo, hi)} is live in two rows (${fresh[fi]!.path} and another)`;
      }
      if (!problem && this.index.size > this.maxRows) problem = `more than silver.key.index.max.rows = ${this.maxRows} keys`;
    });
    this.files.cover(fresh, ids);
    if (problem) return { ok: false, reason: problem };
    return { ok: true, read: fresh.length, dropped };
  }

  /**
   * The latest live version of each key the changes name (after `sync`), once per key; keys with no version
   * have none. A turn of the event loop every `every` changes (event-loop-turns.ts: flushes run between);
   * nothing a flush does changes the index or the snapshot read here: the index is the history lane's alone
   * and its merges run one at a time (history-lane.ts), the flush keeps silver's.
   */
  async hits(changes: { key: unknown[] }[], table: DeltaTable, every = TURN_EVERY): Promise<HistoryHit[]> {
    const byPath = new Map(table.files().map((f) => [f.path, f]));
    const seen = new Set<number>();
    const out: HistoryHit[] = [];
    for (let i = 0; i < changes.length; i++) {
      if (i > 0 && i % every === 0) await nextTurn();
      const c = changes[i]!;
      const [lo, hi] = split(c.key[0] as bigint | number);
      const s = this.index.find(lo, hi);
      if (s < 0 || seen.has(s)) continue;
      seen.add(s);
      const { path, ...at } = this.at(s);
      out.push({ file: byPath.get(path)!, key: c.key[0], ...at });
    }
    return out;
  }

  /** Slot `s`'s entry: the file's path, the row, the version and the current bit (kept below the row). */
  private at(s: number): { path: string; row: number; commitLsn: bigint; eventIndex: number; current: boolean } {
    const v = this.index.versionAt(s);
    const packed = this.index.rowAt(s);
    return {
      path: this.files.pathOf(this.index.fileAt(s))!,
      row: packed >>> 1,
      commitLsn: commitLsnOf(v),
      eventIndex: v.event >>> 0,
      current: (packed & 1) === 1,
    };
  }

  /** The latest version of a key as the index holds it (tests). */
  latest(key: bigint | number): { path: string; row: number; commitLsn: bigint; eventIndex: number; current: boolean } | undefined {
    const [lo, hi] = split(key);
    const s = this.index.find(lo, hi);
    return s < 0 ? undefined : this.at(s);
  }

  /**
   * Apply this sink's committed merge (no truncate): keys whose current latest version a newer change
   * closed leave (the closed copy and the new versions are in the new files); files re-added with a new
   * vector keep it, files removed whole leave. New files stay unread until the next `sync`. A turn of the
   * event loop every `every` changes, as in `hits`.
   */
  async committed(
    changes: { key: unknown[]; commitLsn: bigint; eventIndex: number }[],
    actions: Action[],
    every = TURN_EVERY,
  ): Promise<void> {
    for (let i = 0; i < changes.length; i++) {
      if (i > 0 && i % every === 0) await nextTurn();
      const c = changes[i]!;
      const [lo, hi] = split(c.key[0] as bigint | number);
      const s = this.index.find(lo, hi);
      if (s < 0 || (this.index.rowAt(s) & 1) === 0) continue;
      const [cLo, cHi] = split(c.commitLsn);
      if (compareVersion(cLo, cHi, c.eventIndex, this.index.versionAt(s)) > 0) this.index.remove(lo, hi);
    }
    this.index.purge(this.files.followCommit(actions));
  }
}

/** The index of each history table this process writes, while the table object lives. */
const indexes = new WeakMap<DeltaTable, HistoryKeyIndex | 'off'>();

export interface HistoryIndexOptions {
  /** `silver.key.index.max.rows`: above this many keys the history table is not indexed (0: never). */
  maxRows: number;
  log?: Logger;
}

/** The history table's index, synced with its snapshot; undefined when the table is not (or no longer) indexed. */
export async function syncedHistoryIndex(
  engine: ParquetEngine,
  table: DeltaTable,
  keyColumns: LakeColumn[],
  opts: HistoryIndexOptions,
): Promise<HistoryKeyIndex | undefined> {
  const synced = await syncedIndexOf(
    indexes,
    (column, maxRows) => new HistoryKeyIndex(column, maxRows),
    engine,
    table,
    keyColumns,
    opts,
    "history merges find the changed keys' versions",
  );
  if (!synced) return undefined;
  const { index, known, seconds } = synced;
  if (!known)
    opts.log?.info(
      {
        table: table.label,
        keys: index.size,
        megabytes: Math.round(index.bytes / 1e6),
        seconds,
      },
      `${table.label}: history key index built`,
    );
  return index;
}

/** The table's history index as it stands ('off' after a fallback); for tests. */
export function historyIndexOf(table: DeltaTable): HistoryKeyIndex | 'off' | undefined {
  return indexes.get(table);
}

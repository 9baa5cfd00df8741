import type { Action, AddAction } from '../lake/delta/actions.ts';
import { DeletionVectorReader, type DeletionVectorDescriptor } from '../lake/delta/deletion-vector.ts';
import type { DeltaTable } from '../lake/delta/delta-table.ts';
import type { LakeColumn } from '../lake/lake-schema.ts';
import type { Logger } from '../log.ts';
import type { ParquetEngine } from '../lake/parquet/parquet-engine.ts';
import { compareVersion, KeyIndex, split } from './key-index.ts';
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

const INTEGER_KINDS = new Set(['long', 'integer', 'short']);

/** Whether a silver key can be indexed: one integer column. */
export function indexableKey(keyColumns: LakeColumn[]): boolean {
  return keyColumns.length === 1 && INTEGER_KINDS.has(keyColumns[0]!.type.kind);
}

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

const dvSignature = (dv: DeletionVectorDescriptor | undefined): string => (dv ? JSON.stringify(dv) : '');
const q = (name: string): string => `"${name.replace(/"/g, '""')}"`;
const lit = (s: string): string => `'${s.replace(/'/g, "''")}'`;
/** A BIGINT expression as its signed low and high 32-bit halves. */
const low = (e: string) => `((${e}) & 4294967295) - (((${e}) & 2147483648) << 1)`;
const high = (e: string) => `((${e}) >> 32)`;

export type SyncResult = { ok: true; read: number; dropped: number } | { ok: false; reason: string };

export class SilverKeyIndex {
  private index = new KeyIndex();
  /** Covered files: path (as in the log) → id and the signature of the vector it had when read. */
  private readonly files = new Map<string, { id: number; dv: string }>();
  private readonly paths = new Map<number, string>();
  private nextId = 1;

  constructor(
    readonly keyColumn: string,
    private readonly maxRows: number,
  ) {}

  get size(): number {
    return this.index.size;
  }

  get bytes(): number {
    return this.index.bytes;
  }

  /** Bring the index in step with the table's snapshot; `ok: false` when it cannot serve (then drop it). */
  async sync(engine: ParquetEngine, table: DeltaTable): Promise<SyncResult> {
    const current = new Map(table.files().map((f) => [f.path, f]));
    const gone = new Set<number>();
    for (const [path, { id, dv }] of this.files) {
      const f = current.get(path);
      if (!f || dvSignature(f.deletionVector) !== dv) {
        gone.add(id);
        this.files.delete(path);
        this.paths.delete(id);
      }
    }
    const dropped = this.index.purge(gone);
    const fresh = [...current.values()].filter((f) => !this.files.has(f.path));
    if (!fresh.length) return { ok: true, read: 0, dropped };
    const rows = fresh.reduce((n, f) => n + numRecords(f), 0);
    if (this.index.size + rows > this.maxRows)
      return { ok: false, reason: `more than silver.key.index.max.rows = ${this.maxRows} rows (${this.index.size + rows})` };
    this.index.reserve(rows);
    const ids = fresh.map(() => this.nextId++);
    const deleted = new Map<number, Set<number>>();
    const reader = new DeletionVectorReader(table.store, table.root, table.label);
    for (let i = 0; i < fresh.length; i++) {
      const dv = fresh[i]!.deletionVector;
      if (dv) deleted.set(i, new Set(await reader.rows(dv)));
    }
    const locals: string[] = [];
    for (const f of fresh) locals.push(await table.store.localFile(`${table.root}/${decodeURIComponent(f.path)}`));
    const k = `${q(this.keyColumn)}::BIGINT`;
    const sql =
      `SELECT file_index::INTEGER, file_row_number::INTEGER, (${low(k)})::INTEGER, (${high(k)})::INTEGER, ` +
      `(${low('_commit_lsn')})::INTEGER, (${high('_commit_lsn')})::INTEGER, ` +
      `CASE WHEN _event_index BETWEEN 0 AND 4294967295 THEN (${low('_event_index')})::INTEGER ` +
      `ELSE error('_event_index out of the key index range: ' || _event_index) END ` +
      `FROM read_parquet([${locals.map(lit).join(', ')}], file_row_number = true, union_by_name = true)`;
    let duplicate: string | undefined;
    await engine.int32Chunks(sql, (c, n) => {
      const [file, row, kLo, kHi, lLo, lHi, ev] = c as [Int32Array, Int32Array, Int32Array, Int32Array, Int32Array, Int32Array, Int32Array];
      for (let r = 0; r < n; r++) {
        const fi = file[r]!;
        if (deleted.get(fi)?.has(row[r]!)) continue;
        if (!this.index.insert(kLo[r]!, kHi[r]!, ids[fi]!, row[r]!, lLo[r]!, lHi[r]!, ev[r]!))
          duplicate ??= `key ${(BigInt(kHi[r]!) << 32n) | BigInt(kLo[r]! >>> 0)} is live in two rows (${fresh[fi]!.path} and another file)`;
      }
    });
    fresh.forEach((f, i) => {
      this.files.set(f.path, { id: ids[i]!, dv: dvSignature(f.deletionVector) });
      this.paths.set(ids[i]!, f.path);
    });
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
      const file = byPath.get(this.paths.get(this.index.fileAt(s))!)!;
      const v = this.index.versionAt(s);
      const commitLsn = BigInt.asUintN(64, (BigInt(v.lsnHi) << 32n) | BigInt(v.lsnLo >>> 0));
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
    const readded = new Map<string, AddAction>();
    for (const a of actions) if ('add' in a) readded.set(a.add.path, a.add);
    const gone = new Set<number>();
    for (const a of actions) {
      if (!('remove' in a)) continue;
      const known = this.files.get(a.remove.path);
      if (!known) continue;
      const again = readded.get(a.remove.path);
      if (again) known.dv = dvSignature(again.deletionVector);
      else {
        gone.add(known.id);
        this.files.delete(a.remove.path);
        this.paths.delete(known.id);
      }
    }
    this.index.purge(gone);
  }
}

/** The file's row count from its stats (0 when unknown: only sizes the table ahead). */
function numRecords(f: AddAction): number {
  try {
    const n = (JSON.parse(f.stats ?? '{}') as { numRecords?: number }).numRecords;
    return typeof n === 'number' ? n : 0;
  } catch {
    return 0;
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
  const known = indexes.get(table);
  if (known === 'off' || opts.maxRows <= 0 || !indexableKey(keyColumns)) return undefined;
  const index = known ?? new SilverKeyIndex(keyColumns[0]!.name, opts.maxRows);
  const started = performance.now();
  const r = await index.sync(engine, table);
  if (!r.ok) {
    indexes.set(table, 'off');
    opts.log?.warn(
      { table: table.label, reason: r.reason },
      `${table.label}: silver merges find changed keys by scanning the files from now on, not by the key index: ${r.reason}. Raise silver.key.index.max.rows (each key takes about 40 bytes of memory) or leave it`,
    );
    return undefined;
  }
  indexes.set(table, index);
  if (!known)
    opts.log?.info(
      { table: table.label, keys: index.size, megabytes: Math.round(index.bytes / 1e6), seconds: (performance.now() - started) / 1000 },
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

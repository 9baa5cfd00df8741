import { recordCount, type Action, type AddAction } from '../lake/delta/actions.ts';
import { DeletionVectorReader, type DeletionVectorDescriptor } from '../lake/delta/deletion-vector.ts';
import type { DeltaTable } from '../lake/delta/delta-table.ts';
import type { LakeColumn } from '../lake/lake-schema.ts';
import type { ParquetEngine } from '../lake/parquet/parquet-engine.ts';
import type { Logger } from '../log.ts';
import { KeyIndex } from './key-index.ts';

/**
 * What the key indexes of silver (silver-key-index.ts) and history (history-key-index.ts) tables share:
 * which keys they take, and the read of the live rows of the files they do not cover yet.
 */

const INTEGER_KINDS = new Set(['long', 'integer', 'short']);

/** Whether a table's key can be indexed: one integer column. */
export function indexableKey(keyColumns: LakeColumn[]): boolean {
  return keyColumns.length === 1 && INTEGER_KINDS.has(keyColumns[0]!.type.kind);
}

/** A file's vector as it was when the index read the file: a changed vector means changed live rows. */
export const dvSignature = (dv: DeletionVectorDescriptor | undefined): string => (dv ? JSON.stringify(dv) : '');

/** The file's row count from its stats (0 when unknown: only sizes the table ahead). */
export const numRecords = (f: AddAction): number => recordCount(f) ?? 0;

const q = (name: string): string => `"${name.replace(/"/g, '""')}"`;
const lit = (s: string): string => `'${s.replace(/'/g, "''")}'`;
/** A BIGINT expression as its signed low and high 32-bit halves. */
const low = (e: string) => `((${e}) & 4294967295) - (((${e}) & 2147483648) << 1)`;
const high = (e: string) => `((${e}) >> 32)`;

/**
 * Every row of `files` that no deletion vector deletes, as int32 columns: index into `files`, row
 * position, key (low, high), `_commit_lsn` (low, high), `_event_index`, then `extra` (SQL expressions
 * that are INTEGER). `each` gets a chunk's columns and one row number at a time.
 */
export async function readLiveKeys(
  engine: ParquetEngine,
  table: DeltaTable,
  files: AddAction[],
  keyColumn: string,
  extra: string[],
  each: (c: Int32Array[], r: number) => void,
): Promise<void> {
  // Per file with a vector, its deleted rows as a bitset (one bit per row up to the last deleted one), from the
  // vector's typed arrays: no JS value per deleted row (a Set of them held millions of numbers).
  const deleted = new Map<number, Uint8Array>();
  const reader = new DeletionVectorReader(table.store, table.root, table.label);
  for (let i = 0; i < files.length; i++) {
    const dv = files[i]!.deletionVector;
    if (!dv) continue;
    const buckets = await reader.buckets(dv);
    // Rows at or above 2^32 never match file_row_number read as INTEGER below (that cast would fail first).
    const lows = buckets.find((b) => b.key === 0)?.lows;
    if (!lows?.length) continue;
    const bits = new Uint8Array((lows[lows.length - 1]! >>> 3) + 1);
    for (let k = 0; k < lows.length; k++) bits[lows[k]! >>> 3]! |= 1 << (lows[k]! & 7);
    deleted.set(i, bits);
  }
  const isDeleted = (file: number, row: number): boolean => {
    const bits = deleted.get(file);
    return bits !== undefined && row >>> 3 < bits.length && (bits[row >>> 3]! & (1 << (row & 7))) !== 0;
  };
  const locals: string[] = [];
  for (const f of files) locals.push(await table.store.localFile(`${table.root}/${decodeURIComponent(f.path)}`));
  const k = `${q(keyColumn)}::BIGINT`;
  const sql =
    `SELECT file_index::INTEGER, file_row_number::INTEGER, (${low(k)})::INTEGER, (${high(k)})::INTEGER, ` +
    `(${low('_commit_lsn')})::INTEGER, (${high('_commit_lsn')})::INTEGER, ` +
    `CASE WHEN _event_index BETWEEN 0 AND 4294967295 THEN (${low('_event_index')})::INTEGER ` +
    `ELSE error('_event_index out of the key index range: ' || _event_index) END` +
    extra.map((e) => `, (${e})::INTEGER`).join('') +
    ` FROM read_parquet([${locals.map(lit).join(', ')}], file_row_number = true, union_by_name = true)`;
  await engine.int32Chunks(sql, (c, n) => {
    const file = c[0]!;
    const row = c[1]!;
    for (let r = 0; r < n; r++) if (!isDeleted(file[r]!, row[r]!)) each(c, r);
  });
}

/**
 * The files a key index covers: path (as in the log) → id (what the index stores) and the signature of
 * the vector the file had when read.
 */
export class CoveredFiles {
  private readonly files = new Map<string, { id: number; dv: string }>();
  private readonly paths = new Map<number, string>();
  private nextId = 1;

  has(path: string): boolean {
    return this.files.has(path);
  }

  pathOf(id: number): string | undefined {
    return this.paths.get(id);
  }

  /** Forget the covered files that the snapshot `current` no longer has, or has with another vector; their ids. */
  dropChanged(current: Map<string, AddAction>): Set<number> {
    const gone = new Set<number>();
    for (const [path, { id, dv }] of this.files) {
      const f = current.get(path);
      if (!f || dvSignature(f.deletionVector) !== dv) {
        gone.add(id);
        this.files.delete(path);
        this.paths.delete(id);
      }
    }
    return gone;
  }

  /** Ids for files about to be read (`cover` them once read). */
  newIds(n: number): number[] {
    return Array.from({ length: n }, () => this.nextId++);
  }

  cover(files: AddAction[], ids: number[]): void {
    files.forEach((f, i) => {
      this.files.set(f.path, { id: ids[i]!, dv: dvSignature(f.deletionVector) });
      this.paths.set(ids[i]!, f.path);
    });
  }

  /**
   * Follow this sink's committed actions: a covered file re-added at the same path keeps its new vector,
   * one removed for good leaves. The ids of the files that left (purge them from the index).
   */
  followCommit(actions: Action[]): Set<number> {
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
    return gone;
  }
}

export type SyncResult = { ok: true; read: number; dropped: number } | { ok: false; reason: string };

/** What the silver and history indexes have in common: the table, the covered files, the bound. */
export abstract class CoveringKeyIndex {
  protected readonly index = new KeyIndex();
  protected readonly files = new CoveredFiles();

  constructor(
    readonly keyColumn: string,
    protected readonly maxRows: number,
  ) {}

  /** Keys held. */
  get size(): number {
    return this.index.size;
  }

  get bytes(): number {
    return this.index.bytes;
  }

  /** Bring the index in step with the table's snapshot; `ok: false` when it cannot serve (then drop it). */
  abstract sync(engine: ParquetEngine, table: DeltaTable): Promise<SyncResult>;
}

/**
 * The index of `table` in `indexes`, made by `make` when there is none, synced; undefined when the table
 * is not indexed (`maxRows` 0, a key that is not one integer column) or no longer: a failed sync turns it
 * 'off' for the table object's life and warns that `merges` scan from now on.
 */
export async function syncedIndexOf<I extends CoveringKeyIndex>(
  indexes: WeakMap<DeltaTable, I | 'off'>,
  make: (keyColumn: string, maxRows: number) => I,
  engine: ParquetEngine,
  table: DeltaTable,
  keyColumns: LakeColumn[],
  opts: { maxRows: number; log?: Logger },
  merges: string,
): Promise<{ index: I; known: boolean; seconds: number } | undefined> {
  const known = indexes.get(table);
  if (known === 'off' || opts.maxRows <= 0 || !indexableKey(keyColumns)) return undefined;
  const index = known ?? make(keyColumns[0]!.name, opts.maxRows);
  const started = performance.now();
  const r = await index.sync(engine, table);
  if (!r.ok) {
    indexes.set(table, 'off');
    opts.log?.warn(
      { table: table.label, reason: r.reason },
      `${table.label}: ${merges} by scanning the files from now on, not by the key index: ${r.reason}. Raise silver.key.index.max.rows (each key takes about 40 bytes of memory) or leave it`,
    );
    return undefined;
  }
  indexes.set(table, index);
  return { index, known: !!known, seconds: (performance.now() - started) / 1000 };
}

import duckdb from '@duckdb/node-bindings';
import type { DuckDBDataChunk } from '@duckdb/node-api';
import { endianness } from 'node:os';
import type { LakeColumn } from '../lake-schema.ts';
import { lakeTypeName } from './duckdb-sql.ts';
import { StageValueError } from './parquet-errors.ts';
import { toDuckDBValue, ValueMismatch } from './values.ts';

/**
 * Filling a DuckDB data chunk column by column, writing JS values straight into each vector's memory
 * (one `copy_data_to_vector` per column and chunk) instead of one DuckDBValue object and one setItem
 * per cell. @duckdb/node-api's vectors do the per-cell route; it made staging the largest part of a
 * bronze append (a CPU profile of bench/sink-lake.ts: per-string native calls in
 * DuckDBVarCharVector.flush, and garbage collection of a value object per timestamp and decimal).
 *
 * The memory layouts written here are DuckDB's C API's (duckdb.h): BIGINT/TIMESTAMPTZ int64 (µs),
 * INTEGER/DATE int32 (days), SMALLINT int16, DOUBLE/FLOAT IEEE, BOOLEAN one byte, the validity mask
 * one bit per row in uint64 words (1 = valid), and VARCHAR as `duckdb_string_t`: 16 bytes, a uint32
 * length, then a string of at most 12 bytes inline (zero-padded); longer strings go through
 * `duckdb_vector_assign_string_element`, which copies them into the vector's own string heap.
 * Decimals, blobs and lists keep the library's vectors (they are rare in change data and the layouts
 * are more involved). A value of the wrong type is reported exactly as `values.ts` would
 * (StageValueError naming the row, column and reason).
 */

/** The value of one column for row `row` of the batch being staged. */
export type Cell = (row: number) => unknown;

/** Rows per data chunk: DuckDB's vector size. */
export const CHUNK_ROWS = 2048;

const LITTLE_ENDIAN = endianness() === 'LE';
const TWO_32 = 2 ** 32;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/** Fills one column of successive chunks. */
export interface ColumnFiller {
  /** Write rows [start, start + count) of `cell` into column `index` of `chunk` (which has `count` rows). */
  fill(chunk: DuckDBDataChunk, index: number, cell: Cell, start: number, count: number): void;
}

export function columnFillers(columns: LakeColumn[]): ColumnFiller[] {
  return columns.map((c) => fillerFor(c));
}

function fillerFor(column: LakeColumn): ColumnFiller {
  const t = column.type;
  if (!LITTLE_ENDIAN) return new ValueFiller(column);
  switch (t.kind) {
    case 'long':
    case 'timestamp':
      return new Int64Filler(column);
    case 'integer':
      return new IntFiller(column, new Int32Array(CHUNK_ROWS), -(2 ** 31), 2 ** 31 - 1);
    case 'date':
      return new IntFiller(column, new Int32Array(CHUNK_ROWS), -(2 ** 31), 2 ** 31 - 1);
    case 'short':
      return new IntFiller(column, new Int16Array(CHUNK_ROWS), -(2 ** 15), 2 ** 15 - 1);
    case 'double':
      return new FloatFiller(column, new Float64Array(CHUNK_ROWS));
    case 'float':
      return new FloatFiller(column, new Float32Array(CHUNK_ROWS));
    case 'boolean':
      return new BooleanFiller(column);
    case 'string':
      return new StringFiller(column);
    case 'array':
      return new ArrayFiller(column);
    default:
      return new ValueFiller(column);
  }
}

/** The error for `value` in `column` at `row`: the reason `values.ts` gives for it. */
function mismatch(column: LakeColumn, row: number, value: unknown): StageValueError {
  let reason = 'does not fit the column type';
  try {
    toDuckDBValue(column.type)(value);
  } catch (e) {
    reason = e instanceof ValueMismatch ? e.message : `was refused by DuckDB: ${(e as Error).message}`;
    return new StageValueError(column.name, lakeTypeName(column.type), row, value, reason, { cause: e });
  }
  return new StageValueError(column.name, lakeTypeName(column.type), row, value, reason);
}

/**
 * Copy `count` values of `data` from `start` into BIGINT column `index` of `chunk` (`count` rows), in one
 * `copy_data_to_vector`: a BigInt64Array holds DuckDB's int64 layout in the machine's byte order already,
 * so no value is read in JS (the deleted-row keys of a view: millions per gold pass).
 */
export function copyInt64Column(chunk: DuckDBDataChunk, index: number, data: BigInt64Array, start: number, count: number): void {
  const vector = duckdb.data_chunk_get_vector(chunk.chunk, index);
  duckdb.copy_data_to_vector(vector, 0, data.buffer as ArrayBuffer, data.byteOffset + start * 8, count * 8);
}

/** Fixed-width columns: a typed array per chunk, a validity mask written only when the chunk holds a NULL. */
abstract class FixedFiller implements ColumnFiller {
  /** Validity as uint32 words (little-endian halves of DuckDB's uint64 words). */
  private readonly validity = new Uint32Array(CHUNK_ROWS / 32);

  protected constructor(
    protected readonly column: LakeColumn,
    private readonly data: ArrayBufferView,
    private readonly width: number,
  ) {}

  /** Store `v` (not null) at `i`; false when it does not fit the type. */
  protected abstract put(i: number, v: unknown): boolean;

  fill(chunk: DuckDBDataChunk, index: number, cell: Cell, start: number, count: number): void {
    let nulls = false;
    for (let i = 0; i < count; i++) {
      const v = cell(start + i);
      if (v === null || v === undefined) {
        if (!nulls) {
          nulls = true;
          this.validity.fill(0xffffffff);
        }
        this.validity[i >>> 5]! &= ~(1 << (i & 31));
        this.clear(i);
      } else if (!this.put(i, v)) throw mismatch(this.column, start + i, v);
    }
    const vector = duckdb.data_chunk_get_vector(chunk.chunk, index);
    duckdb.copy_data_to_vector(vector, 0, this.data.buffer as ArrayBuffer, this.data.byteOffset, count * this.width);
    if (nulls) writeValidity(vector, this.validity, count);
  }

  /** What a NULL slot holds (DuckDB ignores it; zero keeps the chunk deterministic). */
  protected abstract clear(i: number): void;
}

function writeValidity(vector: duckdb.Vector, validity: Uint32Array, count: number): void {
  duckdb.vector_ensure_validity_writable(vector);
  duckdb.copy_data_to_vector_validity(vector, 0, validity.buffer as ArrayBuffer, validity.byteOffset, Math.ceil(count / 64) * 8);
}

/** BIGINT and TIMESTAMPTZ: bigint, or a safe-integer number written as two int32 halves (no BigInt allocated). */
class Int64Filler extends FixedFiller {
  private readonly big: BigInt64Array;
  private readonly halves: Int32Array;

  constructor(column: LakeColumn) {
    const big = new BigInt64Array(CHUNK_ROWS);
    super(column, big, 8);
    this.big = big;
    this.halves = new Int32Array(big.buffer);
  }

  protected put(i: number, v: unknown): boolean {
    if (typeof v === 'number') {
      if (!Number.isSafeInteger(v)) return false;
      const hi = Math.floor(v / TWO_32);
      this.halves[2 * i] = (v - hi * TWO_32) | 0;
      this.halves[2 * i + 1] = hi;
      return true;
    }
    if (typeof v === 'bigint') {
      if (v < INT64_MIN || v > INT64_MAX) return false;
      this.big[i] = v;
      return true;
    }
    return false;
  }

  protected clear(i: number): void {
    this.halves[2 * i] = 0;
    this.halves[2 * i + 1] = 0;
  }
}

class IntFiller extends FixedFiller {
  constructor(
    column: LakeColumn,
    private readonly items: Int32Array | Int16Array,
    private readonly min: number,
    private readonly max: number,
  ) {
    super(column, items, items.BYTES_PER_ELEMENT);
  }

  protected put(i: number, v: unknown): boolean {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < this.min || v > this.max) return false;
    this.items[i] = v;
    return true;
  }

  protected clear(i: number): void {
    this.items[i] = 0;
  }
}

class FloatFiller extends FixedFiller {
  constructor(
    column: LakeColumn,
    private readonly items: Float64Array | Float32Array,
  ) {
    super(column, items, items.BYTES_PER_ELEMENT);
  }

  protected put(i: number, v: unknown): boolean {
    if (typeof v !== 'number') return false;
    this.items[i] = v;
    return true;
  }

  protected clear(i: number): void {
    this.items[i] = 0;
  }
}

class BooleanFiller extends FixedFiller {
  private readonly items: Uint8Array;

  constructor(column: LakeColumn) {
    const items = new Uint8Array(CHUNK_ROWS);
    super(column, items, 1);
    this.items = items;
  }

  protected put(i: number, v: unknown): boolean {
    if (typeof v !== 'boolean') return false;
    this.items[i] = v ? 1 : 0;
    return true;
  }

  protected clear(i: number): void {
    this.items[i] = 0;
  }
}

/**
 * VARCHAR: strings of at most 12 UTF-8 bytes are written inline into the 16-byte `duckdb_string_t`
 * slots (codes, statuses, `_op`). Longer ones are UTF-8 encoded one after the other into one buffer
 * per chunk (`Buffer.write`, no object per string), which DuckDB copies into the vector's string heap
 * in one `duckdb_vector_assign_string_element_len` (parked in row 0's slot); each long row's slot then
 * points into that copy: uint32 length, its first 4 bytes (the prefix), the 8-byte pointer (duckdb.h's
 * `duckdb_string_t`). The heap belongs to the vector until DuckDB resets the chunk, after it has
 * consumed the rows. Before, each long string was its own `duckdb_vector_assign_string_element`
 * (a native call converting the JS string): a third of bronze's fill on the orders rows.
 */
class StringFiller implements ColumnFiller {
  private readonly slots = new Uint8Array(CHUNK_ROWS * 16);
  /** The slots as uint32 words: [4i] length, [4i + 2] and [4i + 3] the pointer's low and high halves. */
  private readonly words = new Uint32Array(this.slots.buffer);
  private readonly validity = new Uint32Array(CHUNK_ROWS / 32);
  /** Long strings of the chunk, UTF-8, back to back; grows as needed. */
  private heap = Buffer.allocUnsafe(64 * 1024);
  private heapUsed = 0;
  private longCount = 0;
  private readonly longRows = new Int32Array(CHUNK_ROWS);
  private readonly longOffsets = new Float64Array(CHUNK_ROWS);

  constructor(private readonly column: LakeColumn) {}

  fill(chunk: DuckDBDataChunk, index: number, cell: Cell, start: number, count: number): void {
    const slots = this.slots;
    slots.fill(0, 0, count * 16);
    const vector = duckdb.data_chunk_get_vector(chunk.chunk, index);
    this.heapUsed = 0;
    this.longCount = 0;
    let nulls = false;
    for (let i = 0; i < count; i++) {
      const v = cell(start + i);
      if (typeof v === 'string') {
        const n = v.length;
        if (n <= 12) {
          const base = i * 16 + 4;
          let ascii = true;
          for (let k = 0; k < n; k++) {
            const c = v.charCodeAt(k);
            if (c > 0x7f) {
              ascii = false;
              break;
            }
            slots[base + k] = c;
          }
          if (ascii) {
            this.words[i * 4] = n;
            continue;
          }
        }
        // At most 3 UTF-8 bytes per UTF-16 unit (a surrogate pair is 4 bytes for 2 units; a lone one becomes U+FFFD, 3).
        if (this.heapUsed + 3 * n > this.heap.length) this.grow(vector, 3 * n);
        const at = this.heapUsed;
        const heap = this.heap;
        // ASCII (JSON, codes) copied by char code, cheaper than a native encode per string; else Buffer.write.
        const written = heap.write(v, at, 'utf8');
        if (written <= 12) {
          // Non-ASCII but short: inline (DuckDB compares strings of at most 12 bytes by their slot).
          slots.fill(0, i * 16 + 4, i * 16 + 16);
          slots.set(this.heap.subarray(at, at + written), i * 16 + 4);
          this.words[i * 4] = written;
          continue;
        }
        this.words[i * 4] = written;
        this.longRows[this.longCount] = i;
        this.longOffsets[this.longCount++] = at;
        this.heapUsed = at + written;
      } else if (v === null || v === undefined) {
        if (!nulls) {
          nulls = true;
          this.validity.fill(0xffffffff);
        }
        this.validity[i >>> 5]! &= ~(1 << (i & 31));
      } else throw mismatch(this.column, start + i, v);
    }
    this.handOver(vector);
    duckdb.copy_data_to_vector(vector, 0, slots.buffer, 0, count * 16);
    if (nulls) writeValidity(vector, this.validity, count);
  }

  /** Room for `need` more bytes: hand the strings so far to DuckDB when they would pass HEAP_HAND_OVER bytes, else a larger buffer. */
  private grow(vector: duckdb.Vector, need: number): void {
    if (this.heapUsed > 0 && this.heapUsed + need > HEAP_HAND_OVER) this.handOver(vector);
    if (this.heapUsed + need <= this.heap.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(2 * this.heap.length, this.heapUsed + need));
    this.heap.copy(bigger, 0, 0, this.heapUsed);
    this.heap = bigger;
  }

  /** Copy the long strings so far into the vector's string heap and point their slots at the copy. */
  private handOver(vector: duckdb.Vector): void {
    if (this.longCount === 0) return;
    duckdb.vector_assign_string_element_len(vector, 0, this.heap.subarray(0, this.heapUsed));
    const parked = new Uint32Array(duckdb.vector_get_data(vector, 16).slice().buffer);
    const [baseLo, baseHi] = [parked[2]!, parked[3]!];
    for (let k = 0; k < this.longCount; k++) {
      const i = this.longRows[k]!;
      const at = this.longOffsets[k]!;
      const lo = baseLo + at;
      const heap = this.heap;
      const slot = i * 16 + 4;
      this.slots[slot] = heap[at]!;
      this.slots[slot + 1] = heap[at + 1]!;
      this.slots[slot + 2] = heap[at + 2]!;
      this.slots[slot + 3] = heap[at + 3]!;
      this.words[i * 4 + 2] = lo % TWO_32;
      this.words[i * 4 + 3] = baseHi + Math.floor(lo / TWO_32);
    }
    this.heapUsed = 0;
    this.longCount = 0;
  }
}

/** Long strings are handed to DuckDB in pieces of at most this many bytes (or one string, if longer): the buffer stays bounded. */
const HEAP_HAND_OVER = 64 * 2 ** 20;

/**
 * LIST columns: a chunk whose values are all empty arrays (a silver change's `_unchanged` columns,
 * empty unless TOAST left columns out) is written as zeroed `duckdb_list_entry` slots (uint64 offset,
 * uint64 length; the child vector stays empty) in one copy; any other chunk goes through the library's
 * vectors (ValueFiller), a value object per cell.
 */
class ArrayFiller implements ColumnFiller {
  private readonly entries = new Uint8Array(CHUNK_ROWS * 16);
  private readonly values: ValueFiller;

  constructor(column: LakeColumn) {
    this.values = new ValueFiller(column);
  }

  fill(chunk: DuckDBDataChunk, index: number, cell: Cell, start: number, count: number): void {
    for (let i = 0; i < count; i++) {
      const v = cell(start + i);
      if (!Array.isArray(v) || v.length !== 0) return this.values.fill(chunk, index, cell, start, count);
    }
    duckdb.copy_data_to_vector(duckdb.data_chunk_get_vector(chunk.chunk, index), 0, this.entries.buffer, 0, count * 16);
  }
}

/** Other types (decimal, binary, arrays): the library's vectors with values.ts' converters, a value object per cell. */
class ValueFiller implements ColumnFiller {
  private readonly convert: ReturnType<typeof toDuckDBValue>;

  constructor(private readonly column: LakeColumn) {
    this.convert = toDuckDBValue(column.type);
  }

  fill(chunk: DuckDBDataChunk, index: number, cell: Cell, start: number, count: number): void {
    const vector = chunk.getColumnVector(index);
    for (let i = 0; i < count; i++) {
      const value = cell(start + i);
      try {
        vector.setItem(i, this.convert(value));
      } catch (e) {
        const reason = e instanceof ValueMismatch ? e.message : `was refused by DuckDB: ${(e as Error).message}`;
        throw new StageValueError(this.column.name, lakeTypeName(this.column.type), start + i, value, reason, { cause: e });
      }
    }
    vector.flush();
  }
}

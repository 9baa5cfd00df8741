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

const encoder = new TextEncoder();

/**
 * VARCHAR: strings of at most 12 UTF-8 bytes are written inline into the 16-byte `duckdb_string_t`
 * slots (codes, statuses, `_op`); longer ones are assigned one by one after the slots are copied,
 * so DuckDB copies them into the vector's own string heap. (Handing DuckDB one buffer per chunk and
 * pointing the slots into its copy saved nothing measurable on the orders rows: the per-string call
 * is not where the time goes, DuckDB's own append is.)
 */
class StringFiller implements ColumnFiller {
  private readonly slots = new Uint8Array(CHUNK_ROWS * 16);
  private readonly lengths = new Uint32Array(this.slots.buffer);
  private readonly validity = new Uint32Array(CHUNK_ROWS / 32);
  private readonly scratch = new Uint8Array(12 * 3);
  private readonly longRows: number[] = [];
  private readonly longValues: string[] = [];

  constructor(private readonly column: LakeColumn) {}

  fill(chunk: DuckDBDataChunk, index: number, cell: Cell, start: number, count: number): void {
    const slots = this.slots;
    slots.fill(0, 0, count * 16);
    this.longRows.length = 0;
    this.longValues.length = 0;
    let nulls = false;
    for (let i = 0; i < count; i++) {
      const v = cell(start + i);
      if (typeof v === 'string') {
        const n = v.length;
        if (n > 12) {
          this.longRows.push(i);
          this.longValues.push(v);
          continue;
        }
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
          this.lengths[i * 4] = n;
          continue;
        }
        // Non-ASCII: at most 36 bytes for 12 UTF-16 units; inline only when it fits in 12.
        const { written } = encoder.encodeInto(v, this.scratch);
        slots.fill(0, base, base + 12);
        if (written > 12) {
          this.longRows.push(i);
          this.longValues.push(v);
          continue;
        }
        slots.set(this.scratch.subarray(0, written), base);
        this.lengths[i * 4] = written;
      } else if (v === null || v === undefined) {
        if (!nulls) {
          nulls = true;
          this.validity.fill(0xffffffff);
        }
        this.validity[i >>> 5]! &= ~(1 << (i & 31));
      } else throw mismatch(this.column, start + i, v);
    }
    const vector = duckdb.data_chunk_get_vector(chunk.chunk, index);
    duckdb.copy_data_to_vector(vector, 0, slots.buffer, 0, count * 16);
    for (let k = 0; k < this.longRows.length; k++) duckdb.vector_assign_string_element(vector, this.longRows[k]!, this.longValues[k]!);
    if (nulls) writeValidity(vector, this.validity, count);
  }
}

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

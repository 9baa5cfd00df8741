/**
 * The column model shared by the sink, the Delta writer and the reports: what a lake table's
 * columns are, independent of Avro, Delta JSON or DuckDB spelling. Delta's primitive types at
 * reader 1 / writer 2 (no timestamp_ntz, which needs a table feature).
 *
 * Values in JS, as the sink hands them to the writer and readers return them:
 *   string: string · long: bigint | number · integer, short: number · double, float: number
 *   boolean: boolean · binary: Uint8Array · date: number (days since 1970-01-01)
 *   timestamp: bigint (microseconds since the epoch, UTC) · decimal: bigint (the unscaled value)
 *   array: (element value | null)[] · any column: null
 */
export type LakeType =
  | { kind: 'string' }
  | { kind: 'long' }
  | { kind: 'integer' }
  | { kind: 'short' }
  | { kind: 'double' }
  | { kind: 'float' }
  | { kind: 'boolean' }
  | { kind: 'binary' }
  | { kind: 'date' }
  | { kind: 'timestamp' }
  | { kind: 'decimal'; precision: number; scale: number }
  | { kind: 'array'; element: LakeType };

export interface LakeColumn {
  name: string;
  type: LakeType;
  nullable: boolean;
  /** Free-form column metadata kept in the Delta schema (e.g. `{ "tide.masked": "hash" }`). */
  metadata?: Record<string, string>;
}

export interface LakeSchema {
  columns: LakeColumn[];
}

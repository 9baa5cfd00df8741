import { TideError } from '../../errors.ts';

/**
 * Errors of the Parquet engine (DuckDB). Each names what is at fault (the column, the table root, the
 * statement) and what to do about it.
 */

/** A lake type that has no Parquet/DuckDB representation here (e.g. decimal precision above 38). */
export class LakeTypeError extends TideError {
  constructor(
    readonly column: string | undefined,
    message: string,
  ) {
    super(`${column === undefined ? '' : `column ${column}: `}${message}`);
    this.name = 'LakeTypeError';
  }
}

/** A row value handed to `stage` does not fit its column's lake type. */
export class StageValueError extends TideError {
  constructor(
    readonly column: string,
    readonly type: string,
    readonly row: number,
    readonly value: unknown,
    reason: string,
    options: { cause?: unknown } = {},
  ) {
    super(`stage: row ${row}, column ${column} (${type}): value ${show(value)} ${reason}`, options);
    this.name = 'StageValueError';
  }
}

/** A DuckDB statement failed; carries the operation, the object involved and the statement. */
export class ParquetEngineError extends TideError {
  constructor(
    readonly operation: string,
    readonly target: string,
    message: string,
    readonly sql?: string,
    options: { cause?: unknown; retriable?: boolean } = {},
  ) {
    const stmt = sql === undefined ? '' : `\n  statement: ${sql.length > 500 ? `${sql.slice(0, 500)}…` : sql}`;
    super(`${operation} ${target}: ${message}${stmt}`, options);
    this.name = 'ParquetEngineError';
  }
}

/** Data about to be written breaks the table schema (e.g. NULLs in a non-nullable column); nothing was uploaded. */
export class SchemaViolationError extends TideError {
  constructor(
    readonly table: string,
    readonly column: string,
    message: string,
  ) {
    super(`${table}: column ${column}: ${message}`);
    this.name = 'SchemaViolationError';
  }
}

/** The engine was used after `close()`. */
export class EngineClosedError extends TideError {
  constructor(operation: string) {
    super(`ParquetEngine.${operation}: the engine is closed; create a new one with ParquetEngine.create()`);
    this.name = 'EngineClosedError';
  }
}

function show(value: unknown): string {
  let s: string;
  if (typeof value === 'bigint') s = `${value}n`;
  else if (value instanceof Uint8Array) s = `<${value.length} bytes>`;
  else {
    try {
      s = JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v)) ?? String(value);
    } catch {
      s = String(value);
    }
  }
  return s.length > 200 ? `${s.slice(0, 200)}… (${s.length} characters)` : s;
}

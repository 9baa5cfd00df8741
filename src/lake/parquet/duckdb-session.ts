import type { DuckDBConnection, DuckDBValue } from '@duckdb/node-api';
import { ParquetEngineError } from './parquet-errors.ts';

/**
 * One DuckDB connection used by one caller at a time. Temp tables and views belong to a connection,
 * so the engine keeps a single one; `exclusive` queues callers so that the statements of one operation
 * (e.g. create a work table, copy it to files, drop it) never interleave with another's.
 */

/** Statements on the connection; only valid inside `exclusive`. Errors name the operation and target. */
export interface DuckSql {
  run(sql: string, operation: string, target: string): Promise<void>;
  rows(sql: string, operation: string, target: string): Promise<DuckDBValue[][]>;
  /** Rows as objects by column name. */
  objects(sql: string, operation: string, target: string): Promise<Record<string, DuckDBValue>[]>;
  readonly connection: DuckDBConnection;
}

export class DuckSession {
  private tail: Promise<unknown> = Promise.resolve();
  private readonly sql: DuckSql;

  constructor(readonly connection: DuckDBConnection) {
    const fail = (e: unknown, operation: string, target: string, sql: string): ParquetEngineError =>
      new ParquetEngineError(operation, target, (e as Error)?.message ?? String(e), sql, { cause: e });
    this.sql = {
      connection,
      run: async (sql, operation, target) => {
        try {
          await connection.run(sql);
        } catch (e) {
          throw fail(e, operation, target, sql);
        }
      },
      rows: async (sql, operation, target) => {
        try {
          return (await connection.runAndReadAll(sql)).getRows();
        } catch (e) {
          throw fail(e, operation, target, sql);
        }
      },
      objects: async (sql, operation, target) => {
        try {
          return (await connection.runAndReadAll(sql)).getRowObjects();
        } catch (e) {
          throw fail(e, operation, target, sql);
        }
      },
    };
  }

  /** Run `fn` with the connection once every earlier caller is done. */
  exclusive<T>(fn: (sql: DuckSql) => Promise<T>): Promise<T> {
    const result = this.tail.then(() => fn(this.sql));
    // The queue continues whether this caller succeeded or failed; the caller gets its own result.
    this.tail = result.catch(() => undefined);
    return result;
  }

  /** Resolves when every queued caller has finished. */
  async drain(): Promise<void> {
    await this.tail;
  }
}

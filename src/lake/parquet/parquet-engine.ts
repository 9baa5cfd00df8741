import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DuckDBDataChunk, DuckDBInstance, type DuckDBAppender, type DuckDBValue } from '@duckdb/node-api';
import type { LakeSchema } from '../lake-schema.ts';
import type { ObjectStore } from '../storage/object-store.ts';
import { DuckSession, type DuckSql } from './duckdb-session.ts';
import { duckdbType, ident } from './duckdb-sql.ts';
import {
  DEFAULT_TARGET_FILE_ROWS,
  uploadFiles,
  writeLocalFiles,
  writeScanLocalFile,
  writeStagedLocalFiles,
  type DataFile,
  type WriteFilesOptions,
} from './file-writer.ts';
import { EngineClosedError, ParquetEngineError, SchemaViolationError, StageValueError } from './parquet-errors.ts';
import { createTableView, localPaths, type ViewFile } from './table-view.ts';
import { deletedRows, type StagedDeletes } from './deleted-rows.ts';
import { DeletionVectorReader } from '../delta/deletion-vector.ts';
import { fromDuckDBValue, toDuckDBValue } from './values.ts';
import { CHUNK_ROWS, columnFillers, copyInt64Column, type Cell } from './column-chunk.ts';
import { ColumnScans, scanSegmentRows } from './column-scan.ts';
import { partitionValueSql } from './partition-path.ts';

export { duckdbType } from './duckdb-sql.ts';
export type { DataFile, WriteFilesOptions } from './file-writer.ts';

/**
 * The SQL engine of the lake: one in-process DuckDB (parquet built in) that stages rows, runs the
 * sink's SQL (appends, copy-on-write merges, gold reports) and writes the results as the Parquet data
 * files of Delta tables (zstd; timestamps INT64 micros adjusted to UTC; decimals Parquet DECIMAL).
 *
 * Staging uses DuckDB's Appender fed whole data chunks (columnar vectors of 2,048 rows). Measured on
 * the 2-core build machine, 500k rows × 10 orders columns: chunks ≈ 0.9M rows/s, a row-by-row
 * Appender ≈ 0.2M rows/s, NDJSON temp file + read_json ≈ 0.5M rows/s (test/integration/parquet-engine.test.ts
 * prints the comparison on each run), so chunks it is.
 */
export interface ParquetEngineOptions {
  /** Where local Parquet files and DuckDB spill files go; default a fresh directory under the OS temp dir (removed on close). */
  tempDir?: string;
  /** DuckDB worker threads; default the number of cores. */
  threads?: number;
  /** DuckDB memory limit, e.g. '2GB'; default DuckDB's (80% of RAM). Beyond it DuckDB spills to tempDir. */
  memoryLimit?: string;
}

/** Give the event loop a turn every this many chunks while staging, so consumers' heartbeats keep running. */
const CHUNKS_PER_YIELD = 32;

export class ParquetEngine {
  private closed = false;
  private counter = 0;
  /** The deleted-rows temp table behind each view over files with deletion vectors. */
  private readonly viewDeletes = new Map<string, string>();
  private readonly scans: ColumnScans;

  private constructor(
    private readonly instance: DuckDBInstance,
    private readonly session: DuckSession,
    private readonly tempDir: string,
    private readonly ownsTempDir: boolean,
  ) {
    this.scans = new ColumnScans(session.connection);
  }

  static async create(opts: ParquetEngineOptions = {}): Promise<ParquetEngine> {
    const ownsTempDir = opts.tempDir === undefined;
    if (ownsTempDir) await removeOrphanTempDirs();
    const tempDir = opts.tempDir ?? (await mkdtemp(join(tmpdir(), `${TEMP_PREFIX}${process.pid}-`)));
    const config: Record<string, string> = {
      // Only the built-in extensions exist here; fail at once instead of trying to download others.
      autoinstall_known_extensions: 'false',
      autoload_known_extensions: 'false',
      temp_directory: join(tempDir, 'duckdb-spill'),
      // DuckDB's external file cache (on by default since 1.3, duckdb/duckdb#16463) keeps the bytes of every
      // Parquet file a query read until the engine reaches memory_limit. A sink appends a file per flush and
      // its gold builds read the newest ones again and again, so the cache grew with every flush (the
      // notification sink's RSS: ~20-30 MiB per million events, up to duckdb.memory.limit). The files are
      // local (object stores are read through `localFile` downloads), so the OS page cache serves re-reads.
      enable_external_file_cache: 'false',
    };
    if (opts.threads !== undefined) config.threads = String(opts.threads);
    if (opts.memoryLimit !== undefined) config.memory_limit = opts.memoryLimit;
    let instance: DuckDBInstance | undefined;
    try {
      instance = await DuckDBInstance.create(':memory:', config);
      const connection = await instance.connect();
      // TimeZone needs ICU loaded, which happens with the first connection, so it is set here rather than in config.
      await connection.run(`SET TimeZone = 'UTC'`);
      return new ParquetEngine(instance, new DuckSession(connection), tempDir, ownsTempDir);
    } catch (e) {
      instance?.closeSync();
      if (ownsTempDir) await rm(tempDir, { recursive: true, force: true });
      throw new ParquetEngineError('create', 'DuckDB', (e as Error).message, undefined, { cause: e });
    }
  }

  /**
   * Load rows (arrays in schema column order, values in the lake JS representation) into a new temp
   * table with the schema's columns and types; returns its name, usable in SQL as is. Nullability is
   * not enforced here (staged changes may carry NULLs for unchanged columns); `writeFiles` enforces it.
   */
  async stage(schema: LakeSchema, rows: unknown[][]): Promise<string> {
    const columns = schema.columns;
    for (let r = 0; r < rows.length; r++) {
      if (rows[r]?.length !== columns.length) {
        const names = columns.map((c) => c.name).join(', ');
        throw new ParquetEngineError(
          'stage',
          `row ${r}`,
          `has ${rows[r]?.length ?? 0} values, the schema has ${columns.length} columns (${names}): pass one value per column, in schema order`,
        );
      }
    }
    return this.stageColumns(
      schema,
      rows.length,
      columns.map((_, c) => (r: number) => rows[r]![c]),
    );
  }

  /**
   * Like `stage`, for values that are not arrays of rows: `cells[c](r)` is column c's value in row r
   * (0 ≤ r < rowCount), e.g. read straight off change events, so no row array is built at all.
   * Values go column by column into DuckDB data chunks (column-chunk.ts) and the Appender.
   */
  async stageColumns(schema: LakeSchema, rowCount: number, cells: Cell[]): Promise<string> {
    this.open('stage');
    const columns = schema.columns;
    if (cells.length !== columns.length)
      throw new ParquetEngineError(
        'stage',
        `tide_stage_${this.counter + 1}`,
        `got ${cells.length} column readers for ${columns.length} columns`,
      );
    const fillers = columnFillers(columns);
    return this.stageChunks(schema, rowCount, (chunk, start, count) => {
      for (let c = 0; c < columns.length; c++) fillers[c]!.fill(chunk, c, cells[c]!, start, count);
    });
  }

  /** A new temp table with the schema's columns, its `rowCount` rows appended a data chunk at a time, each filled by `fill`. */
  private async stageChunks(
    schema: LakeSchema,
    rowCount: number,
    fill: (chunk: DuckDBDataChunk, start: number, count: number) => void,
  ): Promise<string> {
    const name = `tide_stage_${++this.counter}`;
    const columns = schema.columns;
    const ddl = columns.map((c) => `${ident(c.name)} ${duckdbType(c.type, c.name)}`).join(', ');
    return this.session.exclusive(async (sql) => {
      await sql.run(`CREATE TEMP TABLE ${name} (${ddl})`, 'stage', name);
      let appender: DuckDBAppender | undefined;
      try {
        appender = await sql.connection.createAppender(name, 'main', 'temp');
        const types = columns.map((_, i) => appender!.columnType(i));
        for (let start = 0, n = 0; start < rowCount; start += CHUNK_ROWS, n++) {
          const count = Math.min(CHUNK_ROWS, rowCount - start);
          const chunk = DuckDBDataChunk.create(types, count);
          fill(chunk, start, count);
          appender.appendDataChunk(chunk);
          if ((n + 1) % CHUNKS_PER_YIELD === 0) await new Promise<void>((resolve) => setImmediate(resolve));
        }
        appender.flushSync();
        appender.closeSync();
        return name;
      } catch (e) {
        try {
          appender?.closeSync();
        } catch {
          // Closing flushes the rows appended so far; the table is dropped next, and `e` is the error to report.
        }
        // Best effort: `e` is what the caller needs; a failed drop only leaves a temp table until close().
        await sql.run(`DROP TABLE IF EXISTS ${name}`, 'stage', name).catch(() => undefined);
        throw e instanceof StageValueError || e instanceof ParquetEngineError
          ? e
          : new ParquetEngineError('stage', name, (e as Error).message, undefined, { cause: e });
      }
    });
  }

  /** Drop a table made by `stage` (or any temp table); a missing one is not an error. */
  async drop(name: string): Promise<void> {
    this.open('drop');
    await this.session.exclusive((sql) => sql.run(`DROP TABLE IF EXISTS ${safeName(name)}`, 'drop', name));
  }

  /** Run SQL for its effect (several statements allowed). */
  async run(sql: string): Promise<void> {
    this.open('run');
    await this.session.exclusive((s) => s.run(sql, 'run', 'SQL'));
  }

  /** Rows as objects, values converted to the lake JS representation (see values.ts `fromDuckDBValue`). */
  async query(sql: string): Promise<Record<string, unknown>[]> {
    this.open('query');
    const rows = await this.session.exclusive((s) => s.objects(sql, 'query', 'SQL'));
    return rows.map((r) => {
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(r)) out[k] = fromDuckDBValue(v);
      return out;
    });
  }

  /**
   * Run a query whose columns are all INTEGER (no NULLs) and hand each result chunk (≤ 2,048 rows) to
   * `fn` as one Int32Array per column: no JS value per cell, for reading millions of rows (the key index).
   */
  async int32Chunks(sql: string, fn: (columns: Int32Array[], rows: number) => void): Promise<void> {
    this.open('int32Chunks');
    await this.session.exclusive(async (s) => {
      try {
        const result = await s.connection.stream(sql);
        for (let n = 0; ; n++) {
          const chunk = await result.fetchChunk();
          if (!chunk || chunk.rowCount === 0) return;
          const columns: Int32Array[] = [];
          for (let c = 0; c < chunk.columnCount; c++) {
            const vector = chunk.getColumnVector(c);
            const out = new Int32Array(chunk.rowCount);
            for (let r = 0; r < out.length; r++) {
              const v = vector.getItem(r);
              if (typeof v !== 'number') throw new Error(`column ${c + 1} row ${r} is ${String(v)}, not an INTEGER`);
              out[r] = v;
            }
            columns.push(out);
          }
          fn(columns, chunk.rowCount);
          if ((n + 1) % CHUNKS_PER_YIELD === 0) await new Promise<void>((resolve) => setImmediate(resolve));
        }
      } catch (e) {
        throw e instanceof ParquetEngineError ? e : new ParquetEngineError('int32Chunks', 'SQL', (e as Error).message, sql, { cause: e });
      }
    });
  }

  /**
   * CREATE OR REPLACE TEMP VIEW `name` over the table's data files (`add.path`s relative to `root`),
   * with the schema's columns in order; columns missing from older files read as NULL; partition
   * columns come from `partitionValues`. No files → an empty view with the schema's types.
   */
  async createView(
    name: string,
    store: ObjectStore,
    root: string,
    files: ViewFile[],
    schema: LakeSchema,
    partitionColumns: string[] = [],
    opts: { positions?: boolean } = {},
  ): Promise<void> {
    this.open('createView');
    const locals = await localPaths(store, root, files);
    // Files with deletion vectors: their deleted rows go to a temp table the view joins, as 64-row words keyed by
    // (index of the file in the view's list, row index ÷ 64), built from typed arrays (deleted-rows.ts). A local path
    // per deleted row, then a key per deleted row, made this the largest part of a view over a silver table with
    // millions of deleted rows (README "Silver merges as the sink's flushes leave the table", "Deleted rows as typed arrays").
    let deleted: StagedDeletes | undefined;
    if (files.some((f) => f.deletionVector)) deleted = await this.stageDeletedRows(store, root, files);
    const previous = this.viewDeletes.get(name);
    if (deleted) this.viewDeletes.set(name, deleted.table);
    else this.viewDeletes.delete(name);
    await this.session.exclusive((sql) =>
      createTableView(sql, name, files, locals, schema, partitionColumns, { deleted, positions: opts.positions }),
    );
    if (previous) await this.drop(previous);
  }

  /**
   * A temp table (k BIGINT, bits BIGINT) of the rows the files' deletion vectors delete, one row per 64-row word,
   * or for sparse vectors one key per deleted row (deleted-rows.ts; `words` forces a shape), the file named by its
   * index in `files`; `deletedRowSql` reads it. `label` names the table in errors (default `root`). The caller
   * drops it (`drop`) unless a view owns it.
   */
  async stageDeletedRows(
    store: ObjectStore,
    root: string,
    files: ViewFile[],
    label = root,
    opts: { words?: boolean } = {},
  ): Promise<StagedDeletes> {
    this.open('stage');
    const { words, keys, bits } = await deletedRows(new DeletionVectorReader(store, root, label), files, opts);
    const table = await this.stageChunks(DELETED_ROWS_SCHEMA, keys.length, (chunk, start, count) => {
      copyInt64Column(chunk, 0, keys, start, count);
      // One key per deleted row: `bits` is never read; zeros keep the table deterministic.
      if (words) copyInt64Column(chunk, 1, bits, start, count);
      else copyInt64Column(chunk, 1, NO_BITS, 0, count);
    });
    return { table, words };
  }

  /**
   * Write the result of `select` as the data files of the table at `root`: zstd Parquet, one file per
   * partition value combination (Hive-style `col=value/` dirs, partition columns not in the files) and
   * per `targetFileRows` rows (default 1,000,000), each uploaded with `store.putFile`. Returns one
   * DataFile (Delta `add`) per file, with stats; no rows → [].
   */
  async writeFiles(select: string, opts: WriteFilesOptions): Promise<DataFile[]> {
    this.open('writeFiles');
    const work = `tide_write_${++this.counter}`;
    const local = await this.session.exclusive((sql: DuckSql) => writeLocalFiles(sql, select, opts, this.tempDir, work));
    return uploadFiles(local, opts.store, opts.root, opts.dataChange ?? true);
  }

  /**
   * `writeFiles` for a table made by `stage`/`stageColumns` with `opts.schema` (the same columns and
   * types) holding `rowCount` rows: when they share one partition value and fit one file, it is
   * copied to Parquet directly, without a work table (file-writer.ts `writeStagedLocalFiles`).
   */
  async writeStaged(staged: string, rowCount: number, opts: WriteFilesOptions): Promise<DataFile[]> {
    this.open('writeFiles');
    const work = `tide_write_${++this.counter}`;
    const local = await this.session.exclusive((sql: DuckSql) =>
      writeStagedLocalFiles(sql, safeName(staged), rowCount, opts, this.tempDir, work),
    );
    return uploadFiles(local, opts.store, opts.root, opts.dataChange ?? true);
  }

  /**
   * Write rows given as column readers (`cells[c](r)` for `columns`' column c, which must include every
   * column of `opts.schema`) as the data files of the table at `root`, like `writeFiles`. When the
   * rows share one value of each partition column (compared in JS) and fit one file, DuckDB COPYs
   * them to Parquet straight from the readers (column-scan.ts), with no staged table; otherwise they
   * are staged (`stageColumns`) and written by `writeStaged`. Values are checked as `stage` checks them.
   */
  async writeColumns(columns: LakeSchema, rowCount: number, cells: Cell[], opts: WriteFilesOptions): Promise<DataFile[]> {
    this.open('writeFiles');
    if (cells.length !== columns.columns.length)
      throw new ParquetEngineError('writeFiles', opts.root, `got ${cells.length} column readers for ${columns.columns.length} columns`);
    const partitionValues =
      rowCount > 0 && rowCount <= (opts.targetFileRows ?? DEFAULT_TARGET_FILE_ROWS)
        ? await this.onePartition(columns, cells, rowCount, opts)
        : undefined;
    if (!partitionValues) {
      const staged = await this.stageColumns(columns, rowCount, cells);
      try {
        return await this.writeStaged(staged, rowCount, opts);
      } finally {
        await this.drop(staged);
      }
    }
    const local = await this.session.exclusive(async (sql: DuckSql) => {
      const segmentRows = scanSegmentRows(rowCount);
      const scan = this.scans.open(columns.columns, rowCount, cells, segmentRows);
      try {
        return await writeScanLocalFile(
          sql,
          { sql: scan.sql, rowCount, segments: scan.segments, segmentRows },
          partitionValues,
          opts,
          this.tempDir,
        );
      } catch (e) {
        // A reader's value that does not fit its column: the filler's StageValueError, not DuckDB's text.
        const refused = scan.close();
        throw refused instanceof StageValueError ? refused : e;
      } finally {
        scan.close();
      }
    });
    return uploadFiles(local, opts.store, opts.root, opts.dataChange ?? true);
  }

  /**
   * The Delta partition values of rows that all share one value of each partition column, or
   * undefined when they do not (or a value does not fit its type: staging reports that).
   */
  private async onePartition(
    columns: LakeSchema,
    cells: Cell[],
    rowCount: number,
    opts: WriteFilesOptions,
  ): Promise<Record<string, string | null> | undefined> {
    const out: Record<string, string | null> = {};
    for (const name of opts.partitionColumns ?? []) {
      const index = columns.columns.findIndex((c) => c.name === name);
      const column = opts.schema.columns.find((c) => c.name === name);
      if (index < 0 || !column) return undefined;
      const cell = cells[index]!;
      const first = cell(0) ?? null;
      for (let r = 1; r < rowCount; r++) if ((cell(r) ?? null) !== first) return undefined;
      let text: string | null = null;
      if (first !== null) {
        let value: DuckDBValue;
        try {
          value = toDuckDBValue(column.type)(first);
        } catch {
          return undefined;
        }
        // The same SQL expression `writeFiles` renders partition values with (partition-path.ts).
        const select = `SELECT ${partitionValueSql(column, `CAST($1 AS ${duckdbType(column.type, name)})`)}`;
        const [row] = await this.session.exclusive(async (sql) => {
          try {
            return (await sql.connection.runAndReadAll(select, [value])).getRows();
          } catch (e) {
            throw new ParquetEngineError('writeFiles', opts.root, (e as Error).message, select, { cause: e });
          }
        });
        const v = row?.[0];
        text = v === null || v === undefined ? null : String(v);
      }
      if (text === null && !column.nullable)
        throw new SchemaViolationError(opts.root, name, 'partition column is not nullable, but rows have NULL in it');
      out[name] = text;
    }
    return out;
  }

  /** Wait for running operations, close DuckDB and remove the engine's own temp dir. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.session.drain();
    try {
      this.session.connection.closeSync();
      this.instance.closeSync();
    } finally {
      if (this.ownsTempDir) await rm(this.tempDir, { recursive: true, force: true });
    }
  }

  private open(operation: string): void {
    if (this.closed) throw new EngineClosedError(operation);
  }
}

const TEMP_PREFIX = 'tide-parquet-';

const NO_BITS = new BigInt64Array(CHUNK_ROWS);

const DELETED_ROWS_SCHEMA: LakeSchema = {
  columns: [
    { name: 'k', type: { kind: 'long' }, nullable: false },
    { name: 'bits', type: { kind: 'long' }, nullable: false },
  ],
};

/**
 * Remove the temp dirs of engines whose process is gone (killed before close(): a crash must not
 * leak local Parquet files forever). The directory name carries the owner's pid; a live pid, or one
 * we may not signal, keeps its directory.
 */
async function removeOrphanTempDirs(): Promise<void> {
  const pattern = new RegExp(`^${TEMP_PREFIX}(\\d+)-`);
  for (const entry of await readdir(tmpdir()).catch(() => [] as string[])) {
    const pid = Number(pattern.exec(entry)?.[1]);
    if (!pid || pid === process.pid || processAlive(pid)) continue;
    await rm(join(tmpdir(), entry), { recursive: true, force: true });
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/** A table name as given (an identifier from `stage`) or quoted when it is anything else. */
function safeName(name: string): string {
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(name) ? name : ident(name);
}

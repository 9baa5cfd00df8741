import { randomUUID } from 'node:crypto';
import { stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { DuckDBValue } from '@duckdb/node-api';
import type { LakeColumn, LakeSchema } from '../lake-schema.ts';
import type { ObjectStore } from '../storage/object-store.ts';
import type { DuckSql } from './duckdb-session.ts';
import { duckdbType, ident, lakeTypeName, literal } from './duckdb-sql.ts';
import { hasMinMax, statsJson, type ColumnAggregate } from './file-stats.ts';
import { ParquetEngineError, SchemaViolationError } from './parquet-errors.ts';
import { encodeDeltaPath, joinStorePath, partitionDir, partitionValueSql } from './partition-path.ts';
import { fromDuckDBValue } from './values.ts';
import { copyStats } from './copy-stats.ts';

/**
 * Writing a query's result as the Parquet data files of a Delta table. Two phases:
 * 1. in DuckDB (connection held): materialise the result once in a temp table, cast to the schema's
 *    types, with each partition column's Delta string; for each partition value combination and each
 *    run of at most `targetFileRows` rows, COPY it to a local zstd Parquet file without the partition
 *    columns (Delta PROTOCOL.md, "Data Files": partition values live in the log); its stats come
 *    from the COPY itself (RETURN_STATS, copy-stats.ts) where they map back exactly, and from an
 *    aggregate over the same rows for the other columns (floating point, decimals, far dates, long
 *    strings DuckDB gives no bounds for). The aggregate was ~5% of a bronze append;
 * 2. outside DuckDB: upload each file with `store.putFile`, delete the local copy.
 */

/** One data file written, as Delta's `add` action needs it (same fields as `AddAction` in src/lake/delta/actions.ts). */
export interface DataFile {
  /** Relative to the table root, URI-encoded (decode to get the object path). */
  path: string;
  partitionValues: Record<string, string | null>;
  size: number;
  modificationTime: number;
  dataChange: boolean;
  stats?: string;
  tags?: Record<string, string>;
}

export interface WriteFilesOptions {
  store: ObjectStore;
  root: string;
  schema: LakeSchema;
  partitionColumns?: string[];
  targetFileRows?: number;
  dataChange?: boolean;
  /**
   * An upper bound of the select's row count, when the caller knows one (a merge writes at most one
   * row per change). Without partition columns and with `maxRows` ≤ `targetFileRows`, the result is
   * COPY'd straight to one file, without the work table (a full copy of the rows); none → no file.
   */
  maxRows?: number;
}

export const DEFAULT_TARGET_FILE_ROWS = 1_000_000;
/**
 * Rows per Parquet row group: DuckDB's default (60 vectors), inside DuckDB's 100k–1M guidance for
 * analytics, and several groups per full-size file for parallel reads. DuckDB encodes row groups in
 * parallel, so larger groups write slower: measured on 500k orders rows, 122,880 rows per group took
 * ~0.33 s against ~0.45 s for 500,000.
 */
export const ROW_GROUP_ROWS = 122_880;

/** A file written locally, not yet uploaded. */
export interface LocalDataFile {
  local: string;
  relativePath: string;
  partitionValues: Record<string, string | null>;
  size: number;
  stats: string;
}

interface Group {
  values: (string | null)[];
  rows: number;
}

/** Phase 1: write the local files. `sql` must be held exclusively. */
export async function writeLocalFiles(
  sql: DuckSql,
  select: string,
  opts: WriteFilesOptions,
  tempDir: string,
  work: string,
): Promise<LocalDataFile[]> {
  const { schema, root } = opts;
  const partitionColumns = opts.partitionColumns ?? [];
  const target = opts.targetFileRows ?? DEFAULT_TARGET_FILE_ROWS;
  if (!Number.isSafeInteger(target) || target < 1) {
    throw new ParquetEngineError('writeFiles', root, `targetFileRows must be a positive integer, got ${target}`);
  }
  const byName = new Map(schema.columns.map((c) => [c.name, c]));
  const parts: LakeColumn[] = partitionColumns.map((p) => {
    const c = byName.get(p);
    if (!c)
      throw new ParquetEngineError('writeFiles', root, `partition column ${p} is not in the schema (${[...byName.keys()].join(', ')})`);
    return c;
  });
  const data = schema.columns.filter((c) => !partitionColumns.includes(c.name));
  const partKeys = parts.map((_, i) => ident(`__tide_p${i}`));

  const casts = schema.columns.map((c) => `CAST(${ident(c.name)} AS ${duckdbType(c.type, c.name)}) AS ${ident(c.name)}`);
  if (!parts.length && opts.maxRows !== undefined && opts.maxRows <= target) {
    // One file at most: COPY the result itself; its row count comes back with the COPY's stats.
    const file = await writeOne(sql, `SELECT ${casts.join(', ')} FROM (${select}) AS tide_src`, data, root, tempDir, 0);
    if (file.rows === 0) {
      await unlink(file.local);
      return [];
    }
    const { rows: _rows, ...written } = file;
    return [{ ...written, relativePath: `part-00000-${randomUUID()}.c000.zstd.parquet`, partitionValues: {} }];
  }
  const cols = [
    ...schema.columns.map((c) => `CAST(${ident(c.name)} AS ${duckdbType(c.type, c.name)}) AS ${ident(c.name)}`),
    ...parts.map((c, i) => `${partitionValueSql(c)} AS ${partKeys[i]}`),
  ];
  // DuckDB preserves insertion order (preserve_insertion_order), so an ORDER BY in `select` carries
  // into the work table's rowids and from there into the files.
  await sql.run(`CREATE TEMP TABLE ${work} AS SELECT ${cols.join(', ')} FROM (${select}) AS tide_src`, 'writeFiles', root);
  const written: LocalDataFile[] = [];
  try {
    const groupSql = parts.length
      ? `SELECT ${partKeys.join(', ')}, count(*), min(rowid), max(rowid) FROM ${work} GROUP BY ALL ORDER BY min(rowid)`
      : `SELECT count(*), min(rowid), max(rowid) FROM ${work}`;
    const groupRows = await sql.rows(groupSql, 'writeFiles', root);
    const groups: Group[] = [];
    let contiguous = false;
    for (const r of groupRows) {
      const values = r.slice(0, parts.length).map((v) => (v === null ? null : String(v)));
      const [n, lo, hi] = r.slice(parts.length).map((v) => Number(v ?? 0)) as [number, number, number];
      if (n > 0) groups.push({ values, rows: n });
      contiguous = parts.length === 0 && lo === 0 && hi === n - 1;
    }
    for (const g of groups) {
      const partitionValues: Record<string, string | null> = {};
      parts.forEach((c, i) => {
        const v = g.values[i] ?? null;
        if (v === null && !c.nullable)
          throw new SchemaViolationError(root, c.name, 'partition column is not nullable, but rows have NULL in it');
        partitionValues[c.name] = v;
      });
      const groupFilter = parts.length
        ? parts.map((_, i) => `${partKeys[i]} IS NOT DISTINCT FROM ${g.values[i] === null ? 'NULL' : literal(g.values[i]!)}`).join(' AND ')
        : 'true';
      const chunks = Math.ceil(g.rows / target);
      for (let k = 0; k < chunks; k++) {
        let source: string;
        if (chunks === 1) source = `SELECT * FROM ${work} WHERE ${groupFilter}`;
        else if (contiguous) source = `SELECT * FROM ${work} WHERE rowid >= ${k * target} AND rowid < ${(k + 1) * target}`;
        else {
          source =
            `SELECT * EXCLUDE (tide_rank) FROM (SELECT *, row_number() OVER (ORDER BY rowid) - 1 AS tide_rank, rowid AS tide_rowid FROM ${work} WHERE ${groupFilter}) ` +
            `WHERE tide_rank >= ${k * target} AND tide_rank < ${(k + 1) * target} ORDER BY tide_rowid`;
        }
        const { rows: _rows, ...file } = await writeOne(sql, source, data, root, tempDir, written.length);
        const dir = partitionDir(partitionColumns, partitionValues);
        const name = `part-${String(written.length).padStart(5, '0')}-${randomUUID()}.c000.zstd.parquet`;
        written.push({ ...file, relativePath: dir ? `${dir}/${name}` : name, partitionValues });
      }
    }
  } catch (e) {
    await Promise.all(written.map((f) => unlink(f.local).catch(() => undefined)));
    // Report the write's error, not a failure to clean up after it.
    await sql.run(`DROP TABLE IF EXISTS ${work}`, 'writeFiles', root).catch(() => undefined);
    throw e;
  }
  await sql.run(`DROP TABLE IF EXISTS ${work}`, 'writeFiles', root);
  return written;
}

/**
 * Phase 1 for a table made by the engine's `stage`/`stageColumns` with the schema's own columns and
 * types: when its rows share one value of each partition column and fit one file, COPY it straight
 * to Parquet and aggregate its stats from it, without the work table `writeLocalFiles` materialises
 * (a full copy of the rows, which cost about as much as the COPY itself in bench/sink-lake.ts's bronze
 * append). Anything else (several partition values, more rows than `targetFileRows`) takes `writeLocalFiles`.
 */
export async function writeStagedLocalFiles(
  sql: DuckSql,
  staged: string,
  rowCount: number,
  opts: WriteFilesOptions,
  tempDir: string,
  work: string,
): Promise<LocalDataFile[]> {
  const { schema, root } = opts;
  const partitionColumns = opts.partitionColumns ?? [];
  const target = opts.targetFileRows ?? DEFAULT_TARGET_FILE_ROWS;
  const parts = schema.columns.filter((c) => partitionColumns.includes(c.name));
  if (rowCount === 0 || rowCount > target || parts.length !== partitionColumns.length) {
    return writeLocalFiles(sql, `SELECT * FROM ${staged}`, opts, tempDir, work);
  }
  let values: (string | null)[] = [];
  if (parts.length) {
    const distinct = await sql.rows(
      `SELECT DISTINCT ${parts.map((c) => partitionValueSql(c)).join(', ')} FROM ${staged} LIMIT 2`,
      'writeFiles',
      root,
    );
    if (distinct.length !== 1) return writeLocalFiles(sql, `SELECT * FROM ${staged}`, opts, tempDir, work);
    values = distinct[0]!.map((v) => (v === null ? null : String(v)));
  }
  const partitionValues: Record<string, string | null> = {};
  parts.forEach((c, i) => {
    if (values[i] === null && !c.nullable)
      throw new SchemaViolationError(root, c.name, 'partition column is not nullable, but rows have NULL in it');
    partitionValues[c.name] = values[i] ?? null;
  });
  const data = schema.columns.filter((c) => !partitionColumns.includes(c.name));
  const { rows: _rows, ...file } = await writeOne(sql, `SELECT * FROM ${staged}`, data, root, tempDir, 0);
  const dir = partitionDir(partitionColumns, partitionValues);
  const name = `part-00000-${randomUUID()}.c000.zstd.parquet`;
  return [{ ...file, relativePath: dir ? `${dir}/${name}` : name, partitionValues }];
}

/** A table function's scan of rows (column-scan.ts): its call, row count and segments. */
export interface ColumnScanCall {
  sql: string;
  rowCount: number;
  /** How many segments DuckDB's threads share, and the rows of each (the last may hold fewer). */
  segments: number;
  segmentRows: number;
}

/**
 * Phase 1 for rows a table function scans (column-scan.ts) that share the given partition values
 * and fit one file: COPY them to one Parquet file, without any table. The columns RETURN_STATS gives
 * no exact bounds for are aggregated over the written file, not by scanning again (which would run
 * the readers a second time). No rows → no file.
 *
 * A scan in several segments is COPY'd with `preserve_insertion_order` off (DuckDB otherwise runs a
 * COPY from a source without batch indexes, which a C-API table function cannot give, on one thread)
 * and ROW_GROUP_SIZE = the segment's rows, so each thread encodes the row group of its own segment:
 * every row group holds one segment's rows in order, the row groups in the order the threads finish
 * them. Bronze is read ordered by (_commit_lsn, _event_index), never by position in a file. The
 * setting is the instance's (DuckDB has no session scope for it): the engine has one connection and
 * `sql` holds it, and the setting is reset before it is let go. The COPY's row count must be the
 * scan's, or nothing is written (each row exactly once).
 */
export async function writeScanLocalFile(
  sql: DuckSql,
  scan: ColumnScanCall,
  partitionValues: Record<string, string | null>,
  opts: WriteFilesOptions,
  tempDir: string,
): Promise<LocalDataFile[]> {
  const partitionColumns = opts.partitionColumns ?? [];
  const data = opts.schema.columns.filter((c) => !partitionColumns.includes(c.name));
  const parallel = scan.segments > 1;
  if (parallel) await sql.run('SET preserve_insertion_order = false', 'writeFiles', opts.root);
  let written: Awaited<ReturnType<typeof writeOne>>;
  try {
    written = await writeOne(sql, `SELECT * FROM ${scan.sql}`, data, opts.root, tempDir, 0, {
      statsFromFile: true,
      rowGroupRows: parallel ? scan.segmentRows : ROW_GROUP_ROWS,
    });
  } finally {
    if (parallel) await sql.run('RESET preserve_insertion_order', 'writeFiles', opts.root);
  }
  const { rows, ...file } = written;
  if (rows !== scan.rowCount) {
    await unlink(file.local);
    throw new ParquetEngineError(
      'writeFiles',
      opts.root,
      `the scan of ${scan.rowCount} rows wrote ${rows} rows to Parquet; the file is dropped and nothing is committed (a DuckDB scan fault: retry the batch)`,
    );
  }
  if (rows === 0) {
    await unlink(file.local);
    return [];
  }
  const dir = partitionDir(partitionColumns, partitionValues);
  const name = `part-00000-${randomUUID()}.c000.zstd.parquet`;
  return [{ ...file, relativePath: dir ? `${dir}/${name}` : name, partitionValues }];
}

/**
 * COPY one file's rows to a local Parquet file (row groups of `rowGroupRows`) and aggregate its stats
 * (over `source`, or over the written file when `statsFromFile`).
 */
async function writeOne(
  sql: DuckSql,
  source: string,
  data: LakeColumn[],
  root: string,
  tempDir: string,
  index: number,
  { statsFromFile = false, rowGroupRows = ROW_GROUP_ROWS }: { statsFromFile?: boolean; rowGroupRows?: number } = {},
): Promise<{ local: string; size: number; stats: string; rows: number }> {
  const local = join(tempDir, `w-${index}-${randomUUID()}.parquet`);
  const select = `SELECT ${data.map((c) => ident(c.name)).join(', ')} FROM (${source})`;
  try {
    const [copied] = await sql.objects(
      `COPY (${select}) TO ${literal(local)} (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE ${rowGroupRows}, RETURN_STATS)`,
      'writeFiles',
      root,
    );
    // Stats from the writer itself where they map back exactly (copy-stats.ts); the rest aggregated over the rows.
    const fromCopy = copyStats(copied, data);
    const rest = data.filter((_, i) => !fromCopy?.columns[i]);
    let numRecords = fromCopy?.numRecords ?? 0;
    const aggregated = new Map<string, ColumnAggregate>();
    if (!fromCopy || rest.length) {
      const aggs = rest.flatMap((c) => {
        const q = ident(c.name);
        return hasMinMax(c.type) ? [`count(*) - count(${q})`, `min(${q})`, `max(${q})`] : [`count(*) - count(${q})`];
      });
      const from = statsFromFile ? `read_parquet(${literal(local)})` : `(${source})`;
      const [row] = await sql.rows(`SELECT ${['count(*)', ...aggs].join(', ')} FROM ${from}`, 'writeFiles', root);
      const values = row!.map((v: DuckDBValue) => fromDuckDBValue(v));
      numRecords = Number(values[0]);
      let i = 1;
      for (const column of rest) {
        const nullCount = Number(values[i++]);
        const [min, max] = hasMinMax(column.type) ? [values[i++], values[i++]] : [null, null];
        aggregated.set(column.name, { column, min, max, nullCount });
      }
    }
    const columns: ColumnAggregate[] = data.map((column, i) => {
      const a = fromCopy?.columns[i] ?? aggregated.get(column.name)!;
      if (a.nullCount > 0 && !column.nullable) {
        throw new SchemaViolationError(
          root,
          column.name,
          `is not nullable (${lakeTypeName(column.type)}), but ${a.nullCount} of ${numRecords} rows are NULL`,
        );
      }
      return a;
    });
    const { size } = await stat(local);
    return { local, size, stats: statsJson(numRecords, columns), rows: numRecords };
  } catch (e) {
    await unlink(local).catch(() => undefined);
    throw e;
  }
}

/** Phase 2: upload the local files to `root` in `store` and delete them; returns the `add` entries. */
export async function uploadFiles(files: LocalDataFile[], store: ObjectStore, root: string, dataChange: boolean): Promise<DataFile[]> {
  const out: DataFile[] = [];
  try {
    for (const f of files) {
      await store.putFile(joinStorePath(root, f.relativePath), f.local);
      out.push({
        path: encodeDeltaPath(f.relativePath),
        partitionValues: f.partitionValues,
        size: f.size,
        modificationTime: Date.now(),
        dataChange,
        stats: f.stats,
      });
      await unlink(f.local);
    }
    return out;
  } finally {
    await Promise.all(files.map((f) => unlink(f.local).catch(() => undefined)));
  }
}

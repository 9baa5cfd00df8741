import type { LakeSchema } from '../lake-schema.ts';
import type { ObjectStore } from '../storage/object-store.ts';
import { duckdbType, ident, literal } from './duckdb-sql.ts';
import type { DuckSql } from './duckdb-session.ts';
import { ParquetEngineError } from './parquet-errors.ts';
import { joinStorePath } from './partition-path.ts';
import type { DeletionVectorDescriptor } from '../delta/deletion-vector.ts';
import { deletedRowSql, type StagedDeletes } from './deleted-rows.ts';

/**
 * A DuckDB view over a Delta table's data files, with the table schema's columns in order:
 * - data columns read by name across files (`union_by_name`), so a column added to the schema after
 *   older files were written reads as NULL there, and cast to the schema's type;
 * - partition columns from each file's `partitionValues` (they are not in the files: Delta
 *   PROTOCOL.md, "Data Files"), parsed from Delta's serialised strings ("Partition Value
 *   Serialization"; an empty string is null).
 */

export interface ViewFile {
  path: string;
  partitionValues: Record<string, string | null>;
  /** The file's deletion vector (PROTOCOL.md "Deletion Vectors"): its rows are left out of the view. */
  deletionVector?: DeletionVectorDescriptor;
}

/** Extra columns a view can carry: each row's local file and its 0-based row index in the file (`file_row_number`). */
export const VIEW_FILE_COLUMN = '__tide_file';
export const VIEW_ROW_COLUMN = '__tide_row';

/** The column read_parquet names with each row's file (chosen not to clash with data columns). */
const FILE_COLUMN = VIEW_FILE_COLUMN;
/** At most this many files are fetched from the store at once (downloads for remote stores). */
const FETCH_CONCURRENCY = 8;

/** Local paths of the files, in order: `store.localFile` of `root/` + the decoded `add.path`. */
export async function localPaths(store: ObjectStore, root: string, files: ViewFile[]): Promise<string[]> {
  const out: string[] = new Array<string>(files.length);
  let next = 0;
  // A small worker pool rather than Promise.all: a remote store would otherwise start every download at once.
  const worker = async (): Promise<void> => {
    while (next < files.length) {
      const i = next++;
      out[i] = await store.localFile(joinStorePath(root, decodeURIComponent(files[i]!.path)));
    }
  };
  await Promise.all(Array.from({ length: Math.min(FETCH_CONCURRENCY, files.length) }, worker));
  return out;
}

/**
 * `CREATE OR REPLACE TEMP VIEW` over `locals` (parallel to `files`). `sql` must be held exclusively.
 * `deleted`, when given, is the staged table of the files' deleted rows (their deletion vectors; deleted-rows.ts), the
 * file named by its index in `locals` (read_parquet's `file_index`): those rows are left out. `positions` adds the columns VIEW_FILE_COLUMN
 * and VIEW_ROW_COLUMN.
 */
export async function createTableView(
  sql: DuckSql,
  name: string,
  files: ViewFile[],
  locals: string[],
  schema: LakeSchema,
  partitionColumns: string[],
  opts: { deleted?: StagedDeletes; positions?: boolean } = {},
): Promise<void> {
  const partitioned = new Set(partitionColumns);
  for (const p of partitionColumns) {
    if (!schema.columns.some((c) => c.name === p)) {
      throw new ParquetEngineError(
        'createView',
        name,
        `partition column ${p} is not in the schema (${schema.columns.map((c) => c.name).join(', ')})`,
      );
    }
  }
  const view = `CREATE OR REPLACE TEMP VIEW ${ident(name)} AS `;
  if (files.length === 0) {
    const cols = schema.columns.map((c) => `CAST(NULL AS ${duckdbType(c.type, c.name)}) AS ${ident(c.name)}`);
    await sql.run(`${view}SELECT ${cols.join(', ')} WHERE false`, 'createView', name);
    return;
  }
  const list = `[${locals.map(literal).join(', ')}]`;
  if (opts.deleted) {
    // file_index is read_parquet's virtual column (and file_row_number its option's): a data column of that name would hide it.
    const clash = schema.columns.find((c) => ['file_index', 'file_row_number'].includes(c.name.toLowerCase()));
    if (clash)
      throw new ParquetEngineError(
        'createView',
        name,
        `column ${clash.name} hides DuckDB's column of that name, which reading the table's deletion vectors needs: rename the column in the source table`,
      );
  }
  const needFile = partitionColumns.length > 0 || !!opts.positions;
  const needRow = !!opts.deleted || !!opts.positions;
  const withFile = needFile ? `, filename = ${literal(FILE_COLUMN)}` : '';
  const scan = `read_parquet(${list}, union_by_name = true${withFile}${needRow ? ', file_row_number = true' : ''})`;
  const described = await sql.rows(`DESCRIBE SELECT * FROM ${scan}`, 'createView', name);
  const present = new Set(described.map((r) => String(r[0]).toLowerCase()));
  const cols = schema.columns.map((c) => {
    const type = duckdbType(c.type, c.name);
    if (partitioned.has(c.name)) return `CAST(NULLIF(p.${ident(c.name)}, '') AS ${type}) AS ${ident(c.name)}`;
    if (present.has(c.name.toLowerCase())) return `CAST(f.${ident(c.name)} AS ${type}) AS ${ident(c.name)}`;
    return `CAST(NULL AS ${type}) AS ${ident(c.name)}`;
  });
  if (opts.positions) cols.push(`f.${ident(FILE_COLUMN)} AS ${ident(VIEW_FILE_COLUMN)}`, `f.file_row_number AS ${ident(VIEW_ROW_COLUMN)}`);
  let from = `${scan} f`;
  if (partitionColumns.length > 0) {
    const rows = files.map((f, i) => {
      const values = partitionColumns.map((p) => {
        const v = f.partitionValues[p];
        return v === null || v === undefined ? 'CAST(NULL AS VARCHAR)' : literal(v);
      });
      return `(${[literal(locals[i]!), ...values].join(', ')})`;
    });
    const names = [FILE_COLUMN, ...partitionColumns].map(ident).join(', ');
    from += ` JOIN (VALUES ${rows.join(', ')}) p(${names}) ON f.${ident(FILE_COLUMN)} = p.${ident(FILE_COLUMN)}`;
  }
  // Rows a deletion vector names are not part of the table (PROTOCOL.md "Reader Requirements for Deletion Vectors").
  // Dense vectors: each row's 64-row word is looked up (a LEFT JOIN on one BIGINT: the table holds each word once)
  // and the row stays when the word is absent or its bit is clear. Sparse ones: one key per deleted row and NOT IN,
  // a hash anti-join on one column (deleted-rows.ts). A correlated NOT EXISTS was planned as a delim join grouping every row.
  let where = '';
  if (opts.deleted) {
    const rows = deletedRowSql(opts.deleted, 'f.file_index', 'f.file_row_number');
    from += rows.join;
    where = ` WHERE ${rows.kept}`;
  }
  await sql.run(`${view}SELECT ${cols.join(', ')} FROM ${from}${where}`, 'createView', name);
}

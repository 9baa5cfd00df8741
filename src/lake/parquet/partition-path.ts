import type { LakeColumn } from '../lake-schema.ts';
import { ident } from './duckdb-sql.ts';
import { LakeTypeError } from './parquet-errors.ts';

/**
 * Partition values and the paths of partitioned data files.
 *
 * - Values are serialised as Delta requires (PROTOCOL.md, "Partition Value Serialization"): numbers as
 *   their decimal text, dates `YYYY-MM-DD`, booleans `true`/`false`, timestamps as ISO-8601 adjusted to
 *   UTC (`1970-01-01T00:00:00.123456Z`, the recommended form). An empty string means null there, so an
 *   empty string partition value is written as null (Spark does the same).
 * - Directories are Hive-style `col=value/` with Hive's path escaping (what Spark writes; the directory
 *   layout is a convention only, readers take values from the log: PROTOCOL.md, "Data Files").
 * - `add.path` is a URI-encoded relative path (PROTOCOL.md, "Add File and Remove File": "a relative path
 *   … as specified by RFC 2396 … which needs to be decoded to get the data file path").
 */

/** Spark/Hive's directory name for a null partition value. */
export const HIVE_NULL_PARTITION = '__HIVE_DEFAULT_PARTITION__';

/**
 * A DuckDB SQL expression giving the Delta partition string of `column` (NULL for null). Throws for
 * types that cannot be partition columns here (binary, array).
 */
export function partitionValueSql(column: LakeColumn, expr: string = ident(column.name)): string {
  const t = column.type;
  switch (t.kind) {
    case 'string':
      return `NULLIF(${expr}, '')`;
    case 'long':
    case 'integer':
    case 'short':
    case 'double':
    case 'float':
    case 'boolean':
    case 'decimal':
      return `CAST(${expr} AS VARCHAR)`;
    case 'date':
      // DuckDB's date text is ISO `YYYY-MM-DD` (zero-padded years) for years 1..9999.
      return `CAST(${expr} AS VARCHAR)`;
    case 'timestamp':
      // The engine's session TimeZone is UTC, so strftime renders the UTC instant.
      return `strftime(${expr}, '%Y-%m-%dT%H:%M:%S.%fZ')`;
    case 'binary':
    case 'array':
      throw new LakeTypeError(
        column.name,
        `a ${t.kind} column cannot be a partition column; partition by a string, number, date or timestamp column`,
      );
  }
}

/** Characters Hive/Spark escape in partition directory names (ExternalCatalogUtils.escapePathName). */
function needsHiveEscape(code: number): boolean {
  return code < 0x20 || code === 0x7f || '"#%\'*/:=?\\{[]^'.includes(String.fromCharCode(code));
}

/** Hive's escaping of a partition column name or value for a directory name: `%XX` for the characters above. */
export function hiveEscape(s: string): string {
  let out = '';
  for (const ch of s) {
    const code = ch.codePointAt(0)!;
    out += code < 0x80 && needsHiveEscape(code) ? `%${code.toString(16).toUpperCase().padStart(2, '0')}` : ch;
  }
  return out;
}

/** The `col=value/…` directory (no trailing slash) of a file with these partition values, unencoded. */
export function partitionDir(partitionColumns: string[], values: Record<string, string | null>): string {
  return partitionColumns
    .map((c) => {
      const v = values[c];
      return `${hiveEscape(c)}=${v === null || v === undefined ? HIVE_NULL_PARTITION : hiveEscape(v)}`;
    })
    .join('/');
}

/**
 * A relative path as Delta's `add.path`: each segment percent-encoded (UTF-8, RFC 3986 unreserved
 * characters kept), `=` kept readable; `decodeURIComponent` gives the path back.
 */
export function encodeDeltaPath(relativePath: string): string {
  return relativePath
    .split('/')
    .map((seg) => encodeURIComponent(seg).replace(/%3D/g, '='))
    .join('/');
}

/** `root/path` for the object store, tolerating an empty root and stray slashes. */
export function joinStorePath(root: string, path: string): string {
  const r = root.replace(/\/+$/, '');
  const p = path.replace(/^\/+/, '');
  return r === '' ? p : `${r}/${p}`;
}

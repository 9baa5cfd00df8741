import type { Schedule } from './report-schedule.ts';
import type { Incremental, TableRead } from './report-file.ts';
import { GoldReportError } from './report-errors.ts';

export { GoldReportError } from './report-errors.ts';

/**
 * The gold reports: reporting tables defined as SQL files the team writes, one table per file, in the
 * folder the sink connector names (`gold.reports.dir`; report-file.ts reads a file's header,
 * report-folder.ts loads and orders a folder). The order app's reports are the example set in
 * connectors/reports/orders/; their Postgres twins (test/fixtures/gold-postgres/) compute the same
 * rows from the source tables, so a test proves the lake's report equals the transactional database's.
 *
 * At report time DuckDB sees one view per lake table the SQL names, `<layer>_<table>`: silver_orders,
 * silver_orders_history, bronze_orders, gold_<report>. Sessions run with TimeZone 'UTC'.
 */

/** Runs a query and returns its rows; used by reports whose SQL depends on the data. */
export type Query = (sql: string) => Promise<Record<string, unknown>[]>;

export interface GoldReport {
  /** e.g. 'sales_per_minute' → gold.sales_per_minute */
  name: string;
  description: string;
  /** The report's file, for messages. */
  file: string;
  schedule: Schedule;
  incremental?: Incremental;
  /** The lake tables its SQL names. */
  reads: TableRead[];
  /** The other gold reports it reads: they are built before it. */
  dependsOn: string[];
  /**
   * A hash of its SQL (and its keys query): kept in the gold table's configuration, so a report edited
   * while the sink was down is rebuilt, whole, when the sink starts again.
   */
  fingerprint: string;
  /** DuckDB SQL over the lake views; `since` (a SQL literal) fills {{since}} of an incremental report. */
  duckdbSql(q: Query, since?: string): Promise<string>;
}

/** The gold table property that holds the fingerprint of the SQL its last build ran (GoldReport.fingerprint). */
export const FINGERPRINT_PROPERTY = 'tide.report.fingerprint';

export type SqlDialect = 'duckdb' | 'postgres';

/** A double-quoted identifier (SQL standard, same in DuckDB and Postgres): any `"` is doubled. */
export function quoteIdentifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/**
 * A single-quoted string literal (SQL standard): any `'` is doubled. Backslashes stay literal in
 * DuckDB and in Postgres with standard_conforming_strings = on (its default since 9.1).
 */
export function quoteLiteral(text: string): string {
  return `'${text.replaceAll("'", "''")}'`;
}

// ---- order_attributes: a pivot whose columns are the keys found in the data ----

export const ORDER_ATTRIBUTES = 'order_attributes';
/** The pivot's fixed columns; no attribute key may take one of these names. */
export const ORDER_ATTRIBUTES_FIXED_COLUMNS = ['order_id', 'transaction_no', 'updated_at'] as const;
/** More keys than this means the attributes are not key/value settings but data; refuse rather than build a huge table. */
export const MAX_ATTRIBUTE_KEYS = 200;
/** Postgres truncates longer identifiers (NAMEDATALEN - 1 bytes), so its twin cannot name such a column. */
const POSTGRES_MAX_IDENTIFIER_BYTES = 63;
const PLACEHOLDER = /^[ \t]*\{\{attribute_columns\}\}[ \t]*$/m;

/**
 * A pivot report: its SQL holds the line {{attribute_columns}}, filled with one column per key that its
 * companion `<name>.keys.sql` returns (a column named key), each `max(a.value_text) FILTER (WHERE a.key
 * = '<key>') AS "<key>"`: the SQL reads the key/value pairs as a relation `a(key, value_text)`.
 * `fixedColumns` are its other output columns (no key may take their names).
 */
export interface Pivot {
  report: string;
  fixedColumns: readonly string[];
}

export const ORDER_ATTRIBUTES_PIVOT: Pivot = { report: ORDER_ATTRIBUTES, fixedColumns: ORDER_ATTRIBUTES_FIXED_COLUMNS };

/**
 * The pivot's column list for these keys: one line per key, sorted by code unit so column order is
 * stable. Rejects keys that cannot become distinct column names: empty, equal to a fixed column or
 * to another key when case is ignored (DuckDB, Delta and Spark resolve column names
 * case-insensitively), too many, or (Postgres twin only) longer than Postgres identifiers.
 */
export function attributeColumns(keys: readonly string[], dialect: SqlDialect, pivot: Pivot = ORDER_ATTRIBUTES_PIVOT): string {
  const report = pivot.report;
  const sorted = [...new Set(keys)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  if (sorted.length > MAX_ATTRIBUTE_KEYS) {
    const first = sorted.slice(0, 5).map((k) => JSON.stringify(k));
    throw new GoldReportError(
      report,
      `its keys query (${report}.keys.sql) returns ${sorted.length} distinct keys (first: ${first.join(', ')}), more than the ${MAX_ATTRIBUTE_KEYS} ` +
        'columns this pivot allows. Keep free-form data out of the pivoted keys.',
    );
  }
  const taken = new Map<string, string>(pivot.fixedColumns.map((c) => [c, `the fixed column ${c}`]));
  for (const key of sorted) {
    if (key === '') {
      throw new GoldReportError(
        report,
        `its keys query (${report}.keys.sql) returns an empty key, which cannot be a column name. Remove or rename it in the data.`,
      );
    }
    const folded = key.toLowerCase();
    const clash = taken.get(folded);
    if (clash) {
      throw new GoldReportError(
        report,
        `attribute key ${JSON.stringify(key)} would be the same column as ${clash} (column names ignore case). Rename one of them in the data ${report}.keys.sql reads.`,
      );
    }
    taken.set(folded, `attribute key ${JSON.stringify(key)}`);
    if (dialect === 'postgres' && Buffer.byteLength(key, 'utf8') > POSTGRES_MAX_IDENTIFIER_BYTES) {
      throw new GoldReportError(
        report,
        `attribute key ${JSON.stringify(key)} is longer than Postgres' ${POSTGRES_MAX_IDENTIFIER_BYTES}-byte identifiers, so the Postgres twin cannot name its column.`,
      );
    }
  }
  return sorted.map((key) => `, max(a.value_text) FILTER (WHERE a.key = ${quoteLiteral(key)}) AS ${quoteIdentifier(key)}`).join('\n    ');
}

/** The pivot SQL for these keys, from the dialect's template. */
export function orderAttributesSql(
  template: string,
  keys: readonly string[],
  dialect: SqlDialect,
  pivot: Pivot = ORDER_ATTRIBUTES_PIVOT,
): string {
  const matches = template.match(new RegExp(PLACEHOLDER.source, 'gm'));
  if (matches?.length !== 1) {
    throw new GoldReportError(
      pivot.report,
      `its ${dialect} SQL must hold the line {{attribute_columns}} exactly once, found ${matches?.length ?? 0}.`,
    );
  }
  const columns = attributeColumns(keys, dialect, pivot);
  // A function replacement, so `$&` and the like in a key are not replacement patterns.
  return template.replace(PLACEHOLDER, () => (columns ? `    ${columns}` : ''));
}

/** The keys a pivot's keys query returns (its column `key`, each a string). */
export async function attributeKeys(q: Query, sql: string, report: string): Promise<string[]> {
  const rows = await q(sql);
  return rows.map((row, i) => {
    const key = row.key;
    if (typeof key !== 'string') {
      throw new GoldReportError(report, `the key query returned ${JSON.stringify(key)} in row ${i}, not a string: check the column "key".`);
    }
    return key;
  });
}

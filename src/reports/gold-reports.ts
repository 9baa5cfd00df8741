import { readFileSync } from 'node:fs';
import { TideError } from '../errors.ts';

/**
 * The gold reports: reporting tables defined as SQL over silver, run by DuckDB (issue 4, "gold").
 * Each report's SQL lives in src/reports/gold/<name>.duckdb.sql, with its definitions (revenue,
 * time boundaries, NULL rules) in the file's header, and a Postgres twin <name>.postgres.sql that
 * computes the same rows from the source tables, so a test can prove the lake's report equals the
 * transactional database's.
 *
 * At report time DuckDB sees one view per silver table: silver_customers, silver_products,
 * silver_orders, silver_order_items (see SILVER_VIEWS). Sessions run with TimeZone 'UTC'
 * (Postgres: timezone 'UTC'), and the SQL takes every boundary explicitly in UTC as well.
 */

/** Runs a query and returns its rows; used by reports whose SQL depends on the data. */
export type Query = (sql: string) => Promise<Record<string, unknown>[]>;

export interface GoldReport {
  /** e.g. 'sales_per_minute' → gold.sales_per_minute */
  name: string;
  description: string;
  /** DuckDB SQL over the silver_* views. */
  duckdbSql(q: Query): Promise<string>;
  /** The same report as a Postgres query over the source tables, for the equivalence test. */
  postgresSql(q: Query): Promise<string>;
  /** The key columns that identify a row, for comparison and ordering. */
  key: string[];
}

/** Source table → the DuckDB view name the gold SQL reads it from. */
export const SILVER_VIEWS = {
  customers: 'silver_customers',
  products: 'silver_products',
  orders: 'silver_orders',
  order_items: 'silver_order_items',
} as const;

export class GoldReportError extends TideError {
  constructor(
    readonly report: string,
    message: string,
    options: { cause?: unknown } = {},
  ) {
    super(`gold report ${report}: ${message}`, options);
    this.name = 'GoldReportError';
  }
}

export type SqlDialect = 'duckdb' | 'postgres';

const GOLD_SQL_DIR = new URL('./gold/', import.meta.url);

/** The text of src/reports/gold/<file>. */
export function readGoldSql(report: string, file: string): string {
  const url = new URL(file, GOLD_SQL_DIR);
  try {
    return readFileSync(url, 'utf8');
  } catch (err) {
    throw new GoldReportError(report, `cannot read its SQL file ${url.pathname}: ${(err as Error).message}. Reinstall Tide.`, {
      cause: err,
    });
  }
}

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

function staticReport(name: string, description: string, key: string[]): GoldReport {
  const duckdb = readGoldSql(name, `${name}.duckdb.sql`);
  const postgres = readGoldSql(name, `${name}.postgres.sql`);
  return {
    name,
    description,
    key,
    duckdbSql: () => Promise.resolve(duckdb),
    postgresSql: () => Promise.resolve(postgres),
  };
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
 * The pivot's column list for these keys: one line per key, sorted by code unit so column order is
 * stable. Rejects keys that cannot become distinct column names: empty, equal to a fixed column or
 * to another key when case is ignored (DuckDB, Delta and Spark resolve column names
 * case-insensitively), too many, or (Postgres twin only) longer than Postgres identifiers.
 */
export function attributeColumns(keys: readonly string[], dialect: SqlDialect): string {
  const sorted = [...new Set(keys)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  if (sorted.length > MAX_ATTRIBUTE_KEYS) {
    const first = sorted.slice(0, 5).map((k) => JSON.stringify(k));
    throw new GoldReportError(
      ORDER_ATTRIBUTES,
      `the orders' attributes hold ${sorted.length} distinct keys (first: ${first.join(', ')}), more than the ${MAX_ATTRIBUTE_KEYS} ` +
        'columns this pivot allows. Keep free-form data out of order attributes.',
    );
  }
  const taken = new Map<string, string>(ORDER_ATTRIBUTES_FIXED_COLUMNS.map((c) => [c, `the fixed column ${c}`]));
  for (const key of sorted) {
    if (key === '') {
      throw new GoldReportError(
        ORDER_ATTRIBUTES,
        'an order has an attribute with an empty key, which cannot be a column name. Remove or rename it.',
      );
    }
    const folded = key.toLowerCase();
    const clash = taken.get(folded);
    if (clash) {
      throw new GoldReportError(
        ORDER_ATTRIBUTES,
        `attribute key ${JSON.stringify(key)} would be the same column as ${clash} (column names ignore case). Rename one of them in the orders' attributes.`,
      );
    }
    taken.set(folded, `attribute key ${JSON.stringify(key)}`);
    if (dialect === 'postgres' && Buffer.byteLength(key, 'utf8') > POSTGRES_MAX_IDENTIFIER_BYTES) {
      throw new GoldReportError(
        ORDER_ATTRIBUTES,
        `attribute key ${JSON.stringify(key)} is longer than Postgres' ${POSTGRES_MAX_IDENTIFIER_BYTES}-byte identifiers, so the Postgres twin cannot name its column.`,
      );
    }
  }
  return sorted.map((key) => `, max(a.value_text) FILTER (WHERE a.key = ${quoteLiteral(key)}) AS ${quoteIdentifier(key)}`).join('\n    ');
}

/** The pivot SQL for these keys, from the dialect's template. */
export function orderAttributesSql(template: string, keys: readonly string[], dialect: SqlDialect): string {
  const matches = template.match(new RegExp(PLACEHOLDER.source, 'gm'));
  if (matches?.length !== 1) {
    throw new GoldReportError(
      ORDER_ATTRIBUTES,
      `its ${dialect} SQL must hold the line {{attribute_columns}} exactly once, found ${matches?.length ?? 0}.`,
    );
  }
  const columns = attributeColumns(keys, dialect);
  // A function replacement, so `$&` and the like in a key are not replacement patterns.
  return template.replace(PLACEHOLDER, () => (columns ? `    ${columns}` : ''));
}

async function attributeKeys(q: Query, sql: string): Promise<string[]> {
  const rows = await q(sql);
  return rows.map((row, i) => {
    const key = row.key;
    if (typeof key !== 'string') {
      throw new GoldReportError(
        ORDER_ATTRIBUTES,
        `the key query returned ${JSON.stringify(key)} in row ${i}, not a string: check the column "key".`,
      );
    }
    return key;
  });
}

function orderAttributesReport(): GoldReport {
  const sql = {
    duckdb: {
      keys: readGoldSql(ORDER_ATTRIBUTES, 'order_attributes.keys.duckdb.sql'),
      pivot: readGoldSql(ORDER_ATTRIBUTES, 'order_attributes.duckdb.sql'),
    },
    postgres: {
      keys: readGoldSql(ORDER_ATTRIBUTES, 'order_attributes.keys.postgres.sql'),
      pivot: readGoldSql(ORDER_ATTRIBUTES, 'order_attributes.postgres.sql'),
    },
  };
  const build = async (dialect: SqlDialect, q: Query) =>
    orderAttributesSql(sql[dialect].pivot, await attributeKeys(q, sql[dialect].keys), dialect);
  return {
    name: ORDER_ATTRIBUTES,
    description: "Each order's current jsonb attributes, one column per key that appears in any order.",
    key: ['order_id'],
    duckdbSql: (q) => build('duckdb', q),
    postgresSql: (q) => build('postgres', q),
  };
}

export const GOLD_REPORTS: GoldReport[] = [
  staticReport('sales_per_minute', 'Orders, cancellations and revenue per UTC minute of order time.', ['minute']),
  staticReport(
    'customer_last_update',
    "Per customer: country, latest order time and latest update to the customer or their orders (the sales panel's side view).",
    ['customer_id'],
  ),
  staticReport('daily_billing', 'Per customer per UTC day: number of orders, cancellations and the amount billed.', ['customer_id', 'day']),
  staticReport(
    'rolling_revenue',
    'Per customer and reference month: average monthly revenue over the 3 and 6 months before it, NULL without enough history.',
    ['customer_id', 'reference_month'],
  ),
  orderAttributesReport(),
  staticReport('revenue_by_country', 'Per country: ordering customers, orders, cancellations and revenue.', ['country']),
  staticReport('top_products_by_country', 'The 10 products with the most revenue in each country.', ['country', 'product_rank']),
];

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { attributeKeys, orderAttributesSql, type GoldReport, type Query } from '../../src/reports/gold-reports.ts';
import { loadReportFolder } from '../../src/reports/report-folder.ts';

/**
 * The order app's gold reports (the example set, connectors/reports/orders/) with what the tests add:
 * each report's Postgres twin (test/fixtures/gold-postgres/<name>.postgres.sql), which computes the same
 * rows from the source tables, and the key columns that identify a row, for comparison.
 */
export const ORDER_REPORTS_DIR = fileURLToPath(new URL('../../connectors/reports/orders/', import.meta.url));
const POSTGRES_DIR = new URL('../fixtures/gold-postgres/', import.meta.url);

export const ORDER_REPORT_KEYS: Record<string, string[]> = {
  customer_last_update: ['customer_id'],
  daily_billing: ['customer_id', 'day'],
  order_attributes: ['order_id'],
  revenue_by_country: ['country'],
  rolling_revenue: ['customer_id', 'reference_month'],
  sales_per_minute: ['minute'],
  top_products_by_country: ['country', 'product_rank'],
};

export interface OrderReport extends GoldReport {
  key: string[];
  /** The same report as a Postgres query over the source tables. */
  postgresSql(q: Query): Promise<string>;
}

export const postgresTwin = (file: string): string => readFileSync(new URL(file, POSTGRES_DIR), 'utf8');

function withTwin(report: GoldReport): OrderReport {
  const key = ORDER_REPORT_KEYS[report.name];
  if (!key) throw new Error(`no key listed for the example report ${report.name} in test/support/order-reports.ts`);
  const postgresSql =
    report.name === 'order_attributes'
      ? async (q: Query) =>
          orderAttributesSql(
            postgresTwin('order_attributes.postgres.sql'),
            await attributeKeys(q, postgresTwin('order_attributes.keys.postgres.sql'), report.name),
            'postgres',
          )
      : () => Promise.resolve(postgresTwin(`${report.name}.postgres.sql`));
  return { ...report, key, postgresSql };
}

export const ORDER_REPORTS: OrderReport[] = loadReportFolder(ORDER_REPORTS_DIR).map(withTwin);

/** Source table → the DuckDB view name the example reports read it from. */
export const SILVER_VIEWS = {
  customers: 'silver_customers',
  products: 'silver_products',
  orders: 'silver_orders',
  order_items: 'silver_order_items',
} as const;

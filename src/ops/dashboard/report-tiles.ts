import { quoteLiteral } from '../../reports/gold-reports.ts';
import { DashboardRequestError } from './dashboard-errors.ts';
import type { GoldReader, GoldRows } from './gold-reader.ts';

/**
 * The report tiles' figures, each computed from gold tables (read from the lake by GoldReader, never
 * from Postgres). Money stays exact: DECIMAL values travel as decimal strings ("1234.50"); counts are
 * JSON numbers; times are ISO 8601 UTC strings. The column meanings are those of the report SQL in
 * connectors/reports/orders/<report>.sql (sales per minute, customer last update, daily billing, revenue
 * and top products by country).
 */

/** A tile whose gold table the sink has not built yet. */
export interface NotReady {
  ready: false;
  /** Which gold table is missing and what to do. */
  message: string;
}

export interface TableVersion {
  table: string;
  version: number;
  committedAt: string | null;
}

export interface OrdersPanel {
  ready: true;
  orders: number;
  cancellations: number;
  revenue: string;
  /** Latest change to any customer or order (max gold.customer_last_update.last_update). */
  lastUpdate: string | null;
  /** Orders per minute over the hour up to the newest minute with orders; minutes without orders are 0. */
  perMinute: { minute: string; orders: number }[];
  sources: TableVersion[];
}

export interface CustomerPanel {
  ready: true;
  customer: number;
  country: string | null;
  orders: number;
  cancellations: number;
  amountBilled: string;
  lastOrderAt: string | null;
  lastUpdate: string | null;
  sources: TableVersion[];
}

export interface DailyRevenue {
  ready: true;
  /** The last DAILY_POINTS UTC days that have orders, oldest first. */
  points: { day: string; revenue: string; orders: number }[];
  sources: TableVersion[];
}

export interface TopProducts {
  ready: true;
  /** Countries by revenue, highest first; null is the orders without a customer. */
  countries: { country: string | null; revenue: string }[];
  country: string | null;
  products: { rank: number; productNo: string; name: string | null; units: number; revenue: string }[];
  sources: TableVersion[];
}

export const DAILY_POINTS = 60;
export const PER_MINUTE_POINTS = 60;

const notReady = (table: string): NotReady => ({
  ready: false,
  message: `gold.${table} is not in the lake yet: the sink builds it once silver has data (gold.refresh.interval.ms in the sink connector file)`,
});

const num = (v: unknown): number => (typeof v === 'bigint' ? Number(v) : typeof v === 'number' ? v : Number(v ?? 0));
const str = (v: unknown): string | null => (v === null || v === undefined ? null : String(v));
/** Microseconds since the epoch (DuckDB epoch_us) → ISO 8601 UTC with milliseconds. */
const isoOfMicros = (v: unknown): string | null => (v === null || v === undefined ? null : new Date(num(v) / 1000).toISOString());
const versionOf = (table: string, r: GoldRows): TableVersion => ({
  table: `gold.${table}`,
  version: r.version,
  committedAt: r.committedAtMs === null ? null : new Date(r.committedAtMs).toISOString(),
});

/** A customer id from the page: a positive integer (the order app's customers.id). */
export function parseCustomer(text: string): number {
  if (!/^\d{1,15}$/.test(text.trim()))
    throw new DashboardRequestError(400, 'customer', `must be a customer number (digits only), got ${JSON.stringify(text)}`);
  return Number(text.trim());
}

export async function ordersPanel(gold: GoldReader): Promise<OrdersPanel | NotReady> {
  const totals = await gold.read(
    'sales_per_minute',
    (v) => `SELECT CAST(coalesce(sum(orders), 0) AS BIGINT) AS orders, CAST(coalesce(sum(cancellations), 0) AS BIGINT) AS cancellations,
                   CAST(coalesce(sum(revenue), 0) AS VARCHAR) AS revenue, epoch_us(max(minute)) AS newest_us FROM ${v}`,
  );
  if (!totals) return notReady('sales_per_minute');
  const minutes = await gold.read(
    'sales_per_minute',
    (v) => `SELECT epoch_us(minute) AS minute_us, orders FROM ${v}
            WHERE minute > (SELECT max(minute) FROM ${v}) - INTERVAL ${PER_MINUTE_POINTS} MINUTE ORDER BY minute`,
  );
  const updates = await gold.read('customer_last_update', (v) => `SELECT epoch_us(max(last_update)) AS last_update_us FROM ${v}`);
  if (!updates) return notReady('customer_last_update');
  const t = totals.rows[0]!;
  const perMinute: OrdersPanel['perMinute'] = [];
  if (t.newest_us !== null) {
    const byMinute = new Map(minutes!.rows.map((r) => [num(r.minute_us), num(r.orders)]));
    const newest = num(t.newest_us);
    for (let i = PER_MINUTE_POINTS - 1; i >= 0; i--) {
      const us = newest - i * 60_000_000;
      perMinute.push({ minute: isoOfMicros(us)!, orders: byMinute.get(us) ?? 0 });
    }
  }
  return {
    ready: true,
    orders: num(t.orders),
    cancellations: num(t.cancellations),
    revenue: String(t.revenue),
    lastUpdate: isoOfMicros(updates.rows[0]!.last_update_us),
    perMinute,
    sources: [versionOf('sales_per_minute', totals), versionOf('customer_last_update', updates)],
  };
}

export async function customerPanel(gold: GoldReader, customer: number): Promise<CustomerPanel | NotReady> {
  const who = await gold.read(
    'customer_last_update',
    (v) => `SELECT country, epoch_us(last_order_at) AS last_order_us, epoch_us(last_update) AS last_update_us
            FROM ${v} WHERE customer_id = ${customer}`,
  );
  if (!who) return notReady('customer_last_update');
  const billing = await gold.read(
    'daily_billing',
    (v) => `SELECT CAST(coalesce(sum(orders), 0) AS BIGINT) AS orders, CAST(coalesce(sum(cancellations), 0) AS BIGINT) AS cancellations,
                   CAST(coalesce(sum(amount_billed), 0) AS VARCHAR) AS amount FROM ${v} WHERE customer_id = ${customer}`,
  );
  if (!billing) return notReady('daily_billing');
  const c = who.rows[0];
  if (!c)
    throw new DashboardRequestError(
      404,
      'customer',
      `customer ${customer} is not in gold.customer_last_update (version ${who.version}): check the number, or wait for the next gold refresh`,
    );
  const b = billing.rows[0]!;
  return {
    ready: true,
    customer,
    country: str(c.country),
    orders: num(b.orders),
    cancellations: num(b.cancellations),
    amountBilled: String(b.amount),
    lastOrderAt: isoOfMicros(c.last_order_us),
    lastUpdate: isoOfMicros(c.last_update_us),
    sources: [versionOf('customer_last_update', who), versionOf('daily_billing', billing)],
  };
}

export async function dailyRevenue(gold: GoldReader): Promise<DailyRevenue | NotReady> {
  // Session time zone is UTC (ParquetEngine), so the cast to DATE gives the UTC day.
  const r = await gold.read(
    'sales_per_minute',
    (v) => `SELECT CAST(d AS VARCHAR) AS day, CAST(r AS VARCHAR) AS revenue, n AS orders FROM (
              SELECT CAST(minute AS DATE) AS d, sum(revenue) AS r, CAST(sum(orders) AS BIGINT) AS n
              FROM ${v} GROUP BY d ORDER BY d DESC LIMIT ${DAILY_POINTS}
            ) ORDER BY d`,
  );
  if (!r) return notReady('sales_per_minute');
  return {
    ready: true,
    points: r.rows.map((p) => ({ day: String(p.day), revenue: String(p.revenue), orders: num(p.orders) })),
    sources: [versionOf('sales_per_minute', r)],
  };
}

/** `country`: undefined for the country with the most revenue, null for the orders without a customer. */
export async function topProducts(gold: GoldReader, country: string | null | undefined): Promise<TopProducts | NotReady> {
  const countries = await gold.read(
    'revenue_by_country',
    (v) => `SELECT country, CAST(revenue AS VARCHAR) AS revenue_text FROM ${v} ORDER BY revenue DESC, country NULLS LAST`,
  );
  if (!countries) return notReady('revenue_by_country');
  const list = countries.rows.map((r) => ({ country: str(r.country), revenue: String(r.revenue_text) }));
  const chosen = country === undefined ? (list.find((c) => c.country !== null)?.country ?? null) : country;
  if (country !== undefined && !list.some((c) => c.country === chosen))
    throw new DashboardRequestError(
      404,
      'country',
      `${chosen === null ? 'orders without a customer' : JSON.stringify(chosen)} not in gold.revenue_by_country (version ${countries.version}): pick one of the listed countries`,
    );
  const where = chosen === null ? 'country IS NULL' : `country = ${quoteLiteral(chosen)}`;
  const products = await gold.read(
    'top_products_by_country',
    (v) => `SELECT product_rank, product_no, product_name, units, CAST(revenue AS VARCHAR) AS revenue
            FROM ${v} WHERE ${where} ORDER BY product_rank`,
  );
  if (!products) return notReady('top_products_by_country');
  return {
    ready: true,
    countries: list,
    country: chosen,
    products: products.rows.map((p) => ({
      rank: num(p.product_rank),
      productNo: String(p.product_no),
      name: str(p.product_name),
      units: num(p.units),
      revenue: String(p.revenue),
    })),
    sources: [versionOf('revenue_by_country', countries), versionOf('top_products_by_country', products)],
  };
}

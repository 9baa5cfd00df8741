import { DashboardRequestError } from './dashboard-errors.ts';
import type { GoldReader, GoldRows } from './gold-reader.ts';
import type { NotReady, TableVersion } from './report-tiles.ts';

/**
 * The notification platform's panel (README "The notification platform"): one customer's notifications per
 * minute over the hour up to their newest minute, and the last update, from gold.notifications_per_minute
 * (connectors/reports/notifications/notifications_per_minute.sql), never from bronze. Times are ISO 8601 UTC.
 */
export interface NotificationsPanel {
  ready: true;
  customer: number;
  customerName: string | null;
  /** The customer's notifications in the minutes shown. */
  notifications: number;
  /** The newest event_datetime of the customer (max last_update). */
  lastUpdate: string | null;
  /** When the newest of them reached the lake. */
  lastIngestedAt: string | null;
  perMinute: { minute: string; notifications: number }[];
  /** The busiest customers of the last hour of the table, to choose from. */
  customers: { customer: number; name: string | null; notifications: number }[];
  sources: TableVersion[];
}

export const NOTIFICATION_MINUTES = 60;
const TABLE = 'notifications_per_minute';

const num = (v: unknown): number => (typeof v === 'bigint' ? Number(v) : typeof v === 'number' ? v : Number(v ?? 0));
const iso = (v: unknown): string | null => (v === null || v === undefined ? null : new Date(num(v) / 1000).toISOString());
const versionOf = (r: GoldRows): TableVersion => ({
  table: `gold.${TABLE}`,
  version: r.version,
  committedAt: r.committedAtMs === null ? null : new Date(r.committedAtMs).toISOString(),
});

/** `customer` undefined: the busiest customer of the table's last hour. */
export async function notificationsPanel(gold: GoldReader, customer: number | undefined): Promise<NotificationsPanel | NotReady> {
  const top = await gold.read(
    TABLE,
    (v) => `SELECT customer_id, any_value(customer_name) AS name, CAST(sum(notifications) AS BIGINT) AS n FROM ${v}
            WHERE minute > (SELECT max(minute) FROM ${v}) - INTERVAL ${NOTIFICATION_MINUTES} MINUTE
            GROUP BY customer_id ORDER BY n DESC, customer_id LIMIT 20`,
  );
  if (!top)
    return {
      ready: false,
      message: `gold.${TABLE} is not in the lake yet: the notification sink (connectors/notifications-lake.json) builds it once notifications arrive`,
    };
  const customers = top.rows.map((r) => ({
    customer: num(r.customer_id),
    name: r.name === null ? null : String(r.name),
    notifications: num(r.n),
  }));
  const chosen = customer ?? customers[0]?.customer;
  if (chosen === undefined)
    return { ready: false, message: `gold.${TABLE} (version ${top.version}) has no notifications yet: start \`tide app notifications\`` };
  const rows = await gold.read(
    TABLE,
    (v) => `SELECT epoch_us(minute) AS minute_us, notifications, customer_name, epoch_us(last_update) AS last_update_us,
                   epoch_us(last_ingested_at) AS ingested_us
            FROM ${v} WHERE customer_id = ${chosen}
              AND minute > (SELECT max(minute) FROM ${v} WHERE customer_id = ${chosen}) - INTERVAL ${NOTIFICATION_MINUTES} MINUTE
            ORDER BY minute`,
  );
  if (!rows!.rows.length)
    throw new DashboardRequestError(
      404,
      'customer',
      `customer ${chosen} has no notifications in gold.${TABLE} (version ${rows!.version}): check the number, or wait for the next gold refresh`,
    );
  const byMinute = new Map(rows!.rows.map((r) => [num(r.minute_us), num(r.notifications)]));
  const newest = Math.max(...byMinute.keys());
  const perMinute: NotificationsPanel['perMinute'] = [];
  for (let i = NOTIFICATION_MINUTES - 1; i >= 0; i--) {
    const us = newest - i * 60_000_000;
    perMinute.push({ minute: iso(us)!, notifications: byMinute.get(us) ?? 0 });
  }
  const max = (col: string) => rows!.rows.reduce((m, r) => (r[col] !== null && num(r[col]) > m ? num(r[col]) : m), -Infinity);
  return {
    ready: true,
    customer: chosen,
    customerName: rows!.rows.at(-1)!.customer_name === null ? null : String(rows!.rows.at(-1)!.customer_name),
    notifications: perMinute.reduce((n, m) => n + m.notifications, 0),
    lastUpdate: Number.isFinite(max('last_update_us')) ? iso(max('last_update_us')) : null,
    lastIngestedAt: Number.isFinite(max('ingested_us')) ? iso(max('ingested_us')) : null,
    perMinute,
    customers,
    sources: [versionOf(rows!)],
  };
}

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { LakeTableNotFoundError, listTableRoots } from '../../lake/lake-catalog.ts';
import type { ParquetEngine } from '../../lake/parquet/parquet-engine.ts';
import type { ObjectStore } from '../../lake/storage/object-store.ts';
import { log as rootLog, type Logger } from '../../log.ts';
import { exportTableName, sendTableCsv } from './csv-export.ts';
import { DashboardRequestError } from './dashboard-errors.ts';
import { GoldReader } from './gold-reader.ts';
import type { PipelineStatus } from './pipeline-status.ts';
import { customerPanel, dailyRevenue, ordersPanel, parseCustomer, topProducts } from './report-tiles.ts';
import { DEFAULT_SLOT_THRESHOLDS, type SlotThresholds } from '../../config/slot-thresholds.ts';
import { readSlots } from './slot-facts.ts';
import { notificationsPanel } from './notification-tiles.ts';
import { PROJECT_ROOT } from '../../stack/context.ts';

/**
 * The live dashboard (issue 5): the page at `/` (plain HTML, CSS and one ES module, no build step)
 * and its JSON API under `/api/`:
 *
 *   GET /api/pipeline                       source → Kafka → sink → lake, per connector (PipelineStatus)
 *   GET /api/slots                          every replication slot with its level (SlotFacts[])
 *   GET /api/reports/orders[?customer=N]    "Orders: N — last update: <time>", total or one customer's
 *   GET /api/reports/notifications[?customer=N]  one customer's notifications per minute and last update (default the busiest)
 *   GET /api/reports/daily-revenue          revenue per UTC day
 *   GET /api/reports/top-products[?country=C]  top products of a country ("country=" alone: orders without a customer)
 *   GET /api/reports/exports                the gold tables the CSV download offers
 *   GET /api/export/gold.<report>.csv       a gold table as CSV (the detailed report export)
 *
 * Reports come from gold tables in the lake, never from Postgres; the slots panel is the only reader
 * of Postgres. The routes plug into the ops HTTP server's extension point; they own no resource.
 */

/** The ops HTTP server's extension point: true when the request was handled. */
export type Routes = (req: IncomingMessage, res: ServerResponse, url: URL) => Promise<boolean>;

export interface DashboardContext {
  /** The lake the sink writes (gold tables are read from it). */
  store: ObjectStore;
  /** The lake of the notification sink, when it is not `store` (its gold.notifications_per_minute). */
  notificationsStore?: ObjectStore;
  /** A DuckDB engine for reading gold tables; owned by the caller, who closes it. */
  engine: ParquetEngine;
  /** Postgres for the slots panel (any database of the server: slots are server-wide). */
  databaseUrl: string;
  /** What the pipeline panel shows, asked on every poll of /api/pipeline. */
  pipeline: () => PipelineStatus | Promise<PipelineStatus>;
  slotThresholds?: Partial<SlotThresholds>;
  /** Slot name → Tide connector, for Tide slots of connectors this process does not run (theirs come from `pipeline`). */
  tideSlots?: Record<string, string>;
  log?: Logger;
}

const STATIC: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/index.html': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/assets/dashboard.css': { file: 'dashboard.css', type: 'text/css; charset=utf-8' },
  '/assets/dashboard.js': { file: 'dashboard.js', type: 'text/javascript; charset=utf-8' },
  '/assets/charts.js': { file: 'charts.js', type: 'text/javascript; charset=utf-8' },
  '/assets/format.js': { file: 'format.js', type: 'text/javascript; charset=utf-8' },
};
// From the project root, not import.meta.url: the precompiled CLI (bin/cli-build.js) runs a copy of this module elsewhere.
const PAGE_DIR = pathToFileURL(join(PROJECT_ROOT, 'src', 'ops', 'dashboard') + '/');

/** Same-origin only: the page loads nothing from elsewhere and runs no inline script. */
const PAGE_HEADERS = {
  'content-security-policy': "default-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
};

export function dashboardRoutes(ctx: DashboardContext): Routes {
  const log = (ctx.log ?? rootLog).child({ component: 'dashboard' });
  const gold = new GoldReader(ctx.store, ctx.engine);
  const notificationsGold = ctx.notificationsStore ? new GoldReader(ctx.notificationsStore, ctx.engine) : gold;
  const thresholds: SlotThresholds = { ...DEFAULT_SLOT_THRESHOLDS, ...ctx.slotThresholds };

  const api: Record<string, (url: URL) => Promise<unknown>> = {
    '/api/pipeline': async () => ({ at: new Date().toISOString(), ...(await ctx.pipeline()) }),
    '/api/slots': async () => {
      const tideSlots = new Map(Object.entries(ctx.tideSlots ?? {}));
      for (const s of (await ctx.pipeline()).sources) tideSlots.set(s.slot, s.name);
      return { at: new Date().toISOString(), thresholds, slots: await readSlots(ctx.databaseUrl, tideSlots, thresholds) };
    },
    '/api/reports/orders': (url) => {
      const customer = url.searchParams.get('customer');
      return customer === null || customer === '' ? ordersPanel(gold) : customerPanel(gold, parseCustomer(customer));
    },
    '/api/reports/daily-revenue': () => dailyRevenue(gold),
    '/api/reports/notifications': (url) => {
      const customer = url.searchParams.get('customer');
      return notificationsPanel(notificationsGold, customer === null || customer === '' ? undefined : parseCustomer(customer));
    },
    '/api/reports/top-products': (url) => {
      const country = url.searchParams.get('country');
      return topProducts(gold, country === null ? undefined : country === '' ? null : country);
    },
    '/api/reports/exports': async () => ({
      tables: (await listTableRoots(ctx.store)).filter((r) => r.startsWith('gold/')).map((r) => r.replace('/', '.')),
    }),
  };

  return async (req, res, url) => {
    const path = url.pathname;
    const page = STATIC[path];
    const handler = api[path];
    const isExport = path.startsWith('/api/export/');
    if (!page && !handler && !isExport) return false;
    try {
      if (req.method !== 'GET') throw new DashboardRequestError(405, 'method', `${req.method} is not supported here: use GET`);
      if (page) {
        const body = await readFile(new URL(page.file, PAGE_DIR));
        res.writeHead(200, {
          'content-type': page.type,
          'content-length': String(body.length),
          'cache-control': 'no-cache',
          ...PAGE_HEADERS,
        });
        res.end(body);
      } else if (handler) {
        sendJson(res, 200, await handler(url));
      } else {
        await sendTableCsv(res, ctx.engine, ctx.store, exportTableName(path.slice('/api/export/'.length)));
      }
    } catch (err) {
      sendError(res, err, path, log);
    }
    return true;
  };
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': String(Buffer.byteLength(text)),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
  });
  res.end(text);
}

function sendError(res: ServerResponse, err: unknown, path: string, log: Logger): void {
  const e = err instanceof Error ? err : new Error(String(err));
  const status = e instanceof DashboardRequestError ? e.status : e instanceof LakeTableNotFoundError ? 404 : 500;
  if (status === 500) log.error({ err: e, path }, 'dashboard request failed');
  else log.debug({ path, error: e.message }, 'dashboard request refused');
  if (res.headersSent) {
    // Part of a download was sent: the client must see a broken transfer, not a truncated file.
    res.destroy(e);
    return;
  }
  if (status === 405) res.setHeader('allow', 'GET');
  sendJson(res, status, { error: e.name, message: e.message });
}

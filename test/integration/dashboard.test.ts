import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'csv-parse/sync';
import pg from 'pg';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPrisma, type PrismaClient } from '../../src/app/db.ts';
import { replay } from '../../src/app/replay.ts';
import { parseMix, runTraffic } from '../../src/app/traffic.ts';
import { DeltaTable } from '../../src/lake/delta/delta-table.ts';
import { ParquetEngine } from '../../src/lake/parquet/parquet-engine.ts';
import { LocalStore } from '../../src/lake/storage/local-store.ts';
import { log } from '../../src/log.ts';
import { sinkView, sourceView, type PipelineStatus } from '../../src/ops/dashboard/pipeline-status.ts';
import { dashboardRoutes } from '../../src/ops/dashboard/routes.ts';
import { GoldRefresher } from '../../src/reports/gold-refresh.ts';
import { ORDER_REPORTS } from '../support/order-reports.ts';
import { txnAppId } from '../../src/sink/offsets.ts';
import { silverPath } from '../../src/sink/table-layout.ts';
import { readStatus } from '../../src/source/status-file.ts';
import { createTestDatabase } from '../support/db.ts';
import { readWithDeltaRs } from '../support/delta-reader.ts';
import {
  describeDiff,
  diffTables,
  highWatermarks,
  ORDER_TABLES,
  sinkFile,
  startSink,
  waitForLake,
  type RunningSink,
} from '../support/lake.ts';
import { waitFor } from '../support/kafka.ts';
import { dropSlot, sourceConfig, startSource, waitForSourceCaughtUp, type RunningSource } from '../support/source.ts';

/**
 * The live dashboard in a real headless Chromium (Debian's package, driven by playwright-core), over
 * a real pipeline: order app → Postgres → Tide source → Kafka → Tide sink → Delta lake → gold. Every
 * number the page shows is checked against the gold tables read independently by delta-rs, and the
 * CSV download against gold.daily_billing. Screenshots (desktop and phone) go to the test's temp dir.
 */
const CHROMIUM = process.env.TIDE_CHROMIUM ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'];
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium)
  console.warn(
    `dashboard.test.ts skipped: no Chromium at ${CHROMIUM}. Install Debian's package (apt-get install -y chromium; .ci/run does it as root) or set TIDE_CHROMIUM.`,
  );

/** The browser globals used inside page.evaluate callbacks (they run in Chromium; this file compiles without the DOM lib). */
interface PageElement {
  id: string;
  tagName: string;
  className: string;
  textContent: string | null;
  getAttribute(name: string): string | null;
  getBoundingClientRect(): { left: number; right: number; width: number };
}
declare const document: {
  documentElement: { scrollWidth: number };
  querySelector(selector: string): PageElement | null;
  querySelectorAll(selector: string): Iterable<PageElement>;
};
declare const window: { innerWidth: number };
declare function getComputedStyle(element: PageElement): { display: string };

/** Idle-slot threshold: low enough that a slot created before the replay is over it. */
const RETAINED_WARNING = 64 * 1024;
const HUGE = 2 ** 50;

type Row = Record<string, unknown>;
const rowsOf = (v: { columns: string[]; rows: unknown[][] }): Row[] =>
  v.rows.map((r) => Object.fromEntries(v.columns.map((c, i) => [c, r[i]])));
/** The test's own formatting (not the page's code): en-US digit grouping, UTC times to the second. */
const count = (n: number): string => n.toLocaleString('en-US');
const money = (d: string): string =>
  d.replace(/^(-?)(\d+)/, (_m, sign: string, int: string) => sign + int.replace(/\B(?=(\d{3})+(?!\d))/g, ','));
const utc = (iso: string | null): string => (iso === null ? 'never' : `${iso.slice(0, 19).replace('T', ' ')} UTC`);
/** Exact decimal sum of "123.45"-style strings (scale 2), as such a string. */
function sumDecimal(values: string[]): string {
  const cents = values.reduce((n, v) => {
    const [int, frac = ''] = v.replace('-', '').split('.');
    const c = BigInt(int!) * 100n + BigInt(frac.padEnd(2, '0').slice(0, 2));
    return n + (v.startsWith('-') ? -c : c);
  }, 0n);
  const abs = cents < 0n ? -cents : cents;
  return `${cents < 0n ? '-' : ''}${abs / 100n}.${String(abs % 100n).padStart(2, '0')}`;
}

/** What the gold tables say the report tiles must show, from delta-rs. */
interface Expected {
  orders: number;
  lastUpdate: string | null;
  perMinute: { minute: string; orders: number }[];
  daily: { day: string; revenue: string }[];
  countries: { country: string | null; revenue: string }[];
  products: Map<string | null, { rank: number; productNo: string; units: number; revenue: string }[]>;
  billing: Row[];
  billingColumns: string[];
  customers: Row[];
}

async function expectedFromLake(lakeDir: string): Promise<Expected> {
  const read = async (report: string) => readWithDeltaRs(join(lakeDir, 'gold', report));
  const minutes = rowsOf(await read('sales_per_minute'));
  const customers = rowsOf(await read('customer_last_update'));
  const top = rowsOf(await read('top_products_by_country'));
  const byCountry = rowsOf(await read('revenue_by_country'));
  const billingView = await read('daily_billing');
  const minuteMs = (r: Row) => Date.parse(String(r.minute));
  const newest = Math.max(...minutes.map(minuteMs));
  const perMinute = Array.from({ length: 60 }, (_, i) => {
    const t = newest - (59 - i) * 60_000;
    return {
      minute: new Date(t).toISOString(),
      orders: minutes.filter((r) => minuteMs(r) === t).reduce((n, r) => n + Number(r.orders), 0),
    };
  });
  const days = new Map<string, string[]>();
  for (const r of minutes) {
    const day = String(r.minute).slice(0, 10);
    days.set(day, [...(days.get(day) ?? []), String(r.revenue)]);
  }
  const daily = [...days.keys()]
    .sort()
    .slice(-60)
    .map((day) => ({ day, revenue: sumDecimal(days.get(day)!) }));
  const cents = (d: string) => BigInt(d.replace('.', ''));
  const countries = byCountry
    .map((r) => ({ country: r.country === null ? null : String(r.country), revenue: String(r.revenue) }))
    .sort((a, b) =>
      cents(a.revenue) !== cents(b.revenue)
        ? cents(b.revenue) > cents(a.revenue)
          ? 1
          : -1
        : a.country === null
          ? 1
          : b.country === null
            ? -1
            : a.country < b.country
              ? -1
              : 1,
    );
  const products = new Map<string | null, { rank: number; productNo: string; units: number; revenue: string }[]>();
  for (const r of top.sort((a, b) => Number(a.product_rank) - Number(b.product_rank))) {
    const key = r.country === null ? null : String(r.country);
    products.set(key, [
      ...(products.get(key) ?? []),
      { rank: Number(r.product_rank), productNo: String(r.product_no), units: Number(r.units), revenue: String(r.revenue) },
    ]);
  }
  const updates = customers.map((r) => r.last_update).filter((v): v is string => typeof v === 'string');
  return {
    orders: minutes.reduce((n, r) => n + Number(r.orders), 0),
    lastUpdate: updates.length ? updates.sort().at(-1)! : null,
    perMinute,
    daily,
    countries,
    products,
    billing: rowsOf(billingView),
    billingColumns: billingView.columns,
    customers,
  };
}

/** Every difference between the orders and revenue tiles and the gold tables; [] when they agree. */
async function checkTiles(page: Page, want: Expected): Promise<string[]> {
  const problems: string[] = [];
  const line = await page.locator('#orders-line').textContent();
  const wantLine = `Orders: ${count(want.orders)} — last update: ${utc(want.lastUpdate)}`;
  if (line !== wantLine) problems.push(`orders panel shows ${JSON.stringify(line)}, gold says ${JSON.stringify(wantLine)}`);
  const bars = (svg: string) =>
    page
      .locator(`${svg} rect`)
      .evaluateAll((rs) => rs.map((r) => ({ label: r.getAttribute('data-label'), value: r.getAttribute('data-value') })));
  const minutes = await bars('#chart-minutes');
  const wantMinutes = want.perMinute.map((m) => ({ label: m.minute, value: String(m.orders) }));
  if (JSON.stringify(minutes) !== JSON.stringify(wantMinutes))
    problems.push(
      `orders per minute: shown ${JSON.stringify(minutes.filter((m) => m.value !== '0'))}, gold ${JSON.stringify(wantMinutes.filter((m) => m.value !== '0'))}`,
    );
  const daily = await bars('#chart-daily');
  const wantDaily = want.daily.map((d) => ({ label: d.day, value: d.revenue }));
  if (JSON.stringify(daily) !== JSON.stringify(wantDaily))
    problems.push(`daily revenue: shown ${JSON.stringify(daily)}, gold ${JSON.stringify(wantDaily)}`);
  const table = await page
    .locator('#daily-table tbody tr')
    .evaluateAll((rs) => rs.map((r) => [r.getAttribute('data-day'), r.lastElementChild!.textContent]));
  const wantTable = [...want.daily].reverse().map((d) => [d.day, money(d.revenue)]);
  if (JSON.stringify(table) !== JSON.stringify(wantTable))
    problems.push(`daily revenue figures: shown ${JSON.stringify(table)}, gold ${JSON.stringify(wantTable)}`);
  return problems;
}

async function checkProducts(page: Page, want: Expected, country: string | null): Promise<string[]> {
  const shown = await page.locator('#products tbody tr').evaluateAll((rs) =>
    rs.map((r) => ({
      rank: Number(r.getAttribute('data-rank')),
      productNo: r.getAttribute('data-product-no'),
      units: Number(r.getAttribute('data-units')),
      revenue: r.getAttribute('data-revenue'),
      text: r.lastElementChild!.textContent,
    })),
  );
  const wanted = (want.products.get(country) ?? []).map((p) => ({ ...p, text: money(p.revenue) }));
  return JSON.stringify(shown) === JSON.stringify(wanted)
    ? []
    : [`top products of ${country ?? '(no customer)'}: shown ${JSON.stringify(shown)}, gold ${JSON.stringify(wanted)}`];
}

async function waitReady(page: Page): Promise<void> {
  for (const tile of ['#tile-orders', '#tile-revenue', '#tile-products', '#tile-export'])
    await page.waitForSelector(`${tile}[data-state=ready]`, { timeout: 30_000 });
}

describe.skipIf(!haveChromium)('the live dashboard in headless Chromium', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let prisma: PrismaClient;
  let sql: pg.Client;
  let source: RunningSource;
  let sink: RunningSink;
  let src: ReturnType<typeof sourceConfig>;
  let lakeDir: string;
  let store: LocalStore;
  let goldEngine: ParquetEngine;
  let dashEngine: ParquetEngine;
  let server: Server;
  let base: string;
  let browser: Browser;
  const shotsDir = mkdtempSync(join(tmpdir(), 'tide-dashboard-'));
  const sinkName = `dash-${Date.now().toString(36)}`;
  const idleSlot = `t_dash_idle_${Date.now().toString(36)}`;

  /** Messages in Kafka that silver has not committed (the sink's lag), from the high watermarks and the Delta txn versions. */
  async function lakeLag(): Promise<number> {
    const prefix = src.config['topic.prefix'];
    const marks = await highWatermarks(ORDER_TABLES.map((t) => `${prefix}.${t}`));
    let lag = 0n;
    for (const table of ORDER_TABLES) {
      const silver = await DeltaTable.open(store, silverPath(table));
      for (const m of marks.filter((x) => x.topic === `${prefix}.${table}`)) {
        const v = silver?.txnVersion(txnAppId(sinkName, m.topic, m.partition));
        const behind = m.high - (v === undefined ? 0n : BigInt(v) + 1n);
        if (behind > 0n) lag += behind;
      }
    }
    return Number(lag);
  }

  async function pipeline(): Promise<PipelineStatus> {
    const status = readStatus(join(source.stateDir, `${src.name}.status.json`));
    return {
      sources: status ? [sourceView(status)] : [],
      sinks: [sinkView(sinkName, 'running', sink.worker.stats, { lagMessages: await lakeLag() })],
    };
  }

  /** Wait until every change committed so far is confirmed by the source and committed to the lake, then rebuild gold. */
  async function settleAndRefreshGold(): Promise<void> {
    await waitForSourceCaughtUp(sql, src.config['slot.name']);
    await waitForLake(store, sinkName, src.config['topic.prefix']);
    const results = await new GoldRefresher(goldEngine, store, log, ORDER_REPORTS).refresh();
    expect(results.length, 'gold reports built').toBeGreaterThan(0);
  }

  const pageErrors = new Map<Page, string[]>();

  /** A page on the dashboard that records script errors (not HTTP statuses: some checks ask for a 404 on purpose). */
  async function openPage(viewport = { width: 1280, height: 900 }): Promise<Page> {
    const context = await browser.newContext({ viewport, acceptDownloads: true });
    const page = await context.newPage();
    const errors: string[] = [];
    pageErrors.set(page, errors);
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => {
      if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) errors.push(m.text());
    });
    await page.goto(base);
    return page;
  }

  /** Close the page; fails the test if a script error happened on it. */
  async function closePage(page: Page): Promise<void> {
    await page.context().close();
    expect(pageErrors.get(page), 'script errors in the page').toEqual([]);
  }

  beforeAll(async () => {
    db = await createTestDatabase('dashboard');
    sql = new pg.Client({ connectionString: db.url });
    await sql.connect();
    // An idle slot created before any data: it retains all the WAL written after it.
    await sql.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [idleSlot]);
    prisma = createPrisma(db.url, 4);
    await replay(prisma, { limit: 1200, concurrency: 4 });
    src = sourceConfig(db.url, 'dashboard', { 'table.include.list': 'public\\.(customers|products|orders|order_items)' });
    source = await startSource(src);
    lakeDir = mkdtempSync(join(tmpdir(), 'tide-dashboard-lake-'));
    store = new LocalStore(lakeDir);
    sink = startSink(sinkFile(sinkName, src.config['topic.prefix'], lakeDir), store);
    const traffic = await runTraffic(prisma, { rate: 40, durationMs: 4000, concurrency: 2 });
    expect(traffic.errors, traffic.lastError).toBe(0);
    goldEngine = await ParquetEngine.create();
    await settleAndRefreshGold();

    dashEngine = await ParquetEngine.create();
    const routes = dashboardRoutes({
      store,
      engine: dashEngine,
      databaseUrl: db.url,
      pipeline,
      slotThresholds: {
        retainedWalWarningBytes: RETAINED_WARNING,
        retainedWalCriticalBytes: HUGE,
        lagWarningBytes: HUGE,
        lagCriticalBytes: HUGE,
        inactiveWarningSeconds: HUGE,
        inactiveCriticalSeconds: HUGE,
      },
    });
    // A minimal server until src/ops/http-server.ts exists: the same extension point it will call.
    server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://127.0.0.1');
      routes(req, res, url).then(
        (handled) => {
          if (!handled) res.writeHead(404).end('not found');
        },
        (err: unknown) => res.destroy(err as Error),
      );
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    console.log(`dashboard at ${base}, Chromium ${browser.version()}, lake ${lakeDir}`);
  }, 300_000);

  afterAll(async () => {
    await browser?.close();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    await dashEngine?.close();
    await goldEngine?.close();
    await sink?.stop();
    await source?.stop();
    await prisma?.$disconnect();
    if (db) {
      await dropSlot(db.url, idleSlot);
      if (src) await dropSlot(db.url, src.config['slot.name']);
    }
    await sql?.end();
    await db?.drop();
  });

  it('the report tiles show exactly the gold tables (read by delta-rs): orders panel, per-minute and daily revenue charts, top products', async () => {
    const want = await expectedFromLake(lakeDir);
    expect(want.orders, 'the replay made orders').toBeGreaterThan(10);
    expect(want.daily.length).toBeGreaterThan(0);
    const page = await openPage();
    await waitReady(page);
    expect(await checkTiles(page, want)).toEqual([]);

    const top = want.countries.find((c) => c.country !== null)!;
    expect(await page.locator('#tile-products').getAttribute('data-country')).toBe(top.country);
    expect(await checkProducts(page, want, top.country)).toEqual([]);
    // Another country, chosen in the select: the list follows.
    const other = want.countries.find((c) => c.country !== null && c.country !== top.country && want.products.has(c.country));
    if (other) {
      await page.selectOption('#country', other.country!);
      await page.waitForSelector(`#tile-products[data-country="${other.country}"]`);
      expect(await checkProducts(page, want, other.country)).toEqual([]);
    }
    const options = await page.locator('#country option').evaluateAll((os) => os.map((o) => o.getAttribute('value')));
    expect(options).toEqual(want.countries.map((c) => c.country ?? ''));

    // Per customer on demand: the customer with the most orders.
    const perCustomer = new Map<number, number>();
    for (const r of want.billing) perCustomer.set(Number(r.customer_id), (perCustomer.get(Number(r.customer_id)) ?? 0) + Number(r.orders));
    const [customer, orders] = [...perCustomer].sort((a, b) => b[1] - a[1] || a[0] - b[0])[0]!;
    const lastUpdate = want.customers.find((r) => Number(r.customer_id) === customer)!.last_update as string;
    await page.fill('#customer', String(customer));
    await page.click('#customer-form button');
    await page.waitForSelector(`#customer-line[data-state=ready][data-customer="${customer}"]`);
    const text = await page.locator('#customer-line').textContent();
    expect(text).toContain(`Orders: ${count(orders)} — last update: ${utc(lastUpdate)}`);
    const billed = sumDecimal(want.billing.filter((r) => Number(r.customer_id) === customer).map((r) => String(r.amount_billed)));
    expect(text).toContain(`billed ${money(billed)}`);

    // An unknown customer: the page says so, in words.
    await page.fill('#customer', '999999999');
    await page.click('#customer-form button');
    await page.waitForSelector('#customer-line[data-state=error]');
    expect(await page.locator('#customer-line').textContent()).toContain('customer 999999999 is not in gold.customer_last_update');
    await closePage(page);
  });

  it('a wrong number on the page fails the check (the same checks, with the API answer altered by one order)', async () => {
    const want = await expectedFromLake(lakeDir);
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.route('**/api/reports/orders', async (route) => {
      const res = await route.fetch();
      const body = (await res.json()) as { orders: number };
      await route.fulfill({ response: res, json: { ...body, orders: body.orders + 1 } });
    });
    await page.goto(base);
    await waitReady(page);
    const problems = await checkTiles(page, want);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain(`Orders: ${count(want.orders + 1)}`);
    await context.close();
  });

  it('reports come from the lake alone: with Postgres unreachable they still answer; the slots panel names the server, never the password', async () => {
    const routes = dashboardRoutes({
      store,
      engine: dashEngine,
      databaseUrl: 'postgresql://tide:sekret-pw@127.0.0.1:1/nowhere',
      pipeline: () => ({ sources: [], sinks: [] }),
      log: log.child({ test: 'no-postgres' }),
    });
    const other = createServer((req, res) => void routes(req, res, new URL(req.url ?? '/', 'http://127.0.0.1')));
    await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve));
    try {
      const at = `http://127.0.0.1:${(other.address() as AddressInfo).port}`;
      const want = await expectedFromLake(lakeDir);
      const orders = (await (await fetch(`${at}/api/reports/orders`)).json()) as { orders: number };
      expect(orders.orders).toBe(want.orders);
      const slots = await fetch(`${at}/api/slots`);
      expect(slots.status).toBe(500);
      const body = (await slots.json()) as { error: string; message: string };
      expect(body.error).toBe('SlotQueryError');
      expect(body.message).toContain('postgres at 127.0.0.1:1/nowhere');
      expect(body.message).not.toContain('sekret');
    } finally {
      await new Promise<void>((resolve) => other.close(() => resolve()));
    }
  });

  it('the CSV download equals gold.daily_billing, row for row', async () => {
    const want = await expectedFromLake(lakeDir);
    const page = await openPage();
    await waitReady(page);
    expect(await page.locator('#export-table').inputValue()).toBe('gold.daily_billing');
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#export-link')]);
    expect(download.suggestedFilename()).toBe('gold.daily_billing.csv');
    const file = join(shotsDir, 'gold.daily_billing.csv');
    await download.saveAs(file);
    const records = parse(readFileSync(file, 'utf8'), { columns: true, skip_empty_lines: true }) as Row[];
    expect(Object.keys(records[0] ?? {})).toEqual(want.billingColumns);
    const diff = diffTables(want.billing, records, ['customer_id', 'day'], want.billingColumns);
    console.log(`CSV download: ${describeDiff('gold.daily_billing', diff)}, ${records.length} rows (${file})`);
    expect(diff.expectedChecksum, describeDiff('gold.daily_billing', diff)).toBe(diff.actualChecksum);
    expect(records.length).toBe(want.billing.length);

    // Not a gold table, or no such table: refused with a message that says what to ask for.
    const silver = await page.evaluate(async (u) => (await fetch(u)).status, `${base}api/export/silver.customers.csv`);
    expect(silver).toBe(404);
    const missing = await page.evaluate(
      async (u) => (await (await fetch(u)).json()) as { message: string },
      `${base}api/export/gold.nope.csv`,
    );
    expect(missing.message).toContain('no Delta table gold.nope');
    await closePage(page);
  });

  it('the pipeline panel shows each connector live: state, counters equal to the running source and sink, lag, charts that grow', async () => {
    const page = await openPage();
    await page.waitForFunction(() => Number(document.querySelector('#pipeline')?.getAttribute('data-polls')) >= 3, null, {
      timeout: 30_000,
    });
    const srcItem = page.locator(`#stage-source li[data-connector="${src.name}"]`);
    expect(await srcItem.locator('[data-field=state]').textContent()).toBe('streaming');
    // Nothing is written now, so the counters are steady: the page shows what the source and sink report.
    // Both sides are live (the status file is rewritten once a second, the page polls), so each is read
    // again until they agree; the equality is then asserted on the same two reads.
    const statusPath = join(source.stateDir, `${src.name}.status.json`);
    const sourceEvents = () => page.locator(`#stage-source li[data-connector="${src.name}"] [data-field=eventsTotal]`).textContent();
    let status = readStatus(statusPath)!;
    let shownEvents = await sourceEvents();
    await waitFor(
      async () => {
        status = readStatus(statusPath)!;
        shownEvents = await sourceEvents();
        return shownEvents === count(status.eventsTotal);
      },
      "the page's source events to equal the status file's",
      10_000,
    ).catch(() => undefined);
    expect(shownEvents).toBe(count(status.eventsTotal));
    expect(status.eventsTotal).toBeGreaterThan(0);
    // The source's slot lag is the slots panel's figure for its slot, from the same poll.
    const lags = await page.evaluate(
      ([name, slot]) => [
        document.querySelector(`#stage-source li[data-connector="${name}"] [data-field=slotLag]`)?.textContent,
        document.querySelector(`#slots-table tr[data-slot="${slot}"] [data-field=lagBytes]`)?.textContent,
      ],
      [src.name, src.config['slot.name']] as const,
    );
    expect(lags[0]).toMatch(/^\d+(\.\d)? (B|KiB|MiB|GiB)$/);
    expect(lags[0]).toBe(lags[1]);
    const sinkItem = page.locator(`#stage-sink li[data-connector="${sinkName}"]`);
    expect(await sinkItem.locator('[data-field=state]').textContent()).toBe('running');
    // The lake shows a flush's commit a moment before the worker counts its messages, and the page shows the
    // count of its last poll: read both again until they agree, then assert the equality on those reads.
    let shownMessages = await sinkItem.locator('[data-field=messages]').textContent();
    let messages = sink.worker.stats.messages;
    await waitFor(
      async () => {
        messages = sink.worker.stats.messages;
        shownMessages = await sinkItem.locator('[data-field=messages]').textContent();
        return shownMessages === count(messages) && messages === sink.worker.stats.messages;
      },
      "the page's sink messages to equal the worker's count",
      10_000,
    ).catch(() => undefined);
    expect(shownMessages).toBe(count(messages));
    expect(sink.worker.stats.messages).toBeGreaterThan(0);
    expect(await page.locator(`#stage-kafka li[data-connector="${sinkName}"] [data-field=lagMessages]`).textContent()).toBe('0 msgs');
    const freshness = await page.locator(`#stage-lake li[data-connector="${sinkName}"] [data-field=freshness]`).textContent();
    expect(freshness).toMatch(/^\d+(\.\d)? (s|min|h|d)$/);
    const points = await page.locator(`#chart-rate polyline[data-series="${src.name} (source)"]`).getAttribute('data-points');
    expect(Number(points)).toBeGreaterThanOrEqual(3);
    await page.waitForFunction(
      ([series, before]) =>
        Number(document.querySelector(`#chart-rate polyline[data-series="${series}"]`)?.getAttribute('data-points')) > before,
      [`${src.name} (source)`, Number(points)] as const,
      { timeout: 10_000 },
    );
    await closePage(page);
  });

  it('the slots panel lists every slot of the server with the facts of pg_replication_slots, highlighted over threshold', async () => {
    const retained = async () =>
      Number(
        (
          await sql.query<{ b: string }>(
            `SELECT (pg_current_wal_lsn() - restart_lsn)::text AS b FROM pg_replication_slots WHERE slot_name = $1`,
            [idleSlot],
          )
        ).rows[0]!.b,
      );
    const page = await openPage();
    await page.waitForSelector(`#slots-table tr[data-slot="${idleSlot}"]`, { timeout: 15_000 });
    const before = await retained();
    const polls = Number(await page.locator('#slots').getAttribute('data-polls'));
    await page.waitForFunction((n) => Number(document.querySelector('#slots')?.getAttribute('data-polls')) > n, polls, { timeout: 10_000 });
    const after = await retained();
    const idle = page.locator(`#slots-table tr[data-slot="${idleSlot}"]`);
    const shown = Number(await idle.locator('[data-field=retainedWalBytes]').getAttribute('data-value'));
    expect(shown).toBeGreaterThanOrEqual(before);
    expect(shown).toBeLessThanOrEqual(after);
    expect(shown).toBeGreaterThan(RETAINED_WARNING);
    expect(await idle.getAttribute('data-level')).toBe('warning');
    expect(await idle.locator('[data-field=active]').textContent()).toBe('no');
    expect(await idle.locator('[data-field=connector]').textContent()).toBe('not Tide');
    expect(await idle.locator('[data-field=plugin]').textContent()).toBe('pgoutput');
    expect(await idle.locator('[data-field=database]').textContent()).toBe(db.name);

    const own = page.locator(`#slots-table tr[data-slot="${src.config['slot.name']}"]`);
    expect(await own.locator('[data-field=connector]').textContent()).toBe(src.name);
    expect(await own.locator('[data-field=active]').textContent()).toMatch(/^yes \(\d+\)$/);
    // Every row's highlight follows the thresholds from the numbers it shows.
    const rows = await page.locator('#slots-table tbody tr[data-slot]').evaluateAll((rs) =>
      rs.map((r) => ({
        slot: r.getAttribute('data-slot'),
        level: r.getAttribute('data-level'),
        cls: r.className,
        retained: r.querySelector('[data-field=retainedWalBytes]')!.getAttribute('data-value'),
        wal: r.querySelector('[data-field=walStatus]')!.textContent,
        active: r.querySelector('[data-field=active]')!.textContent!.startsWith('yes'),
      })),
    );
    const server = (await sql.query<{ slot_name: string }>('SELECT slot_name FROM pg_replication_slots')).rows.map((r) => r.slot_name);
    for (const s of [idleSlot, src.config['slot.name']]) expect(server).toContain(s);
    expect(rows.map((r) => r.slot).filter((s) => server.includes(s!)).length).toBeGreaterThanOrEqual(2);
    for (const r of rows) {
      const over = r.retained !== null && Number(r.retained) >= RETAINED_WARNING;
      // The rules of `tide slots check`: lost is critical; unreserved is critical unless a consumer may still catch up.
      const unreserved = r.wal === 'unreserved' ? (r.active ? 'warning' : 'critical') : 'ok';
      const want = r.wal === 'lost' || unreserved === 'critical' ? 'critical' : over || unreserved === 'warning' ? 'warning' : 'ok';
      expect(r.level, `slot ${r.slot}`).toBe(want);
      expect(r.cls).toBe(`level-${r.level}`);
    }
    await closePage(page);
  });

  it('works on a phone-sized screen (390×844): no sideways scrolling, stacked stages, slots as cards; screenshots saved', async () => {
    const desktop = await openPage();
    await waitReady(desktop);
    await desktop.waitForSelector('#slots-table tbody tr[data-slot]');
    // A few polls, so the screenshot shows the pipeline charts with lines.
    await desktop.waitForFunction(() => Number(document.querySelector('#pipeline')?.getAttribute('data-polls')) >= 4, null, {
      timeout: 30_000,
    });
    const wide = await desktop.evaluate(() => ({ scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth }));
    expect(wide.scrollWidth, 'the desktop page scrolls sideways').toBeLessThanOrEqual(wide.innerWidth);
    const desktopShot = join(shotsDir, 'dashboard-desktop.png');
    await desktop.screenshot({ path: desktopShot, fullPage: true });
    await closePage(desktop);

    const phone = await openPage({ width: 390, height: 844 });
    await waitReady(phone);
    await phone.waitForSelector('#slots-table tbody tr[data-slot]');
    const layout = await phone.evaluate(() => ({
      scrollWidth: document.documentElement.scrollWidth,
      innerWidth: window.innerWidth,
      overflowing: [...document.querySelectorAll('main *')]
        .filter((e) => {
          const r = e.getBoundingClientRect();
          return r.width > 0 && (r.right > window.innerWidth + 0.5 || r.left < -0.5);
        })
        .map((e) => `${e.tagName.toLowerCase()}#${e.id}.${e.className}`)
        .slice(0, 10),
      stageLefts: [...document.querySelectorAll('.stage')].map((e) => Math.round(e.getBoundingClientRect().left)),
      slotsHead: getComputedStyle(document.querySelector('#slots-table thead')!).display,
    }));
    expect(layout.innerWidth).toBe(390);
    expect(layout.scrollWidth, 'the page scrolls sideways').toBeLessThanOrEqual(390);
    expect(layout.overflowing).toEqual([]);
    expect(new Set(layout.stageLefts).size, 'stages stack in one column').toBe(1);
    expect(layout.slotsHead).toBe('none');
    const want = await expectedFromLake(lakeDir);
    expect(await checkTiles(phone, want)).toEqual([]);
    const phoneShot = join(shotsDir, 'dashboard-phone.png');
    await phone.screenshot({ path: phoneShot, fullPage: true });
    await closePage(phone);
    for (const f of [desktopShot, phoneShot]) expect(readFileSync(f).subarray(1, 4).toString()).toBe('PNG');
    console.log(`screenshots: ${desktopShot} ${phoneShot}`);
  });

  it('follows the lake: new orders reach the tiles without a reload', async () => {
    const page = await openPage();
    await waitReady(page);
    const before = await expectedFromLake(lakeDir);
    expect(await checkTiles(page, before)).toEqual([]);
    const traffic = await runTraffic(prisma, { rate: 30, durationMs: 3000, concurrency: 2, mix: parseMix('new-order=5,status=3') });
    expect(traffic.errors, traffic.lastError).toBe(0);
    await settleAndRefreshGold();
    const after = await expectedFromLake(lakeDir);
    expect([after.orders, after.lastUpdate], 'the traffic changed the gold tables').not.toEqual([before.orders, before.lastUpdate]);
    await page.waitForFunction(
      ([orders, lastUpdate]) => {
        const line = document.querySelector('#orders-line');
        return line?.getAttribute('data-orders') === orders && line.getAttribute('data-last-update') === lastUpdate;
      },
      [String(after.orders), after.lastUpdate ? new Date(after.lastUpdate).toISOString() : ''] as const,
      { timeout: 30_000 },
    );
    // The revenue tile refreshes on its own cycle: wait until it shows the new version, then compare everything.
    const version = (await DeltaTable.open(store, 'gold/sales_per_minute'))!.version;
    await page.waitForSelector(`#tile-revenue[data-versions~="gold.sales_per_minute@${version}"]`, { timeout: 30_000 });
    expect(await checkTiles(page, after)).toEqual([]);
    await closePage(page);
  });
});

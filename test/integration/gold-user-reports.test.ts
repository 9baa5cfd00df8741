import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeltaTable } from '../../src/lake/delta/delta-table.ts';
import type { LakeSchema } from '../../src/lake/lake-schema.ts';
import { ParquetEngine } from '../../src/lake/parquet/parquet-engine.ts';
import { LocalStore } from '../../src/lake/storage/local-store.ts';
import { log } from '../../src/log.ts';
import { GoldRefresher } from '../../src/reports/gold-refresh.ts';
import { loadReportFolder } from '../../src/reports/report-folder.ts';
import { startCli } from '../support/cli.ts';
import { readWithDeltaRs } from '../support/delta-reader.ts';

/**
 * Reports the team writes (gold.reports.dir), against a real lake: Delta tables written by Tide's writer
 * and read by DuckDB, results checked with delta-rs. A folder with a report that reads another report,
 * an incremental report over a bronze table, a daily one driven by an injected clock, and the CLI's
 * `tide lake report check` and `tide lake report run`.
 */
const EVENTS: LakeSchema = {
  columns: [
    { name: 'customer_id', type: { kind: 'integer' }, nullable: true },
    { name: 'event_time', type: { kind: 'timestamp' }, nullable: true },
    { name: 'price', type: { kind: 'decimal', precision: 10, scale: 2 }, nullable: true },
  ],
};

const PER_MINUTE = `-- gold.per_minute: events per customer and minute, with the build time of each row.
-- tide: incremental by minute
-- tide: refresh = on-change
SELECT
    date_trunc('minute', event_time) AS minute,
    customer_id,
    count(*) AS events,
    CAST(sum(price) AS DECIMAL(18, 2)) AS amount,
    current_timestamp AS built_at
FROM bronze_events
WHERE event_time >= {{since}}
GROUP BY ALL
`;
const PER_CUSTOMER = `-- Totals per customer, from the per-minute report.
SELECT customer_id, sum(events) AS events, max(minute) AS last_minute
FROM gold_per_minute
GROUP BY customer_id
`;
const BILLING = `-- tide: refresh = daily 02:00 UTC
SELECT customer_id, CAST(sum(price) AS DECIMAL(18, 2)) AS billed FROM bronze_events GROUP BY customer_id
`;

describe('gold reports the team writes', () => {
  const root = mkdtempSync(join(tmpdir(), 'tide-user-reports-'));
  const lakeDir = join(root, 'lake');
  const reportsDir = join(root, 'connectors', 'reports');
  let store: LocalStore;
  let engine: ParquetEngine;

  /** Append rows (customer, 'YYYY-MM-DD HH:MM:SS', price) to bronze/events, one Delta commit. */
  async function appendEvents(rows: [number, string, string][]): Promise<void> {
    const table =
      (await DeltaTable.open(store, 'bronze/events')) ??
      (await DeltaTable.create(store, 'bronze/events', { name: 'bronze.events', schema: EVENTS }));
    const values = rows.map(([c, t, p]) => `(${c}, TIMESTAMPTZ '${t}+00', ${p})`).join(', ');
    const adds = await engine.writeFiles(
      `SELECT CAST(c AS INTEGER) AS customer_id, t AS event_time, CAST(p AS DECIMAL(10,2)) AS price FROM (VALUES ${values}) v(c, t, p)`,
      { store, root: table.root, schema: EVENTS },
    );
    await table.commit(
      adds.map((add) => ({ add })),
      { operation: 'WRITE', parameters: { mode: 'Append' } },
    );
  }

  const gold = async (name: string) => {
    const t = await readWithDeltaRs(join(lakeDir, 'gold', name));
    return t.rows.map((r) => Object.fromEntries(t.columns.map((c, i) => [c, r[i]])));
  };

  beforeAll(async () => {
    mkdirSync(lakeDir, { recursive: true });
    mkdirSync(reportsDir, { recursive: true });
    writeFileSync(join(reportsDir, 'per_minute.sql'), PER_MINUTE);
    writeFileSync(join(reportsDir, 'per_customer.sql'), PER_CUSTOMER);
    store = new LocalStore(lakeDir);
    engine = await ParquetEngine.create();
  });
  afterAll(async () => {
    await engine?.close();
    await store?.close();
    rmSync(root, { recursive: true, force: true });
  });

  it('builds a report after the report it reads, and an incremental one recomputes only from its high-water mark', async () => {
    // Two commits, two files: the first holds only events older than the high-water mark below.
    await appendEvents([
      [1, '2026-03-01 10:00:05', '1.00'],
      [1, '2026-03-01 10:00:50', '2.00'],
    ]);
    await appendEvents([
      [2, '2026-03-01 10:01:10', '5.00'],
      [1, '2026-03-01 10:02:30', '1.50'],
    ]);
    const reports = loadReportFolder(reportsDir);
    expect(reports.map((r) => r.name)).toEqual(['per_minute', 'per_customer']);
    const refresher = new GoldRefresher(engine, store, log, reports);
    const first = await refresher.refresh();
    expect(refresher.failures).toEqual([]);
    expect(first.map((r) => [r.report, r.rows])).toEqual([
      ['per_minute', 3],
      ['per_customer', 2],
    ]);
    expect(first[0]!.since).toBeUndefined(); // the first build is a full one
    const before = await gold('per_minute');
    const builtFirst = new Map(before.map((r) => [String(r.minute), String(r.built_at)]));

    // New events: one late in the newest minute (10:02), others after it, one far older than the mark.
    await new Promise((r) => setTimeout(r, 5)); // current_timestamp must differ between the builds
    await appendEvents([
      [1, '2026-03-01 10:02:59', '0.50'],
      [2, '2026-03-01 10:03:00', '4.00'],
      [3, '2026-03-01 10:05:00', '3.00'],
    ]);
    // The old file is not even opened by the incremental build: made unreadable, the build still succeeds.
    const bronze = (await DeltaTable.open(store, 'bronze/events'))!;
    const old = bronze
      .files()
      .find((f) => (JSON.parse(f.stats!) as { maxValues: { event_time: string } }).maxValues.event_time < '2026-03-01T10:01')!;
    const oldPath = join(lakeDir, 'bronze', 'events', decodeURIComponent(old.path));
    const kept = readFileSync(oldPath);
    writeFileSync(oldPath, 'not a parquet file');
    let second;
    try {
      second = await refresher.refresh();
    } finally {
      writeFileSync(oldPath, kept);
    }
    expect(refresher.failures).toEqual([]);
    expect(second[0]!.since).toMatch(/^TIMESTAMPTZ '2026-03-01T10:02:00\.000Z'$/);

    const after = await gold('per_minute');
    const byMinute = (rows: Record<string, unknown>[]) =>
      rows.map((r) => `${String(r.minute).slice(11, 16)} c${r.customer_id} ${r.events} ${r.amount}`).sort();
    expect(byMinute(after)).toEqual(['10:00 c1 2 3.00', '10:01 c2 1 5.00', '10:02 c1 2 2.00', '10:03 c2 1 4.00', '10:05 c3 1 3.00']);
    // Rows before the high-water mark were kept as built; the mark's minute and later were recomputed.
    for (const r of after) {
      const minute = String(r.minute);
      if (minute < '2026-03-01T10:02') expect(String(r.built_at), minute).toBe(builtFirst.get(minute));
      else expect(String(r.built_at), minute).not.toBe(builtFirst.get(minute) ?? '');
    }
    // The dependent report saw this pass's per_minute.
    expect((await gold('per_customer')).map((r) => `c${r.customer_id} ${r.events}`).sort()).toEqual(['c1 4', 'c2 2', 'c3 1']);
  }, 120_000);

  it('builds on change in dependency order, and a daily report at its time (clock injected)', async () => {
    writeFileSync(join(reportsDir, 'billing.sql'), BILLING);
    writeFileSync(
      join(reportsDir, 'fresh.sql'),
      '-- A report added to the folder: built at once.\nSELECT count(*) AS n FROM bronze_events\n',
    );
    // Tomorrow (UTC) at 01:00: after the builds above, whose commit times the refresher reads as their last builds.
    const tomorrow = (Math.floor(Date.now() / 86_400_000) + 1) * 86_400_000;
    let now = tomorrow + 3_600_000;
    const refresher = new GoldRefresher(engine, store, log, loadReportFolder(reportsDir), { onChangeIntervalMs: 60_000, now: () => now });
    try {
      // Nothing changed since this refresher started; billing and fresh have no gold table yet, so they are due at once.
      expect((await refresher.refreshDue()).map((r) => r.report)).toEqual(['billing', 'fresh']);
      expect(await refresher.refreshDue()).toEqual([]);
      await appendEvents([[4, '2026-03-01 11:00:00', '7.00']]);
      refresher.noteChanged(['bronze/events']);
      now += 1000;
      // per_minute reads the changed table; per_customer follows because per_minute was rebuilt; billing waits for 02:00; fresh, built a second ago, for its interval.
      expect((await refresher.refreshDue()).map((r) => r.report)).toEqual(['per_minute', 'per_customer']);
      expect((await gold('per_customer')).find((r) => r.customer_id === 4)).toMatchObject({ events: '1' });
      expect(await refresher.refreshDue()).toEqual([]);
      now = tomorrow + 2 * 3_600_000;
      // billing at its time; fresh too: the change at 01:00:01 came within its 60 s interval, so it follows at this check.
      expect((await refresher.refreshDue()).map((r) => r.report)).toEqual(['billing', 'fresh']);
      expect((await gold('billing')).find((r) => r.customer_id === 4)).toMatchObject({ billed: '7.00' });
      now = tomorrow + 12 * 3_600_000;
      expect(await refresher.refreshDue()).toEqual([]);
    } finally {
      rmSync(join(reportsDir, 'billing.sql'));
      rmSync(join(reportsDir, 'fresh.sql'));
    }
  }, 120_000);

  it('after a long build an on-change report waits so gold stays under gold.build.max.share (clock injected)', async () => {
    let now = Date.now();
    const share = 0.001;
    const refresher = new GoldRefresher(engine, store, log, loadReportFolder(reportsDir), {
      onChangeIntervalMs: 1_000,
      maxBuildShare: share,
      now: () => now,
    });
    const [built] = await refresher.refresh(['per_minute']);
    expect(built!.report).toBe('per_minute');
    // Busy built.ms of every built.ms / share: the next build may start built.ms × 999 after this one ended.
    const spacing = Math.max(1_000, Math.ceil(built!.ms * (1 / share - 1)));
    expect(spacing).toBeGreaterThan(1_000); // a build takes at least 2 ms, so the share, not the interval, decides here
    refresher.noteChanged(['bronze/events']);
    now += spacing - 1;
    expect(refresher.isDue(refresher.reports.find((r) => r.name === 'per_minute')!)).toBe(false);
    now += 1;
    expect(refresher.isDue(refresher.reports.find((r) => r.name === 'per_minute')!)).toBe(true);
  }, 120_000);

  it('a report whose SQL was edited while the sink was down is rebuilt whole at the next start; an unedited one waits', async () => {
    const file = join(reportsDir, 'per_customer.sql');
    const before = readFileSync(file, 'utf8');
    // Built by the earlier tests with the old SQL; nothing changed in the lake since.
    await new GoldRefresher(engine, store, log, loadReportFolder(reportsDir)).refresh(['per_minute', 'per_customer']);
    const fresh = new GoldRefresher(engine, store, log, loadReportFolder(reportsDir), { onChangeIntervalMs: 60_000 });
    expect(await fresh.refreshDue()).toEqual([]);
    writeFileSync(file, before.replace('max(minute) AS last_minute', 'max(minute) AS last_minute, count(*) AS minutes'));
    // A per_minute edit too (incremental): its edited SQL must see every input row again, not only those past its high-water mark.
    const perMinute = join(reportsDir, 'per_minute.sql');
    const perMinuteBefore = readFileSync(perMinute, 'utf8');
    writeFileSync(perMinute, perMinuteBefore.replace('count(*) AS events,', 'count(*) AS events, min(price) AS cheapest,'));
    try {
      const restarted = new GoldRefresher(engine, store, log, loadReportFolder(reportsDir), { onChangeIntervalMs: 60_000 });
      const built = await restarted.refreshDue();
      expect(built.map((r) => r.report)).toEqual(['per_minute', 'per_customer']);
      expect(built[0]!.since).toBeUndefined();
      const perCustomer = await gold('per_customer');
      expect(perCustomer.length).toBeGreaterThan(0);
      expect(perCustomer.every((r) => Number(r.minutes) >= 1)).toBe(true);
      const minutes = await gold('per_minute');
      expect(minutes.every((r) => r.cheapest !== null && r.cheapest !== undefined)).toBe(true);
      // Once rebuilt, the edit is known: the next start waits for a change again.
      expect(
        await new GoldRefresher(engine, store, log, loadReportFolder(reportsDir), { onChangeIntervalMs: 60_000 }).refreshDue(),
      ).toEqual([]);
    } finally {
      writeFileSync(file, before);
      writeFileSync(perMinute, perMinuteBefore);
      // Built by the original SQL again, so the tests below start from the tables the earlier ones left.
      await new GoldRefresher(engine, store, log, loadReportFolder(reportsDir)).refresh(['per_minute', 'per_customer']);
    }
  }, 120_000);

  it('tide lake report check names the file and line of each error, and counts sample rows of the good ones', async () => {
    const dir = join(root, 'check');
    mkdirSync(dir);
    writeFileSync(join(dir, 'per_minute.sql'), PER_MINUTE);
    writeFileSync(join(dir, 'per_customer.sql'), PER_CUSTOMER);
    writeFileSync(join(dir, 'broken_column.sql'), '-- a typo in a column\nSELECT customer_id,\n       evnt_time\nFROM bronze_events\n');
    writeFileSync(join(dir, 'broken_syntax.sql'), 'SELECT customer_id\nFORM bronze_events\nWHERE 1 = 1\n');
    writeFileSync(join(dir, 'missing_table.sql'), '-- reads a table the lake lacks\n\nSELECT * FROM silver_nothing\n');
    writeFileSync(join(dir, 'bad_header.sql'), '-- tide: refresh = hourly\nSELECT 1 AS x\n');
    const cli = startCli(['lake', 'report', 'check', dir, '--lake', lakeDir], process.cwd());
    const code = await cli.exited;
    const out = cli.output();
    expect(code, out).toBe(1);
    const at = (file: string) => join(dir, file);
    expect(out).toContain(`FAIL  ${at('broken_column.sql')}:3: Binder Error: Referenced column "evnt_time" not found in FROM clause!`);
    expect(out).toContain(`FAIL  ${at('broken_syntax.sql')}:2: Parser Error: syntax error at or near "bronze_events"`);
    expect(out).toContain(
      `FAIL  ${at('missing_table.sql')}:3: the lake file://${lakeDir} has no table silver.nothing (read as silver_nothing)`,
    );
    expect(out).toContain(`FAIL  ${at('bad_header.sql')}:1: refresh must be on-change`);
    expect(out).toMatch(/ok {4}per_minute: on-change, incremental by minute, 5 columns, \d+ rows \(sample\)/);
    expect(out).toMatch(/ok {4}per_customer: on-change, 3 columns, 4 rows \(sample\)/);
    expect(out).toContain('4 of 6 failed');
    // Nothing was written.
    expect(await DeltaTable.open(store, 'gold/broken_column')).toBeUndefined();
  }, 120_000);

  it('tide lake report run builds one report now', async () => {
    const connector = join(root, 'connectors', 'lake.json');
    writeFileSync(
      connector,
      JSON.stringify({
        name: 'user-reports',
        config: {
          topics: 'events',
          'kafka.bootstrap.servers': '127.0.0.1:1',
          'schema.registry.url': 'http://127.0.0.1:1',
          'lake.uri': lakeDir,
          'gold.reports.dir': 'reports',
        },
      }),
    );
    const version = (await DeltaTable.open(store, 'gold/per_customer'))!.version;
    const cli = startCli(['lake', 'report', 'run', connector, 'per_customer'], process.cwd());
    expect(await cli.exited, cli.output()).toBe(0);
    expect(cli.output()).toMatch(new RegExp(`gold\\.per_customer: version ${version + 1}, 4 rows written in \\d+ ms`));
    expect((await DeltaTable.open(store, 'gold/per_customer'))!.version).toBe(version + 1);
    // An incremental report builds from its high-water mark; --full rebuilds every row.
    const incremental = startCli(['lake', 'report', 'run', connector, 'per_minute'], process.cwd());
    expect(await incremental.exited, incremental.output()).toBe(0);
    expect(incremental.output()).toMatch(
      /gold\.per_minute: version \d+, \d+ rows written in \d+ ms \(incremental: rows at or after TIMESTAMPTZ '2026-03-01T11:00:00\.000Z'\)/,
    );
    expect(new Set((await gold('per_minute')).map((r) => String(r.built_at))).size).toBeGreaterThan(1);
    const full = startCli(['lake', 'report', 'run', connector, 'per_minute', '--full'], process.cwd());
    expect(await full.exited, full.output()).toBe(0);
    expect(full.output()).toMatch(/gold\.per_minute: version \d+, 6 rows written in \d+ ms$/m);
    expect(new Set((await gold('per_minute')).map((r) => String(r.built_at))).size).toBe(1);
    const unknown = startCli(['lake', 'report', 'run', connector, 'nope'], process.cwd());
    expect(await unknown.exited).toBe(1);
    expect(unknown.output()).toContain('no report nope in');
    expect(unknown.output()).toContain('the reports there are per_minute, per_customer');
  }, 120_000);
  it('tide lake report run publishes the user reports to serving.uri, the incremental one whole', async () => {
    const servingDb = `t_user_reports_${Date.now().toString(36)}`;
    const admin = new pg.Client({ connectionString: process.env.DATABASE_URL! });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${servingDb}`);
    const url = new URL(process.env.DATABASE_URL!);
    url.pathname = `/${servingDb}`;
    const connector = join(root, 'connectors', 'serving.json');
    writeFileSync(
      connector,
      JSON.stringify({
        name: 'user-reports-serving',
        config: {
          topics: 'events',
          'kafka.bootstrap.servers': '127.0.0.1:1',
          'schema.registry.url': 'http://127.0.0.1:1',
          'lake.uri': lakeDir,
          'gold.reports.dir': 'reports',
          'serving.uri': url.toString(),
        },
      }),
    );
    const served = new pg.Client({ connectionString: url.toString() });
    try {
      await appendEvents([[5, '2026-03-01 11:30:00', '2.50']]);
      for (const name of ['per_minute', 'per_customer']) {
        const cli = startCli(['lake', 'report', 'run', connector, name], process.cwd());
        expect(await cli.exited, cli.output()).toBe(0);
        expect(cli.output()).toContain('published to the serving database');
      }
      await served.connect();
      // Every row of the Delta table, not only the ones the incremental build recomputed.
      const minutes = await served.query<{ n: string; events: string }>('SELECT count(*) AS n, sum(events) AS events FROM gold.per_minute');
      const lake = await gold('per_minute');
      expect(minutes.rows[0]).toEqual({ n: String(lake.length), events: String(lake.reduce((n, r) => n + Number(r.events), 0)) });
      const customers = await served.query<{ customer_id: number; events: string }>(
        'SELECT customer_id, events FROM gold.per_customer ORDER BY 1',
      );
      expect(customers.rows.map((r) => `c${r.customer_id} ${r.events}`)).toEqual(['c1 4', 'c2 2', 'c3 1', 'c4 1', 'c5 1']);
      const comment = await served.query<{ c: string }>(`SELECT obj_description('gold.per_customer'::regclass, 'pg_class') AS c`);
      expect(comment.rows[0]!.c).toMatch(/^Tide gold report per_customer: Totals per customer, from the per-minute report\. Built /);
    } finally {
      await served.end().catch(() => undefined);
      await admin.query(`DROP DATABASE IF EXISTS ${servingDb} WITH (FORCE)`).catch(() => undefined);
      await admin.end();
    }
  }, 120_000);
});

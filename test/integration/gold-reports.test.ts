import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_DATASET } from '../../src/app/dataset.ts';
import { createPrisma, type PrismaClient } from '../../src/app/db.ts';
import { replay } from '../../src/app/replay.ts';
import { parseMix, runTraffic } from '../../src/app/traffic.ts';
import { ORDER_ATTRIBUTES_FIXED_COLUMNS } from '../../src/reports/gold-reports.ts';
import { ORDER_REPORTS, SILVER_VIEWS, type OrderReport } from '../support/order-reports.ts';
import { createTestDatabase } from '../support/db.ts';

/**
 * Every gold report, run by DuckDB over silver-shaped copies of the source tables, equals its
 * Postgres twin run on the source tables: same columns and types, same rows, same values
 * (decimals exactly, timestamps to the microsecond).
 */

// The sample: every line of the customers whose number is 17 mod 150 (about 3,350 lines, 31 customers,
// all 13 months, with their cancellations), plus the 55 lines without a customer. The first lines of the
// file are all from December 2019, which would leave the rolling averages nothing to average.
const SAMPLE_MODULUS = 150;
const SAMPLE_RESIDUE = 17;
const MASK_SALT = 'gold-test-salt';

/** The silver view of each source table: its columns with the DuckDB types the sink writes. */
const SILVER_COLUMNS: Record<keyof typeof SILVER_VIEWS, [string, string][]> = {
  customers: [
    ['id', 'INTEGER'],
    ['email', 'VARCHAR'],
    ['country', 'VARCHAR'],
    ['created_at', 'TIMESTAMP WITH TIME ZONE'],
    ['updated_at', 'TIMESTAMP WITH TIME ZONE'],
  ],
  products: [
    ['product_no', 'VARCHAR'],
    ['name', 'VARCHAR'],
    ['price', 'DECIMAL(12,2)'],
    ['updated_at', 'TIMESTAMP WITH TIME ZONE'],
  ],
  orders: [
    ['id', 'BIGINT'],
    ['transaction_no', 'VARCHAR'],
    ['ordered_at', 'TIMESTAMP WITH TIME ZONE'],
    ['customer_id', 'INTEGER'],
    ['status', 'VARCHAR'],
    ['attributes', 'VARCHAR'],
    ['created_at', 'TIMESTAMP WITH TIME ZONE'],
    ['updated_at', 'TIMESTAMP WITH TIME ZONE'],
  ],
  order_items: [
    ['id', 'BIGINT'],
    ['order_id', 'BIGINT'],
    ['product_no', 'VARCHAR'],
    ['unit_price', 'DECIMAL(12,2)'],
    ['quantity', 'INTEGER'],
  ],
};
const METADATA_COLUMNS: [string, string][] = [
  ['_commit_lsn', 'BIGINT'],
  ['_event_index', 'BIGINT'],
  ['_commit_ts', 'TIMESTAMP WITH TIME ZONE'],
];

function writeSample(dir: string): string {
  const lines = gunzipSync(readFileSync(DEFAULT_DATASET)).toString('ascii').split('\r\n');
  const picked = lines.slice(1).filter((line) => {
    const customer = line.split(',')[6];
    return customer === 'NA' || (customer !== undefined && customer !== '' && Number(customer) % SAMPLE_MODULUS === SAMPLE_RESIDUE);
  });
  const path = join(dir, 'sample.csv');
  writeFileSync(path, [lines[0], ...picked, ''].join('\r\n'));
  return path;
}

/** Postgres type OID (and numeric typmod) for each DuckDB result type the reports may return. */
function postgresTypeOf(duckType: string): { oid: number; modifier?: number } {
  const decimal = /^DECIMAL\((\d+),(\d+)\)$/.exec(duckType);
  if (decimal) return { oid: 1700, modifier: ((Number(decimal[1]) << 16) | Number(decimal[2])) + 4 };
  const oids: Record<string, number> = { INTEGER: 23, BIGINT: 20, VARCHAR: 25, DATE: 1082, 'TIMESTAMP WITH TIME ZONE': 1184 };
  const oid = oids[duckType];
  if (oid === undefined) throw new Error(`a report returns DuckDB type ${duckType}, which this test cannot compare: add it here`);
  return { oid };
}

/** One text form per value, the same for DuckDB's JSON rows and Postgres' raw text. */
function canonical(value: unknown, duckType: string): string | null {
  if (value === null || value === undefined) return null;
  const text = String(value);
  if (duckType !== 'TIMESTAMP WITH TIME ZONE') return text;
  const m = /^(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2})(?:\.(\d{1,6}))?\+00$/.exec(text);
  if (!m) throw new Error(`timestamp ${JSON.stringify(text)} is not UTC text with up to microseconds`);
  return `${m[1]}T${m[2]}.${(m[3] ?? '').padEnd(6, '0')}Z`;
}

interface ReportRows {
  columns: string[];
  types: string[];
  rows: Map<string, (string | null)[]>;
}

function keyed(report: OrderReport, columns: string[], types: string[], raw: Record<string, unknown>[], side: string): ReportRows {
  const rows = new Map<string, (string | null)[]>();
  const keyIdx = report.key.map((k) => columns.indexOf(k));
  expect(keyIdx, `${report.name} (${side}) lacks a key column of ${report.key.join(', ')}`).not.toContain(-1);
  for (const r of raw) {
    const values = columns.map((c, i) => canonical(r[c], types[i]!));
    const key = JSON.stringify(keyIdx.map((i) => values[i]));
    expect(rows.has(key), `${report.name} (${side}): key ${key} occurs twice, so [${report.key.join(', ')}] is not a key`).toBe(false);
    rows.set(key, values);
  }
  return { columns, types, rows };
}

/** Exact sum of DECIMAL(…,2) texts, in cents. */
const cents = (values: (string | null | undefined)[]) => values.reduce<bigint>((sum, v) => sum + (v ? BigInt(v.replace('.', '')) : 0n), 0n);

describe('gold reports: DuckDB over silver equals Postgres over the source', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let prisma: PrismaClient;
  let source: pg.Client;
  let duck: DuckDBInstance;
  let conn: DuckDBConnection;
  let dir: string;
  let keep = false;
  const results = new Map<string, { duck: ReportRows; pg: ReportRows }>();

  const duckQuery = async (sql: string) => (await conn.runAndReadAll(sql)).getRowObjectsJson() as Record<string, unknown>[];
  const pgQuery = async (sql: string) => (await source.query(sql)).rows as Record<string, unknown>[];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tide-gold-'));
    db = await createTestDatabase('gold_reports');
    prisma = createPrisma(db.url, 6);
    // Every value as Postgres' own text, so nothing goes through a JS number or a millisecond Date.
    source = new pg.Client({
      connectionString: db.url,
      types: { getTypeParser: (() => (text: string) => text) as unknown as pg.CustomTypesConfig['getTypeParser'] },
    });
    await source.connect();
    await source.query(`SET TimeZone = 'UTC'`);
    duck = await DuckDBInstance.create(':memory:');
    conn = await duck.connect();
    await conn.run(`SET TimeZone = 'UTC'`);
  });

  afterEach((ctx) => {
    if (ctx.task.result?.state === 'fail') keep = true;
  });

  afterAll(async () => {
    conn?.closeSync();
    duck?.closeSync();
    await prisma?.$disconnect();
    await source?.end();
    await db?.drop();
    if (!keep) rmSync(dir, { recursive: true, force: true });
    else if (dir) console.log(`gold reports: kept ${dir} (silver Parquet files) for inspection`);
  });

  it('loads the order app: data-set sample, live traffic and unusual attribute keys', async () => {
    const replayed = await replay(prisma, { dataPath: writeSample(dir), concurrency: 4 });
    expect(replayed.rows).toBeGreaterThan(3000);
    const traffic = await runTraffic(prisma, {
      rate: 120,
      durationMs: 3000,
      mix: parseMix('new-order=6,status=3,item-quantity=2,attributes=3,cancel=3,delete-draft=2,price=2,email=2'),
    });
    expect(traffic.errors, traffic.lastError).toBe(0);
    for (const op of ['new-order', 'attributes', 'cancel', 'delete-draft', 'price'] as const)
      expect(traffic.ops[op], op).toBeGreaterThan(0);
    // Keys that must be quoted as identifiers and literals; JSON null; attributes that are not an object.
    await source.query(`UPDATE orders SET attributes = attributes || $1::jsonb WHERE id IN (SELECT id FROM orders ORDER BY id LIMIT 5)`, [
      JSON.stringify({ 'gift note': 'for "Mum"', 'promo "code"': "it's 10%", 'Größe, Farbe': 'L; rot', '$&': 'x', note: null }),
    ]);
    await source.query(
      `UPDATE orders SET attributes = '["not", "an object"]' WHERE id = (SELECT max(id) FROM orders WHERE status = 'shipped')`,
    );
    await source.query(`UPDATE orders SET attributes = '"scalar"' WHERE id = (SELECT min(id) FROM orders WHERE status = 'cancelled')`);
  });

  it('exports each source table into a silver-shaped Parquet file and view', async () => {
    for (const [table, view] of Object.entries(SILVER_VIEWS) as [keyof typeof SILVER_VIEWS, string][]) {
      const columns = SILVER_COLUMNS[table];
      const { rows } = await source.query<Record<string, string | null>>(`SELECT ${columns.map(([c]) => c).join(', ')} FROM ${table}`);
      expect(rows.length, table).toBeGreaterThan(0);
      await conn.run(`CREATE TABLE staging_${table} (${columns.map(([c]) => `${c} VARCHAR`).join(', ')})`);
      const appender = await conn.createAppender(`staging_${table}`);
      try {
        for (const row of rows) {
          for (const [c] of columns) {
            const v = row[c];
            if (v === null || v === undefined) appender.appendNull();
            else appender.appendVarchar(v);
          }
          appender.endRow();
        }
        appender.flushSync();
      } finally {
        appender.closeSync();
      }
      // Postgres' text → the silver types; the email masked as silver does; metadata columns as the sink adds them.
      const select = columns.map(([c, type]) =>
        table === 'customers' && c === 'email' ? `sha256('${MASK_SALT}' || email) AS email` : `CAST(${c} AS ${type}) AS ${c}`,
      );
      const parquet = join(dir, `${table}.parquet`);
      await conn.run(
        `COPY (SELECT ${select.join(', ')}, CAST(row_number() OVER () AS BIGINT) AS _commit_lsn, CAST(0 AS BIGINT) AS _event_index, ` +
          `now() AS _commit_ts FROM staging_${table}) TO '${parquet}' (FORMAT parquet, COMPRESSION zstd)`,
      );
      await conn.run(`DROP TABLE staging_${table}`);
      await conn.run(`CREATE VIEW ${view} AS SELECT * FROM read_parquet('${parquet}')`);
      const described = await duckQuery(`SELECT column_name, column_type FROM (DESCRIBE ${view})`);
      expect(described.map((d) => [d.column_name, d.column_type])).toEqual([...columns, ...METADATA_COLUMNS]);
      expect(Number((await duckQuery(`SELECT count(*) AS n FROM ${view}`))[0]!.n), view).toBe(rows.length);
    }
  });

  for (const report of ORDER_REPORTS) {
    it(`${report.name}: DuckDB over silver equals the Postgres query, row for row`, async () => {
      const duckSql = await report.duckdbSql(duckQuery);
      const pgSql = await report.postgresSql(pgQuery);
      const duckResult = await conn.runAndReadAll(duckSql);
      const duckColumns = duckResult.columnNames();
      const duckTypes = duckResult.columnTypes().map(String);
      const pgResult = await source.query(pgSql);

      expect(
        pgResult.fields.map((f) => f.name),
        'column names',
      ).toEqual(duckColumns);
      expect(
        pgResult.fields.map((f) => ({
          column: f.name,
          oid: f.dataTypeID,
          ...(f.dataTypeID === 1700 ? { modifier: f.dataTypeModifier } : {}),
        })),
        'column types',
      ).toEqual(duckColumns.map((column, i) => ({ column, ...postgresTypeOf(duckTypes[i]!) })));

      const lake = keyed(report, duckColumns, duckTypes, duckResult.getRowObjectsJson() as Record<string, unknown>[], 'DuckDB');
      const truth = keyed(report, duckColumns, duckTypes, pgResult.rows as Record<string, unknown>[], 'Postgres');
      const mismatches: string[] = [];
      for (const key of new Set([...lake.rows.keys(), ...truth.rows.keys()])) {
        const a = lake.rows.get(key);
        const b = truth.rows.get(key);
        if (JSON.stringify(a) !== JSON.stringify(b)) {
          mismatches.push(`${key}: duckdb=${a ? JSON.stringify(a) : 'missing'} postgres=${b ? JSON.stringify(b) : 'missing'}`);
        }
      }
      expect(
        mismatches.length,
        `${report.name}: ${mismatches.length} mismatching keys [${report.key.join(', ')}]:\n  ${mismatches.slice(0, 20).join('\n  ')}`,
      ).toBe(0);
      expect(lake.rows.size, `${report.name} is empty on this data`).toBeGreaterThan(0);
      const joined = JSON.stringify([...lake.rows.values()]);
      expect(joined.includes('@shop.example'), `${report.name} outputs a customer's email`).toBe(false);
      results.set(report.name, { duck: lake, pg: truth });
    });
  }

  it('the reports are non-trivial and agree with each other', () => {
    console.log(`gold report rows: ${[...results].map(([name, r]) => `${name}=${r.duck.rows.size}`).join(', ')}`);
    expect([...results.keys()].sort()).toEqual(ORDER_REPORTS.map((r) => r.name).sort());
    const col = (name: string, column: string) => {
      const r = results.get(name)!.duck;
      const i = r.columns.indexOf(column);
      return [...r.rows.values()].map((row) => row[i]);
    };

    for (const column of ['avg_revenue_3m', 'avg_revenue_6m']) {
      const values = col('rolling_revenue', column);
      expect(values.filter((v) => v === null).length, `${column} NULL`).toBeGreaterThan(0);
      expect(values.filter((v) => v !== null && v !== '0.00').length, `${column} non-zero`).toBeGreaterThan(0);
    }

    const attributes = results.get('order_attributes')!.duck;
    const keyColumns = attributes.columns.filter((c) => !(ORDER_ATTRIBUTES_FIXED_COLUMNS as readonly string[]).includes(c));
    expect(keyColumns.length).toBeGreaterThanOrEqual(2);
    expect(keyColumns).toEqual(expect.arrayContaining(['channel', 'source', 'coupon', 'gift_wrap', 'gift note', 'promo "code"', '$&']));
    const values = col('order_attributes', 'promo "code"');
    expect(values).toContain("it's 10%");
    expect(col('order_attributes', 'gift_wrap')).toEqual(expect.arrayContaining(['true']));

    // One revenue, seen three ways: per minute, per country (NULL country = no customer), per customer-day.
    const total = cents(col('sales_per_minute', 'revenue'));
    expect(cents(col('revenue_by_country', 'revenue'))).toBe(total);
    const countries = col('revenue_by_country', 'country');
    const byCountry = col('revenue_by_country', 'revenue');
    const noCustomer = cents([byCountry[countries.indexOf(null)]]);
    expect(countries).toContain(null);
    expect(cents(col('daily_billing', 'amount_billed')) + noCustomer).toBe(total);
    expect(total).toBeGreaterThan(0n);
  });
});

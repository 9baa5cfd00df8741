import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  GoldReportError,
  MAX_ATTRIBUTE_KEYS,
  attributeColumns,
  orderAttributesSql,
  quoteIdentifier,
  quoteLiteral,
} from '../../src/reports/gold-reports.ts';
import { ORDER_REPORTS, ORDER_REPORTS_DIR } from '../support/order-reports.ts';

const readExample = (file: string) => readFileSync(join(ORDER_REPORTS_DIR, file), 'utf8');

const noQuery = () => Promise.reject(new Error('a static report must not query'));

describe('SQL quoting', () => {
  it('doubles the quote character and nothing else', () => {
    expect(quoteIdentifier('channel')).toBe('"channel"');
    expect(quoteIdentifier('promo "code"')).toBe('"promo ""code"""');
    expect(quoteIdentifier("it's")).toBe(`"it's"`);
    expect(quoteLiteral("it's")).toBe("'it''s'");
    expect(quoteLiteral('a"b\\c')).toBe(`'a"b\\c'`);
  });
});

describe('order attribute columns', () => {
  it('makes one column per key, sorted by code unit, quoted as literal and identifier', () => {
    expect(
      attributeColumns(['source', "it's", 'a"b', 'channel', 'channel'], 'duckdb')
        .split('\n')
        .map((l) => l.trim()),
    ).toEqual([
      `, max(a.value_text) FILTER (WHERE a.key = 'a"b') AS "a""b"`,
      `, max(a.value_text) FILTER (WHERE a.key = 'channel') AS "channel"`,
      `, max(a.value_text) FILTER (WHERE a.key = 'it''s') AS "it's"`,
      `, max(a.value_text) FILTER (WHERE a.key = 'source') AS "source"`,
    ]);
    expect(attributeColumns([], 'postgres')).toBe('');
  });

  it('refuses keys that cannot become distinct column names, naming the key', () => {
    const fails = (keys: string[], dialect: 'duckdb' | 'postgres' = 'duckdb') => {
      try {
        attributeColumns(keys, dialect);
      } catch (err) {
        expect(err).toBeInstanceOf(GoldReportError);
        return (err as Error).message;
      }
      throw new Error(`accepted ${JSON.stringify(keys)}`);
    };
    expect(fails(['coupon', 'Coupon'])).toMatchInlineSnapshot(
      `"gold report order_attributes: attribute key "coupon" would be the same column as attribute key "Coupon" (column names ignore case). Rename one of them in the data order_attributes.keys.sql reads."`,
    );
    expect(fails(['Order_ID'])).toContain('the fixed column order_id');
    expect(fails(['updated_at'])).toContain('the fixed column updated_at');
    expect(fails(['ok', ''])).toContain('empty key');
    expect(fails(Array.from({ length: MAX_ATTRIBUTE_KEYS + 1 }, (_, i) => `k${i}`))).toContain(
      `more than the ${MAX_ATTRIBUTE_KEYS} columns`,
    );
    const long = 'k'.repeat(64);
    expect(attributeColumns([long], 'duckdb')).toContain(long);
    expect(fails([long], 'postgres')).toContain("longer than Postgres' 63-byte identifiers");
    expect(attributeColumns(['é'.repeat(31)], 'postgres')).toContain('é'); // 62 bytes
    expect(fails(['é'.repeat(32)], 'postgres')).toContain('63-byte'); // 64 bytes
  });

  it('fills the placeholder line once, literally, and nothing else', () => {
    const template = 'SELECT\n    o.id AS order_id\n    {{attribute_columns}}\nFROM silver_orders o\n';
    expect(orderAttributesSql(template, ['$&', "$'"], 'duckdb')).toBe(
      'SELECT\n    o.id AS order_id\n' +
        `    , max(a.value_text) FILTER (WHERE a.key = '$&') AS "$&"\n` +
        `    , max(a.value_text) FILTER (WHERE a.key = '$''') AS "$'"\n` +
        'FROM silver_orders o\n',
    );
    expect(orderAttributesSql(template, [], 'duckdb')).toBe('SELECT\n    o.id AS order_id\n\nFROM silver_orders o\n');
    expect(() => orderAttributesSql('SELECT 1', ['a'], 'duckdb')).toThrow(/exactly once, found 0/);
    expect(() => orderAttributesSql(`${template}{{attribute_columns}}\n`, ['a'], 'duckdb')).toThrow(/exactly once, found 2/);
  });
});

describe('the example reports (connectors/reports/orders)', () => {
  it('has the reports the business asked for, each with a key and both SQL files', async () => {
    expect(ORDER_REPORTS.map((r) => r.name).sort()).toEqual([
      'customer_last_update',
      'daily_billing',
      'order_attributes',
      'revenue_by_country',
      'rolling_revenue',
      'sales_per_minute',
      'top_products_by_country',
    ]);
    for (const r of ORDER_REPORTS) {
      expect(r.key.length, r.name).toBeGreaterThan(0);
      expect(r.description.length, r.name).toBeGreaterThan(20);
      if (r.name === 'order_attributes') continue;
      const duck = await r.duckdbSql(noQuery);
      const postgres = await r.postgresSql(noQuery);
      // DuckDB reads only the silver views; the Postgres twin only the source tables.
      expect(duck, r.name).toMatch(/\bsilver_orders\b|\bsilver_customers\b/);
      expect(duck, r.name).not.toMatch(/\b(FROM|JOIN)\s+(orders|order_items|customers|products)\b/);
      expect(postgres, r.name).not.toMatch(/\bsilver_/);
      for (const k of r.key) expect(duck, `${r.name} outputs key ${k}`).toMatch(new RegExp(`\\b${k}\\b`));
      expect(duck.trimEnd().endsWith(';'), `${r.name} must be embeddable as a subquery`).toBe(false);
    }
  });

  it('states the same revenue definitions in every report that computes revenue', () => {
    const definitions = /^-- Definitions \(the same in every gold report\):\n(?:--.*\n)*?-- {3}time .*\n/m;
    const reference = definitions.exec(readExample('sales_per_minute.sql'))?.[0];
    expect(reference).toContain("WHERE status IN ('placed', 'paid', 'shipped')");
    const files = readdirSync(ORDER_REPORTS_DIR).filter((f) => f.endsWith('.sql'));
    const withRevenue = files.filter((f) => /\bunit_price\b/.test(readExample(f)));
    expect(withRevenue.sort()).toEqual(
      ['daily_billing', 'revenue_by_country', 'rolling_revenue', 'sales_per_minute', 'top_products_by_country'].map((n) => `${n}.sql`),
    );
    for (const f of withRevenue) expect(definitions.exec(readExample(f))?.[0], f).toBe(reference);
  });
});

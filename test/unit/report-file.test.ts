import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseReportFile, tableReads } from '../../src/reports/report-file.ts';
import { loadReportFolder, reportDirOf } from '../../src/reports/report-folder.ts';
import { ReportFileError } from '../../src/reports/report-errors.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function folder(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'tide-report-file-'));
  dirs.push(dir);
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

const failure = (fn: () => unknown): string => {
  try {
    fn();
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error('no error');
};

describe('report file header', () => {
  it('reads the refresh, incremental and description lines', () => {
    const f = parseReportFile(
      '/r/per_minute.sql',
      [
        '-- gold.per_minute: notifications per customer',
        '-- and minute.',
        '-- tide: refresh = every 60s',
        '-- tide: incremental by minute lookback 5m',
        '--',
        'SELECT 1 FROM bronze_notifications WHERE event_datetime >= {{since}};',
        '',
      ].join('\n'),
    );
    expect(f).toMatchObject({
      name: 'per_minute',
      description: 'notifications per customer and minute.',
      schedule: { kind: 'every', ms: 60_000 },
      incremental: { column: 'minute', lookbackMs: 300_000 },
      reads: [{ view: 'bronze_notifications', root: 'bronze/notifications', line: 6, required: true }],
    });
    expect(f.sql.trimEnd().endsWith(';')).toBe(false);
    expect(parseReportFile('/r/a.sql', 'SELECT 1').schedule).toEqual({ kind: 'on-change' });
  });

  it('names the file and the line of a bad directive', () => {
    expect(failure(() => parseReportFile('/r/a.sql', 'SELECT 1\n-- tide: refresh = hourly\n'))).toMatchInlineSnapshot(
      `"/r/a.sql:2: refresh must be on-change, every <n>s|m|h (e.g. every 60s) or daily HH:MM UTC (e.g. daily 02:00 UTC), got "hourly""`,
    );
    expect(failure(() => parseReportFile('/r/a.sql', '-- x\n-- tide: refresh on change\nSELECT 1'))).toMatch(
      /^\/r\/a\.sql:2: unknown directive "refresh on change"/,
    );
    expect(failure(() => parseReportFile('/r/a.sql', '-- tide: incremental by t\nSELECT 1'))).toMatchInlineSnapshot(
      `"/r/a.sql:1: incremental by t needs {{since}} in its SQL to read only new rows, e.g. WHERE event_time >= {{since}}"`,
    );
    expect(failure(() => parseReportFile('/r/a.sql', 'SELECT 1\nWHERE t >= {{since}}'))).toMatch(
      /^\/r\/a\.sql:2: \{\{since\}\} is set only for incremental/,
    );
    expect(failure(() => parseReportFile('/r/Bad-Name.sql', 'SELECT 1'))).toMatch(
      /^\/r\/Bad-Name\.sql:1: the file name must be <name>\.sql/,
    );
    expect(() => parseReportFile('/r/a.sql', '-- only a comment\n')).toThrow(ReportFileError);
  });

  it('finds the lake tables the SQL reads, not those in comments, strings or its own CTEs', () => {
    const sql = [
      '-- reads silver_customers in a comment only',
      'WITH silver_recent AS (SELECT * FROM silver_orders o)',
      "SELECT 'silver_products', count(*) AS silver_count",
      'FROM silver_recent r JOIN "silver_orders_history" h ON h.id = r.id, gold_daily_billing b',
    ].join('\n');
    expect(tableReads(sql)).toEqual([
      { view: 'silver_orders', root: 'silver/orders', line: 2, required: true },
      { view: 'silver_count', root: 'silver/count', line: 3, required: false },
      { view: 'silver_orders_history', root: 'silver/orders_history', line: 4, required: true },
      { view: 'gold_daily_billing', root: 'gold/daily_billing', line: 4, required: false },
    ]);
  });
});

describe('report folder', () => {
  it('orders reports after the reports they read', () => {
    const dir = folder({
      'a_total.sql': 'SELECT sum(n) AS n FROM gold_b_per_day',
      'b_per_day.sql': 'SELECT count(*) AS n FROM silver_orders',
      'c_share.sql': 'SELECT * FROM gold_a_total JOIN gold_b_per_day ON true',
      'order_attributes.keys.sql': 'SELECT 1',
      'notes.txt': 'not a report',
    });
    const reports = loadReportFolder(dir);
    expect(reports.map((r) => [r.name, r.dependsOn])).toEqual([
      ['b_per_day', []],
      ['a_total', ['b_per_day']],
      ['c_share', ['a_total', 'b_per_day']],
    ]);
  });

  it('refuses a cycle, naming its files', () => {
    const dir = folder({
      'a.sql': 'SELECT * FROM gold_b',
      'b.sql': 'SELECT * FROM gold_c',
      'c.sql': 'SELECT * FROM gold_a',
      'd.sql': 'SELECT * FROM silver_orders',
    });
    expect(failure(() => loadReportFolder(dir))).toMatch(
      /^gold\.reports\.dir: the reports a\.sql → b\.sql → c\.sql → a\.sql read each other in a cycle/,
    );
    expect(failure(() => loadReportFolder(folder({ 'self.sql': 'SELECT * FROM gold_self' })))).toMatch(/self\.sql → self\.sql/);
  });

  it('needs the keys query of a pivot, and a folder with reports', () => {
    const dir = folder({ 'p.sql': 'SELECT 1 AS id\n    {{attribute_columns}}\nFROM silver_orders' });
    expect(failure(() => loadReportFolder(dir))).toMatch(
      /p\.sql:2: \{\{attribute_columns\}\} takes its columns from p\.keys\.sql, which does not exist/,
    );
    const empty = folder({});
    expect(failure(() => loadReportFolder(empty))).toMatch(/holds no \.sql files/);
    mkdirSync(join(empty, 'sub'));
    expect(failure(() => loadReportFolder(join(empty, 'nope')))).toMatch(/is not a folder/);
  });

  it('resolves gold.reports.dir against the connector file', () => {
    expect(reportDirOf('/etc/tide/connectors/orders-lake.json', 'reports/orders')).toBe('/etc/tide/connectors/reports/orders');
    expect(reportDirOf('/etc/tide/orders-lake.json', '/srv/reports')).toBe('/srv/reports');
  });
});

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { TideMetrics } from '../../src/ops/metrics.ts';

/**
 * The shipped alert rules and Grafana dashboard only reference metrics Tide exports. Names are
 * taken from each PromQL expression after removing strings, label matchers, ranges, grouping
 * clauses, template variables and function calls; what remains are series names.
 */
const ALERTS = 'src/ops/monitoring/prometheus-alerts.yml';
const DASHBOARD = 'src/ops/monitoring/grafana-dashboard.json';
const KEYWORDS = new Set([
  'and',
  'or',
  'unless',
  'bool',
  'offset',
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'inf',
  'nan',
]);

export function seriesNames(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
    .replace(/\$\{?\w+\}?/g, ' ')
    .replace(/\b[a-zA-Z_]\w*\s*\(/g, '(');
  return [...stripped.matchAll(/\b[a-zA-Z_:][a-zA-Z0-9_:]*\b/g)].map((m) => m[0]).filter((t) => !KEYWORDS.has(t.toLowerCase()));
}

const metrics = new TideMetrics();
const types = new Map(metrics.registry.getMetricsAsArray().map((m) => [m.name, (m as unknown as { type: string }).type]));

/** Series Prometheus itself records for every scrape target. */
const PROMETHEUS_SERIES = new Set(['up']);

/** A name Tide exports: a metric, or a histogram's _bucket/_sum/_count series. */
function exported(name: string): boolean {
  if (types.has(name)) return true;
  const base = name.replace(/_(bucket|sum|count)$/, '');
  return base !== name && types.get(base) === 'histogram';
}

describe('the PromQL name extraction used below', () => {
  it('finds series names and nothing else', () => {
    expect(
      seriesNames(
        'histogram_quantile(0.99, sum by (le, table) (rate(tide_x_bucket{connector=~"$sink", a="b c"}[$__rate_interval]))) > 2 * 1024 and on (connector) time() - y_total offset 5m',
      ),
    ).toEqual(['tide_x_bucket', 'y_total']);
  });
});

describe('prometheus-alerts.yml', () => {
  type Rule = { alert: string; expr: string; for?: string; labels: Record<string, string>; annotations: Record<string, string> };
  const doc = parse(readFileSync(ALERTS, 'utf8')) as { groups: { name: string; rules: Rule[] }[] };
  const rules = doc.groups.flatMap((g) => g.rules.map((r) => ({ group: g.name, ...r })));

  it('is a Prometheus rules file: named groups of alerting rules with expr, severity, summary and description', () => {
    expect(Object.keys(doc)).toEqual(['groups']);
    expect(doc.groups.map((g) => g.name)).toEqual(['tide-source', 'tide-sink', 'tide-process']);
    for (const r of rules) {
      expect(
        Object.keys(r).filter((k) => !['group', 'alert', 'expr', 'for', 'labels', 'annotations'].includes(k)),
        String(r.alert),
      ).toEqual([]);
      expect(r.alert, JSON.stringify(r)).toMatch(/^Tide[A-Za-z]+$/);
      expect(typeof r.expr).toBe('string');
      if (r.for !== undefined) expect(r.for).toMatch(/^\d+[smh]$/);
      expect(['warning', 'critical']).toContain((r.labels as Record<string, string>).severity);
      const a = r.annotations as Record<string, string>;
      expect(a.summary?.length, `${String(r.alert)} summary`).toBeGreaterThan(10);
      expect(a.description?.length, `${String(r.alert)} description`).toBeGreaterThan(10);
      // Balanced brackets: the cheapest check that an expression was not cut short.
      const e = String(r.expr);
      for (const [open, close] of ['()', '{}', '[]'])
        expect(e.split(open!).length, `${String(r.alert)}: ${open}${close}`).toBe(e.split(close!).length);
    }
    expect(new Set(rules.map((r) => r.alert)).size).toBe(rules.length);
  });

  it('covers slot lag, retained WAL, freshness, dead letters and a stopped pipeline (source and sink)', () => {
    const uses = (metric: string) => rules.filter((r) => seriesNames(String(r.expr)).includes(metric)).map((r) => r.alert);
    expect(uses('tide_source_slot_lag_bytes')).toContain('TideSlotLagHigh');
    expect(uses('tide_source_retained_wal_bytes')).toEqual(['TideRetainedWalHigh', 'TideRetainedWalCritical']);
    expect(uses('tide_sink_freshness_seconds')).toEqual(['TideSinkFreshnessStale']);
    expect(uses('tide_sink_dead_letters_total')).toEqual(['TideSinkDeadLetters']);
    expect(uses('tide_source_state')).toEqual([
      'TideSourceStopped',
      'TideSourceStuckStarting',
      'TideSourceStalled',
      'TideSourceMetricsAbsent',
    ]);
    expect(uses('tide_sink_flushes_total')).toEqual(['TideSinkStalled', 'TideSinkMetricsAbsent']);
    // One process of several exiting: Prometheus' own `up` for Tide's scrape jobs.
    expect(uses('up')).toEqual(['TideProcessDown']);
  });

  it('uses only metrics Tide exports', () => {
    const unknown = rules.flatMap((r) =>
      seriesNames(String(r.expr))
        .filter((n) => !exported(n) && !PROMETHEUS_SERIES.has(n))
        .map((n) => `${String(r.alert)}: ${n}`),
    );
    expect(unknown).toEqual([]);
  });
});

describe('grafana-dashboard.json', () => {
  type Panel = {
    id: number;
    type: string;
    title: string;
    gridPos: { x: number; y: number; w: number; h: number };
    targets?: { expr: string; refId: string }[];
  };
  const dash = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as {
    __inputs: { name: string; type: string; pluginId: string }[];
    uid: string;
    title: string;
    schemaVersion: number;
    panels: Panel[];
    templating: { list: { name: string; query: { query: string } }[] };
  };

  it('is importable: a Prometheus data source input, a uid, unique panel ids, panels inside the 24-column grid without overlaps', () => {
    expect(dash.__inputs).toEqual([expect.objectContaining({ name: 'DS_PROMETHEUS', type: 'datasource', pluginId: 'prometheus' })]);
    expect(dash.uid).toBe('tide-pipeline');
    expect(dash.schemaVersion).toBeGreaterThanOrEqual(36);
    expect(new Set(dash.panels.map((p) => p.id)).size).toBe(dash.panels.length);
    const cells = new Map<string, string>();
    for (const p of dash.panels) {
      const { x, y, w, h } = p.gridPos;
      expect(x + w, p.title).toBeLessThanOrEqual(24);
      for (let i = x; i < x + w; i++)
        for (let j = y; j < y + h; j++) {
          expect(cells.get(`${i},${j}`), `${p.title} overlaps`).toBeUndefined();
          cells.set(`${i},${j}`, p.title);
        }
    }
    const text = readFileSync(DASHBOARD, 'utf8');
    expect(
      [...text.matchAll(/"uid": "([^"]+)"/g)].map((m) => m[1]).filter((u) => u !== 'tide-pipeline' && u !== '${DS_PROMETHEUS}'),
    ).toEqual([]);
  });

  it('charts every source and sink metric, and only metrics Tide exports', () => {
    const exprs = [
      ...dash.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ where: p.title, expr: t.expr }))),
      ...dash.templating.list.map((v) => ({
        where: `variable ${v.name}`,
        expr: v.query.query.replace(/^label_values\((.*),\s*\w+\)$/, '$1'),
      })),
    ];
    const used = new Set(exprs.flatMap((e) => seriesNames(e.expr)));
    expect(
      exprs.flatMap((e) =>
        seriesNames(e.expr)
          .filter((n) => !exported(n) && !PROMETHEUS_SERIES.has(n))
          .map((n) => `${e.where}: ${n}`),
      ),
    ).toEqual([]);
    const tide = [...types.keys()].filter((n) => /^tide_(source|sink)_/.test(n));
    const charted = (n: string) => used.has(n) || used.has(`${n}_bucket`);
    expect(tide.filter((n) => !charted(n))).toEqual([]);
  });
});

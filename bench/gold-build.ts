/**
 * Gold build benchmark (issue 12): where a build of the shipped order reports (connectors/reports/orders)
 * spends its time over a large silver table with deletion vectors, and old code against new, alternately.
 *
 *   npx tsx bench/gold-build.ts [--orders 3000000] [--merges 40] [--updates 40000] [--inserts 10000]
 *                               [--lake DIR (kept; built when missing)] [--ab old=/path/to/old/src,new=src]
 *                               [--rounds 2] [--reports a,b] [--name gold-build]
 *
 *  1. The lake (once; `--lake` keeps it for later runs): silver `public.orders` with
 *     `delta.enableDeletionVectors`, first `--orders` rows in 250k-row files (the sink's first load), then
 *     `--merges` merges through the real `mergeSilver` (deletion vectors + key index) of `--updates` random
 *     updates and `--inserts` new orders each, as the pipeline's flushes leave it: many small files, most
 *     with a vector. Order items (two lines an order, copy-on-write silver, no vectors), 4,000 customers and
 *     4,000 products beside it.
 *  2. Per round and code (`--ab`: each label's `src` directory, e.g. an old commit's `git archive` next to
 *     this one): a child process builds every report once, like the sink's gold (one DuckDB thread,
 *     `GoldRefresher.refreshReport`), and times per report the whole build and apart: registering the input
 *     views (`registerViews`: reading the deletion vectors) and the query alone (`CREATE TEMP TABLE AS`).
 *     The codes run alternately (ABAB...), each child after the other; the load average is taken per run.
 *
 * Not part of the test suite; needs no stack. Results: JSON in bench/results/<name>-<date>.json.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { machine, provenance, round, say } from './bench-common.ts';
import { arg, BASE_MS, buildDeltaTable, list, loadavg, ordersColumnsSql, randomKeys, writeResult } from './merge-bench-support.ts';
import { orderRow, SILVER_SCHEMA } from './sink-bench-support.ts';
import type { LakeSchema } from '../src/lake/lake-schema.ts';
import { SILVER_META, silverPath } from '../src/sink/table-layout.ts';

const ORDERS = Number(arg('orders', '3000000'));
const MERGES = Number(arg('merges', '40'));
const UPDATES = Number(arg('updates', '40000'));
const INSERTS = Number(arg('inserts', '10000'));
const ROUNDS = Number(arg('rounds', '2'));
const REPORTS = list(arg('reports', ''));
const REPORT_DIR = resolve('connectors/reports/orders');

const ts = { kind: 'timestamp' } as const;
const silver = (columns: LakeSchema['columns'], key: string[]): LakeSchema => ({
  columns: [...columns.map((c) => ({ ...c, nullable: !key.includes(c.name) })), ...SILVER_META],
});
const ITEMS_SCHEMA = silver(
  [
    { name: 'id', type: { kind: 'long' }, nullable: false },
    { name: 'order_id', type: { kind: 'long' }, nullable: false },
    { name: 'product_no', type: { kind: 'string' }, nullable: false },
    { name: 'unit_price', type: { kind: 'decimal', precision: 12, scale: 2 }, nullable: false },
    { name: 'quantity', type: { kind: 'integer' }, nullable: false },
  ],
  ['id'],
);
const CUSTOMERS_SCHEMA = silver(
  [
    { name: 'id', type: { kind: 'integer' }, nullable: false },
    { name: 'email', type: { kind: 'string' }, nullable: false },
    { name: 'country', type: { kind: 'string' }, nullable: false },
    { name: 'created_at', type: ts, nullable: false },
    { name: 'updated_at', type: ts, nullable: false },
  ],
  ['id'],
);
const PRODUCTS_SCHEMA = silver(
  [
    { name: 'product_no', type: { kind: 'string' }, nullable: false },
    { name: 'name', type: { kind: 'string' }, nullable: false },
    { name: 'price', type: { kind: 'decimal', precision: 12, scale: 2 }, nullable: false },
    { name: 'updated_at', type: ts, nullable: false },
  ],
  ['product_no'],
);
const META = `1::BIGINT AS _commit_lsn, 0::BIGINT AS _event_index, make_timestamp(${BASE_MS}::BIGINT * 1000) AS _commit_ts`;

/** Build the silver tables of the lake at `dir` with the current code. */
async function buildLake(dir: string): Promise<Record<string, unknown>> {
  const { ParquetEngine } = await import('../src/lake/parquet/parquet-engine.ts');
  const { LocalStore } = await import('../src/lake/storage/local-store.ts');
  const { mergeSilver, SILVER_TARGET_FILE_ROWS } = await import('../src/sink/silver-merge.ts');
  const store = new LocalStore(dir);
  const engine = await ParquetEngine.create({ memoryLimit: '2GB' });
  const t0 = performance.now();
  try {
    const micros = `(${BASE_MS}::BIGINT + i * 1000) * 1000`;
    const orders = await buildDeltaTable(
      engine,
      store,
      silverPath('public.orders'),
      SILVER_SCHEMA,
      `SELECT ${ordersColumnsSql('i')}, 1::BIGINT AS _commit_lsn, i::BIGINT AS _event_index, make_timestamp(${micros}) AS _commit_ts FROM range(${ORDERS}) t(i) ORDER BY i`,
      true,
      SILVER_TARGET_FILE_ROWS,
    );
    const total = ORDERS + MERGES * INSERTS;
    await buildDeltaTable(
      engine,
      store,
      silverPath('public.order_items'),
      ITEMS_SCHEMA,
      `SELECT i AS id, i // 2 AS order_id, 'P' || (i % 4000)::VARCHAR AS product_no, CAST(1 + (i % 700) / 100.0 AS DECIMAL(12,2)) AS unit_price, ` +
        `(CASE WHEN i % 17 = 0 THEN -1 ELSE 1 + i % 6 END)::INTEGER AS quantity, ${META} FROM range(${total * 2}) t(i) ORDER BY i`,
      false,
      SILVER_TARGET_FILE_ROWS,
    );
    await buildDeltaTable(
      engine,
      store,
      silverPath('public.customers'),
      CUSTOMERS_SCHEMA,
      `SELECT (12346 + i)::INTEGER AS id, md5(i::VARCHAR) AS email, (['United Kingdom','France','Germany','EIRE','Spain','Netherlands'])[1 + i % 6] AS country, ` +
        `make_timestamp(${BASE_MS}::BIGINT * 1000) AS created_at, make_timestamp(${BASE_MS}::BIGINT * 1000) AS updated_at, ${META} FROM range(4000) t(i)`,
      false,
    );
    await buildDeltaTable(
      engine,
      store,
      silverPath('public.products'),
      PRODUCTS_SCHEMA,
      `SELECT 'P' || i::VARCHAR AS product_no, 'product ' || i::VARCHAR AS name, CAST(1 + (i % 700) / 100.0 AS DECIMAL(12,2)) AS price, ` +
        `make_timestamp(${BASE_MS}::BIGINT * 1000) AS updated_at, ${META} FROM range(4000) t(i)`,
      false,
    );
    let lsn = 1_000_000_000n;
    let next = ORDERS;
    for (let m = 0; m < MERGES; m++) {
      const commitLsn = ++lsn;
      const now = Date.now();
      const ids = [...randomKeys(next, UPDATES).map((id) => [id, 1 + m] as const)];
      for (let k = 0; k < INSERTS; k++) ids.push([next++, 0] as const);
      const changes = ids.map(([id, version], eventIndex) => ({
        key: [BigInt(id)],
        deleted: false,
        row: orderRow(id, version, now),
        unchanged: [],
        commitLsn,
        eventIndex,
        commitTsMs: now,
      }));
      await mergeSilver(engine, orders, SILVER_SCHEMA, ['id'], { changes }, [], undefined, undefined, { maxRows: 100_000_000 });
      if ((m + 1) % 10 === 0) say(`lake: merge ${m + 1}/${MERGES}`);
    }
  } finally {
    await engine.close();
  }
  return { orders: ORDERS, merges: MERGES, updates: UPDATES, inserts: INSERTS, seconds: round((performance.now() - t0) / 1000, 1) };
}

/** One child run: every report built once by the code under `src`; timings on stdout as JSON. */
async function child(src: string, dir: string): Promise<void> {
  const url = (p: string) => pathToFileURL(join(resolve(src), p)).href;
  const { ParquetEngine } = (await import(url('lake/parquet/parquet-engine.ts'))) as typeof import('../src/lake/parquet/parquet-engine.ts');
  const { LocalStore } = (await import(url('lake/storage/local-store.ts'))) as typeof import('../src/lake/storage/local-store.ts');
  const { GoldRefresher } = (await import(url('reports/gold-refresh.ts'))) as typeof import('../src/reports/gold-refresh.ts');
  const { loadReportFolder } = (await import(url('reports/report-folder.ts'))) as typeof import('../src/reports/report-folder.ts');
  const { describeReport } = (await import(url('reports/gold-build.ts'))) as typeof import('../src/reports/gold-build.ts');
  const { createLogger } = (await import(url('log.ts'))) as typeof import('../src/log.ts');
  const store = new LocalStore(dir);
  const reports = loadReportFolder(REPORT_DIR).filter((r) => !REPORTS.length || REPORTS.includes(r.name));
  const engine = await ParquetEngine.create({ memoryLimit: '2GB', threads: 1 });
  const log = createLogger({ write: () => true } as never, 'silent');
  const refresher = new GoldRefresher(engine, store, log, reports, {});
  const out: Record<string, unknown>[] = [];
  const cpu0 = process.cpuUsage();
  try {
    for (const report of reports) {
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      const built = await refresher.refreshReport(report);
      const t1 = performance.now();
      const c1 = process.cpuUsage(c0);
      await refresher.registerViews(report);
      const t2 = performance.now();
      const { sql } = await describeReport(engine, report);
      const t3 = performance.now();
      await engine.run(`CREATE OR REPLACE TEMP TABLE bench_result AS ${sql}`);
      const t4 = performance.now();
      await engine.run('DROP TABLE bench_result');
      out.push({
        report: report.name,
        rows: built.rows,
        buildMs: Math.round(t1 - t0),
        buildCpuMs: Math.round((c1.user + c1.system) / 1000),
        viewsMs: Math.round(t2 - t1),
        describeMs: Math.round(t3 - t2),
        queryMs: Math.round(t4 - t3),
      });
    }
  } finally {
    await engine.close();
  }
  const cpu = process.cpuUsage(cpu0);
  process.stdout.write(`${JSON.stringify({ reports: out, cpuMs: Math.round((cpu.user + cpu.system) / 1000) })}\n`);
}

async function main() {
  if (process.argv.includes('--child')) return child(arg('src', 'src'), arg('lake', ''));
  const m = machine();
  say(`machine: ${m.nproc} cores, ${m.memoryGiB} GiB, load ${m.loadavgAtStart.join(' ')}`);
  const kept = arg('lake', '');
  const dir = kept || mkdtempSync(join(tmpdir(), 'tide-bench-gold-'));
  // The lake's shape is kept beside it (lake.json), so a run over a kept lake reports what it holds.
  const spec = join(dir, 'lake.json');
  let lake: Record<string, unknown>;
  if (!existsSync(join(dir, 'silver'))) {
    mkdirSync(dir, { recursive: true });
    say(`lake: building in ${dir}`);
    lake = await buildLake(dir);
    writeFileSync(spec, JSON.stringify(lake));
    say(`lake: built in ${String(lake.seconds)} s`);
  } else {
    lake = { reused: dir, ...(existsSync(spec) ? (JSON.parse(readFileSync(spec, 'utf8')) as Record<string, unknown>) : {}) };
  }
  const codes = list(arg('ab', 'new=src')).map((x) => {
    const [label, src] = x.split('=') as [string, string];
    return { label, src };
  });
  const runs: Record<string, unknown>[] = [];
  try {
    for (let r = 0; r < ROUNDS; r++) {
      for (const code of codes) {
        const before = loadavg();
        const child = spawnSync(
          process.execPath,
          ['--import', 'tsx', 'bench/gold-build.ts', '--child', '--src', code.src, '--lake', dir, '--reports', REPORTS.join(',')],
          { encoding: 'utf8', maxBuffer: 1 << 26, stdio: ['ignore', 'pipe', 'inherit'] },
        );
        if (child.status !== 0) throw new Error(`${code.label} run failed (exit ${child.status})`);
        const result = JSON.parse(child.stdout.trim().split('\n').at(-1)!) as { reports: Record<string, number>[]; cpuMs: number };
        const totalMs = result.reports.reduce((s, x) => s + Number(x.buildMs), 0);
        runs.push({
          round: r + 1,
          code: code.label,
          src: code.src,
          loadBefore: before,
          loadAfter: loadavg(),
          totalBuildMs: totalMs,
          ...result,
        });
        say(`round ${r + 1} ${code.label}: ${totalMs} ms over ${result.reports.length} reports, load ${loadavg().join(' ')}`);
        for (const x of result.reports) say(`   ${JSON.stringify(x)}`);
      }
    }
  } finally {
    if (!kept) rmSync(dir, { recursive: true, force: true });
  }
  writeResult(arg('name', 'gold-build'), { machine: m, loadavgAtEnd: loadavg(), provenance: provenance(), lake, runs });
}

await main();

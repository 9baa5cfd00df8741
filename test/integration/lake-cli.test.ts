import { spawn } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

import { runTraffic } from '../../src/app/traffic.ts';
import { DeltaTable } from '../../src/lake/delta/delta-table.ts';
import { decodeDataPath } from '../../src/lake/delta/log-paths.ts';
import { ParquetEngine } from '../../src/lake/parquet/parquet-engine.ts';
import { LocalStore } from '../../src/lake/storage/local-store.ts';
import { log } from '../../src/log.ts';
import { GoldRefresher } from '../../src/reports/gold-refresh.ts';
import { ORDER_REPORTS } from '../support/order-reports.ts';
import { useOrderPipeline } from '../support/order-pipeline.ts';
import { bronzePath, historyPath, silverPath } from '../../src/sink/table-layout.ts';
import { readWithDeltaRs, type DeltaRsView } from '../support/delta-reader.ts';
import { waitFor } from '../support/kafka.ts';
import { describeDiff, diffTables, ORDER_TABLES, postgresRows, ORDER_KEYS } from '../support/lake.ts';

/**
 * `tide lake tables | export | optimize | vacuum`, run as the CLI (a child process), on a lake that a
 * short run of the real pipeline wrote (order app → Postgres → source → Kafka → sink). What the
 * commands print and write is checked against Postgres, delta-rs and DuckDB.
 */

const BIN = resolve('bin/tide.js');

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

function tide(args: string[], cwd: string): Promise<CliResult> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd, env: process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 110_000);
    child.on('error', fail);
    child.on('close', (code) => {
      clearTimeout(timer);
      done({ code, stdout, stderr });
    });
  });
}

/** Run the CLI and expect exit 0 (the message shows its output otherwise). */
async function tideOk(args: string[], cwd: string): Promise<string> {
  const r = await tide(args, cwd);
  expect(r.code, `tide ${args.join(' ')}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`).toBe(0);
  return r.stdout;
}

describe('tide lake commands on a lake written by the real pipeline', () => {
  const fx = useOrderPipeline({ label: 'lakecli', replay: 600, sink: { 'flush.interval.ms': 200 } });
  const { store, lakeDir, workDir } = fx;
  const allTables = [
    ...ORDER_TABLES.map((t) => bronzePath(t).replace('/', '.')),
    ...ORDER_TABLES.map((t) => silverPath(t).replace('/', '.')),
    historyPath('public.orders').replace('/', '.'),
    ...ORDER_REPORTS.map((r) => `gold.${r.name}`),
  ].sort();
  const lake = ['--lake', lakeDir];

  const readAll = async (): Promise<Map<string, DeltaRsView>> => {
    const out = new Map<string, DeltaRsView>();
    for (const name of allTables) out.set(name, await readWithDeltaRs(join(lakeDir, name.replace('.', '/'))));
    return out;
  };

  it('lake optimize of a bronze table while the sink keeps appending to it: both land, bronze keeps every event once', async () => {
    const root = bronzePath('public.order_items');
    const before = (await DeltaTable.open(store, root))!.version;
    // Traffic goes on until the optimize has committed and the sink has appended after it (on a busy machine
    // the CLI alone can take longer than a fixed traffic window), at most two minutes.
    const trafficStop = new AbortController();
    const traffic = runTraffic(fx.prisma, { rate: 40, durationMs: 120_000, concurrency: 3, signal: trafficStop.signal });
    // Start compacting once the sink has appended during the traffic.
    await waitFor(async () => (await DeltaTable.open(store, root))!.version > before, 'the sink to append to bronze.order_items', 30_000);
    const out = await tideOk(['lake', 'optimize', 'bronze.order_items', ...lake], workDir);
    const committed = Number(/version (\d+)/.exec(out)?.[1] ?? NaN);
    await waitFor(
      async () => (await DeltaTable.open(store, root))!.version > committed,
      'the sink to append to bronze.order_items after the optimize',
      60_000,
    ).finally(() => trafficStop.abort());
    expect(out).toMatch(/^bronze\.order_items: \d+ files \(.+\) -> \d+ \(.+\), version \d+\n$/);
    const optimizeVersion = Number(/version (\d+)/.exec(out)![1]);
    const stats = await traffic;
    expect(stats.errors, stats.lastError).toBe(0);
    await fx.settle();

    const view = await readWithDeltaRs(join(lakeDir, root), { history: true });
    const ops = new Map(view.history!.map((h) => [h.version, h]));
    expect(ops.get(optimizeVersion)).toMatchObject({ operation: 'OPTIMIZE' });
    const appendsAfter = view.history!.filter((h) => h.version > optimizeVersion && h.operation === 'WRITE');
    expect(appendsAfter.length, 'the sink appended after the optimize').toBeGreaterThan(0);
    const readVersion = Number(ops.get(optimizeVersion)!.readVersion);
    console.log(
      `optimize read version ${readVersion}, committed ${optimizeVersion}: ${optimizeVersion - readVersion - 1} sink appends landed in between`,
    );
    const p = view.columns.indexOf('_kafka_partition');
    const o = view.columns.indexOf('_kafka_offset');
    const seen = new Set(view.rows.map((r) => `${String(r[p])}:${String(r[o])}`));
    expect(seen.size, 'duplicate Kafka offsets in bronze.order_items').toBe(view.rows.length);
    const items = await postgresRows(fx.db.url, 'public.order_items');
    const silver = await readWithDeltaRs(join(lakeDir, silverPath('public.order_items')));
    expect(silver.row_count).toBe(items.length);

    // From here on the lake holds still: gold is built once, the sink stops.
    const engine = await ParquetEngine.create();
    try {
      const gold = new GoldRefresher(engine, store, log, ORDER_REPORTS);
      const results = await gold.refresh();
      expect(gold.failures).toEqual([]);
      expect(results).toHaveLength(ORDER_REPORTS.length);
    } finally {
      await engine.close();
    }
    await fx.sink!.stop();
    fx.sink = undefined;
  });

  it('lake tables lists every table with its version, files, size, rows, last commit and freshness (--json agrees with delta-rs)', async () => {
    const text = await tideOk(['lake', 'tables', ...lake], workDir);
    const lines = text.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^table\s+version\s+files\s+size\s+rows\s+last commit\s+freshness$/);
    expect(lines.slice(1).map((l) => l.split(/\s+/)[0])).toEqual(allTables);

    const json = JSON.parse(await tideOk(['lake', 'tables', '--json', ...lake], workDir)) as {
      name: string;
      version: number;
      files: number;
      bytes: number;
      rows: number | null;
      lastCommitMs: number | null;
      newestChangeMs: number | null;
      freshnessSeconds: number | null;
    }[];
    expect(json.map((t) => t.name)).toEqual(allTables);
    const started = Date.now() - 600_000;
    for (const t of json) {
      const view = await readWithDeltaRs(join(lakeDir, t.name.replace('.', '/')));
      expect({ version: t.version, files: t.files, rows: t.rows }, t.name).toEqual({
        version: view.version,
        files: view.files.length,
        rows: view.row_count,
      });
      expect(t.bytes, t.name).toBeGreaterThan(0);
      expect(t.lastCommitMs, t.name).toBeGreaterThan(started);
      // Freshness: the newest source commit applied, from the stats (max rounded up to the millisecond).
      const c = view.columns.indexOf('_commit_ts');
      if (c < 0) {
        expect(t.newestChangeMs, t.name).toBeNull();
        continue;
      }
      const newest = view.rows
        .map((r) => String(r[c]))
        .sort()
        .at(-1)!;
      const micros = BigInt(Date.parse(newest.slice(0, 23) + 'Z')) * 1000n + BigInt(newest.slice(23, 26));
      expect(t.newestChangeMs, t.name).toBe(Number((micros + 999n) / 1000n));
      expect(t.freshnessSeconds, t.name).toBeGreaterThanOrEqual(0);
      expect(t.freshnessSeconds, t.name).toBeLessThan(600);
    }
    const silverOrders = json.find((t) => t.name === 'silver.orders')!;
    const [{ n }] = (await fx.sql.query<{ n: string }>('SELECT count(*) AS n FROM orders')).rows as [{ n: string }];
    expect(silverOrders.rows).toBe(Number(n));
  });

  it('lake export silver.orders --format csv writes every row; the values equal Postgres', async () => {
    const out = join(workDir, 'orders.csv');
    const printed = await tideOk(['lake', 'export', 'silver.orders', '--format', 'csv', '--out', out, ...lake], workDir);
    const version = (await DeltaTable.open(store, silverPath('public.orders')))!.version;
    const expected = await postgresRows(fx.db.url, 'public.orders');
    expect(printed).toBe(`wrote ${expected.length} rows of silver.orders (version ${version}) to ${out}\n`);
    const engine = await ParquetEngine.create();
    try {
      const rows = await engine.query(`SELECT * FROM read_csv('${out}', header = true, all_varchar = true)`);
      expect(rows).toHaveLength(expected.length);
      const diff = diffTables(expected, rows, ORDER_KEYS['public.orders']!, Object.keys(expected[0]!));
      expect(diff.expectedChecksum, describeDiff('orders.csv', diff)).toBe(diff.actualChecksum);
    } finally {
      await engine.close();
    }
  });

  it('lake export --format parquet writes a file DuckDB reads with the lake types; values equal Postgres; default name <table>.<format>', async () => {
    const printed = await tideOk(['lake', 'export', 'silver.order_items', '--format', 'parquet', ...lake], workDir);
    const out = join(workDir, 'silver.order_items.parquet');
    expect(printed).toContain(`to ${out}\n`);
    const expected = await postgresRows(fx.db.url, 'public.order_items');
    const engine = await ParquetEngine.create();
    try {
      const types = new Map(
        (await engine.query(`DESCRIBE SELECT * FROM read_parquet('${out}')`)).map((r) => [String(r.column_name), String(r.column_type)]),
      );
      expect(types.get('unit_price')).toBe('DECIMAL(12,2)');
      expect(types.get('quantity')).toBe('INTEGER');
      expect(types.get('_commit_ts')).toBe('TIMESTAMP WITH TIME ZONE');
      const rows = await engine.query(`SELECT COLUMNS(*)::VARCHAR FROM read_parquet('${out}')`);
      const diff = diffTables(expected, rows, ORDER_KEYS['public.order_items']!, Object.keys(expected[0]!));
      expect(diff.expectedChecksum, describeDiff('silver.order_items.parquet', diff)).toBe(diff.actualChecksum);
      // A gold report too: any layer exports.
      const goldOut = join(workDir, 'billing.csv');
      await tideOk(['lake', 'export', 'gold.daily_billing', '--out', goldOut, ...lake], workDir);
      const [{ n }] = (await engine.query(`SELECT count(*) AS n FROM read_csv('${goldOut}', header = true)`)) as [{ n: bigint }];
      expect(Number(n)).toBe((await readWithDeltaRs(join(lakeDir, 'gold/daily_billing'))).row_count);
    } finally {
      await engine.close();
    }
  });

  let beforeMaintenance: Map<string, DeltaRsView>;

  it('lake optimize compacts every table that has several small files in a partition; delta-rs reads the same rows before and after', async () => {
    beforeMaintenance = await readAll();
    // Which tables have something to compact: a partition with at least two files (all are far below 64 MiB).
    const expectCompacted = new Set<string>();
    for (const name of allTables) {
      const table = (await DeltaTable.open(store, name.replace('.', '/')))!;
      const perPartition = new Map<string, number>();
      for (const f of table.files()) {
        const key = JSON.stringify(f.partitionValues);
        perPartition.set(key, (perPartition.get(key) ?? 0) + 1);
      }
      if ([...perPartition.values()].some((n) => n >= 2)) expectCompacted.add(name);
    }
    expect(expectCompacted.size).toBeGreaterThan(0);
    const out = await tideOk(['lake', 'optimize', ...lake], workDir);
    console.log(out.trimEnd());
    const lines = out.trimEnd().split('\n');
    expect(lines.map((l) => l.split(':')[0])).toEqual(allTables);
    for (const line of lines) {
      const name = line.split(':')[0]!;
      const m = /: (\d+) files \(.+\) -> (\d+) \(.+\), version (\d+)$/.exec(line);
      expect(Boolean(m), `${line} (compaction expected: ${expectCompacted.has(name)})`).toBe(expectCompacted.has(name));
      if (!m) {
        expect(line).toBe(`${name}: nothing to compact`);
        continue;
      }
      expect(Number(m[2])).toBeLessThan(Number(m[1]));
      const table = (await DeltaTable.open(store, name.replace('.', '/')))!;
      expect(table.version, name).toBe(Number(m[3]));
      expect(table.version, name).toBe(beforeMaintenance.get(name)!.version + 1);
      expect(table.files().length, name).toBe(beforeMaintenance.get(name)!.files.length - Number(m[1]) + Number(m[2]));
    }
    const after = await readAll();
    for (const name of allTables) expect(after.get(name)!.rows, name).toEqual(beforeMaintenance.get(name)!.rows);
  });

  it('lake vacuum --retain 0 --dry-run lists the unreferenced files and deletes nothing; the real run deletes exactly those', async () => {
    const parse = (out: string) => {
      const lists = new Map<string, { count: number; paths: string[] }>();
      let current: string | undefined;
      for (const line of out.trimEnd().split('\n')) {
        const head = /^(\S+): (?:would delete|deleted) (\d+) files \(.+\)$/.exec(line);
        if (head) {
          current = head[1]!;
          lists.set(current, { count: Number(head[2]), paths: [] });
        } else if (current && line.startsWith('  ')) lists.get(current)!.paths.push(line.trim());
        else throw new Error(`unexpected vacuum output line: ${line}`);
      }
      return lists;
    };
    const dry = parse(await tideOk(['lake', 'vacuum', '--retain', '0', '--dry-run', ...lake], workDir));
    expect([...dry.keys()]).toEqual(allTables);
    let total = 0;
    for (const [name, { count, paths }] of dry) {
      expect(paths, name).toHaveLength(count);
      total += count;
      const table = (await DeltaTable.open(store, name.replace('.', '/')))!;
      const active = new Set(table.files().map((f) => decodeDataPath(f.path)));
      for (const p of paths) {
        expect(active.has(p), `${name}: ${p} is an active file`).toBe(false);
        expect(existsSync(join(lakeDir, name.replace('.', '/'), p)), `${name}/${p} still exists after --dry-run`).toBe(true);
      }
    }
    expect(total).toBeGreaterThan(0);

    // Under an hour needs --force (nothing writes to this lake now); without it nothing is deleted.
    const refused = await tide(['lake', 'vacuum', '--retain', '0', ...lake], workDir);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(
      /^tide: --retain: 0 h is under 1 h: it can delete files a running sink has written but not yet committed/,
    );
    for (const name of allTables)
      for (const p of dry.get(name)!.paths) expect(existsSync(join(lakeDir, name.replace('.', '/'), p)), `${name}/${p}`).toBe(true);
    const real = parse(await tideOk(['lake', 'vacuum', '--retain', '0', '--force', ...lake], workDir));
    for (const name of allTables) {
      expect(real.get(name)!.count, name).toBe(dry.get(name)!.count);
      for (const p of dry.get(name)!.paths) expect(existsSync(join(lakeDir, name.replace('.', '/'), p)), `${name}/${p}`).toBe(false);
    }
    const after = await readAll();
    for (const name of allTables) expect(after.get(name)!.rows, name).toEqual(beforeMaintenance.get(name)!.rows);
    const expected = await postgresRows(fx.db.url, 'public.orders');
    const view = after.get('silver.orders')!;
    const actual = view.rows.map((r) => Object.fromEntries(view.columns.map((c, i) => [c, r[i]])));
    const diff = diffTables(expected, actual, ['id'], Object.keys(expected[0]!));
    expect(diff.expectedChecksum, describeDiff('silver.orders', diff)).toBe(diff.actualChecksum);
    // Nothing left to delete.
    const again = parse(await tideOk(['lake', 'vacuum', '--retain', '0', '--dry-run', ...lake], workDir));
    for (const [name, { count }] of again) expect(count, name).toBe(0);
  });

  it('clear errors: an unknown table, a name without a layer, a bad --format, a negative --retain, a bad --min-file-mb', async () => {
    const cases: [string[], string][] = [
      [
        ['lake', 'export', 'silver.nope', ...lake],
        `tide: no Delta table silver.nope in the lake ${store.uri} (looked for ${store.uri}/silver/nope/_delta_log/). Tables in this lake: ${allTables.join(', ')}\n`,
      ],
      [
        ['lake', 'vacuum', 'silver.nope', '--retain', '1', ...lake],
        `tide: no Delta table silver.nope in the lake ${store.uri} (looked for ${store.uri}/silver/nope/_delta_log/). Tables in this lake: ${allTables.join(', ')}\n`,
      ],
      [
        ['lake', 'export', 'orders', ...lake],
        'tide: <table>: "orders" is not a lake table name: use <layer>.<table>, e.g. silver.orders or gold.daily_billing (`tide lake tables` lists them)\n',
      ],
      [['lake', 'export', 'silver.orders', '--format', 'xlsx', ...lake], 'tide: --format: must be csv or parquet, got "xlsx"\n'],
      [['lake', 'vacuum', '--retain', '-1', ...lake], 'tide: --retain: must be a number of hours >= 0, got "-1"\n'],
      [['lake', 'vacuum', '--retain', 'a week', ...lake], 'tide: --retain: must be a number of hours >= 0, got "a week"\n'],
      [['lake', 'optimize', '--min-file-mb', 'big', ...lake], 'tide: --min-file-mb: must be a size in MiB > 0, got "big"\n'],
    ];
    for (const [args, message] of cases) {
      const r = await tide(args, workDir);
      expect({ code: r.code, stderr: r.stderr, stdout: r.stdout }, args.join(' ')).toEqual({ code: 1, stderr: message, stdout: '' });
    }
    // A --lake path that does not exist is a typo, not an empty lake (issue 10): it says so and fails.
    const missing = join(workDir, 'no-such-lake');
    expect(await tide(['lake', 'tables', '--lake', missing], workDir)).toEqual({
      code: 1,
      stdout: '',
      stderr: `tide: --lake: the lake directory ${missing} does not exist: check the path, or start the sink to create it\n`,
    });
    // An existing, empty lake is not an error: it says so.
    const empty = join(workDir, 'empty-lake');
    mkdirSync(empty);
    expect(await tideOk(['lake', 'tables', '--lake', empty], workDir)).toBe(
      `no tables yet in ${new LocalStore(empty).uri} (start the sink: tide sink start connectors/orders-lake.json)\n`,
    );
  });
});

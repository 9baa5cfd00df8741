import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { runTraffic } from '../../src/app/traffic.ts';
import { DeltaProtocolError } from '../../src/lake/delta/delta-errors.ts';
import { DeltaTable } from '../../src/lake/delta/delta-table.ts';
import { ParquetEngine } from '../../src/lake/parquet/parquet-engine.ts';
import { log } from '../../src/log.ts';
import { GoldRefresher } from '../../src/reports/gold-refresh.ts';
import { bronzePath, historyPath, silverPath } from '../../src/sink/table-layout.ts';
import { useOrderPipeline } from '../support/order-pipeline.ts';
import { expectGoldEqualsPostgres, expectHistoryChained, expectSilverEqualsPostgres, rowObjects } from '../support/lake-checks.ts';
import { deltaReaderAvailable, readWithDeltaRs } from '../support/delta-reader.ts';
import { ORDER_TABLES } from '../support/lake.ts';
import { ORDER_REPORTS } from '../support/order-reports.ts';
import { SparkDelta, sparkMissing, type SparkView } from '../support/spark.ts';

/**
 * Apache Spark (pyspark 4.0 with Delta Lake 4.0, the engine Databricks runs) as a second independent
 * reader of the lake that the real pipeline writes (order app → Postgres → source → Kafka → sink):
 * Spark reads bronze, silver, history and gold after checkpoints, `tide lake optimize` and
 * `tide lake vacuum`, and sees the same rows as delta-rs and Postgres. Spark also writes: it appends
 * to a bronze table and checkpoints it, and Tide goes on writing that table; when Spark upgrades a
 * table's protocol past what Tide writes, the sink refuses it with a DeltaProtocolError naming it.
 */

const skip = sparkMissing() ?? (deltaReaderAvailable() ? undefined : 'the delta-rs venv is missing: run `bash scripts/setup-python.sh`');
if (skip) console.warn(`spark-reader: skipped: ${skip}`);

/**
 * Rows in one canonical order: each reader sorts by its own decoded values (delta-rs decimals as numbers,
 * Spark's as text, so "9.94" and "10.65" come in different orders), so compare the encoded rows re-sorted.
 */
const canonicalRows = (rows: unknown[][]): string[] => rows.map((r) => JSON.stringify(r)).sort();

describe.skipIf(skip)('Spark reads (and writes) the Delta tables Tide writes', () => {
  let spark: SparkDelta | undefined;
  let sparkStarting: Promise<SparkDelta> | undefined;
  // Spark starts (tens of seconds on two cores) while the pipeline fills the lake.
  beforeAll(() => {
    sparkStarting = SparkDelta.start();
    sparkStarting.catch(() => undefined);
  });
  // A checkpoint every 3 commits, so every table is read by Spark through a Tide checkpoint. Two bursts of
  // traffic, each committed before the next: bronze tables get several files to compact.
  const fx = useOrderPipeline({
    label: 'sparkreader',
    replay: 500,
    sink: { 'flush.interval.ms': 200, 'delta.checkpoint.interval': 3 },
    bursts: 2,
    timeoutMs: 400_000,
  });
  const { store, lakeDir } = fx;
  const lake = ['--lake', lakeDir];
  const tablePath = (name: string) => join(lakeDir, name);
  beforeAll(async () => {
    spark = await sparkStarting;
  }, 300_000);
  afterAll(async () => {
    await (await sparkStarting?.catch(() => undefined))?.stop();
  });

  it('after checkpoints, lake optimize and lake vacuum, Spark reads bronze, silver, history and gold: the same rows as delta-rs and Postgres', async () => {
    const engine = await ParquetEngine.create();
    try {
      const gold = await new GoldRefresher(engine, store, log, ORDER_REPORTS).refresh();
      expect(gold.map((r) => r.report).sort()).toEqual(ORDER_REPORTS.map((r) => r.name).sort());
    } finally {
      await engine.close();
    }
    // A Tide checkpoint in every bronze and silver table (besides those every third commit wrote), then
    // optimize commits after it: Spark and delta-rs start from Tide's checkpoint and replay Tide's JSON commits.
    const checkpointed = [...ORDER_TABLES.map(bronzePath), ...ORDER_TABLES.map(silverPath), historyPath('public.orders')];
    for (const name of checkpointed) await (await DeltaTable.open(store, name))!.checkpoint();
    await fx.tideOk(['lake', 'optimize', ...lake]);
    await fx.tideOk(['lake', 'vacuum', '--retain', '0', '--force', ...lake]);

    const tables = [
      ...ORDER_TABLES.map(bronzePath),
      ...ORDER_TABLES.map(silverPath),
      historyPath('public.orders'),
      ...ORDER_REPORTS.map((r) => `gold/${r.name}`),
    ];
    const views = new Map<string, SparkView>();
    for (const name of tables) {
      const [view, rs] = [await spark!.read(tablePath(name)), await readWithDeltaRs(tablePath(name))];
      views.set(name, view);
      expect(view.version, name).toBe(rs.version);
      expect(view.columns, name).toEqual(rs.columns);
      expect(view.partition_columns, name).toEqual(rs.partition_columns);
      expect(view.row_count, `${name} is empty`).toBeGreaterThan(0);
      expect(canonicalRows(view.rows), `${name}: Spark and delta-rs read different rows`).toEqual(canonicalRows(rs.rows));
    }
    for (const name of checkpointed) {
      const checkpoints = readdirSync(join(tablePath(name), '_delta_log')).filter((f) => f.endsWith('.checkpoint.parquet'));
      expect(checkpoints.length, `${name} has a checkpoint`).toBeGreaterThan(0);
    }
    const optimized = await spark!.history(tablePath(bronzePath('public.orders')));
    expect(optimized.map((h) => h.operation)).toContain('OPTIMIZE');

    // Silver, history and gold as Spark read them above.
    const sparkRead = (root: string) => Promise.resolve(views.get(root)!);
    await expectSilverEqualsPostgres(fx.db.url, sparkRead, 'Spark');
    await expectHistoryChained(fx.db.url, sparkRead);
    await expectGoldEqualsPostgres(fx.db.url, sparkRead, 'Spark');
  }, 300_000);

  it("Spark appends to a bronze table and checkpoints it; Tide's sink goes on appending, optimize and vacuum keep Spark's rows, and all readers agree", async () => {
    const name = bronzePath('public.orders');
    const path = tablePath(name);
    const before = await spark!.read(path);
    // A backfilled row as another team's Spark job would write it: a copy of the newest event, marked
    // with Kafka partition -1 (no Kafka message has it), in the same _commit_date partition as Tide's files.
    const newest = rowObjects(before).sort((a, b) => Number(b._kafka_offset) - Number(a._kafka_offset))[0]!;
    const backfill = [
      { ...newest, _kafka_partition: -1, _kafka_offset: 0, _op: 'r' },
      { ...newest, _kafka_partition: -1, _kafka_offset: 1, _op: 'r' },
    ];
    const sparkVersion = await spark!.append(path, backfill);
    expect(sparkVersion).toBe(before.version + 1);
    expect(await spark!.checkpoint(path)).toBe(sparkVersion);
    expect(existsSync(join(path, '_delta_log', `${String(sparkVersion).padStart(20, '0')}.checkpoint.parquet`))).toBe(true);

    // Tide reads Spark's commit and Spark's checkpoint, and the sink appends after them.
    const afterSpark = await DeltaTable.open(store, name);
    expect(afterSpark?.version).toBe(sparkVersion);
    const stats = await runTraffic(fx.prisma, { rate: 40, durationMs: 3000, concurrency: 3 });
    expect(stats.errors, stats.lastError).toBe(0);
    await fx.settle();
    const table = (await DeltaTable.open(store, name))!;
    expect(table.version, 'the sink committed after Spark').toBeGreaterThan(sparkVersion);

    await fx.tideOk(['lake', 'optimize', 'bronze.orders', ...lake]);
    await fx.tideOk(['lake', 'vacuum', 'bronze.orders', '--retain', '0', '--force', ...lake]);

    const [view, rs] = [await spark!.read(path), await readWithDeltaRs(path)];
    expect(view.version).toBe(rs.version);
    expect(canonicalRows(view.rows), 'Spark and delta-rs read different rows').toEqual(canonicalRows(rs.rows));
    const rows = rowObjects(view);
    const fromSpark = rows.filter((r) => r._kafka_partition === -1);
    expect(fromSpark.map((r) => r._kafka_offset).sort()).toEqual([0, 1]);
    for (const r of fromSpark)
      expect({ ...r, _kafka_partition: 0, _kafka_offset: 0 }).toEqual({ ...backfill[0], _kafka_partition: 0, _kafka_offset: 0 });
    const offsets = rows.filter((r) => r._kafka_partition !== -1).map((r) => `${String(r._kafka_partition)}:${String(r._kafka_offset)}`);
    expect(new Set(offsets).size, 'every Kafka offset once in bronze').toBe(offsets.length);
    expect(offsets.length).toBeGreaterThan(before.row_count);

    const history = await spark!.history(path);
    const sparkCommit = history.find((h) => h.version === sparkVersion)!;
    expect(sparkCommit).toMatchObject({ operation: 'WRITE', operationParameters: { mode: 'Append' } });
    expect(sparkCommit.engineInfo).toMatch(/^Apache-Spark\/4\.0\.\d+ Delta-Lake\/4\.0\.\d+$/);
    expect(history.filter((h) => h.version > sparkVersion).map((h) => h.operation)).toContain('OPTIMIZE');
  }, 300_000);

  it('Spark updates a silver table and compacts a bronze table (as scheduled Databricks jobs would); the sink goes on writing both, and silver equals Postgres', async () => {
    const customers = tablePath(silverPath('public.customers'));
    const orders = tablePath(bronzePath('public.orders'));
    const { rows } = await fx.sql.query<{ id: number }>('SELECT min(id) AS id FROM customers');
    const id = rows[0]!.id;
    const before = (await spark!.read(customers)).version;
    await spark!.sql(`UPDATE delta.\`${customers}\` SET country = 'Sparkland' WHERE id = ${id}`);
    // More changes, so that bronze.orders has several files (one per sink commit) for Spark to compact.
    const stats = await runTraffic(fx.prisma, { rate: 40, durationMs: 3000, concurrency: 3 });
    expect(stats.errors, stats.lastError).toBe(0);
    await fx.settle();
    expect((await DeltaTable.open(store, bronzePath('public.orders')))!.files().length).toBeGreaterThan(1);
    await spark!.sql(`OPTIMIZE delta.\`${orders}\``);
    const compacted = (await spark!.history(orders))[0]!;
    expect(compacted).toMatchObject({ operation: 'OPTIMIZE' });
    // The change in Postgres is newer than Spark's: the sink merges it over Spark's rewritten file.
    await fx.sql.query(`UPDATE customers SET country = 'Iceland' WHERE id = $1`, [id]);
    const traffic = await runTraffic(fx.prisma, { rate: 40, durationMs: 3000, concurrency: 3 });
    expect(traffic.errors, traffic.lastError).toBe(0);
    await fx.settle();
    const history = await spark!.history(customers);
    expect(history.find((h) => h.version === before + 1)).toMatchObject({ operation: 'UPDATE' });
    expect(history.some((h) => h.version > before + 1 && h.engineInfo?.startsWith('Tide/'))).toBe(true);
    const bronzeHistory = await spark!.history(orders);
    expect(bronzeHistory.some((h) => h.version > compacted.version && h.operation === 'WRITE' && h.engineInfo?.startsWith('Tide/'))).toBe(
      true,
    );
    await fx.tideOk(['lake', 'vacuum', 'bronze.orders', '--retain', '0', '--force', ...lake]);
    const [bronze, bronzeRs] = [await spark!.read(orders), await readWithDeltaRs(orders)];
    expect(canonicalRows(bronze.rows), 'bronze.orders: Spark and delta-rs read different rows').toEqual(canonicalRows(bronzeRs.rows));
    const offsets = rowObjects(bronze)
      .filter((r) => r._kafka_partition !== -1)
      .map((r) => `${String(r._kafka_partition)}:${String(r._kafka_offset)}`);
    expect(new Set(offsets).size, 'every Kafka offset once in bronze').toBe(offsets.length);

    await expectSilverEqualsPostgres(
      fx.db.url,
      (root) => spark!.read(tablePath(root)),
      'Spark',
      async (table, view) => {
        const rs = await readWithDeltaRs(tablePath(silverPath(table)));
        expect(canonicalRows(view.rows), `${table}: Spark and delta-rs read different rows`).toEqual(canonicalRows(rs.rows));
      },
    );
  }, 300_000);

  it('Spark adds a column to bronze.products (ALTER TABLE ADD COLUMNS); Tide keeps it and the sink goes on appending', async () => {
    const path = tablePath(bronzePath('public.products'));
    const before = await spark!.read(path);
    await spark!.sql(`ALTER TABLE delta.\`${path}\` ADD COLUMNS (backfill_note STRING)`);
    await fx.sql.query(`UPDATE products SET price = price + 1 WHERE product_no = (SELECT min(product_no) FROM products)`);
    await fx.settle();
    const table = (await DeltaTable.open(store, bronzePath('public.products')))!;
    expect(table.schema.columns.map((c) => c.name)).toContain('backfill_note');
    expect(table.version).toBeGreaterThan(before.version + 1);
    const [view, rs] = [await spark!.read(path), await readWithDeltaRs(path)];
    expect(canonicalRows(view.rows)).toEqual(canonicalRows(rs.rows));
    expect(view.row_count).toBe(before.row_count + 1);
    expect(view.columns).toContain('backfill_note');
  }, 300_000);

  it("when Spark upgrades a table's protocol past what Tide writes (change data feed), the sink refuses it with a DeltaProtocolError naming the table", async () => {
    const name = bronzePath('public.customers');
    await spark!.sql(`ALTER TABLE delta.\`${tablePath(name)}\` SET TBLPROPERTIES ('delta.enableChangeDataFeed' = 'true')`);
    const view = await spark!.read(tablePath(name));
    expect(view.protocol.min_writer_version).toBeGreaterThanOrEqual(4);
    await fx.sql.query(`UPDATE customers SET country = 'Iceland' WHERE id = (SELECT min(id) FROM customers)`);
    const outcome = await Promise.race([
      fx.sink!.done.then(
        () => new Error('the sink stopped without an error'),
        (e: unknown) => e,
      ),
      new Promise((r) => setTimeout(() => r(new Error('the sink went on for 60 s')), 60_000)),
    ]);
    expect(outcome).toBeInstanceOf(DeltaProtocolError);
    fx.sink = undefined; // its error is this test's to check, not afterAll's
    const err = outcome as DeltaProtocolError;
    expect(err.table).toBe(`file://${tablePath(name)}`);
    expect(err.message.replace(lakeDir, '<lake>')).toMatch(
      /^Delta table file:\/\/<lake>\/bronze\/customers: refusing to write: Tide does not implement the writer features changeDataFeed \(it implements appendOnly, invariants, deletionVectors\)\. Write to a table Tide created, or let Tide create a new one \(table protocol: reader version 1, writer version 7, writer features \[.*changeDataFeed.*\]\)$/,
    );
  }, 300_000);
});

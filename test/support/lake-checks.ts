import pg from 'pg';
import { expect } from 'vitest';
import { DeltaTable } from '../../src/lake/delta/delta-table.ts';
import { optimizeTable } from '../../src/lake/maintenance/optimize.ts';
import { vacuumTable } from '../../src/lake/maintenance/vacuum.ts';
import { ParquetEngine } from '../../src/lake/parquet/parquet-engine.ts';
import type { ObjectStore } from '../../src/lake/storage/object-store.ts';
import { hashValue } from '../../src/sink/masking.ts';
import { bronzePath, historyPath, silverPath } from '../../src/sink/table-layout.ts';
import type { DeltaRsReadOptions, DeltaRsView } from './delta-reader.ts';
import { checkHistory, describeDiff, diffTables, MASK_SALT, ORDER_KEYS, ORDER_TABLES, postgresRows } from './lake.ts';
import { ORDER_REPORTS } from './order-reports.ts';

/**
 * The checks every end-to-end test of the order app's lake makes, wherever the lake lives (a directory,
 * azurite, S3): silver equals Postgres, bronze holds each event once, history chains every version, gold
 * equals the same reports run on Postgres. `read` is delta-rs reading a table root of that lake.
 */
export type ReadTable = (root: string, options?: DeltaRsReadOptions) => Promise<DeltaRsView>;

/** What the row checks need of a reader's view of a table (delta-rs's or Spark's). */
export interface TableRows {
  columns: string[];
  rows: unknown[][];
}

export const rowObjects = (view: TableRows): Record<string, unknown>[] =>
  view.rows.map((r) => Object.fromEntries(view.columns.map((c, i) => [c, r[i]])));

/** Every silver table equals its Postgres table row for row (the masked email as its salted hash); `each` checks more per table. */
export async function expectSilverEqualsPostgres<V extends TableRows>(
  dbUrl: string,
  read: (root: string) => Promise<V>,
  label: string,
  each?: (table: string, view: V) => Promise<void> | void,
): Promise<void> {
  for (const table of ORDER_TABLES) {
    const expected = await postgresRows(dbUrl, table);
    if (table === 'public.customers') for (const r of expected) r.email = r.email === null ? null : hashValue(MASK_SALT, r.email);
    const view = await read(silverPath(table));
    const columns = Object.keys(expected[0] ?? {});
    expect(columns.length).toBeGreaterThan(2);
    const diff = diffTables(expected, rowObjects(view), ORDER_KEYS[table]!, columns);
    console.log(`${label} ${describeDiff(table, diff)}: ${expected.length} rows`);
    expect(diff.expectedChecksum, `${label}: ${describeDiff(table, diff)}`).toBe(diff.actualChecksum);
    expect(expected.length).toBeGreaterThan(0);
    await each?.(table, view);
  }
}

/** Every bronze table holds each Kafka (partition, offset) once, is partitioned by commit date, and is not empty. */
export async function expectBronzeOnce(read: ReadTable): Promise<void> {
  for (const table of ORDER_TABLES) {
    const view = await read(bronzePath(table));
    const p = view.columns.indexOf('_kafka_partition');
    const o = view.columns.indexOf('_kafka_offset');
    const seen = new Set(view.rows.map((r) => `${String(r[p])}:${String(r[o])}`));
    expect(seen.size, `${table}: duplicate offsets in bronze`).toBe(view.rows.length);
    expect(view.partition_columns).toEqual(['_commit_date']);
    expect(view.rows.length).toBeGreaterThan(0);
  }
}

/** silver.orders_history chains every version of bronze, its current versions equal to Postgres. */
export async function expectHistoryChained(dbUrl: string, read: (root: string) => Promise<TableRows>): Promise<void> {
  const history = await read(historyPath('public.orders'));
  const bronze = await read(bronzePath('public.orders'));
  const problems = checkHistory(history, bronze, await postgresRows(dbUrl, 'public.orders'), 'id');
  expect(problems.slice(0, 20)).toEqual([]);
}

/** Every gold table (already built) equals the same report run on Postgres. */
export async function expectGoldEqualsPostgres(dbUrl: string, read: (root: string) => Promise<TableRows>, label: string): Promise<void> {
  // Dates and timestamps as Postgres prints them (microseconds), not JS Dates (milliseconds, local days).
  const raw = new pg.Client({
    connectionString: dbUrl,
    types: {
      getTypeParser: ((oid: number, format: 'text') =>
        oid === 1184 || oid === 1114 || oid === 1082
          ? (v: string) => v
          : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
    },
  });
  await raw.connect();
  try {
    await raw.query(`SET timezone = 'UTC'`);
    const pgQuery = async (s: string) => (await raw.query(s)).rows as Record<string, unknown>[];
    for (const report of ORDER_REPORTS) {
      const expected = await pgQuery(await report.postgresSql(pgQuery));
      const view = await read(`gold/${report.name}`);
      const diff = diffTables(expected, rowObjects(view), report.key, view.columns);
      console.log(`${label} gold.${report.name}: ${describeDiff(report.name, diff)}, ${expected.length} rows`);
      expect(diff.expectedChecksum, `${label}: gold.${describeDiff(report.name, diff)}`).toBe(diff.actualChecksum);
      expect(expected.length, `gold.${report.name} is empty`).toBeGreaterThan(0);
    }
  } finally {
    await raw.end();
  }
}

/**
 * Optimize bronze.orders, then vacuum it: within the retention nothing goes and time travel still works;
 * past it exactly the files the optimize replaced are deleted (bronze is append-only and the sink never
 * crashed). delta-rs reads the same rows at every step.
 */
export async function expectOptimizeThenVacuum(store: ObjectStore, read: ReadTable): Promise<void> {
  const root = bronzePath('public.orders');
  const before = await read(root);
  const engine = await ParquetEngine.create();
  let removed: number;
  try {
    const result = await optimizeTable(engine, (await DeltaTable.open(store, root))!);
    expect(result.filesRemoved).toBeGreaterThan(1);
    expect(result.version).toBe(before.version + 1);
    removed = result.filesRemoved;
  } finally {
    await engine.close();
  }
  const compacted = await read(root, { history: true });
  expect(compacted.history![0]).toMatchObject({ version: before.version + 1, operation: 'OPTIMIZE' });
  expect(compacted.rows).toEqual(before.rows);
  expect(compacted.files.length).toBeLessThan(before.files.length);
  const table = (await DeltaTable.open(store, root))!;
  expect((await vacuumTable(table, { retainHours: 1 })).deleted).toEqual([]);
  expect((await read(root, { version: before.version })).rows).toEqual(before.rows);
  const vacuumed = await vacuumTable(table, { retainHours: 0, now: Date.now() + 1000 });
  expect(vacuumed.deleted).toHaveLength(removed);
  for (const path of vacuumed.deleted) expect(await store.stat(`${root}/${path}`), path).toBeUndefined();
  expect((await read(root)).rows).toEqual(before.rows);
}

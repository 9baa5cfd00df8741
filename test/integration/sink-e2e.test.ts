import { mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPrisma, type PrismaClient } from '../../src/app/db.ts';
import { replay } from '../../src/app/replay.ts';
import { runTraffic } from '../../src/app/traffic.ts';
import { DeltaTable } from '../../src/lake/delta/delta-table.ts';
import { ParquetEngine } from '../../src/lake/parquet/parquet-engine.ts';
import { LocalStore } from '../../src/lake/storage/local-store.ts';
import { GoldRefresher } from '../../src/reports/gold-refresh.ts';
import { ORDER_REPORTS } from '../support/order-reports.ts';
import { bronzePath, historyPath, silverPath } from '../../src/sink/table-layout.ts';
import { log } from '../../src/log.ts';
import { createTestDatabase } from '../support/db.ts';
import { readWithDeltaRs } from '../support/delta-reader.ts';
import {
  expectBronzeOnce,
  expectGoldEqualsPostgres,
  expectHistoryChained,
  expectSilverEqualsPostgres,
  type ReadTable,
} from '../support/lake-checks.ts';
import { waitFor } from '../support/kafka.ts';
import { postgresRows, sinkFile, startSink, waitForLake, type RunningSink } from '../support/lake.ts';
import { sourceConfig, startSource, waitForSourceCaughtUp, type RunningSource } from '../support/source.ts';

/**
 * The whole pipeline on real parts: the order app (Prisma) → Postgres → Tide source → Kafka + Apicurio →
 * Tide sink → Delta tables, read back by delta-rs (an independent reader) and compared with Postgres.
 */

describe('sink end to end: Postgres = silver, gold = the same reports on Postgres', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let prisma: PrismaClient;
  let sql: pg.Client;
  let source: RunningSource;
  let sink: RunningSink;
  let lakeDir: string;
  let store: LocalStore;
  let src: ReturnType<typeof sourceConfig>;
  let prefix: string;
  const sinkName = `e2e-${Date.now().toString(36)}`;

  /** Wait until every change committed so far is in Kafka and in the lake. */
  async function settle(): Promise<void> {
    await waitForSourceCaughtUp(sql, src.config['slot.name']);
    await waitForLake(store, sinkName, prefix);
  }

  beforeAll(async () => {
    db = await createTestDatabase('sink_e2e');
    prisma = createPrisma(db.url, 6);
    sql = new pg.Client({ connectionString: db.url });
    await sql.connect();
    await replay(prisma, { limit: 1500, concurrency: 4 });
    src = sourceConfig(db.url, 'sinke2e', { 'table.include.list': 'public\\.(customers|products|orders|order_items)' });
    prefix = src.config['topic.prefix'];
    source = await startSource(src);
    lakeDir = mkdtempSync(join(tmpdir(), 'tide-lake-'));
    store = new LocalStore(lakeDir);
    sink = startSink(sinkFile(sinkName, prefix, lakeDir, { 'delta.checkpoint.interval': 5 }), store);
    const stats = await runTraffic(prisma, { rate: 60, durationMs: 6000, concurrency: 3 });
    expect(stats.errors, stats.lastError).toBe(0);
    await settle();
  }, 300_000);

  afterAll(async () => {
    await sink?.stop();
    await source?.stop();
    await prisma?.$disconnect();
    await sql?.end();
    await db?.drop();
  });

  const read: ReadTable = (root, options) => readWithDeltaRs(join(lakeDir, root), options);

  it('every silver table equals its Postgres table row for row (read by delta-rs, checksums over whole tables)', async () => {
    await expectSilverEqualsPostgres(db.url, read, 'local');
  });

  it('silver.orders_history keeps every version (SCD type 2), chained in commit order; current versions equal Postgres', async () => {
    await expectHistoryChained(db.url, read);
    const history = await read(historyPath('public.orders'));
    expect(history.rows.length).toBeGreaterThan((await postgresRows(db.url, 'public.orders')).length);
  });

  it('bronze holds every change event exactly once (no duplicate or missing Kafka offset)', async () => {
    await expectBronzeOnce(read);
  });

  it('the masked email never appears in silver or gold files, only its salted hash', async () => {
    const emails = (await sql.query<{ email: string }>('SELECT email FROM customers')).rows.map((r) => r.email);
    expect(emails.length).toBeGreaterThan(10);
    const view = await readWithDeltaRs(join(lakeDir, silverPath('public.customers')));
    const text = JSON.stringify(view.rows);
    for (const e of emails) expect(text.includes(e), `clear email ${e} in silver.customers`).toBe(false);
    // The raw bytes of every silver and gold Parquet file, decompressed by DuckDB: read every column as text.
    const engine = await ParquetEngine.create();
    try {
      for (const layer of ['silver', 'gold']) {
        for (const file of walk(join(lakeDir, layer)).filter((f) => f.endsWith('.parquet') && !f.includes('_delta_log'))) {
          const rows = await engine.query(`SELECT * FROM read_parquet('${file}')`);
          const all = JSON.stringify(rows, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
          for (const e of emails.slice(0, 200)) expect(all.includes(e), `clear email in ${file}`).toBe(false);
          expect(readFileSync(file).includes(Buffer.from(emails[0]!))).toBe(false);
        }
      }
    } finally {
      await engine.close();
    }
  });

  it('every gold table equals the same report run on Postgres', async () => {
    const engine = await ParquetEngine.create();
    try {
      const results = await new GoldRefresher(engine, store, log, ORDER_REPORTS).refresh();
      expect(results.map((r) => r.report).sort()).toEqual(ORDER_REPORTS.map((r) => r.name).sort());
    } finally {
      await engine.close();
    }
    await expectGoldEqualsPostgres(db.url, read, 'local');
  });

  it('a column added upstream becomes a nullable column in bronze and silver, without a restart', async () => {
    await sql.query(`ALTER TABLE products ADD COLUMN origin text`);
    await sql.query(`UPDATE products SET origin = 'UK' WHERE product_no = (SELECT min(product_no) FROM products)`);
    await settle();
    for (const root of [bronzePath('public.products'), silverPath('public.products')]) {
      const table = (await DeltaTable.open(store, root))!;
      const col = table.schema.columns.find((c) => c.name === 'origin');
      expect(col, `${root} has the new column`).toMatchObject({ type: { kind: 'string' }, nullable: true });
    }
    const view = await readWithDeltaRs(join(lakeDir, silverPath('public.products')));
    const i = view.columns.indexOf('origin');
    expect(view.rows.filter((r) => r[i] === 'UK')).toHaveLength(1);
  });

  it('an undecodable message goes to the dead-letter topic with its reason, and the other tables go on', async () => {
    const kafka = new Kafka({ brokers: (process.env.KAFKA_BROKERS ?? '127.0.0.1:59092').split(','), logLevel: logLevel.NOTHING });
    const producer = kafka.producer();
    await producer.connect();
    await producer.send({ topic: `${prefix}.public.orders`, messages: [{ key: 'junk', value: 'this is not avro' }] });
    await producer.disconnect();
    await sql.query(`UPDATE customers SET country = 'Iceland' WHERE id = (SELECT min(id) FROM customers)`);
    await settle();
    await waitFor(() => sink.worker.stats.deadLetters >= 1, 'the dead letter to be counted', 30_000);
    const consumer = kafka.consumer({ groupId: `dlq-check-${Date.now()}` });
    await consumer.connect();
    await consumer.subscribe({ topics: [`${sinkName}.dlq`], fromBeginning: true });
    const got: { value: string; reason: string }[] = [];
    await consumer.run({
      eachMessage: async ({ message }) =>
        void got.push({ value: String(message.value), reason: String(message.headers?.['tide.error.reason']) }),
    });
    await waitFor(() => got.length >= 1, 'the dead letter in Kafka', 30_000);
    await consumer.disconnect();
    expect(got[0]!.value).toBe('this is not avro');
    expect(got[0]!.reason).toContain('not in Confluent wire format');
    const customers = await readWithDeltaRs(join(lakeDir, silverPath('public.customers')));
    const c = customers.columns.indexOf('country');
    expect(customers.rows.some((r) => r[c] === 'Iceland')).toBe(true);
  });
});

function walk(dir: string): string[] {
  const out: string[] = [];
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return out;
  }
  for (const e of entries) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else out.push(p);
  }
  return out;
}

import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPrisma, type PrismaClient } from '../../src/app/db.ts';
import { replay } from '../../src/app/replay.ts';
import { runTraffic } from '../../src/app/traffic.ts';
import { LocalStore } from '../../src/lake/storage/local-store.ts';
import { hashValue } from '../../src/sink/masking.ts';
import { bronzePath, silverPath } from '../../src/sink/table-layout.ts';
import { createTestDatabase } from '../support/db.ts';
import { readWithDeltaRs } from '../support/delta-reader.ts';
import { consumeAll } from '../support/kafka.ts';
import {
  describeDiff,
  diffTables,
  MASK_SALT,
  ORDER_KEYS,
  ORDER_TABLES,
  postgresRows,
  sinkFile,
  startSink,
  waitForLake,
} from '../support/lake.ts';
import { eventHubsKeys, mtlsKeys, scramKeys } from '../support/secure-kafka.ts';
import { sourceConfig, startSource, waitForSourceCaughtUp } from '../support/source.ts';

/**
 * The pipeline over the local broker's secured listeners (issue 9, "Tests"): Postgres → `tide source` →
 * Kafka → Apicurio → `tide sink` → Delta, read back by delta-rs and compared with Postgres, with every Kafka
 * client of both connectors (producer, admins, consumer, dead-letter producer) going through
 * SASL_SSL/SCRAM, PLAIN as Azure Event Hubs clients log in (`$ConnectionString`, pasted as a JAAS line),
 * or mutual TLS. The topics are decoded independently (kafkajs + the registry) to show what Kafka holds.
 */

interface Pipeline {
  db: Awaited<ReturnType<typeof createTestDatabase>>;
  prisma: PrismaClient;
  sql: pg.Client;
  lakeDir: string;
  prefix: string;
  stop: () => Promise<void>;
  /** Wait until everything committed so far is in Kafka and in the lake. */
  settle: () => Promise<void>;
}

async function pipeline(
  label: string,
  sourceKeys: Record<string, string>,
  sinkKeys: Record<string, string>,
  orders: number,
): Promise<Pipeline> {
  const db = await createTestDatabase(label);
  const prisma = createPrisma(db.url, 4);
  const sql = new pg.Client({ connectionString: db.url });
  await sql.connect();
  await replay(prisma, { limit: orders, concurrency: 4 });
  const src = sourceConfig(db.url, label, { 'table.include.list': 'public\\.(customers|products|orders|order_items)', ...sourceKeys });
  const source = await startSource(src);
  expect(source.connector.state).toBe('streaming');
  const lakeDir = mkdtempSync(join(tmpdir(), `tide-lake-${label}-`));
  const store = new LocalStore(lakeDir);
  const name = `${label}-${Date.now().toString(36)}`;
  const sink = startSink(sinkFile(name, src.config['topic.prefix'], lakeDir, sinkKeys), store);
  return {
    db,
    prisma,
    sql,
    lakeDir,
    prefix: src.config['topic.prefix'],
    stop: async () => {
      await sink.stop();
      expect(await source.stop()).toBe('stopped');
      await prisma.$disconnect();
      await sql.end();
      await db.drop();
    },
    settle: async () => {
      await waitForSourceCaughtUp(sql, src.config['slot.name']);
      await waitForLake(store, name, src.config['topic.prefix']);
    },
  };
}

async function expectSilverEqualsPostgres(p: Pipeline): Promise<void> {
  for (const table of ORDER_TABLES) {
    const expected = await postgresRows(p.db.url, table);
    if (table === 'public.customers') for (const r of expected) r.email = r.email === null ? null : hashValue(MASK_SALT, r.email);
    const view = await readWithDeltaRs(join(p.lakeDir, silverPath(table)));
    const actual = view.rows.map((r) => Object.fromEntries(view.columns.map((c, i) => [c, r[i]])));
    const diff = diffTables(expected, actual, ORDER_KEYS[table]!, Object.keys(expected[0] ?? {}));
    console.log(`${describeDiff(table, diff)}: ${expected.length} rows`);
    expect(expected.length).toBeGreaterThan(0);
    expect(diff.expectedChecksum, describeDiff(table, diff)).toBe(diff.actualChecksum);
  }
}

/** Decode every event of the order tables' topics; each is a Debezium envelope of its table, and bronze holds each once. */
async function expectTopicsDecode(p: Pipeline): Promise<void> {
  for (const table of ORDER_TABLES) {
    const events = await consumeAll([`${p.prefix}.${table}`]);
    const changes = events.filter((e) => e.value !== null);
    expect(changes.length).toBeGreaterThan(0);
    for (const e of changes) {
      expect(['r', 'c', 'u', 'd']).toContain(e.value!.op);
      expect((e.value!.source as { table: string }).table).toBe(table.split('.')[1]);
      expect(e.key).not.toBeNull();
    }
    const bronze = await readWithDeltaRs(join(p.lakeDir, bronzePath(table)));
    expect(bronze.rows.length, `${table}: bronze rows vs change events in Kafka`).toBe(changes.length);
  }
}

describe('over SASL_SSL with SCRAM: the order app traffic arrives, silver equals Postgres', () => {
  let p: Pipeline;
  beforeAll(async () => {
    // The source logs in with SCRAM-SHA-512, the sink with SCRAM-SHA-256: both mechanisms, one user.
    p = await pipeline('kafka_scram', scramKeys('SCRAM-SHA-512'), scramKeys('SCRAM-SHA-256'), 600);
    const stats = await runTraffic(p.prisma, { rate: 60, durationMs: 6000, concurrency: 3 });
    expect(stats.errors, stats.lastError).toBe(0);
    await p.settle();
  }, 300_000);
  afterAll(async () => p?.stop());

  it('every silver table equals its Postgres table (delta-rs, checksums over whole tables)', () => expectSilverEqualsPostgres(p));
  it('the topics decode as Debezium envelopes, and bronze holds each change event once', () => expectTopicsDecode(p));
});

describe('over SASL_SSL with PLAIN as Azure Event Hubs clients log in ($ConnectionString, a pasted JAAS line)', () => {
  let p: Pipeline;
  beforeAll(async () => {
    p = await pipeline('kafka_eventhubs', eventHubsKeys(), eventHubsKeys(), 30);
    await p.prisma.$executeRawUnsafe(`UPDATE orders SET status = 'shipped' WHERE id IN (SELECT id FROM orders ORDER BY id LIMIT 3)`);
    await p.settle();
  }, 300_000);
  afterAll(async () => p?.stop());

  it('a snapshot and a few changes round-trip: silver equals Postgres', () => expectSilverEqualsPostgres(p));
});

describe('over mutual TLS (a client certificate signed by the stack CA)', () => {
  let p: Pipeline;
  beforeAll(async () => {
    p = await pipeline('kafka_mtls', mtlsKeys(), mtlsKeys(), 30);
    await p.prisma.$executeRawUnsafe(`DELETE FROM order_items WHERE id IN (SELECT id FROM order_items ORDER BY id LIMIT 2)`);
    await p.settle();
  }, 300_000);
  afterAll(async () => p?.stop());

  it('a snapshot and a few changes round-trip: silver equals Postgres', () => expectSilverEqualsPostgres(p));
});

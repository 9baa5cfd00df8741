import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PlatformaticProducer } from '../../src/events/kafka-producer.ts';
import { MessageTooLargeError } from '../../src/events/message-size.ts';
import { log } from '../../src/log.ts';
import { silverPath } from '../../src/sink/table-layout.ts';
import { createTestDatabase } from '../support/db.ts';
import { readWithDeltaRs } from '../support/delta-reader.ts';
import { consumeUntil, kafka, plaintextConnection, waitFor } from '../support/kafka.ts';
import { sinkFile, startSink, type RunningSink } from '../support/lake.ts';
import { dropSlot, sourceConfig, startSource, unconfirmedMessages, type RunningSource } from '../support/source.ts';

/**
 * Issue 11 item 8: a row larger than Kafka's message limit. Over the connector's max.message.bytes the source
 * stops with the table, the key, the size and the setting, and confirms nothing past it; raised, the same row
 * goes through the raised topic and the sink into silver. A topic the broker keeps below the connector's
 * limit refuses the event: that too is named, not retried.
 */
const TOPIC_RESOURCE = 2;
const FIVE_MB_SQL = `SELECT string_agg(md5(i::text), '') AS body FROM generate_series(1, 163840) AS i`; // 32 × 163840 = 5,242,880 chars

async function topicMaxMessageBytes(topic: string): Promise<number> {
  const admin = kafka().admin();
  await admin.connect();
  try {
    const d = await admin.describeConfigs({
      includeSynonyms: false,
      resources: [{ type: TOPIC_RESOURCE, name: topic, configNames: ['max.message.bytes'] }],
    });
    return Number(d.resources[0]!.configEntries.find((e) => e.configName === 'max.message.bytes')!.configValue);
  } finally {
    await admin.disconnect();
  }
}

describe('rows larger than Kafka’s message limit', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let sql: pg.Client;
  let file: ReturnType<typeof sourceConfig>;
  let running: RunningSource | undefined;
  let sink: RunningSink | undefined;
  const stateDir = mkdtempSync(join(tmpdir(), 'tide-large-'));
  const lakeDir = mkdtempSync(join(tmpdir(), 'tide-large-lake-'));
  const topic = () => `${file.config['topic.prefix']}.public.docs`;

  beforeAll(async () => {
    db = await createTestDatabase('large_rows');
    sql = new pg.Client({ connectionString: db.url });
    await sql.connect();
    await sql.query('CREATE TABLE docs (id int PRIMARY KEY, body text NOT NULL)');
    await sql.query(`INSERT INTO docs VALUES (1, 'small')`);
  });

  afterAll(async () => {
    await sink?.stop();
    await running?.stop().catch(() => undefined);
    await sql?.end();
    if (file) await dropSlot(db.url, file.config['slot.name']);
    await db?.drop();
  });

  it('over max.message.bytes the source stops naming table, key, size and setting, and confirms nothing past the row', async () => {
    file = sourceConfig(db.url, 'large', { 'table.include.list': 'public\\.docs' });
    running = await startSource(file, stateDir);
    expect(running.connector.state).toBe('streaming');
    await sql.query(`INSERT INTO docs SELECT 2, body FROM (${FIVE_MB_SQL}) b`);
    await waitFor(() => running!.connector.state === 'failed', 'the source to stop', 60_000);
    await running.done.catch(() => undefined);
    const message = running.connector.lastError ?? '';
    running = undefined;
    expect(message).toMatch(
      /table public\.docs: the change event for key \{"id":2\} is 52\d{5} bytes, over the connector's max\.message\.bytes=1048588\./,
    );
    expect(message).toContain('Fix: raise max.message.bytes in the source connector to at least 52');
    // The slot still holds the insert: nothing past it was confirmed.
    expect(await unconfirmedMessages(db.url, file.config['slot.name'], file.config['publication.name'])).toContain('I');
  });

  it('raised, the restarted source raises the topic and delivers the row; the sink writes it to silver', async () => {
    file = { ...file, config: { ...file.config, 'max.message.bytes': 8 * 1024 * 1024 } };
    running = await startSource(file, stateDir);
    expect(running.connector.state).toBe('streaming');
    expect(await topicMaxMessageBytes(topic())).toBe(8 * 1024 * 1024);
    const events = await consumeUntil([topic()], (es) => es.some((e) => (e.key as { id: number }).id === 2), 120_000);
    const big = events.find((e) => (e.key as { id: number }).id === 2)!;
    expect((big.value as { after: { body: string } }).after.body.length).toBe(5_242_880);

    const sinkName = `large-${Date.now().toString(36)}`;
    sink = startSink(sinkFile(sinkName, file.config['topic.prefix'], lakeDir, { topics: topic() }));
    let lengths: number[] = [];
    await waitFor(
      async () => {
        const view = await readWithDeltaRs(join(lakeDir, silverPath('public.docs'))).catch(() => undefined);
        if (!view) return false;
        const id = view.columns.indexOf('id');
        const body = view.columns.indexOf('body');
        lengths = view.rows.sort((a, b) => Number(a[id]) - Number(b[id])).map((r) => String(r[body]).length);
        return lengths.length === 2;
      },
      'silver to hold both rows',
      180_000,
    );
    expect(lengths).toEqual([5, 5_242_880]);
  });

  it('a topic the broker keeps under the event size refuses it: named, and not retried', async () => {
    const name = `${file.config['topic.prefix']}.refuses`;
    const admin = kafka().admin();
    await admin.connect();
    await admin.createTopics({
      waitForLeaders: true,
      topics: [{ topic: name, numPartitions: 1, configEntries: [{ name: 'max.message.bytes', value: '1048588' }] }],
    });
    await admin.disconnect();
    // The producer's own limit is higher, and the topic is not raised (no ensureTopics): the broker refuses.
    const producer = new PlatformaticProducer(plaintextConnection(), 'tide-test-large', log, 8 * 1024 * 1024);
    try {
      const err = await producer
        .send([{ topic: name, key: Buffer.from('k'), value: Buffer.alloc(2 * 1024 * 1024, 1) }])
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(MessageTooLargeError);
      expect((err as MessageTooLargeError).refusedBy).toBe('broker');
      expect((err as MessageTooLargeError).retriable).toBe(false);
      expect((err as Error).message).toContain("what the broker accepts for its topic (the topic's max.message.bytes");
    } finally {
      await producer.close();
    }
  });
});

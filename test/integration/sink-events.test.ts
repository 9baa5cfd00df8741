import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SchemaType } from '@kafkajs/confluent-schema-registry';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConnectorFile } from '../../src/config/source-config.ts';
import { sinkConfigSchema } from '../../src/config/sink-config.ts';
import { DeltaTable } from '../../src/lake/delta/delta-table.ts';
import { LocalStore } from '../../src/lake/storage/local-store.ts';
import { txnAppId } from '../../src/sink/offsets.ts';
import { startCli } from '../support/cli.ts';
import { readWithDeltaRs, type DeltaRsView } from '../support/delta-reader.ts';
import { kafka, registryClient, waitFor } from '../support/kafka.ts';
import { highWatermarks, startSink } from '../support/lake.ts';

/**
 * input.format events on the real stack (Kafka, Apicurio's Confluent API, the lake read by delta-rs):
 * append-only event topics into bronze partitioned by event date, silver keeping the latest event per
 * key, malformed events to the dead-letter topic, and exactly once across kill -9.
 */
const BROKERS = process.env.KAFKA_BROKERS ?? '127.0.0.1:59092';
const REGISTRY = process.env.SCHEMA_REGISTRY_URL ?? 'http://127.0.0.1:58081/apis/ccompat/v7';
const run = Date.now().toString(36);

interface Ev {
  customer_id: number;
  message_id: string;
  channel: string;
  event_datetime: string;
}

const rowsOf = (t: DeltaRsView) => t.rows.map((r) => Object.fromEntries(t.columns.map((c, i) => [c, r[i]])) as Record<string, unknown>);

async function createTopic(topic: string, partitions: number): Promise<void> {
  const admin = kafka().admin();
  await admin.connect();
  try {
    await admin.createTopics({ topics: [{ topic, numPartitions: partitions }], waitForLeaders: true });
  } finally {
    await admin.disconnect();
  }
}

async function produce(topic: string, messages: { key: string; value: Buffer | string }[]): Promise<void> {
  const producer = kafka().producer();
  await producer.connect();
  try {
    // One at a time, in order: each key's partition then holds its events in the order listed.
    for (const m of messages) await producer.send({ topic, messages: [m] });
  } finally {
    await producer.disconnect();
  }
}

/** Every message of the dead-letter topic, with its headers as text. */
async function deadLetters(topic: string, expected: number): Promise<Record<string, string>[]> {
  const consumer = kafka().consumer({ groupId: `tide-test-dlq-${Date.now()}-${Math.random().toString(36).slice(2)}` });
  const out: Record<string, string>[] = [];
  await consumer.connect();
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ message }) => {
        out.push(Object.fromEntries(Object.entries(message.headers ?? {}).map(([k, v]) => [k, String(v)])));
      },
    });
    await waitFor(() => out.length >= expected, `${expected} dead letters on ${topic}`, 60_000);
  } finally {
    await consumer.disconnect();
  }
  return out;
}

/** Wait until every lake table at `roots` committed every offset Kafka holds on `topic`. */
async function waitForCommitted(store: LocalStore, sink: string, topic: string, roots: string[]): Promise<void> {
  const marks = await highWatermarks([topic]);
  await waitFor(
    async () => {
      for (const root of roots) {
        const t = await DeltaTable.open(store, root);
        for (const m of marks.filter((x) => x.high > 0n)) {
          const v = t?.txnVersion(txnAppId(sink, topic, m.partition));
          if (v === undefined || BigInt(v) < m.high - 1n) return false;
        }
      }
      return true;
    },
    `the lake to commit every message of ${topic}`,
    120_000,
  );
}

describe('sink: input.format events', () => {
  const root = mkdtempSync(join(tmpdir(), 'tide-sink-events-'));

  describe('JSON events with a field list, across kill -9', () => {
    const topic = `events-json-${run}`;
    const sinkName = `events-json-${run}`;
    const lakeDir = join(root, 'json-lake');
    const store = new LocalStore(lakeDir);
    const connectorPath = join(root, 'events-json.json');
    let sink: ReturnType<typeof startCli> | undefined;

    beforeAll(async () => {
      await createTopic(topic, 3);
      writeFileSync(
        connectorPath,
        JSON.stringify({
          name: sinkName,
          config: {
            topics: topic,
            'input.format': 'events',
            'value.converter': 'org.apache.kafka.connect.json.JsonConverter',
            'value.converter.fields': 'customer_id:long,message_id:string,channel:string,payload:json?,event_datetime:timestamp',
            'timestamp.field': 'event_datetime',
            'pk.fields': 'customer_id',
            'kafka.bootstrap.servers': BROKERS,
            'schema.registry.url': REGISTRY,
            'lake.uri': lakeDir,
            'flush.interval.ms': 200,
            'gold.refresh.interval.ms': 0,
            'dead.letter.topic': `${sinkName}.dlq`,
          },
        }),
      );
    });
    afterAll(() => void sink?.child.kill('SIGKILL'));

    it('lands late events in their partition, keeps the latest per key, dead-letters malformed ones, duplicates nothing', async () => {
      const good: Ev[] = [];
      const ev = (customer: number, n: number, time: string): Ev => {
        const e = { customer_id: customer, message_id: `m-${customer}-${n}`, channel: n % 2 ? 'sms' : 'email', event_datetime: time };
        good.push(e);
        return e;
      };
      const msg = (e: Ev | string, key = 'x') => ({ key, value: typeof e === 'string' ? e : JSON.stringify({ ...e, payload: { n: 1 } }) });
      // Day 2026-12-05 in order, then events from 12-03 and 12-04 (late, out of order), then two bad ones.
      const first = [];
      for (let c = 1; c <= 6; c++) for (let n = 0; n < 5; n++) first.push(msg(ev(c, n, `2026-12-05T10:0${n}:00.12345${c}Z`), `c${c}`));
      first.push(msg(ev(1, 90, '2026-12-03T23:59:59.999999Z'), 'c1'), msg(ev(2, 91, '2026-12-04T00:30:00+02:00'), 'c2'));
      first.push(
        msg('{"not json', 'c1'),
        msg(JSON.stringify({ customer_id: 3, channel: 'sms', event_datetime: '2026-12-05T11:00:00Z' }), 'c3'),
      );
      await produce(topic, first);

      // Between data files and commit (orphan files, no commit), then right after a commit: kill -9 both times.
      for (const crashAt of ['before-commit:1', 'after-commit:1']) {
        sink = startCli(['sink', 'start', connectorPath], root, { TIDE_SINK_CRASH_AT: crashAt });
        expect(await sink.exitWithin(120_000)).toBe('SIGKILL');
        expect(sink.output()).toContain(`killing myself at ${crashAt.split(':')[0]}`);
      }

      // More: a late event that is not the latest of its key, a tie (same time: the later offset wins), bad types.
      const second = [];
      second.push(msg(ev(1, 92, '2026-12-01T08:00:00Z'), 'c1'));
      second.push(msg(ev(4, 93, '2026-12-05T12:00:00Z'), 'c4'), msg(ev(4, 94, '2026-12-05T12:00:00Z'), 'c4'));
      second.push(msg(JSON.stringify({ customer_id: '5', message_id: 'x', channel: 'sms', event_datetime: '2026-12-05T12:00:00Z' }), 'c5'));
      second.push(msg(JSON.stringify({ customer_id: 6, message_id: 'y', channel: 'sms', event_datetime: 'yesterday' }), 'c6'));
      second.push(msg(JSON.stringify({ customer_id: 6, message_id: 'z', channel: 'sms', event_datetime: '2026-02-30T00:00:00Z' }), 'c6'));
      await produce(topic, second);

      sink = startCli(['sink', 'start', connectorPath], root);
      await waitForCommitted(store, sinkName, topic, ['bronze/' + topic.replace(/-/g, '_'), 'silver/' + topic.replace(/-/g, '_')]);
      sink.child.kill('SIGTERM');
      expect(await sink.exitWithin(60_000)).toBe(0);

      const table = topic.replace(/-/g, '_');
      const bronze = await readWithDeltaRs(join(lakeDir, 'bronze', table));
      expect(bronze.partition_columns).toEqual(['_event_date']);
      const rows = rowsOf(bronze);
      // Every good event exactly once, none of the bad ones.
      expect(rows).toHaveLength(good.length);
      expect(new Set(rows.map((r) => `${r._kafka_partition}/${r._kafka_offset}`)).size).toBe(good.length);
      expect(rows.map((r) => r.message_id).sort()).toEqual(good.map((e) => e.message_id).sort());
      // Each in the partition of its own UTC date, late ones included.
      for (const r of rows) expect(r._event_date).toBe(String(r.event_datetime).slice(0, 10));
      const byId = new Map(rows.map((r) => [r.message_id, r]));
      expect(byId.get('m-1-90')!.event_datetime).toBe('2026-12-03T23:59:59.999999Z');
      expect(byId.get('m-2-91')).toMatchObject({ event_datetime: '2026-12-03T22:30:00.000000Z', _event_date: '2026-12-03' });
      expect(byId.get('m-1-92')!._event_date).toBe('2026-12-01');
      expect(byId.get('m-1-1')!.payload).toBe('{"n":1}');
      expect(new Set(bronze.files.map((f) => /_event_date=([\d-]+)/.exec(f)?.[1]))).toEqual(
        new Set(['2026-12-01', '2026-12-03', '2026-12-05']),
      );

      // Silver: the latest event per customer, by event time, ties by Kafka offset.
      const silver = rowsOf(await readWithDeltaRs(join(lakeDir, 'silver', table)));
      expect(silver.map((r) => [r.customer_id, r.message_id]).sort((a, b) => Number(a[0]) - Number(b[0]))).toEqual([
        [1, 'm-1-4'],
        [2, 'm-2-4'],
        [3, 'm-3-4'],
        [4, 'm-4-94'],
        [5, 'm-5-4'],
        [6, 'm-6-4'],
      ]);

      // Five malformed events, each with its reason (a dead letter sent before a kill -9 may come twice: at least once).
      const letters = await deadLetters(`${sinkName}.dlq`, 5);
      const reasons = [...new Set(letters.map((h) => h['tide.error.reason']))].sort();
      expect(reasons).toHaveLength(5);
      expect(reasons.join('\n')).toContain('the value is not JSON');
      expect(reasons.join('\n')).toContain('the required field "message_id" is missing');
      expect(reasons.join('\n')).toContain('the field "customer_id" is "5", not a long');
      expect(reasons.join('\n')).toContain('the field "event_datetime" is "yesterday", not a time');
      expect(reasons.join('\n')).toContain('the field "event_datetime" is "2026-02-30T00:00:00Z", not a time');
      for (const h of letters) expect(h['tide.error.topic']).toBe(topic);
    }, 420_000);
  });

  describe('Avro events with the registry', () => {
    const topic = `events.avro-${run}`;
    const sinkName = `events-avro-${run}`;
    const lakeDir = join(root, 'avro-lake');
    const store = new LocalStore(lakeDir);
    let running: ReturnType<typeof startSink> | undefined;
    afterAll(async () => running?.stop());

    it('reads Confluent-framed Avro, partitions by a timestamp-millis field, dead-letters what is not Avro', async () => {
      await createTopic(topic, 2);
      const registry = registryClient();
      const schema = {
        type: 'record',
        name: 'Notification',
        namespace: 'example',
        fields: [
          { name: 'customer_id', type: 'long' },
          { name: 'message_id', type: 'string' },
          { name: 'channel', type: 'string' },
          { name: 'payload', type: ['null', 'string'], default: null },
          { name: 'event_datetime', type: { type: 'long', logicalType: 'timestamp-millis' } },
        ],
      };
      const { id } = await registry.register({ type: SchemaType.AVRO, schema: JSON.stringify(schema) }, { subject: `${topic}-value` });
      const t0 = Date.UTC(2026, 11, 6, 23, 59, 0);
      const events = [
        { customer_id: 7, message_id: 'a', channel: 'sms', payload: 'hi', event_datetime: t0 },
        { customer_id: 7, message_id: 'b', channel: 'push', payload: null, event_datetime: t0 + 120_000 }, // the next day
        { customer_id: 8, message_id: 'c', channel: 'sms', payload: null, event_datetime: t0 - 86_400_000 }, // a day late
        { customer_id: 7, message_id: 'd', channel: 'sms', payload: null, event_datetime: t0 - 1000 }, // late, not the latest
      ];
      const messages = [];
      for (const e of events) messages.push({ key: String(e.customer_id), value: await registry.encode(id, e) });
      messages.push({ key: '8', value: Buffer.from('{"customer_id": 8}') });
      await produce(topic, messages);

      const file = parseConnectorFile(
        {
          name: sinkName,
          config: {
            topics: topic,
            'input.format': 'events',
            'value.converter': 'avro',
            'timestamp.field': 'event_datetime',
            'pk.fields': 'customer_id',
            'kafka.bootstrap.servers': BROKERS,
            'schema.registry.url': REGISTRY,
            'lake.uri': lakeDir,
            'flush.interval.ms': 200,
            'gold.refresh.interval.ms': 0,
            'dead.letter.topic': `${sinkName}.dlq`,
          },
        },
        sinkConfigSchema,
        `test:${sinkName}`,
      );
      running = startSink(file, store);
      const table = 'events_avro_' + run;
      await waitForCommitted(store, sinkName, topic, [`bronze/${table}`, `silver/${table}`]);
      await running.stop();
      running = undefined;

      const bronze = rowsOf(await readWithDeltaRs(join(lakeDir, 'bronze', table)));
      expect(bronze.map((r) => [r.message_id, r.event_datetime, r._event_date]).sort()).toEqual([
        ['a', '2026-12-06T23:59:00.000000Z', '2026-12-06'],
        ['b', '2026-12-07T00:01:00.000000Z', '2026-12-07'],
        ['c', '2026-12-05T23:59:00.000000Z', '2026-12-05'],
        ['d', '2026-12-06T23:58:59.000000Z', '2026-12-06'],
      ]);
      const silver = rowsOf(await readWithDeltaRs(join(lakeDir, 'silver', table)));
      expect(silver.map((r) => [r.customer_id, r.message_id]).sort()).toEqual([
        [7, 'b'],
        [8, 'c'],
      ]);
      const [letter] = await deadLetters(`${sinkName}.dlq`, 1);
      expect(letter!['tide.error.reason']).toContain('the value is not in Confluent wire format');
    }, 240_000);
  });
});

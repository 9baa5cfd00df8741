import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runNotifications } from '../../src/app/notifications.ts';
import { parseConnectorFile } from '../../src/config/source-config.ts';
import { sinkConfigSchema } from '../../src/config/sink-config.ts';
import { ParquetEngine } from '../../src/lake/parquet/parquet-engine.ts';
import { LocalStore } from '../../src/lake/storage/local-store.ts';
import { GoldReader } from '../../src/ops/dashboard/gold-reader.ts';
import { notificationsPanel } from '../../src/ops/dashboard/notification-tiles.ts';
import { startCli, type RunningCli } from '../support/cli.ts';
import { readWithDeltaRs, type DeltaRsView } from '../support/delta-reader.ts';
import { waitFor } from '../support/kafka.ts';

/**
 * The notification platform example end to end on the real stack: `tide app notifications` produces Avro
 * notifications (steady, bursts, late ones) → `tide sink start connectors/notifications-lake.json` (a copy
 * with its own topic and lake) → bronze by event date, silver latest per customer, the gold reports of
 * connectors/reports/notifications/ → `tide lake report run` (billing) and `tide lake export --where`.
 * Every gold table must equal what its definition gives over bronze, read by delta-rs.
 */
const run = Date.now().toString(36);
const COUNT = 3000;
const PRICE = 0.0025;

const rowsOf = (t: DeltaRsView) => t.rows.map((r) => Object.fromEntries(t.columns.map((c, i) => [c, r[i]])) as Record<string, unknown>);
const minuteOf = (iso: string) => `${iso.slice(0, 16)}:00.000000Z`;

describe('the notification platform example', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tide-notifications-'));
  const lake = join(dir, 'lake');
  const topic = `notifications-${run}`;
  const table = `notifications_${run}`;
  const connector = join(dir, 'notifications-lake.json');
  let sink: RunningCli | undefined;
  afterAll(() => void sink?.child.kill('SIGKILL'));

  it('generates, lands and reports notifications: per minute, per customer (exported) and billed', async () => {
    mkdirSync(lake);
    // The shipped example, with its own topic (so its own bronze table) and lake.
    const shipped = JSON.parse(readFileSync(resolve('connectors/notifications-lake.json'), 'utf8')) as { config: Record<string, unknown> };
    mkdirSync(join(dir, 'reports'));
    for (const f of readdirSync(resolve('connectors/reports/notifications')))
      writeFileSync(
        join(dir, 'reports', f),
        readFileSync(resolve('connectors/reports/notifications', f), 'utf8').replaceAll('bronze_notifications', `bronze_${table}`),
      );
    writeFileSync(
      connector,
      JSON.stringify({
        name: `notifications-${run}`,
        config: {
          ...shipped.config,
          topics: topic,
          'lake.uri': lake,
          'flush.interval.ms': 300,
          'gold.reports.dir': 'reports',
          'gold.refresh.interval.ms': 1000,
          'dead.letter.topic': `${topic}.dlq`,
          'serving.uri': '',
        },
      }),
    );
    cpSync(resolve('connectors/sink-connector.schema.json'), join(dir, 'sink-connector.schema.json'));

    const gen = startCli(
      [
        'app',
        'notifications',
        connector,
        ...['--count', String(COUNT), '--rate', '1000', '--burst-rate', '5000', '--burst-every', '1s', '--burst-for', '200ms'],
        ...['--late', '0.05', '--late-by', '2m', '--customers', '25', '--partitions', '3'],
      ],
      dir,
    );
    expect(await gen.exitWithin(120_000)).toBe(0);
    expect(gen.output()).toMatch(new RegExp(`notifications: ${COUNT} sent to ${topic} \\((\\d+) late\\)`));
    const late = Number(/\((\d+) late\)/.exec(gen.output())![1]);
    expect(late).toBeGreaterThan(0);

    sink = startCli(['sink', 'start', connector], dir);
    const perMinute = async () => rowsOf(await readWithDeltaRs(join(lake, 'gold', 'notifications_per_minute')));
    await waitFor(
      async () => {
        const rows = await perMinute().catch(() => []);
        return rows.reduce((n, r) => n + Number(r.notifications), 0) === COUNT;
      },
      `gold.notifications_per_minute to count all ${COUNT} notifications`,
      180_000,
    );
    await waitFor(
      async () => {
        const rows = await readWithDeltaRs(join(lake, 'gold', 'notifications_by_customer')).catch(() => undefined);
        return rows?.rows.length ? rowsOf(rows).reduce((n, r) => n + Number(r.notifications), 0) === COUNT : false;
      },
      'gold.notifications_by_customer to count them all',
      180_000,
    );
    sink.child.kill('SIGTERM');
    expect(await sink.exitWithin(60_000)).toBe(0);

    const bronze = rowsOf(await readWithDeltaRs(join(lake, 'bronze', table)));
    expect(bronze).toHaveLength(COUNT);
    expect(new Set(bronze.map((r) => r.message_id)).size).toBe(COUNT);
    for (const r of bronze) expect(r._event_date).toBe(String(r.event_datetime).slice(0, 10));

    // Per minute: exactly the bronze rows grouped by customer and minute of event time.
    const expected = new Map<string, { n: number; last: string }>();
    for (const r of bronze) {
      const k = `${minuteOf(String(r.event_datetime))}|${r.customer_id}`;
      const e = expected.get(k) ?? { n: 0, last: '' };
      e.n++;
      if (String(r.event_datetime) > e.last) e.last = String(r.event_datetime);
      expected.set(k, e);
    }
    const got = await perMinute();
    expect(new Map(got.map((r) => [`${r.minute}|${r.customer_id}`, { n: Number(r.notifications), last: String(r.last_update) }]))).toEqual(
      expected,
    );

    // The detailed report (built from gold.notifications_per_minute_channel, not bronze): exactly the bronze
    // rows grouped by customer, UTC day and channel, with the first and last event time.
    const detailed = new Map<string, { n: number; first: string; last: string }>();
    for (const r of bronze) {
      const k = `${r.customer_id}|${r._event_date}|${r.channel}`;
      const t = String(r.event_datetime);
      const e = detailed.get(k) ?? { n: 0, first: t, last: t };
      e.n++;
      if (t < e.first) e.first = t;
      if (t > e.last) e.last = t;
      detailed.set(k, e);
    }
    const byCustomer = rowsOf(await readWithDeltaRs(join(lake, 'gold', 'notifications_by_customer')));
    expect(
      new Map(
        byCustomer.map((r) => [
          `${r.customer_id}|${r.day}|${r.channel}`,
          { n: Number(r.notifications), first: String(r.first_at), last: String(r.last_at) },
        ]),
      ),
    ).toEqual(detailed);

    // Silver: the latest notification per customer.
    const silver = rowsOf(await readWithDeltaRs(join(lake, 'silver', table)));
    const latest = new Map<number, string>();
    for (const r of bronze)
      if (String(r.event_datetime) > (latest.get(Number(r.customer_id)) ?? '')) latest.set(Number(r.customer_id), String(r.event_datetime));
    expect(new Map(silver.map((r) => [Number(r.customer_id), String(r.event_datetime)]))).toEqual(latest);

    // The dashboard's panel (read from gold): by default the busiest customer, its minutes and last update.
    const counts = new Map<number, number>();
    for (const r of bronze) counts.set(Number(r.customer_id), (counts.get(Number(r.customer_id)) ?? 0) + 1);
    const [busiest, most] = [...counts].sort((a, b) => b[1] - a[1] || a[0] - b[0])[0]!;
    const engine = await ParquetEngine.create();
    try {
      const panel = await notificationsPanel(new GoldReader(new LocalStore(lake), engine), undefined);
      if (!panel.ready) throw new Error(panel.message);
      expect([panel.customer, panel.notifications]).toEqual([busiest, most]);
      const mine = bronze.filter((r) => Number(r.customer_id) === busiest).map((r) => String(r.event_datetime));
      expect(panel.lastUpdate).toBe(new Date(mine.sort().at(-1)!).toISOString());
      expect(panel.perMinute).toHaveLength(60);
      expect(panel.customers[0]).toEqual({ customer: busiest, name: expect.stringContaining(`#${busiest}`), notifications: most });
      const other = [...counts.keys()].find((c) => c !== busiest)!;
      const second = await notificationsPanel(new GoldReader(new LocalStore(lake), engine), other);
      expect(second.ready && second.notifications).toBe(counts.get(other));
    } finally {
      await engine.close();
    }

    // Billing, built on demand: notifications per customer and day times the price in the report file.
    const billing = startCli(['lake', 'report', 'run', connector, 'notifications_billing'], dir);
    expect(await billing.exitWithin(120_000), billing.output()).toBe(0);
    const bills = rowsOf(await readWithDeltaRs(join(lake, 'gold', 'notifications_billing')));
    const perDay = new Map<string, number>();
    for (const r of bronze) perDay.set(`${r.customer_id}|${r._event_date}`, (perDay.get(`${r.customer_id}|${r._event_date}`) ?? 0) + 1);
    expect(new Map(bills.map((r) => [`${r.customer_id}|${r.day}`, Number(r.notifications)]))).toEqual(perDay);
    for (const b of bills) expect(Number(b.amount)).toBeCloseTo(Number(b.notifications) * PRICE, 6);

    // The detailed report of one customer, exported.
    const out = join(dir, 'customer-1.csv');
    const exp = startCli(
      ['lake', 'export', 'gold.notifications_by_customer', '--lake', lake, '--where', 'customer_id = 1', '--out', out],
      dir,
    );
    expect(await exp.exitWithin(60_000), exp.output()).toBe(0);
    const csv = readFileSync(out, 'utf8').trim().split('\n');
    expect(csv[0]).toBe('customer_id,customer_name,day,channel,notifications,first_at,last_at');
    const ones = bronze.filter((r) => Number(r.customer_id) === 1);
    expect(csv.slice(1).reduce((n, line) => n + Number(line.split(',')[4]), 0)).toBe(ones.length);
    expect(csv.slice(1).every((line) => line.startsWith('1,'))).toBe(true);
  }, 600_000);

  it('a generator that fell behind catches up in produce requests the broker accepts', async () => {
    // The clock jumps 60 s after the start (a loaded machine): 60,000 events are due at once. Sent as one
    // request they exceeded the broker's message.max.bytes (MESSAGE_TOO_LARGE, found by bench/notifications-pipeline.ts).
    let calls = 0;
    const file = parseConnectorFile(
      {
        name: `behind-${run}`,
        config: {
          topics: `notifications-behind-${run}`,
          'input.format': 'events',
          'value.converter': 'avro',
          'timestamp.field': 'event_datetime',
          'kafka.bootstrap.servers': process.env.KAFKA_BROKERS ?? '127.0.0.1:59092',
          'schema.registry.url': process.env.SCHEMA_REGISTRY_URL ?? 'http://127.0.0.1:58081/apis/ccompat/v7',
        },
      },
      sinkConfigSchema,
      'test:behind',
    );
    const stats = await runNotifications(file, { rate: 1000, count: 60_000, partitions: 1, now: () => (calls++ === 0 ? 0 : 60_000) });
    expect(stats.sent).toBe(60_000);
  }, 120_000);
});

import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase } from '../support/db.ts';
import { deltaReaderAvailable, readWithDeltaRs } from '../support/delta-reader.ts';
import { waitFor } from '../support/kafka.ts';
import { ORDER_TABLES } from '../support/lake.ts';
import { ORDER_REPORTS_DIR } from '../support/order-reports.ts';
import { dropSlot, sourceConfig, writeConnectorFile } from '../support/source.ts';

const BIN = resolve('bin/tide.js');

/**
 * `tide demo` as a user runs it: stack (already up) → migrate → source, sink and dashboard → replay →
 * traffic, then Ctrl-C (SIGINT). It must serve the dashboard while running and, on Ctrl-C, stop everything
 * cleanly: exit 0, the source's last confirm reaches the slot, the slot is released, the lake is whole.
 * Its own database, topics and lake, so it runs beside the other files.
 */
describe('tide demo', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let src: ReturnType<typeof sourceConfig>;
  const dir = mkdtempSync(join(tmpdir(), 'tide-demo-'));
  const lakeDir = join(dir, 'lake');
  const notificationTopic = `demo-notifications-${Date.now().toString(36)}`;
  const notificationTable = notificationTopic.replace(/-/g, '_');

  beforeAll(async () => {
    db = await createTestDatabase('demo');
    src = sourceConfig(db.url, 'demo', { 'table.include.list': 'public\\.(customers|products|orders|order_items)' });
    mkdirSync(join(dir, 'connectors'));
    writeConnectorFile(join(dir, 'connectors'), src);
    const prefix = src.config['topic.prefix'];
    const sink = {
      name: `${src.name}-lake`,
      config: {
        'connector.class': 'tide.DeltaLakeSink',
        topics: ORDER_TABLES.map((t) => `${prefix}.${t}`).join(','),
        'kafka.bootstrap.servers': src.config['kafka.bootstrap.servers'].join(','),
        'schema.registry.url': src.config['schema.registry.url'],
        'lake.uri': lakeDir,
        'mask.hash.columns': 'public\\.customers\\.email',
        'mask.hash.salt': 'demo-test-salt',
        'flush.interval.ms': 300,
        'gold.refresh.interval.ms': 2000,
        'gold.reports.dir': ORDER_REPORTS_DIR,
        'dead.letter.topic': `${prefix}.dlq`,
      },
    };
    writeFileSync(join(dir, 'connectors', 'lake.json'), JSON.stringify(sink, null, 2));
    // The notification platform: the shipped connector file and reports, with this file's topic and lake.
    const shipped = JSON.parse(readFileSync(resolve('connectors/notifications-lake.json'), 'utf8')) as { config: Record<string, unknown> };
    mkdirSync(join(dir, 'connectors', 'notification-reports'));
    for (const f of readdirSync(resolve('connectors/reports/notifications')))
      writeFileSync(
        join(dir, 'connectors', 'notification-reports', f),
        readFileSync(resolve('connectors/reports/notifications', f), 'utf8').replaceAll(
          'bronze_notifications',
          `bronze_${notificationTable}`,
        ),
      );
    const notifications = {
      name: `${src.name}-notifications`,
      config: {
        ...shipped.config,
        topics: notificationTopic,
        'lake.uri': lakeDir,
        'flush.interval.ms': 300,
        'gold.refresh.interval.ms': 1000,
        'gold.reports.dir': 'notification-reports',
        'dead.letter.topic': `${notificationTopic}.dlq`,
        'serving.uri': '',
      },
    };
    writeFileSync(join(dir, 'connectors', 'notifications.json'), JSON.stringify(notifications, null, 2));
  });

  afterAll(async () => {
    if (db) {
      if (src) await dropSlot(db.url, src.config['slot.name']);
      await db.drop();
    }
  });

  it('serves the dashboard while it runs, and Ctrl-C stops source, sink and traffic cleanly', async () => {
    const child = spawn(
      process.execPath,
      [
        BIN,
        'demo',
        '--limit',
        '400',
        '--rate',
        '10',
        '--http-port',
        '0',
        '--connector',
        join(dir, 'connectors', `${src.name}.json`),
        '--sink',
        join(dir, 'connectors', 'lake.json'),
        '--notification-sink',
        join(dir, 'connectors', 'notifications.json'),
        '--notification-rate',
        '50',
      ],
      // The demo's app (migrate, replay, traffic) writes to DATABASE_URL: this file's database.
      { cwd: resolve('.'), env: { ...process.env, DATABASE_URL: db.url }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += String(d)));
    child.stderr.on('data', (d) => (err += String(d)));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    try {
      await waitFor(
        () =>
          new RegExp(`app traffic at 10 ops/s until Ctrl-C; Kafka topics ${src.config['topic.prefix']}\\.public\\.\\*`).test(out) ||
          child.exitCode !== null,
        'the replay to finish',
        120_000,
      );
      expect(child.exitCode, `${out}\n${err}`).toBeNull();
      const url = /dashboard: (http:\/\/127\.0\.0\.1:\d+\/)/.exec(out)?.[1];
      expect(url, out).toBeDefined();
      const page = await fetch(url!);
      expect(page.status).toBe(200);
      expect(await page.text()).toContain('<title>');
      await waitFor(async () => (await fetch(`${url}readyz`)).status === 200, '/readyz to turn 200', 60_000);
      const pipeline = (await (await fetch(`${url}api/pipeline`)).json()) as { sources: { name: string; state: string }[] };
      expect(pipeline.sources).toEqual([expect.objectContaining({ name: src.name, state: 'streaming' })]);
      // The sink has written orders to the lake before we stop it: a consumed message alone may be a
      // customer or a product, and silver.orders would not exist yet when the reader opens it below.
      await waitFor(
        async () => /^tide_sink_messages_total\{[^}]*\} [1-9]/m.test(await (await fetch(`${url}metrics`)).text()),
        'the sink to consume',
        60_000,
      );
      await waitFor(async () => existsSync(join(lakeDir, 'silver', 'orders', '_delta_log')), 'the sink to commit silver.orders', 60_000);
      // The notification platform beside it: its sink in the pipeline panel, its gold panel on the dashboard.
      const sinks = ((await (await fetch(`${url}api/pipeline`)).json()) as { sinks: { name: string }[] }).sinks.map((s) => s.name);
      expect(sinks).toEqual([`${src.name}-lake`, `${src.name}-notifications`]);
      let panel: { ready: boolean; customer?: number; notifications?: number; lastUpdate?: string } = { ready: false };
      await waitFor(
        async () => {
          panel = (await (await fetch(`${url}api/reports/notifications`)).json()) as typeof panel;
          return panel.ready;
        },
        'the notification panel (gold.notifications_per_minute)',
        90_000,
      );
      expect(panel.notifications).toBeGreaterThan(0);
      expect(panel.lastUpdate).toMatch(/^\d{4}-\d\d-\d\dT/);
    } finally {
      child.kill('SIGINT');
    }
    const code = await Promise.race([exited, new Promise<'hung'>((r) => setTimeout(() => r('hung'), 45_000))]);
    if (code === 'hung') child.kill('SIGKILL');
    expect(code, `${out}\n${err}`).toBe(0);

    // The summary line comes after everything stopped, not cut off by the signal.
    expect(out).toMatch(
      new RegExp(`^source stopped; lake in ${lakeDir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\(tide lake tables\\)`, 'm'),
    );
    const logs = `${out}\n${err}`
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(logs.filter((l) => Number(l.level) >= 50)).toEqual([]);
    const closed = logs.find((l) => l.msg === 'source closed');
    expect(closed, err).toBeDefined();

    // The source's last confirm reached Postgres, and the slot is free for the next start.
    const sql = new pg.Client({ connectionString: db.url });
    await sql.connect();
    try {
      await waitFor(
        async () =>
          (await sql.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND NOT active', [src.config['slot.name']]))
            .rowCount === 1,
        'the slot to be released',
        10_000,
      );
      const { rows } = await sql.query<{ same: boolean }>(
        'SELECT confirmed_flush_lsn = $2::pg_lsn AS same FROM pg_replication_slots WHERE slot_name = $1',
        [src.config['slot.name'], closed!.confirmedLsn],
      );
      expect(rows[0]?.same, `slot confirmed_flush_lsn vs the source's last confirm ${String(closed!.confirmedLsn)}`).toBe(true);
    } finally {
      await sql.end();
    }

    // The lake is whole: an independent reader opens what the sink committed before it stopped.
    if (!deltaReaderAvailable()) {
      console.warn('skipping the delta-rs read of the demo lake: the Python venv is missing (bash scripts/setup-python.sh)');
      return;
    }
    const orders = await readWithDeltaRs(join(lakeDir, 'silver', 'orders'));
    expect(orders.row_count).toBeGreaterThan(0);
    const notified = await readWithDeltaRs(join(lakeDir, 'bronze', notificationTable));
    expect(notified.row_count).toBeGreaterThan(0);
  }, 240_000);
});

import { Command, InvalidArgumentError } from 'commander';
import cliProgress from 'cli-progress';
import { createPrisma } from '../app/db.ts';
import { migrate } from '../app/migrate.ts';
import { replay, type ReplayResult } from '../app/replay.ts';
import { parseMix, runTraffic, type TrafficStats } from '../app/traffic.ts';
import { runNotifications, type NotificationStats } from '../app/notifications.ts';
import { loadSinkConfig } from '../config/sink-config.ts';
import { Lifecycle } from '../lifecycle.ts';
import { connectionSetting } from '../stack/context.ts';
import { parseDuration, parsePositiveInt, parsePositiveNumber } from './options.ts';

export async function runMigrate(databaseUrl = connectionSetting('DATABASE_URL')): Promise<void> {
  const applied = await migrate(databaseUrl);
  console.log(applied.length ? `applied migrations: ${applied.join(', ')}` : 'database is up to date');
}

export async function runReplay(opts: {
  limit?: number;
  data?: string;
  concurrency?: number;
  signal?: AbortSignal;
}): Promise<ReplayResult> {
  const prisma = createPrisma(connectionSetting('DATABASE_URL'), (opts.concurrency ?? 4) + 1);
  const bar = new cliProgress.SingleBar(
    {
      format: 'replay [{bar}] {percentage}% | {value}/{total} rows | {rate} rows/s | ETA {eta}s',
      stream: process.stderr,
      hideCursor: true,
    },
    cliProgress.Presets.shades_classic,
  );
  const started = performance.now();
  let barStarted = false;
  try {
    const result = await replay(prisma, {
      dataPath: opts.data,
      limit: opts.limit,
      concurrency: opts.concurrency,
      signal: opts.signal,
      onProgress: ({ rows, totalRows }) => {
        if (!barStarted) {
          bar.start(totalRows, 0, { rate: 0 });
          barStarted = true;
        }
        bar.update(rows, { rate: Math.round(rows / ((performance.now() - started) / 1000)) });
      },
    });
    if (barStarted) bar.stop();
    console.log(
      `replayed ${result.rows} rows in ${result.orders} orders in ${result.seconds.toFixed(1)} s (${Math.round(result.rowsPerSecond)} rows/s)` +
        (result.skippedOrders ? `; ${result.skippedOrders} orders were already loaded` : '') +
        (result.stopped ? '; stopped before the end (the rest loads on the next run)' : ''),
    );
    return result;
  } finally {
    if (barStarted) bar.stop();
    await prisma.$disconnect();
  }
}

function formatTraffic(s: TrafficStats, target: number): string {
  const ops = Object.entries(s.ops)
    .filter(([, n]) => n > 0)
    .map(([op, n]) => `${op}=${n}`)
    .join(' ');
  return `traffic: ${s.achievedRate.toFixed(1)} ops/s (target ${target}), ${s.errors} errors, ${s.noops} no-ops | ${ops}${s.lastError ? ` | last error: ${s.lastError}` : ''}`;
}

export function registerAppCommands(program: Command): void {
  const app = program
    .command('app')
    .description(
      "the examples' data: the order app (Prisma: migrate, replay the data set, live traffic) and the notification platform's events",
    );

  app
    .command('migrate')
    .description('apply prisma/migrations to the database (recorded as `prisma migrate deploy` does)')
    .action(() => runMigrate());

  app
    .command('replay')
    .description('load the online-shop data set through Prisma, one transaction per order')
    .option('--limit <rows>', 'read at most this many sale lines', parsePositiveInt)
    .option('--data <file>', 'the CSV (optionally .gz) to load; default shared/data/online-shop/sales-transactions.csv.gz')
    .option('--concurrency <n>', 'orders written in parallel', parsePositiveInt, 4)
    .action(async (opts: { limit?: number; data?: string; concurrency: number }) => {
      await runReplay(opts);
    });

  app
    .command('traffic')
    .description('generate live app traffic through Prisma until stopped or for --duration')
    .option('--rate <ops>', 'target operations per second', parsePositiveNumber, 50)
    .option('--duration <time>', 'stop after this long, e.g. 30s or 5m', parseDuration)
    .option('--mix <weights>', 'e.g. new-order=5,status=3,item-quantity=1,attributes=1,cancel=1,delete-draft=1,price=1,email=1')
    .option('--concurrency <n>', 'operations in flight at most', parsePositiveInt, 8)
    .action(async (opts: { rate: number; duration?: number; mix?: string; concurrency: number }) => {
      const mix = parseMix(opts.mix);
      const lifecycle = new Lifecycle().handleSignals();
      const prisma = createPrisma(connectionSetting('DATABASE_URL'), opts.concurrency + 1);
      lifecycle.onClose('prisma', () => prisma.$disconnect());
      const stats = await lifecycle.track(
        'app traffic',
        runTraffic(prisma, {
          rate: opts.rate,
          durationMs: opts.duration,
          mix,
          concurrency: opts.concurrency,
          signal: lifecycle.signal,
          onReport: (s) => process.stderr.write(`${formatTraffic(s, opts.rate)}\n`),
        }),
      );
      console.log(formatTraffic(stats, opts.rate));
      await lifecycle.shutdown();
      if (stats.errors > 0) process.exitCode = 1;
    });

  app
    .command('notifications [connector-file]')
    .description(
      "the notification platform's event source: Avro notifications to the topic of the sink connector file (default connectors/notifications-lake.json), steady and in bursts, some late",
    )
    .option('--rate <events>', 'steady events per second', parsePositiveNumber, 1000)
    .option('--burst-rate <events>', 'events per second during a burst', parsePositiveNumber)
    .option('--burst-every <time>', 'a burst starts this often, e.g. 60s', parseDuration, 60_000)
    .option('--burst-for <time>', 'a burst lasts this long, e.g. 10s', parseDuration, 10_000)
    .option('--late <fraction>', 'share of late events (event_datetime in the past), 0 to 1', parseFraction, 0.01)
    .option('--late-by <time>', 'a late event is at most this late', parseDuration, 5 * 60_000)
    .option('--customers <n>', 'distinct customers', parsePositiveInt, 200)
    .option('--partitions <n>', 'partitions of the topic when the generator creates it', parsePositiveInt, 6)
    .option('--duration <time>', 'stop after this long, e.g. 30s or 15m', parseDuration)
    .option('--count <n>', 'stop after this many events', parsePositiveInt)
    .action(
      async (
        connectorFile: string | undefined,
        opts: {
          rate: number;
          burstRate?: number;
          burstEvery: number;
          burstFor: number;
          late: number;
          lateBy: number;
          customers: number;
          partitions: number;
          duration?: number;
          count?: number;
        },
      ) => {
        const file = loadSinkConfig(connectorFile ?? 'connectors/notifications-lake.json');
        const lifecycle = new Lifecycle().handleSignals();
        const line = (s: NotificationStats) =>
          `notifications: ${s.sent} sent to ${s.topic} (${s.late} late) in ${(s.elapsedMs / 1000).toFixed(1)} s, ${Math.round(s.achievedRate)} events/s (target ${opts.rate}${opts.burstRate ? `, bursts of ${opts.burstRate}` : ''})`;
        const stats = await lifecycle.track(
          'notifications',
          runNotifications(file, {
            rate: opts.rate,
            burst: opts.burstRate ? { rate: opts.burstRate, everyMs: opts.burstEvery, forMs: opts.burstFor } : undefined,
            lateFraction: opts.late,
            lateByMs: opts.lateBy,
            customers: opts.customers,
            partitions: opts.partitions,
            durationMs: opts.duration,
            count: opts.count,
            signal: lifecycle.signal,
            onReport: (s) => process.stderr.write(`${line(s)}\n`),
          }),
        );
        console.log(line(stats));
        await lifecycle.shutdown();
      },
    );
}

function parseFraction(text: string): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n < 0 || n > 1) throw new InvalidArgumentError(`"${text}" is not a fraction between 0 and 1`);
  return n;
}

import { join } from 'node:path';
import type { Command } from 'commander';
import pg from 'pg';
import { createPrisma } from '../app/db.ts';
import { runTraffic } from '../app/traffic.ts';
import { runNotifications } from '../app/notifications.ts';
import { loadSinkConfig } from '../config/sink-config.ts';
import { slotThresholdsOf } from '../config/slot-thresholds.ts';
import { loadSourceConfig } from '../config/source-config.ts';
import { Lifecycle } from '../lifecycle.ts';
import { ParquetEngine } from '../lake/parquet/parquet-engine.ts';
import { openStore, s3Settings } from '../lake/storage/open-store.ts';
import { registerConfigSecrets, registerEnvironmentSecrets } from '../log.ts';
import { dashboardRoutes } from '../ops/dashboard/routes.ts';
import { sinkView, sourceView } from '../ops/dashboard/pipeline-status.ts';
import { ConnectionHealth } from '../ops/connection-health.ts';
import { allReady, HTTP_PORT_ENV, resolveHttpPort, startHttpServer } from '../ops/http-server.ts';
import { meteredStore, registerSinkMetrics, sinkObserver, SinkLagProbe, sinkReadiness } from '../ops/sink-metrics.ts';
import { sourceObserver, sourceReadiness } from '../ops/source-metrics.ts';
import { SinkWorker } from '../sink/sink-worker.ts';
import { SourceConnector } from '../source/connector.ts';
import { PROJECT_ROOT, connectionSetting, loadStackEnvIntoProcess, stackContext } from '../stack/context.ts';
import { stackUp } from '../stack/stack.ts';
import { runMigrate, runReplay } from './app-commands.ts';
import { superviseSource } from './source-ops.ts';
import { parseDuration, parsePositiveInt, parsePositiveNumber } from './options.ts';
import { InvalidArgumentError } from 'commander';

/**
 * The local default, in one command: start the stack, migrate the order app,
 * start the source connector and the lake sink, replay a sample of the data set
 * while they stream, then keep app traffic flowing until Ctrl-C (or --duration). Beside it, the notification
 * platform: its generator and its sink (connectors/notifications-lake.json) into the same dashboard.
 */
export function registerDemoCommand(program: Command): void {
  program
    .command('demo')
    .description('start the stack, migrate, run the source and the lake sink, replay a sample and generate traffic until Ctrl-C')
    .option('--limit <rows>', 'sale lines of the data set to replay', parsePositiveInt, 20_000)
    .option('--rate <ops>', 'app traffic after the replay, operations per second', parsePositiveNumber, 20)
    .option('--duration <time>', 'stop after this long (default: until Ctrl-C)', parseDuration)
    .option('--connector <file>', 'source connector file', join(PROJECT_ROOT, 'connectors', 'orders-source.json'))
    .option('--sink <file>', 'sink connector file', join(PROJECT_ROOT, 'connectors', 'orders-lake.json'))
    .option(
      '--notification-sink <file>',
      "the notification platform's sink connector file",
      join(PROJECT_ROOT, 'connectors', 'notifications-lake.json'),
    )
    .option(
      '--notification-rate <events>',
      'notifications per second (bursts of 5x for 10 s every minute); 0: no notification platform',
      parseRate,
      200,
    )
    .option('--http-port <port>', `port of the dashboard, /metrics, /healthz and /readyz (env ${HTTP_PORT_ENV}; default ${DEMO_HTTP_PORT})`)
    .action(
      async (opts: {
        limit: number;
        rate: number;
        duration?: number;
        connector: string;
        sink: string;
        notificationSink: string;
        notificationRate: number;
        httpPort?: string;
      }) => {
        const lifecycle = new Lifecycle().handleSignals();
        await stackUp(stackContext());
        loadStackEnvIntoProcess();
        registerEnvironmentSecrets(process.env);
        await runMigrate();

        const sourceFile = loadSourceConfig(opts.connector);
        const sinkFile = loadSinkConfig(opts.sink);
        registerConfigSecrets(sourceFile.config);
        registerConfigSecrets(sinkFile.config);
        const sourceHealth = new ConnectionHealth(sourceFile.name);
        const sinkHealth = new ConnectionHealth(sinkFile.name);
        lifecycle.onClose('connection metrics', () => (sourceHealth.close(), sinkHealth.close()));
        const connector = new SourceConnector(sourceFile, {
          stateDir: join(PROJECT_ROOT, '.tide'),
          monitor: sourceHealth,
          observer: sourceObserver(sourceFile.name),
        });
        const supervision = superviseSource(connector, sourceFile, lifecycle);
        // Tracked: on Ctrl-C the connector flushes, confirms and closes before the slot watch and the rest go.
        const sourceDone = lifecycle.track('source connector', connector.run(lifecycle.signal));
        // A source that stops by itself (paused, failed, slot lost) stops the demo.
        void sourceDone.then(
          () => lifecycle.shutdown(),
          () => lifecycle.shutdown(),
        );
        if (opts.duration !== undefined) setTimeout(() => void lifecycle.shutdown(), opts.duration).unref();
        // The sink needs the source's topics: it starts once the source has created them (its first state change).
        const store = meteredStore(await openStore(sinkFile.config['lake.uri'], { s3: s3Settings(sinkFile.config) }), sinkFile.name);
        lifecycle.onClose('lake store', () => store.close());
        const sink = new SinkWorker(sinkFile, { store, monitor: sinkHealth, observer: sinkObserver(sinkFile.name) });
        const lag = new SinkLagProbe(sinkFile, store);
        lifecycle.onClose('consumer lag probe', () => lag.close());
        const stats = () => sink.stats;
        lifecycle.onClose('sink metrics', registerSinkMetrics({ name: sinkFile.name, stats, lag }));
        const notifications = opts.notificationRate > 0 ? await notificationPlatform(opts.notificationSink, lifecycle) : undefined;
        const engine = await ParquetEngine.create();
        lifecycle.onClose('dashboard engine', () => engine.close());
        const server = await startHttpServer({
          port: resolveHttpPort(opts.httpPort, process.env, DEMO_HTTP_PORT),
          ready: allReady([
            sourceHealth.readiness(),
            sinkHealth.readiness(),
            sourceReadiness({ name: sourceFile.name, status: () => connector.status() }),
            sinkReadiness({ name: sinkFile.name, stats, lag }),
            ...(notifications ? [notifications.health.readiness()] : []),
          ]),
          routes: dashboardRoutes({
            store,
            notificationsStore: notifications?.store,
            engine,
            databaseUrl: connectionSetting('DATABASE_URL'),
            slotThresholds: slotThresholdsOf(sourceFile.config),
            pipeline: async () => ({
              sources: [sourceView(connector.status())],
              sinks: [
                sinkView(sinkFile.name, lifecycle.signal.aborted ? 'stopped' : 'running', sink.stats, {
                  lagMessages: (await lag.read().catch(() => undefined))?.total ?? null,
                }),
                ...(notifications
                  ? [
                      sinkView(notifications.sink.file.name, lifecycle.signal.aborted ? 'stopped' : 'running', notifications.sink.stats, {
                        lagMessages: null,
                      }),
                    ]
                  : []),
              ],
            }),
          }),
          lifecycle,
        });
        console.log(`dashboard: ${server.url}   (metrics ${server.url}metrics)`);
        // Tracked after the lake store opened: the sink writes its last batch before the store closes.
        const sinkDone = lifecycle.track(
          'sink worker',
          waitForTopics(connector, lifecycle.signal).then(() => (lifecycle.signal.aborted ? undefined : sink.run(lifecycle.signal))),
        );
        sinkDone.catch((err: unknown) => {
          console.error(`sink failed: ${(err as Error).message}`);
          void lifecycle.shutdown();
        });

        if (notifications) {
          const { sink: notifSink } = notifications;
          const rate = opts.notificationRate;
          console.log(
            `notification platform: ${rate} events/s (bursts of ${rate * 5}) to ${notifSink.file.config.topics?.[0]}, sink ${notifSink.file.name}`,
          );
          // The generator creates the topic; the sink waits for it (errors.retry.timeout) and then reads it.
          const generated = lifecycle.track(
            'notification generator',
            runNotifications(notifSink.file, {
              rate,
              burst: { rate: rate * 5, everyMs: 60_000, forMs: 10_000 },
              lateFraction: 0.01,
              lateByMs: 2 * 60_000,
              signal: lifecycle.signal,
            }),
          );
          const notifDone = lifecycle.track('notification sink', notifSink.run(lifecycle.signal));
          for (const [what, done] of [
            ['notification generator', generated],
            ['notification sink', notifDone],
          ] as const)
            done.catch((err: unknown) => {
              console.error(`${what} failed: ${(err as Error).message}`);
              void lifecycle.shutdown();
            });
        }

        const sql = new pg.Client({ connectionString: connectionSetting('DATABASE_URL') });
        await sql.connect();
        lifecycle.onClose('status query connection', () => sql.end());
        const report = setInterval(() => void printStatus(connector, sql, sink, notifications?.sink), 5000);
        lifecycle.onClose('status timer', () => clearInterval(report));

        await lifecycle.track('replay', runReplay({ limit: opts.limit, signal: lifecycle.signal }));
        if (!lifecycle.signal.aborted) {
          console.log(
            `app traffic at ${opts.rate} ops/s until Ctrl-C${opts.duration ? ` or ${opts.duration / 1000} s` : ''}; Kafka topics ${sourceFile.config['topic.prefix']}.public.*`,
          );
          const prisma = createPrisma(connectionSetting('DATABASE_URL'), 5);
          lifecycle.onClose('prisma', () => prisma.$disconnect());
          await lifecycle.track('app traffic', runTraffic(prisma, { rate: opts.rate, concurrency: 4, signal: lifecycle.signal }));
        }
        await lifecycle.shutdown();
        const state = await sourceDone.catch(() => 'failed');
        await sinkDone.catch(() => undefined);
        const why = supervision.failure()?.message ?? connector.lastError;
        if (why) process.exitCode ||= 1;
        console.log(
          `source ${why ? `${state}: ${why}` : state}; lake in ${sink.file.config['lake.uri']} (tide lake tables). The stack keeps running: npm test, or npm run stack:down.`,
        );
      },
    );
}

function parseRate(text: string): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError(`"${text}" is not a number >= 0`);
  return n;
}

/** The notification platform's sink (input.format events), with its own lake store, health and metrics. */
async function notificationPlatform(path: string, lifecycle: Lifecycle) {
  const file = loadSinkConfig(path);
  registerConfigSecrets(file.config);
  const health = new ConnectionHealth(file.name);
  lifecycle.onClose('notification sink connection metrics', () => health.close());
  const store = meteredStore(await openStore(file.config['lake.uri'], { s3: s3Settings(file.config) }), file.name);
  lifecycle.onClose('notification lake store', () => store.close());
  const sink = new SinkWorker(file, { store, monitor: health, observer: sinkObserver(file.name) });
  lifecycle.onClose('notification sink metrics', registerSinkMetrics({ name: file.name, stats: () => sink.stats }));
  return { sink, store, health };
}

/** The demo's dashboard port (TIDE_HTTP_PORT or --http-port to change it). */
const DEMO_HTTP_PORT = 58090;

/** The source creates its topics before it snapshots or streams. */
async function waitForTopics(connector: SourceConnector, signal: AbortSignal): Promise<void> {
  while (!signal.aborted && connector.state === 'starting') await new Promise((r) => setTimeout(r, 200));
}

async function printStatus(connector: SourceConnector, sql: pg.Client, sink: SinkWorker, notifications?: SinkWorker): Promise<void> {
  const s = connector.status();
  const lag = await sql
    .query<{ lag: string }>(
      'SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint::text AS lag FROM pg_replication_slots WHERE slot_name = $1',
      [s.slot],
    )
    .then((r) => Number(r.rows[0]?.lag ?? 0))
    .catch(() => NaN);
  console.log(
    `source: ${s.state}, ${s.eventsTotal} events (${s.eventsPerSecond}/s), confirmed ${s.confirmedLsn}, slot lag ${Math.round(lag / 1024)} kB` +
      ` | sink: ${sink.stats.messages} messages, ${sink.stats.flushes} commits, ${sink.stats.deadLetters} dead letters, gold builds ${sink.stats.goldRefreshes}` +
      (notifications
        ? ` | notifications: ${notifications.stats.messages} events, ${notifications.stats.flushes} commits, gold builds ${notifications.stats.goldRefreshes}`
        : ''),
  );
}

import type { Command } from 'commander';
import { loadSinkConfig } from '../config/sink-config.ts';
import { openStore, s3Settings } from '../lake/storage/open-store.ts';
import { Lifecycle } from '../lifecycle.ts';
import { registerConfigSecrets, registerEnvironmentSecrets } from '../log.ts';
import { ConnectionHealth } from '../ops/connection-health.ts';
import { allReady, DEFAULT_HTTP_HOST, HTTP_HOST_ENV, HTTP_PORT_ENV, resolveHttpPort, startHttpServer } from '../ops/http-server.ts';
import { meteredStore, registerSinkMetrics, sinkObserver, SinkLagProbe, sinkReadiness } from '../ops/sink-metrics.ts';
import { SinkWorker } from '../sink/sink-worker.ts';

export function registerSinkCommands(program: Command): void {
  const sink = program.command('sink').description('the sink connector: Kafka CDC topics to Delta Lake bronze, silver and gold');

  sink
    .command('start <connector.json>')
    .description('run the sink in the foreground; SIGTERM/SIGINT commits what is buffered and exits')
    .option(
      '--http-port <port>',
      `port of the metrics and health server: /metrics, /healthz, /readyz (env ${HTTP_PORT_ENV}; 0 = any free port)`,
    )
    .option('--http-host <address>', `address the metrics and health server listens on (env ${HTTP_HOST_ENV})`)
    .action(async (path: string, opts: { httpPort?: string; httpHost?: string }) => {
      registerEnvironmentSecrets(process.env); // .stack/env was loaded after the logger started
      const file = loadSinkConfig(path);
      registerConfigSecrets(file.config);
      const port = resolveHttpPort(opts.httpPort);
      const lifecycle = new Lifecycle().handleSignals();
      try {
        // The sink writes through a metered store (commits, files, bytes per lake table); it is ours to close.
        const store = meteredStore(await openStore(file.config['lake.uri'], { s3: s3Settings(file.config) }), file.name);
        lifecycle.onClose('lake store', () => store.close());
        const lag = new SinkLagProbe(file, store);
        lifecycle.onClose('consumer lag probe', () => lag.close());
        const health = new ConnectionHealth(file.name);
        lifecycle.onClose('connection metrics', () => health.close());
        const worker = new SinkWorker(file, { store, monitor: health, observer: sinkObserver(file.name) });
        const stats = () => worker.stats;
        lifecycle.onClose('sink metrics', registerSinkMetrics({ name: file.name, stats, lag }));
        const server = await startHttpServer({
          host: opts.httpHost ?? process.env[HTTP_HOST_ENV] ?? DEFAULT_HTTP_HOST,
          port,
          ready: allReady([health.readiness(), sinkReadiness({ name: file.name, stats, lag })]),
          lifecycle,
        });
        console.log(`sink ${file.name}: metrics ${server.url}metrics, health ${server.url}healthz, readiness ${server.url}readyz`);
        // Closed first (closers run in reverse): the server answers until the worker has flushed. Its error reaches the caller.
        await lifecycle.track('sink worker', worker.run(lifecycle.signal));
      } finally {
        await lifecycle.shutdown();
      }
    });
}

import { slotThresholdsOf } from '../config/slot-thresholds.ts';
import type { ConnectorFile, SourceConfig } from '../config/source-config.ts';
import type { TideError } from '../errors.ts';
import type { Lifecycle } from '../lifecycle.ts';
import { log as rootLog } from '../log.ts';
import { watchSlot, type SlotWatch } from '../ops/slot-watch.ts';
import { registerSourceMetrics } from '../ops/source-metrics.ts';
import type { SourceConnector } from '../source/connector.ts';
import { ReopeningPgClient } from '../source/pg-connection.ts';

/**
 * What runs beside a source connector in a Tide process: the watch on its own replication slot
 * (retained WAL over a threshold → a warning and a metric; a slot invalidated by
 * max_slot_wal_keep_size → the connector stops with SlotLostError, which names the recovery command)
 * and its metrics. Everything is registered with the lifecycle and closed with it.
 */
export interface SourceSupervision {
  /** The slot watch (undefined until the connector has its slot). */
  watch(): SlotWatch | undefined;
  /** A fatal slot problem that stopped the connector, if any. */
  failure(): TideError | undefined;
}

export function superviseSource(connector: SourceConnector, file: ConnectorFile<SourceConfig>, lifecycle: Lifecycle): SourceSupervision {
  const c = file.config;
  const log = rootLog.child({ connector: file.name });
  let watch: SlotWatch | undefined;
  let failure: TideError | undefined;
  lifecycle.onClose(
    'source metrics',
    registerSourceMetrics({ name: file.name, status: () => connector.status(), slot: () => watch?.last }),
  );
  // Reopened after a Postgres restart: the watch outlives it as the connector does.
  const client = new ReopeningPgClient(c, { applicationName: 'tide-slot-watch', log });
  // The watch starts once the connector has created (or found) its slot: before that the slot may not exist.
  const start = setInterval(() => {
    if (connector.state === 'starting' || watch || lifecycle.signal.aborted) return;
    clearInterval(start);
    if (connector.state !== 'snapshotting' && connector.state !== 'streaming') return;
    watch = watchSlot({
      client,
      slot: c['slot.name'],
      server: `postgres at ${c['database.hostname']}:${c['database.port']}`,
      connector: file.name,
      connectorFile: file.source,
      thresholds: slotThresholdsOf(c),
      intervalMs: c['slot.watch.interval.ms'],
      log,
      onError: (err) => {
        if (err.retriable) return log.warn({ err: err.message }, 'slot check failed; trying again');
        failure = err;
        log.error({ err }, 'replication slot problem: stopping the connector');
        process.exitCode = 2;
        void lifecycle.shutdown();
      },
    });
  }, 500);
  lifecycle.onClose('slot watch', async () => {
    clearInterval(start);
    await watch?.stop();
    await client.end();
  });
  return { watch: () => watch, failure: () => failure };
}

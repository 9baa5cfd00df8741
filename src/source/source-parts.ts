import { join } from 'node:path';
import type { ConnectorFile, SourceConfig } from '../config/source-config.ts';
import { QUIET_MONITOR, type ConnectionMonitor } from '../connection-monitor.ts';
import { kafkaConnection } from '../events/kafka-connection.ts';
import { PlatformaticProducer, type EventProducer } from '../events/kafka-producer.ts';
import { KafkaRetrier, RetryingProducer } from '../events/kafka-retry.ts';
import { registryFromConfig, type SchemaRegistry } from '../events/schema-registry.ts';
import { TransactionEvents } from '../events/transaction-events.ts';
import { log as rootLog, type Logger } from '../log.ts';
import { retryPolicyOf } from '../retry.ts';
import { tableFilter } from './catalog.ts';
import { OffsetStore } from './offset-store.ts';
import { transactionTopic } from './plan.ts';
import { EventPublisher, type PublisherOptions } from './publisher.ts';
import { QUIET_SOURCE_OBSERVER, type SourceObserver } from './source-observer.ts';

/** What a source connector can be given instead of building it from its configuration (tests, ops). */
export interface SourceDeps {
  producer?: EventProducer;
  registry?: SchemaRegistry;
  log?: Logger;
  stateDir?: string;
  /** Told about retries and recoveries of the connections (ops' ConnectionHealth: /readyz and metrics). */
  monitor?: ConnectionMonitor;
  /** Told about published events, acknowledged commits and registered schemas (ops' metrics). */
  observer?: SourceObserver;
}

export type SourceParts = ReturnType<typeof sourceParts>;

/** What a source connector is built from: its Kafka producer and retrier, registry, offset and status files, table filter. */
export function sourceParts(file: ConnectorFile<SourceConfig>, deps: SourceDeps) {
  const config = file.config;
  const log = (deps.log ?? rootLog).child({ connector: file.name });
  const conn = kafkaConnection(config, { source: file.source, log });
  const monitor = deps.monitor ?? QUIET_MONITOR;
  const observer = deps.observer ?? QUIET_SOURCE_OBSERVER;
  /** Bounds, retries and reports every Kafka call (errors.retry.timeout); stops waiting when run's signal aborts. */
  const kafka = new KafkaRetrier(conn, retryPolicyOf(config), log, monitor);
  const producer: EventProducer =
    deps.producer ?? new RetryingProducer(new PlatformaticProducer(conn, `tide-${file.name}`, log, config['max.message.bytes']), kafka);
  const stateDir = deps.stateDir ?? '.tide';
  return {
    log,
    monitor,
    observer,
    kafka,
    producer,
    registry: deps.registry ?? registryFromConfig(config),
    store: new OffsetStore(config['offset.storage.file.filename'] ?? join(stateDir, `${file.name}.offsets.json`)),
    statusPath: join(stateDir, `${file.name}.status.json`),
    include: tableFilter(config['table.include.list'], config['table.exclude.list']),
    txEvents: new TransactionEvents(transactionTopic(config)),
  };
}

/** Wait for every task; then throw the first failure (so no task is left running unobserved). */
export async function settleAll(tasks: Promise<unknown>[]): Promise<void> {
  const results = await Promise.allSettled(tasks);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}

/** The connector's publisher: batches of max.batch.size, sent within 5 ms, each under max.message.bytes. */
export function sourcePublisher(
  config: SourceConfig,
  producer: EventProducer,
  hooks: Pick<PublisherOptions, 'onConfirmable' | 'describe' | 'onCommitAcked' | 'onError'>,
): EventPublisher {
  return new EventPublisher(producer, {
    ...hooks,
    maxBatch: config['max.batch.size'],
    lingerMs: 5,
    // Up to 4 full batches wait behind the one in flight, so encoding goes on while Kafka acknowledges.
    maxQueuedBatches: 4,
    maxMessageBytes: config['max.message.bytes'],
  });
}

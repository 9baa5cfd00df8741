import type { SourceConfig } from '../config/source-config.ts';
import type { TableCodec } from '../events/envelope.ts';
import type { TopicSpec } from '../events/kafka-producer.ts';
import type { Logger } from '../log.ts';
import type { CatalogTable } from './catalog.ts';
import { IncrementalSnapshots } from './incremental-snapshot.ts';
import type { OffsetStore } from './offset-store.ts';
import { connectPg } from './pg-connection.ts';
import type { EventPublisher } from './publisher.ts';
import { rememberCaptured, TableDiscovery } from './table-discovery.ts';

/**
 * What keeps the capture in step with the database once the source streams: incremental snapshots (signals,
 * and the tables that joined table.include.list since the last start: `joined`) and the look-out for tables
 * created while it runs. The connector wires them to its stream (onChange/onMessage of the change handler).
 */
export interface CaptureFollowDeps {
  config: SourceConfig;
  store: OffsetStore;
  log: Logger;
  events?: { add(table: string, op: string, n?: number): void };
  /** Captured tables that were not captured at the last start. */
  joined: string[];
  /** Every captured table now (`schema.table`), remembered for the next start. */
  captured: string[];
  publisher: () => EventPublisher | undefined;
  /** The connector's codecs by relation oid. */
  codecs: Map<number, TableCodec>;
  ensureTopics: (topics: TopicSpec[]) => Promise<void>;
  codecFor: (table: CatalogTable) => Promise<TableCodec>;
  fail: (err: Error) => void;
}

export function followCapture(d: CaptureFollowDeps): { incremental: IncrementalSnapshots; discovery: TableDiscovery } {
  const c = d.config;
  const byName = (q: string) => [...d.codecs.values()].find((codec) => codec.table.qualified === q);
  const incremental = new IncrementalSnapshots({
    config: c,
    store: d.store,
    publisher: d.publisher,
    codecOf: byName,
    connect: () => connectPg(c, { log: d.log }),
    log: d.log,
    events: d.events,
    onError: d.fail,
  });
  const now = new Date().toISOString();
  if (d.joined.length) incremental.request(d.joined.map((table) => ({ table, reason: 'joined' as const, requestedAt: now })));
  rememberCaptured(d.store, d.captured, true);
  const discovery = new TableDiscovery({
    config: c,
    connect: () => connectPg(c, { log: d.log }),
    captures: (q) => byName(q) !== undefined,
    capture: async (table) => {
      await d.ensureTopics([
        {
          topic: `${c['topic.prefix']}.${table.schema}.${table.name}`,
          partitions: c['topic.partitions'],
          replicationFactor: c['topic.replication.factor'],
        },
      ]);
      d.codecs.set(table.oid, await d.codecFor(table));
    },
    incremental,
    store: d.store,
    log: d.log,
  });
  return { incremental, discovery };
}

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
  /**
   * The tables the source captures (`schema.table`), shared with the connector; tables found while running
   * are added. Not the stream's codecs: those come from relation messages, and a captured table with no change
   * since the stream began has none.
   */
  capturing: Set<string>;
  ensureTopics: (topics: TopicSpec[]) => Promise<void>;
  /** The end offset of each partition of a topic (the end-of-snapshot markers go to each). */
  partitionEnds: (topic: string) => Promise<bigint[]>;
  /** A codec for the table as the catalog has it now, schemas registered: for incremental snapshot chunks. */
  codecFor: (table: CatalogTable) => Promise<TableCodec>;
  fail: (err: Error) => void;
}

export function followCapture(d: CaptureFollowDeps): { incremental: IncrementalSnapshots; discovery: TableDiscovery } {
  const c = d.config;
  const captures = (q: string) => d.capturing.has(q);
  const incremental = new IncrementalSnapshots({
    config: c,
    store: d.store,
    publisher: d.publisher,
    captures,
    codecFor: d.codecFor,
    partitionEnds: d.partitionEnds,
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
    captures,
    capture: async (table) => {
      await d.ensureTopics([
        {
          topic: `${c['topic.prefix']}.${table.schema}.${table.name}`,
          partitions: c['topic.partitions'],
          replicationFactor: c['topic.replication.factor'],
        },
      ]);
      // Its schemas are registered by its incremental snapshot (from the catalog) and by its first relation
      // message in the stream (from the WAL), whichever comes first.
      d.capturing.add(table.qualified);
    },
    incremental,
    store: d.store,
    log: d.log,
  });
  return { incremental, discovery };
}

import type pg from 'pg';
import type { SourceConfig } from '../config/source-config.ts';
import type { TableCodec } from '../events/envelope.ts';
import type { EventProducer } from '../events/kafka-producer.ts';
import type { Logger } from '../log.ts';
import type { CatalogTable } from './catalog.ts';
import type { OffsetStore } from './offset-store.ts';
import type { RelationMessage } from './pgoutput-decoder.ts';
import { describeRelationChange, lookupRelation, sameRelation, tableFromRelation } from './relation-table.ts';
import { rememberCaptured } from './table-discovery.ts';

export interface RelationChangeContext {
  config: SourceConfig;
  sql: pg.Client;
  /** The stream's codecs by relation oid: the one for `msg` is added or replaced. */
  codecs: Map<number, TableCodec>;
  /** The tables captured now (`schema.table`). */
  capturing: Set<string>;
  include: (qualified: string) => boolean;
  store: OffsetStore;
  producer: EventProducer;
  codecFor: (table: CatalogTable) => Promise<TableCodec>;
  log: Logger;
}

/**
 * A relation message is the truth for the WAL after it (relation-table.ts), never today's catalog: a table
 * seen for the first time gets its topic and is remembered as captured; a changed one gets a new codec
 * (and schema); an unchanged one keeps its codec.
 */
export async function applyRelation(msg: RelationMessage, x: RelationChangeContext): Promise<void> {
  if (!x.include(`${msg.schema}.${msg.name}`)) return;
  const existing = x.codecs.get(msg.relationOid);
  const lookups = await lookupRelation(x.sql, msg);
  const table = tableFromRelation(msg, existing?.table, lookups);
  if (existing && sameRelation(existing.table, table)) return;
  if (!lookups.now)
    x.log.warn(
      { table: table.qualified, oid: msg.relationOid },
      'this table was dropped after this point of the WAL: its remaining changes are delivered, then it is no longer captured',
    );
  if (!existing)
    await x.producer.ensureTopics([
      {
        topic: `${x.config['topic.prefix']}.${table.schema}.${table.name}`,
        partitions: x.config['topic.partitions'],
        replicationFactor: x.config['topic.replication.factor'],
      },
    ]);
  x.codecs.set(msg.relationOid, await x.codecFor(table));
  x.capturing.add(table.qualified);
  if (!existing) rememberCaptured(x.store, [table.qualified]);
  x.log.info({ table: table.qualified, ...describeRelationChange(existing?.table, table) }, 'schema registered for changed relation');
}

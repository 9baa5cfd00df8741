import type { Type } from 'avsc';
import { createAvroType } from './avro-types.ts';
import { encodeFramed, type SchemaRegistry } from './schema-registry.ts';

/**
 * Transaction boundaries on `<topic.prefix>.transaction`, in Debezium's
 * transaction-metadata format: a BEGIN record before a transaction's first
 * event and an END record with the event count per table after its last.
 * Transactions that touch no captured table (heartbeats included) get none.
 * Each data event's `transaction` block names the same id (`txId:commitLsn`).
 */
export const TRANSACTION_KEY_SCHEMA = {
  type: 'record',
  name: 'TransactionMetadataKey',
  namespace: 'io.debezium.connector.common',
  fields: [{ name: 'id', type: 'string' }],
};

export const TRANSACTION_VALUE_SCHEMA = {
  type: 'record',
  name: 'TransactionMetadataValue',
  namespace: 'io.debezium.connector.common',
  fields: [
    { name: 'status', type: 'string' },
    { name: 'id', type: 'string' },
    { name: 'event_count', type: ['null', 'long'], default: null },
    {
      name: 'data_collections',
      type: [
        'null',
        {
          type: 'array',
          items: {
            type: 'record',
            name: 'ConnectDefault',
            namespace: 'io.confluent.connect.avro',
            fields: [
              { name: 'data_collection', type: 'string' },
              { name: 'event_count', type: 'long' },
            ],
          },
        },
      ],
      default: null,
    },
    { name: 'ts_ms', type: 'long' },
    { name: 'commit_lsn', type: 'long' },
  ],
};

export class TransactionEvents {
  private readonly keyType: Type = createAvroType(TRANSACTION_KEY_SCHEMA);
  private readonly valueType: Type = createAvroType(TRANSACTION_VALUE_SCHEMA);
  keySchemaId = -1;
  valueSchemaId = -1;

  /** Registers the key and value schemas under `<topic>-key` and `<topic>-value`. */
  async registerSchemas(registry: Pick<SchemaRegistry, 'register'>): Promise<void> {
    this.keySchemaId = await registry.register(`${this.topic}-key`, TRANSACTION_KEY_SCHEMA);
    this.valueSchemaId = await registry.register(`${this.topic}-value`, TRANSACTION_VALUE_SCHEMA);
  }

  constructor(readonly topic: string) {}

  private frame(id: string, value: Record<string, unknown>): { key: Buffer; value: Buffer } {
    return {
      key: encodeFramed(this.keyType, this.keySchemaId, { id }),
      value: encodeFramed(this.valueType, this.valueSchemaId, value),
    };
  }

  begin(id: string, tsMs: number, commitLsn: bigint) {
    return this.frame(id, { status: 'BEGIN', id, event_count: null, data_collections: null, ts_ms: tsMs, commit_lsn: commitLsn });
  }

  end(id: string, tsMs: number, commitLsn: bigint, perCollection: Map<string, number>) {
    const collections = [...perCollection].map(([data_collection, event_count]) => ({ data_collection, event_count }));
    const total = collections.reduce((n, c) => n + c.event_count, 0);
    return this.frame(id, { status: 'END', id, event_count: total, data_collections: collections, ts_ms: tsMs, commit_lsn: commitLsn });
  }
}

import { ConfigError } from '../errors.ts';
import type { Type } from 'avsc';
import type { CatalogColumn, CatalogTable } from '../source/catalog.ts';
import { mapColumn, type ColumnMapping, type DecimalHandlingMode, type TimestamptzHandlingMode } from '../source/type-mapping.ts';
import { createAvroType, dedupeNamedTypes, type AvroSchema } from './avro-types.ts';
import { avroName, avroNamespace, uniqueAvroNames } from './avro-names.ts';
import { encodeFramed } from './schema-registry.ts';
import type { TupleView } from '../source/pgoutput-decoder.ts';
import { AvroWriter } from './avro-writer.ts';
import { RowEventWriter, type Op, type StreamPosition } from './row-event-writer.ts';

/** One writer for every codec: events are written one at a time, each into its own view of a shared slab. */
const streamWriter = new AvroWriter();

/**
 * Debezium's change-event envelope for one table: the key schema (primary-key
 * columns) and the value schema `{ before, after, source, op, ts_ms, transaction }`,
 * so existing Debezium consumers read Tide's topics unchanged.
 *
 * Tide adds two things to `source`: `commit_lsn` and `event_index`. `source.lsn`
 * alone is not monotonic across interleaved transactions; (commit_lsn,
 * event_index) is, and it is the position consumers order and deduplicate by.
 * And `unchanged_toast`: columns whose value an update did not carry (see README).
 */
export const TIDE_VERSION = '0.1.0';
export type { Op } from './row-event-writer.ts';
/** The values Debezium gives source.snapshot: the initial snapshot's records, incremental-snapshot records, and 'false' for streamed changes. */
export type SnapshotMarker = 'first' | 'first_in_data_collection' | 'true' | 'last_in_data_collection' | 'last' | 'incremental' | 'false';

export interface SourceInfo {
  name: string;
  db: string;
  schema: string;
  table: string;
  tsMs: number;
  /** Debezium's source.snapshot (io.debezium.connector.SnapshotRecord, lower-case): see snapshotMarker in snapshot.ts. */
  snapshot: SnapshotMarker;
  txId: number | null;
  lsn: bigint | null;
  commitLsn: bigint;
  eventIndex: number;
  /** End LSN of the transaction committed before this event's (Debezium's lastCommitLsn), when known. */
  lastCommitLsn?: bigint | null;
}

/**
 * `source.sequence` as Debezium's Postgres connector fills it: a JSON array of two decimal strings,
 * `["<lastCommitLsn>","<lsn>"]`, the end LSN of the last transaction committed before this event and
 * the event's own LSN; either may be null (Debezium's SourceInfo.sequence(), debezium-connector-postgres).
 * A snapshot row has no WAL position of its own: its LSN is the snapshot's position, as in Debezium.
 */
export function debeziumSequence(lastCommitLsn: bigint | number | null | undefined, lsn: bigint | number | null): string {
  return `[${lastCommitLsn == null ? 'null' : `"${lastCommitLsn}"`},${lsn === null ? 'null' : `"${lsn}"`}]`;
}

/** Raw text values as pgoutput delivers them: null = SQL NULL, undefined = unchanged TOAST value. */
export type RawRow = Record<string, string | null | undefined>;

interface CodecColumn {
  name: string;
  avroName: string;
  nullable: boolean;
  mapping: ColumnMapping;
}

/** The envelope's `source` block, as Debezium's PostgreSQL connector names it, plus commit_lsn and event_index. */
export const SOURCE_SCHEMA = {
  type: 'record',
  name: 'Source',
  namespace: 'io.debezium.connector.postgresql',
  fields: [
    { name: 'version', type: 'string' },
    { name: 'connector', type: 'string' },
    { name: 'name', type: 'string' },
    { name: 'ts_ms', type: 'long' },
    { name: 'snapshot', type: ['string', 'null'], default: 'false' },
    { name: 'db', type: 'string' },
    { name: 'sequence', type: ['null', 'string'], default: null },
    { name: 'schema', type: 'string' },
    { name: 'table', type: 'string' },
    { name: 'txId', type: ['null', 'long'], default: null },
    { name: 'lsn', type: ['null', 'long'], default: null },
    { name: 'xmin', type: ['null', 'long'], default: null },
    { name: 'commit_lsn', type: 'long', doc: 'LSN of the transaction commit; with event_index, the total order of events' },
    { name: 'event_index', type: 'long', doc: 'position of the event within its transaction, from 0' },
  ],
};

const TRANSACTION_BLOCK = {
  type: 'record',
  name: 'block',
  namespace: 'event',
  fields: [
    { name: 'id', type: 'string' },
    { name: 'total_order', type: 'long' },
    { name: 'data_collection_order', type: 'long' },
  ],
};

/**
 * Whether a column may be null in the Avro schema: every column but the primary key. NOT NULL is not in the
 * WAL (pgoutput's Relation message has no such flag), and a column that is NOT NULL now may have held NULLs
 * in WAL a lagging connector still reads (`ADD COLUMN`, rows, then `SET NOT NULL`), or may lose it later
 * (`DROP NOT NULL`) without a schema change Tide could see. So the schema never promises it; primary-key
 * columns are NOT NULL by definition. The same rule holds for the snapshot, so both register one schema.
 */
export function avroNullable(col: Pick<CatalogColumn, 'name'>, table: Pick<CatalogTable, 'keyColumns'>): boolean {
  return !table.keyColumns.includes(col.name);
}

export class TableCodec {
  readonly topic: string;
  readonly keySchema: object;
  readonly valueSchema: object;
  private readonly keyType: Type;
  private readonly valueType: Type;
  private readonly columns: CodecColumn[];
  private readonly keyColumns: CodecColumn[];
  keySchemaId = -1;
  valueSchemaId = -1;
  private rowWriter: RowEventWriter | undefined;
  private keyStreamIndexes: number[] | undefined;

  constructor(
    readonly table: CatalogTable,
    topicPrefix: string,
    opts: {
      decimalHandlingMode: DecimalHandlingMode;
      timestamptzHandlingMode?: TimestamptzHandlingMode;
      excludedColumns?: (qualifiedColumn: string) => boolean;
      /** Earlier names of renamed columns, newest first (field-aliases.ts): Avro `aliases` of their fields. */
      renamedFrom?: ReadonlyMap<string, string[]>;
    },
    warn: (message: string, details: Record<string, unknown>) => void,
  ) {
    this.topic = `${topicPrefix}.${table.schema}.${table.name}`;
    const kept = table.columns.filter((c) => !opts.excludedColumns?.(`${table.qualified}.${c.name}`));
    const names = uniqueAvroNames(
      table.qualified,
      kept.map((c) => c.name),
    );
    this.columns = kept.map((c) => {
      const nullable = avroNullable(c, table);
      return {
        name: c.name,
        avroName: names.get(c.name)!,
        nullable,
        mapping: mapColumn({ ...c, notNull: !nullable }, opts, (m, d) => warn(m, { table: table.qualified, column: c.name, ...d })),
      };
    });
    this.keyColumns = table.keyColumns.map((k) => {
      const col = this.columns.find((c) => c.name === k);
      if (!col)
        throw new ConfigError(
          'column.exclude.list',
          `matches primary-key column ${k} of table ${table.qualified}, which cannot be excluded: the key identifies the row. Narrow the pattern.`,
        );
      return { ...col, nullable: false };
    });
    const ns = avroNamespace(topicPrefix, table.schema, table.name);
    const field = (c: CodecColumn) => {
      const from = opts.renamedFrom?.get(c.name);
      return {
        name: c.avroName,
        type: c.nullable ? ['null', c.mapping.avroType] : c.mapping.avroType,
        ...(c.nullable ? { default: null } : {}),
        // A renamed column: Avro schema resolution reads the old name's values into this field (consumers
        // and the registry's compatibility check); tide.renamed_from keeps the Postgres names for the sink.
        ...(from?.length ? { aliases: from.map(avroName), 'tide.renamed_from': from } : {}),
        ...(c.avroName !== c.name ? { 'tide.column': c.name } : {}),
      };
    };
    this.keySchema = dedupeNamedTypes({ type: 'record', name: 'Key', namespace: ns, fields: this.keyColumns.map(field) }) as object;
    const valueRecord = { type: 'record', name: 'Value', namespace: ns, fields: this.columns.map(field) };
    // The old image: complete under REPLICA IDENTITY FULL, only the key columns otherwise (that is all Postgres logs).
    // So every field of `before` may be null, while `after` keeps each column's real nullability.
    const beforeRecord = {
      type: 'record',
      name: 'Before',
      namespace: ns,
      fields: this.columns.map((c) => field({ ...c, nullable: true })),
    };
    this.valueSchema = dedupeNamedTypes({
      type: 'record',
      name: 'Envelope',
      namespace: ns,
      fields: [
        { name: 'before', type: ['null', beforeRecord], default: null },
        { name: 'after', type: ['null', valueRecord], default: null },
        { name: 'source', type: SOURCE_SCHEMA },
        { name: 'op', type: 'string' },
        { name: 'ts_ms', type: ['null', 'long'], default: null },
        { name: 'transaction', type: ['null', TRANSACTION_BLOCK], default: null },
        {
          name: 'unchanged_toast',
          type: { type: 'array', items: 'string' },
          default: [],
          doc: 'columns of `after` whose value the change did not carry (unchanged TOAST); their value there is null',
        },
      ],
    } as AvroSchema) as object;
    this.keyType = createAvroType(this.keySchema);
    this.valueType = createAvroType(this.valueSchema);
  }

  /** Column names in the stream's order; the relation message must agree, or the codec is stale. */
  columnNames(): string[] {
    return this.columns.map((c) => c.name);
  }

  private record(row: RawRow, unchanged: string[] | undefined, cols = this.columns): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const c of cols) {
      const text = row[c.name];
      if (text === undefined) {
        out[c.avroName] = null;
        unchanged?.push(c.name);
      } else out[c.avroName] = text === null ? null : c.mapping.convert(text);
    }
    return out;
  }

  /** The Kafka key: Confluent wire format (schema id + Avro) of the primary-key columns. */
  encodeKey(row: RawRow): Buffer {
    return encodeFramed(this.keyType, this.keySchemaId, this.record(row, undefined, this.keyColumns));
  }

  /** The Kafka value: Confluent wire format (schema id + Avro) of the envelope. */
  encodeValue(
    op: Op,
    before: RawRow | null,
    after: RawRow | null,
    source: SourceInfo,
    totalOrder: number,
    collectionOrder: number,
  ): Buffer {
    const unchanged: string[] = [];
    const value = {
      before: before ? this.record(before, undefined) : null,
      after: after ? this.record(after, unchanged) : null,
      source: {
        version: TIDE_VERSION,
        connector: 'postgresql',
        name: source.name,
        ts_ms: source.tsMs,
        snapshot: source.snapshot,
        db: source.db,
        sequence: debeziumSequence(source.lastCommitLsn, source.lsn ?? source.commitLsn),
        schema: source.schema,
        table: source.table,
        txId: source.txId,
        lsn: source.lsn,
        xmin: null,
        commit_lsn: source.commitLsn,
        event_index: source.eventIndex,
      },
      op,
      ts_ms: Date.now(),
      transaction:
        source.txId === null
          ? null
          : { id: `${source.txId}:${source.commitLsn}`, total_order: totalOrder, data_collection_order: collectionOrder },
      unchanged_toast: unchanged,
    };
    return encodeFramed(this.valueType, this.valueSchemaId, value);
  }

  /**
   * A streamed change as a Kafka message, written from pgoutput tuples (see row-event-writer.ts): the same
   * bytes encodeKey/encodeValue give for the same row as text. `null` key for a truncate.
   */
  streamEvent(
    op: Op,
    before: TupleView | null,
    after: TupleView | null,
    position: StreamPosition,
  ): { topic: string; key: Buffer | null; value: Buffer } {
    const writer = (this.rowWriter ??= this.createRowWriter());
    const keyRow = after ?? before;
    const key = op === 't' || !keyRow ? null : writer.writeKey(streamWriter, this.keySchemaId, keyRow);
    return { topic: this.topic, key, value: writer.writeValue(streamWriter, this.valueSchemaId, op, before, after, position) };
  }

  /** The Kafka key of a streamed row (its primary-key columns), as streamEvent writes it. */
  streamKey(row: TupleView): Buffer {
    return (this.rowWriter ??= this.createRowWriter()).writeKey(streamWriter, this.keySchemaId, row);
  }

  /** Whether an update moved the row to another primary key: some key column present in `before` differs in `after`. */
  keyChanged(before: TupleView, after: TupleView): boolean {
    const keys = (this.keyStreamIndexes ??= this.keyColumns.map((k) => this.table.columns.findIndex((c) => c.name === k.name)));
    for (const i of keys) if (before.starts[i]! >= 0 && !before.sameValue(i, after)) return true;
    return false;
  }

  private createRowWriter(): RowEventWriter {
    const index = new Map(this.table.columns.map((c, i) => [c.name, i]));
    const cols = (list: CodecColumn[]) =>
      list.map((c) => ({ name: c.name, streamIndex: index.get(c.name)!, nullable: c.nullable, mapping: c.mapping }));
    return new RowEventWriter(TIDE_VERSION, this.table.qualified, this.table.columns.length, cols(this.columns), cols(this.keyColumns));
  }

  /** The key columns of a framed key, as JSON (for messages). */
  describeKey(framed: Buffer | null): string {
    if (!framed) return 'null';
    try {
      return JSON.stringify(this.keyType.fromBuffer(framed.subarray(5)), (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v));
    } catch {
      return `0x${framed.toString('hex')}`;
    }
  }

  /** Decode a value this codec framed (for tests and tools). */
  decodeValue(framed: Buffer): unknown {
    return this.valueType.fromBuffer(framed.subarray(5));
  }
}

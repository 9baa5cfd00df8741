import type { TableCodec, Op } from '../events/envelope.ts';
import type { OutgoingMessage } from '../events/kafka-producer.ts';
import type { SourceNames, StreamPosition } from '../events/row-event-writer.ts';
import type { TransactionEvents } from '../events/transaction-events.ts';
import type { Lsn } from './lsn.ts';
import { PgoutputDecoder, type RelationMessage, type TupleView } from './pgoutput-decoder.ts';
import type { EventPublisher } from './publisher.ts';
import type { ReplicationHandler } from './replication-stream.ts';
import { relationIdentityGap } from './replica-identity.ts';

/** Debezium's record headers on the two events of a primary-key change (RelationalChangeRecordEmitter). */
export const NEW_KEY_HEADER = '__debezium.newkey';
export const OLD_KEY_HEADER = '__debezium.oldkey';

/**
 * pgoutput messages → change events, in stream order, for the publisher.
 *
 * Everything is synchronous per message unless it must wait: a relation
 * message (catalog and registry lookups) or a full batch while the previous
 * one is in flight. Then onData returns a promise and the replication stream
 * holds until it settles. Rows are encoded while their message is decoded
 * (TupleViews point into the message), before anything else can run.
 */
export interface ChangeHandlerOptions {
  publisher: EventPublisher;
  txEvents: TransactionEvents;
  codecs: Map<number, TableCodec>;
  topicPrefix: string;
  db: string;
  tombstonesOnDelete: boolean;
  /** A relation message for a captured table: (re)build its codec. */
  onRelation(msg: RelationMessage): Promise<void>;
  /** False after a pause or failure: messages still queued must not be applied (a COMMIT among them would confirm past the change that stopped us). */
  isStreaming(): boolean;
  confirmedLsn(): Lsn;
  onError(err: Error): void;
  /** Counts published events by table and op (metrics); plain in-memory increments. */
  events?: { add(table: string, op: string, n?: number): void };
  /** Told every row change (key null: a truncate) with its transaction, for incremental snapshots' windows. */
  onChange?(xid: number, relationOid: number, key: Buffer | null): void;
  /** A logical decoding message (watermarks, signals; not the heartbeat), with the commit LSN of its transaction if it has one. */
  onMessage?(
    msg: { transactional: boolean; lsn: bigint; prefix: string; content: Buffer },
    commitLsn: bigint | undefined,
  ): Promise<void> | undefined;
}

interface Transaction {
  xid: number;
  commitLsn: bigint;
  tsMs: number;
  name: string;
  /** End LSN of the transaction committed before this one (source.sequence). */
  lastCommitLsn: bigint | null;
  index: number;
  perTable: Map<string, number>;
}

export class ChangeHandler implements ReplicationHandler {
  /** Start of the last message received, for the status. */
  received: number | bigint = 0;
  /** Change events published so far. */
  eventsTotal = 0;
  private tx: Transaction | undefined;
  /**
   * End LSN of the last transaction seen to commit: source.sequence's first element, as Debezium's
   * lastCommitLsn. Before the first COMMIT of this stream, the slot's confirmed position (the end of the
   * last transaction delivered before it).
   */
  private lastCommitLsn: bigint | undefined;
  private readonly decoder = new PgoutputDecoder();
  /** Schema and table of each relation as the latest relation message named them. */
  private readonly names = new Map<number, SourceNames>();
  /** Reused for every event: the encoder reads it synchronously. */
  private readonly position: StreamPosition = {
    names: { name: '', db: '', schema: '', table: '' },
    tsMs: 0,
    txId: 0,
    txName: '',
    lsn: 0,
    commitLsn: 0n,
    lastCommitLsn: null,
    eventIndex: 0,
    totalOrder: 0,
    collectionOrder: 0,
  };

  constructor(private readonly o: ChangeHandlerOptions) {}

  confirmedLsn(): Lsn {
    return this.o.confirmedLsn();
  }

  onError(err: Error): void {
    this.o.onError(err);
  }

  onData(walStart: number | bigint, buf: Buffer, offset: number): Promise<void> | undefined {
    if (!this.o.isStreaming()) return undefined;
    this.received = walStart;
    const msg = this.decoder.decode(buf, offset);
    switch (msg.tag) {
      case 'insert':
        return this.emit('c', msg.relationOid, null, msg.after);
      case 'update': {
        const codec = this.o.codecs.get(msg.relationOid);
        if (!codec) return undefined;
        const after = msg.after!;
        if (msg.before && codec.keyChanged(msg.before, after)) {
          // A primary-key change, as Debezium emits it (RelationalChangeRecordEmitter): a delete of the old key
          // (and its tombstone) with header __debezium.newkey, then a create of the new key with __debezium.oldkey.
          // The header values are the keys as their records carry them (Confluent-framed Avro).
          const oldKey = Buffer.from(codec.streamKey(msg.before));
          const newKey = Buffer.from(codec.streamKey(after));
          const wait = this.emit('d', msg.relationOid, msg.before, null, { [NEW_KEY_HEADER]: newKey });
          return this.emit('c', msg.relationOid, null, after, { [OLD_KEY_HEADER]: oldKey }) ?? wait;
        }
        return this.emit('u', msg.relationOid, msg.beforeIsKey ? null : msg.before, after);
      }
      case 'delete':
        return this.emit('d', msg.relationOid, msg.before, null);
      case 'begin':
        this.lastCommitLsn ??= this.o.confirmedLsn();
        this.tx = {
          xid: msg.xid,
          commitLsn: msg.commitLsn,
          tsMs: msg.commitTimeMs,
          name: `${msg.xid}:${msg.commitLsn}`,
          lastCommitLsn: this.lastCommitLsn > 0n ? this.lastCommitLsn : null,
          index: 0,
          perTable: new Map(),
        };
        return undefined;
      case 'commit': {
        let wait: Promise<void> | undefined;
        const tx = this.tx;
        if (tx && tx.index > 0) {
          const { topic } = this.o.txEvents;
          wait = this.o.publisher.push({ topic, ...this.o.txEvents.end(tx.name, tx.tsMs, tx.commitLsn, tx.perTable) });
        }
        this.o.publisher.commit(msg.endLsn, tx && tx.index > 0 ? tx.tsMs : undefined);
        this.lastCommitLsn = msg.endLsn;
        this.tx = undefined;
        return wait;
      }
      case 'relation':
        this.names.set(msg.relationOid, { name: this.o.topicPrefix, db: this.o.db, schema: msg.schema, table: msg.name });
        return this.o.onRelation(msg).then(() => {
          // Before any row under this relation: an identity that cannot show a primary-key change stops the stream.
          const codec = this.o.codecs.get(msg.relationOid);
          const gap = codec && relationIdentityGap(msg, codec.table.keyColumns);
          if (gap) throw gap;
        });
      case 'truncate': {
        let wait: Promise<void> | undefined;
        for (const oid of msg.relationOids) wait = this.emit('t', oid, null, null) ?? wait;
        return wait;
      }
      case 'message':
        return this.o.onMessage?.(msg, msg.transactional ? this.tx?.commitLsn : undefined);
      default:
        return undefined; // origin and type messages carry no row
    }
  }

  private emit(
    op: Op,
    oid: number,
    before: TupleView | null,
    after: TupleView | null,
    headers?: Record<string, Buffer>,
  ): Promise<void> | undefined {
    const codec = this.o.codecs.get(oid);
    const tx = this.tx;
    const names = this.names.get(oid);
    if (!codec || !tx || !names) return undefined;
    const publisher = this.o.publisher;
    let wait: Promise<void> | undefined;
    if (tx.index === 0) {
      const { topic } = this.o.txEvents;
      wait = publisher.push({ topic, ...this.o.txEvents.begin(tx.name, tx.tsMs, tx.commitLsn) });
    }
    const table = codec.table.qualified;
    const collectionOrder = (tx.perTable.get(table) ?? 0) + 1;
    tx.perTable.set(table, collectionOrder);
    const index = tx.index++;
    const p = this.position;
    p.names = names;
    p.tsMs = tx.tsMs;
    p.txId = tx.xid;
    p.txName = tx.name;
    p.lsn = this.received;
    p.commitLsn = tx.commitLsn;
    p.lastCommitLsn = tx.lastCommitLsn;
    p.eventIndex = index;
    p.totalOrder = index + 1;
    p.collectionOrder = collectionOrder;
    const event: OutgoingMessage = codec.streamEvent(op, before, after, p);
    if (headers) event.headers = headers;
    this.o.onChange?.(tx.xid, oid, event.key);
    wait = publisher.push(event) ?? wait;
    this.eventsTotal++;
    this.o.events?.add(table, op);
    if (op === 'd' && this.o.tombstonesOnDelete && event.key)
      wait =
        publisher.push(
          headers ? { topic: event.topic, key: event.key, value: null, headers } : { topic: event.topic, key: event.key, value: null },
        ) ?? wait;
    return wait;
  }
}

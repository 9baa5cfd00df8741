import { TideError } from '../errors.ts';
import type { Lsn } from './lsn.ts';

/**
 * pgoutput protocol version 1, decoded by hand (PostgreSQL docs, "Logical
 * Replication Message Formats", protocol-logicalrep-message-formats.html).
 *
 * pg-logical-replication's parser turns every row into an object keyed by
 * column name, decodes every value with TextDecoder and formats LSNs as
 * strings; on a 1M-row drain that was ~15% of the source's CPU plus garbage.
 * Here a row is a TupleView: offsets of each value's text in the message
 * buffer, in one reused typed array, so the encoder reads (or copies) the
 * bytes directly and nothing is allocated per row. Rarer messages (begin,
 * commit, relation, truncate, message) become small objects.
 *
 * Postgres sends a Relation message before the first change of a table in a
 * session and again after the table changed, so the column positions of a
 * tuple always match the latest Relation message of its table.
 */

/** Kind of one value in a tuple: its text, SQL NULL, or an unchanged TOAST value the message does not carry. */
export const NULL_VALUE = -1;
export const UNCHANGED_TOAST = -2;

/** Postgres allows at most 1664 columns in a tuple (MaxTupleAttributeNumber). */
const MAX_COLUMNS = 1664;

/** The values of one tuple: column i is text buf[start(i), end(i)), or NULL_VALUE / UNCHANGED_TOAST in start(i). Valid until the next decode. */
export class TupleView {
  buf: Buffer = Buffer.alloc(0);
  count = 0;
  readonly starts = new Int32Array(MAX_COLUMNS);
  readonly ends = new Int32Array(MAX_COLUMNS);

  /** Column i as a JS value: its text, null for SQL NULL, undefined for an unchanged TOAST value. */
  text(i: number): string | null | undefined {
    const s = this.starts[i]!;
    if (s === NULL_VALUE) return null;
    if (s === UNCHANGED_TOAST) return undefined;
    return this.buf.toString('utf8', s, this.ends[i]!);
  }

  /** Whether column i holds the same value (same text, or both NULL) in both tuples. */
  sameValue(i: number, other: TupleView): boolean {
    const a = this.starts[i]!;
    const b = other.starts[i]!;
    if (a < 0 || b < 0) return a === b;
    return this.buf.compare(other.buf, b, other.ends[i]!, a, this.ends[i]!) === 0;
  }
}

export interface RelationColumn {
  /** 1 = part of the replica identity */
  flags: number;
  name: string;
  typeOid: number;
  typeMod: number;
}

export interface RelationMessage {
  tag: 'relation';
  relationOid: number;
  /** As sent: '' stands for pg_catalog. */
  schema: string;
  name: string;
  replicaIdentity: 'default' | 'nothing' | 'full' | 'index';
  columns: RelationColumn[];
  /** Names of the replica identity columns. */
  keyColumns: string[];
}

/**
 * An insert, update or delete. One object is reused for every row message.
 * - insert: `after`.
 * - update: `after`, and `before` when Postgres sent the old row (REPLICA IDENTITY FULL: beforeIsKey false)
 *   or the old key (the key changed: beforeIsKey true, non-key columns NULL).
 * - delete: `before`, the old key (default identity) or the whole old row (FULL).
 */
export interface RowMessage {
  tag: 'insert' | 'update' | 'delete';
  relationOid: number;
  before: TupleView | null;
  beforeIsKey: boolean;
  after: TupleView | null;
}

export type PgoutputMessage =
  | { tag: 'begin'; commitLsn: Lsn; commitTimeMs: number; xid: number }
  | { tag: 'commit'; commitLsn: Lsn; endLsn: Lsn; commitTimeMs: number }
  | RelationMessage
  | RowMessage
  | { tag: 'truncate'; relationOids: number[]; cascade: boolean; restartIdentity: boolean }
  | { tag: 'message'; transactional: boolean; lsn: Lsn; prefix: string; content: Buffer }
  | { tag: 'origin' | 'type' };

export class PgoutputProtocolError extends TideError {
  constructor(message: string) {
    super(
      `pgoutput: ${message}. The replication stream is not what protocol version 1 describes; check that the slot uses the pgoutput plugin.`,
    );
    this.name = 'PgoutputProtocolError';
  }
}

/** Microseconds between 1970-01-01 and Postgres' epoch 2000-01-01. */
const PG_EPOCH_MICROS = 946_684_800_000_000;
const TWO32 = 4294967296;

const IDENTITY: Record<number, RelationMessage['replicaIdentity']> = { 0x64: 'default', 0x6e: 'nothing', 0x66: 'full', 0x69: 'index' };

export class PgoutputDecoder {
  private buf: Buffer = Buffer.alloc(0);
  private pos = 0;
  private end = 0;
  private readonly tuples = [new TupleView(), new TupleView()];
  private readonly row: RowMessage = { tag: 'insert', relationOid: 0, before: null, beforeIsKey: false, after: null };

  /** Decode the message in buf[offset, buf.length). Row messages reuse one object and point into `buf`. */
  decode(buf: Buffer, offset: number): PgoutputMessage {
    this.buf = buf;
    this.pos = offset + 1;
    this.end = buf.length;
    if (offset >= this.end) throw new PgoutputProtocolError('empty message');
    const tag = buf[offset]!;
    switch (tag) {
      case 0x49 /* I */:
        return this.rowMessage('insert');
      case 0x55 /* U */:
        return this.rowMessage('update');
      case 0x44 /* D */:
        return this.rowMessage('delete');
      case 0x42 /* B */: {
        const commitLsn = this.uint64();
        const commitTimeMs = this.timestampMs();
        return { tag: 'begin', commitLsn, commitTimeMs, xid: this.uint32() };
      }
      case 0x43 /* C */: {
        this.uint8(); // flags, unused
        const commitLsn = this.uint64();
        const endLsn = this.uint64();
        return { tag: 'commit', commitLsn, endLsn, commitTimeMs: this.timestampMs() };
      }
      case 0x52 /* R */:
        return this.relation();
      case 0x54 /* T */: {
        const n = this.uint32();
        const flags = this.uint8();
        const relationOids: number[] = [];
        for (let i = 0; i < n; i++) relationOids.push(this.uint32());
        return { tag: 'truncate', relationOids, cascade: (flags & 1) !== 0, restartIdentity: (flags & 2) !== 0 };
      }
      case 0x4d /* M */: {
        const flags = this.uint8();
        const lsn = this.uint64();
        const prefix = this.cstring();
        const len = this.uint32();
        this.need(len);
        const content = buf.subarray(this.pos, this.pos + len);
        return { tag: 'message', transactional: (flags & 1) !== 0, lsn, prefix, content };
      }
      case 0x4f /* O */:
        return { tag: 'origin' };
      case 0x59 /* Y */:
        return { tag: 'type' };
      default:
        throw new PgoutputProtocolError(`unknown message type ${JSON.stringify(String.fromCharCode(tag))}`);
    }
  }

  private rowMessage(tag: RowMessage['tag']): RowMessage {
    const row = this.row;
    row.tag = tag;
    row.relationOid = this.uint32();
    row.before = null;
    row.beforeIsKey = false;
    row.after = null;
    let kind = this.uint8();
    if (kind === 0x4b /* K */ || kind === 0x4f /* O */) {
      row.before = this.tuple(this.tuples[0]!);
      row.beforeIsKey = kind === 0x4b;
      if (tag === 'delete') return row;
      kind = this.uint8();
    }
    if (kind !== 0x4e /* N */ || tag === 'delete')
      throw new PgoutputProtocolError(`${tag} message has tuple type ${JSON.stringify(String.fromCharCode(kind))}`);
    const after = this.tuple(this.tuples[1]!);
    row.after = after;
    // Under REPLICA IDENTITY FULL the old row carries every value, so an unchanged TOAST value of the new row is known.
    if (row.before && !row.beforeIsKey) {
      const old = row.before;
      for (let i = 0; i < after.count; i++) {
        if (after.starts[i] === UNCHANGED_TOAST && i < old.count && old.starts[i] !== UNCHANGED_TOAST) {
          if (old.buf !== after.buf) throw new PgoutputProtocolError('old and new row in different buffers');
          after.starts[i] = old.starts[i]!;
          after.ends[i] = old.ends[i]!;
        }
      }
    }
    return row;
  }

  /** TupleData: Int16 column count, then per column 'n' (NULL), 'u' (unchanged TOAST), 't' Int32 length + text, or 'b' (binary, not requested). */
  private tuple(t: TupleView): TupleView {
    const buf = this.buf;
    const n = this.uint16();
    if (n > MAX_COLUMNS) throw new PgoutputProtocolError(`tuple with ${n} columns`);
    t.buf = buf;
    t.count = n;
    const starts = t.starts;
    const ends = t.ends;
    let pos = this.pos;
    const end = this.end;
    for (let i = 0; i < n; i++) {
      if (pos >= end) throw new PgoutputProtocolError('tuple ends early');
      const kind = buf[pos++]!;
      if (kind === 0x74 /* t */) {
        if (pos + 4 > end) throw new PgoutputProtocolError('tuple ends early');
        const len = buf.readUInt32BE(pos);
        pos += 4;
        if (pos + len > end) throw new PgoutputProtocolError('tuple value ends early');
        starts[i] = pos;
        pos += len;
        ends[i] = pos;
      } else if (kind === 0x6e /* n */) {
        starts[i] = NULL_VALUE;
      } else if (kind === 0x75 /* u */) {
        starts[i] = UNCHANGED_TOAST;
      } else {
        throw new PgoutputProtocolError(`column value of kind ${JSON.stringify(String.fromCharCode(kind))}`);
      }
    }
    this.pos = pos;
    return t;
  }

  private relation(): RelationMessage {
    const relationOid = this.uint32();
    const schema = this.cstring();
    const name = this.cstring();
    const ident = this.uint8();
    const replicaIdentity = IDENTITY[ident];
    if (!replicaIdentity) throw new PgoutputProtocolError(`relation ${schema}.${name} has replica identity ${ident}`);
    const n = this.uint16();
    const columns: RelationColumn[] = [];
    for (let i = 0; i < n; i++) {
      const flags = this.uint8();
      const colName = this.cstring();
      const typeOid = this.uint32();
      columns.push({ flags, name: colName, typeOid, typeMod: this.int32() });
    }
    return {
      tag: 'relation',
      relationOid,
      schema,
      name,
      replicaIdentity,
      columns,
      keyColumns: columns.filter((c) => (c.flags & 1) !== 0).map((c) => c.name),
    };
  }

  private need(n: number): void {
    if (this.pos + n > this.end) throw new PgoutputProtocolError('message ends early');
  }

  private uint8(): number {
    this.need(1);
    return this.buf[this.pos++]!;
  }

  private uint16(): number {
    this.need(2);
    const v = this.buf.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }

  private uint32(): number {
    this.need(4);
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  private int32(): number {
    this.need(4);
    const v = this.buf.readInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  private uint64(): bigint {
    this.need(8);
    const v = this.buf.readBigUInt64BE(this.pos);
    this.pos += 8;
    return v;
  }

  /** A commit timestamp (Int64 µs since 2000-01-01) as ms since 1970, truncated as before (µs / 1000). */
  private timestampMs(): number {
    this.need(8);
    const micros = this.buf.readInt32BE(this.pos) * TWO32 + this.buf.readUInt32BE(this.pos + 4);
    this.pos += 8;
    return Math.trunc((micros + PG_EPOCH_MICROS) / 1000);
  }

  private cstring(): string {
    const zero = this.buf.indexOf(0, this.pos);
    if (zero < 0 || zero >= this.end) throw new PgoutputProtocolError('unterminated string');
    const s = this.buf.toString('utf8', this.pos, zero);
    this.pos = zero + 1;
    return s;
  }
}

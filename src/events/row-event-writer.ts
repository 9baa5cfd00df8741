import { TideError } from '../errors.ts';
import type { ColumnMapping } from '../source/type-mapping.ts';
import { NULL_VALUE, UNCHANGED_TOAST, type TupleView } from '../source/pgoutput-decoder.ts';
import { boolBytes, dateBytes, decimalBytes, intBytes, timestampBytes } from '../source/pg-text-bytes.ts';
import { AvroWriter, compileWriter, type ValueWriter } from './avro-writer.ts';

/** Debezium's op: c create, u update, d delete, r snapshot read, t truncate. */
export type Op = 'c' | 'u' | 'd' | 'r' | 't';

/**
 * The streaming path of TableCodec: a change event's key and value (Debezium
 * envelope, Confluent framing) written straight from pgoutput tuples with
 * AvroWriter. Same bytes as TableCodec.encodeKey/encodeValue (avsc) for the
 * same row; test/unit/event-writer.test.ts holds the two to that.
 *
 * Per event it writes only what varies: the row's values, lsn, event_index,
 * ts_ms, the transaction block and unchanged_toast. The parts of `source` that
 * are fixed for a table (version, connector, name, db, schema, table) are
 * encoded once per SourceNames. Text columns are copied as bytes from the
 * WAL message (their UTF-8 text is the Avro value); other columns go through
 * their converter from text as before.
 */

/** The names in `source` that are fixed for one table of one connector. Keep one object per table: segments are cached by identity. */
export interface SourceNames {
  name: string;
  db: string;
  schema: string;
  table: string;
}

/** Where one streamed event sits: its transaction and its position in it. */
export interface StreamPosition {
  names: SourceNames;
  tsMs: number;
  txId: number;
  /** `${txId}:${commitLsn}`, the transaction block's id. */
  txName: string;
  lsn: number | bigint;
  commitLsn: bigint;
  /** End LSN of the transaction committed before this one (source.sequence's first element); null when unknown. */
  lastCommitLsn: bigint | null;
  eventIndex: number;
  totalOrder: number;
  collectionOrder: number;
}

export interface WriterColumn {
  name: string;
  /** Position of the column in the stream's tuples (the relation message's column order). */
  streamIndex: number;
  nullable: boolean;
  mapping: ColumnMapping;
}

/** How a column's non-null text becomes its Avro value (see writeField). */
const TEXT = 0; // the UTF-8 text is the value: copied as bytes
const INT = 1; // int2/int4/oid: digits, range-checked
const INT8 = 2;
const BOOL = 3;
const DATE = 4;
const TIMESTAMP = 5;
const TIMESTAMPTZ = 6;
const DECIMAL = 7;
const CONVERT = 8; // everything else: decode the text and run the column's converter

interface Slot {
  name: string;
  index: number;
  nullable: boolean;
  kind: number;
  /** INT: range; DECIMAL: scale and integer digits allowed. */
  a: number;
  b: number;
  /** The converter path, as the snapshot takes it: for CONVERT, and for the fast kinds' rare shapes. */
  convert: (text: string) => unknown;
  write: ValueWriter;
}

function slotOf(c: WriterColumn): Slot {
  const m = c.mapping;
  const f = m.fast;
  let kind = CONVERT;
  let a = 0;
  let b = 0;
  if (m.textIsValue) kind = TEXT;
  else if (f?.kind === 'int') [kind, a, b] = [INT, f.min, f.max];
  else if (f?.kind === 'int8') kind = INT8;
  else if (f?.kind === 'bool') kind = BOOL;
  else if (f?.kind === 'date') kind = DATE;
  else if (f?.kind === 'timestamp') kind = f.withZone ? TIMESTAMPTZ : TIMESTAMP;
  else if (f?.kind === 'decimal') [kind, a, b] = [DECIMAL, f.scale, f.maxIntDigits];
  return { name: c.name, index: c.streamIndex, nullable: c.nullable, kind, a, b, convert: m.convert, write: compileWriter(m.avroType) };
}

/**
 * Write the field of column `s` from its non-null text buf[start, end): the union branch when `nullable`,
 * then the value. Text columns are copied as bytes; the fast kinds parse the bytes (pg-text-bytes.ts) when
 * the text has their common shape; everything else, and the rare shapes, go through the column's converter
 * from the decoded text, as in the snapshot. A converter may return null for a value Avro cannot carry (NaN
 * in a precise decimal), which a nullable field writes as null. One function with a switch rather than a
 * closure per column: the loop over columns then calls one function, which V8 optimizes as a whole.
 */
function writeField(w: AvroWriter, s: Slot, nullable: boolean, buf: Buffer, start: number, end: number): void {
  let v = NaN;
  switch (s.kind) {
    case TEXT:
      if (nullable) w.byte(2);
      w.bytesFrom(buf, start, end);
      return;
    case INT:
      v = intBytes(buf, start, end);
      if (!(v >= s.a && v <= s.b)) v = NaN;
      break;
    case INT8:
      v = intBytes(buf, start, end);
      break;
    case BOOL:
      v = boolBytes(buf, start, end);
      if (v === v) {
        if (nullable) w.byte(2);
        w.byte(v);
        return;
      }
      break;
    case DATE:
      v = dateBytes(buf, start, end);
      break;
    case TIMESTAMP:
      v = timestampBytes(buf, start, end, false);
      break;
    case TIMESTAMPTZ:
      v = timestampBytes(buf, start, end, true);
      break;
    case DECIMAL:
      v = decimalBytes(buf, start, end, s.a, s.b);
      if (v === v) {
        if (nullable) w.byte(2);
        w.decimal(v);
        return;
      }
      break;
  }
  if (v === v) {
    // INT, INT8, DATE, TIMESTAMP(TZ): an Avro int or long
    if (nullable) w.byte(2);
    w.long(v);
    return;
  }
  const value = s.convert(buf.toString('utf8', start, end));
  if (nullable) {
    if (value === null) return w.byte(0);
    w.byte(2);
  }
  s.write(w, value);
}

export class RowEventWriter {
  private readonly all: Slot[];
  private readonly keys: Slot[];
  private namesSeen: SourceNames | undefined;
  private txSeen = '';
  private lastCommitSeen: bigint | null = null;
  private sourceHead = Buffer.alloc(0);
  private sourceNames = Buffer.alloc(0);
  /** `["<lastCommitLsn>","` or `[null,"`: source.sequence up to the event's own LSN. */
  private sequenceHead = Buffer.alloc(0);
  private commitPart = Buffer.alloc(0);
  private txPart = Buffer.alloc(0);
  private readonly scratch = new AvroWriter();

  constructor(
    private readonly version: string,
    private readonly table: string,
    private readonly width: number,
    columns: WriterColumn[],
    keyColumns: WriterColumn[],
  ) {
    this.all = columns.map(slotOf);
    this.keys = keyColumns.map(slotOf);
  }

  /** The Kafka key: the primary-key columns of `row`. */
  writeKey(w: AvroWriter, schemaId: number, row: TupleView): Buffer {
    this.check(row);
    w.begin();
    w.confluentHeader(schemaId);
    for (const s of this.keys) {
      const start = row.starts[s.index]!;
      if (start < 0) throw this.nullKey(s.name);
      writeField(w, s, false, row.buf, start, row.ends[s.index]!);
    }
    return w.end();
  }

  /** The Kafka value: the envelope. */
  writeValue(w: AvroWriter, schemaId: number, op: Op, before: TupleView | null, after: TupleView | null, p: StreamPosition): Buffer {
    if (before) this.check(before);
    if (after) this.check(after);
    if (p.names !== this.namesSeen || p.txName !== this.txSeen || p.lastCommitLsn !== this.lastCommitSeen) this.encodeTransaction(p);
    w.begin();
    w.confluentHeader(schemaId);
    // before: ['null', Before], every field nullable
    if (before) {
      w.byte(2);
      for (const s of this.all) {
        const start = before.starts[s.index]!;
        if (start < 0) w.byte(0);
        else writeField(w, s, true, before.buf, start, before.ends[s.index]!);
      }
    } else w.byte(0);
    // after: ['null', Value], fields with the column's nullability
    let unchanged: string[] | undefined;
    if (after) {
      w.byte(2);
      for (const s of this.all) {
        const start = after.starts[s.index]!;
        if (start < 0) {
          if (start === UNCHANGED_TOAST) (unchanged ??= []).push(s.name);
          if (!s.nullable) throw this.nullValue(s.name, start);
          w.byte(0);
        } else writeField(w, s, s.nullable, after.buf, start, after.ends[s.index]!);
      }
    } else w.byte(0);
    // source: version, connector, name, ts_ms, snapshot, db (fixed per transaction), sequence, schema, table, txId (fixed)
    w.raw(this.sourceHead);
    w.byte(2); // sequence: ['null', 'string'], branch 1
    w.sequence(this.sequenceHead, p.lsn);
    w.raw(this.sourceNames);
    w.byte(2);
    w.long(p.lsn);
    w.raw(this.commitPart); // xmin null, commit_lsn
    w.long(p.eventIndex);
    w.string(op);
    w.byte(2);
    w.long(Date.now());
    // transaction: id (fixed per transaction), total_order, data_collection_order
    w.raw(this.txPart);
    w.long(p.totalOrder);
    w.long(p.collectionOrder);
    // unchanged_toast
    if (unchanged) {
      w.length(unchanged.length);
      for (const n of unchanged) w.string(n);
    }
    w.byte(0);
    return w.end();
  }

  /** The envelope's parts that are the same for every event of one table in one transaction, encoded once. */
  private encodeTransaction(p: StreamPosition): void {
    const s = this.scratch;
    const n = p.names;
    s.begin();
    s.string(this.version);
    s.string('postgresql');
    s.string(n.name);
    s.long(p.tsMs);
    s.byte(0); // snapshot: ['string', 'null'], branch 0
    s.string('false');
    s.string(n.db);
    this.sourceHead = Buffer.from(s.end());
    this.sequenceHead = Buffer.from(p.lastCommitLsn === null ? '[null,"' : `["${p.lastCommitLsn}","`, 'latin1');
    s.begin();
    s.string(n.schema);
    s.string(n.table);
    s.byte(2); // txId: ['null', 'long'], branch 1
    s.long(p.txId);
    this.sourceNames = Buffer.from(s.end());
    s.begin();
    s.byte(0); // xmin: null
    s.long(p.commitLsn);
    this.commitPart = Buffer.from(s.end());
    s.begin();
    s.byte(2); // transaction: ['null', block], branch 1
    s.string(p.txName);
    this.txPart = Buffer.from(s.end());
    this.namesSeen = n;
    this.txSeen = p.txName;
    this.lastCommitSeen = p.lastCommitLsn;
  }

  private check(t: TupleView): void {
    if (t.count !== this.width)
      throw new TideError(
        `table ${this.table}: a row arrived with ${t.count} columns but the table's schema has ${this.width}; ` +
          'the relation message that announced the change was missed. Restart the connector; it re-reads the table from the catalog.',
      );
  }

  private nullKey(column: string): TideError {
    return new TideError(`table ${this.table}: primary-key column ${column} has no value in the change; a key is never NULL or unchanged.`);
  }

  private nullValue(column: string, kind: number): TideError {
    const what = kind === NULL_VALUE ? 'NULL' : 'an unchanged TOAST value';
    return new TideError(
      `table ${this.table}: column ${column} is NOT NULL in the registered schema but the change carries ${what}. ` +
        'Check the column definition in Postgres; set REPLICA IDENTITY FULL if it is a TOASTed column.',
    );
  }
}

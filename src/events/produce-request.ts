import { Writer, crc32c } from '@platformatic/kafka';

/**
 * Kafka's Produce request (versions 9 to 11, which share one request layout) with its record batches
 * (magic 2, uncompressed) written in one pass into one buffer, from whole partition batches.
 *
 * Why Tide writes bytes @platformatic/kafka already writes: the library builds every record with a Writer
 * over a list of small buffers (one allocation per varint and per field), then concatenates them twice (for
 * the CRC and for the socket); and before that its `Producer#send` makes a message object, two Maps and a
 * `topic:partition` string per record. On the source's drain of 1M rows that was about half of the process'
 * CPU and much of its garbage (bench/source/hot-path.ts; README, Performance → Source). Tide groups its
 * events into partition batches itself (idempotent-send.ts) and this encoder writes them; metadata, leaders,
 * connections, retries and the parsing of the response stay the library's.
 *
 * The bytes are the library's produce-v11 `createRequest` bytes for the same records (test/unit/produce-request.test.ts
 * holds the two to that).
 *
 * Layout (Kafka protocol guide, "Produce API" and "Record Batch"): transactional_id (compact nullable string),
 * acks int16, timeout int32, [topic: name, [partition: index int32, records (compact bytes)], tags], tags.
 * A record batch: baseOffset int64, batchLength int32, partitionLeaderEpoch int32, magic int8 (2), crc uint32
 * (CRC-32C of the rest), attributes int16, lastOffsetDelta int32, baseTimestamp int64, maxTimestamp int64,
 * producerId int64, producerEpoch int16, baseSequence int32, record count int32, records. A record: length
 * varint, attributes int8, timestampDelta varlong, offsetDelta varint, key (varint length, -1 = null), value
 * (same), header count varint, headers (key and value as varint length + bytes).
 */
/** One record: the key, value and headers of an event (header names are written as UTF-8 bytes). */
export interface BatchRecord {
  key: Buffer | null;
  value: Buffer | null;
  headers?: Record<string, Buffer>;
}

/** The records of one request for one partition: one record batch, numbered from `baseSequence`. */
export interface PartitionBatch {
  topic: string;
  partition: number;
  /** The idempotent producer's sequence number of the first record (0 without idempotence). */
  baseSequence: number;
  /** Every record's timestamp (ms), fixed when the batch is made so that a retry sends the same bytes. */
  timestamp: bigint;
  records: BatchRecord[];
}

export interface BatchOptions {
  /** -1n and 0 without idempotence. */
  producerId: bigint;
  producerEpoch: number;
}

const EMPTY_TAGS = 0;

let buf = Buffer.alloc(0);
let pos = 0;

function ensure(n: number): void {
  if (pos + n <= buf.length) return;
  const next = Buffer.allocUnsafe(Math.max(2 * buf.length, pos + n, 1 << 16));
  buf.copy(next, 0, 0, pos);
  buf = next;
}

/** Unsigned varint of a uint32 (also the zig-zag value of a negative int32, as the library writes it). */
function uvarint(v: number): void {
  v >>>= 0;
  while (v > 0x7f) {
    buf[pos++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  buf[pos++] = v;
}

function uvarintSize(v: number): number {
  v >>>= 0;
  return v < 0x80 ? 1 : v < 0x4000 ? 2 : v < 0x200000 ? 3 : v < 0x10000000 ? 4 : 5;
}

const zigzag = (v: number) => ((v << 1) ^ (v >> 31)) >>> 0;

function bytesOf(b: Uint8Array | null | undefined): void {
  if (b == null) {
    buf[pos++] = 1; // zigzag(-1)
    return;
  }
  uvarint(zigzag(b.length));
  buf.set(b, pos);
  pos += b.length;
}

const sizeOfBytes = (b: Uint8Array | null | undefined) => (b == null ? 1 : uvarintSize(zigzag(b.length)) + b.length);

function recordBatch(batch: PartitionBatch, o: BatchOptions): void {
  const records = batch.records;
  const n = records.length;
  let size = 61;
  for (let i = 0; i < n; i++) {
    const r = records[i]!;
    size += 5 + 1 + 1 + 5 + sizeOfBytes(r.key) + sizeOfBytes(r.value) + 5;
    if (r.headers) for (const k in r.headers) size += 5 + 3 * k.length + sizeOfBytes(r.headers[k]);
  }
  ensure(size);
  buf.writeBigInt64BE(0n, pos); // baseOffset
  const lengthAt = pos + 8;
  buf.writeInt32BE(0, pos + 12); // partitionLeaderEpoch
  buf[pos + 16] = 2; // magic
  const crcAt = pos + 17;
  pos += 21;
  const crcFrom = pos;
  buf.writeInt16BE(0, pos); // attributes: no compression, not transactional
  buf.writeInt32BE(n - 1, pos + 2); // lastOffsetDelta
  buf.writeBigInt64BE(batch.timestamp, pos + 6);
  buf.writeBigInt64BE(batch.timestamp, pos + 14);
  buf.writeBigInt64BE(o.producerId, pos + 22);
  buf.writeInt16BE(o.producerEpoch, pos + 30);
  buf.writeInt32BE(batch.baseSequence, pos + 32);
  buf.writeInt32BE(n, pos + 36);
  pos += 40;
  for (let i = 0; i < n; i++) {
    const r = records[i]!;
    const headers = r.headers;
    let count = 0;
    // attributes, timestamp delta (0: one timestamp per batch), offset delta, key, value
    let body = 1 + 1 + uvarintSize(zigzag(i)) + sizeOfBytes(r.key) + sizeOfBytes(r.value);
    if (headers)
      for (const k in headers) {
        const length = Buffer.byteLength(k, 'utf8');
        body += uvarintSize(zigzag(length)) + length + sizeOfBytes(headers[k]);
        count++;
      }
    body += uvarintSize(zigzag(count));
    uvarint(zigzag(body));
    buf[pos++] = 0; // attributes
    buf[pos++] = 0; // timestamp delta
    uvarint(zigzag(i));
    bytesOf(r.key);
    bytesOf(r.value);
    uvarint(zigzag(count));
    if (headers)
      for (const k in headers) {
        const length = Buffer.byteLength(k, 'utf8');
        uvarint(zigzag(length));
        pos += buf.write(k, pos, 'utf8');
        bytesOf(headers[k]);
      }
  }
  buf.writeUInt32BE(crc32c(buf.subarray(crcFrom, pos)), crcAt);
  buf.writeInt32BE(pos - lengthAt - 4, lengthAt);
}

/**
 * The Produce request (v9-v11) for `batches`, which come grouped by topic (a topic's batches next to each
 * other), at most one per partition. Non-transactional: transactional_id is null.
 */
export function encodeProduceBatches(acks: number, timeout: number, batches: readonly PartitionBatch[], o: BatchOptions): Writer {
  pos = 0;
  ensure(16);
  uvarint(0); // transactional_id: null
  buf.writeInt16BE(acks, pos);
  buf.writeInt32BE(timeout, pos + 2);
  pos += 6;
  let topics = 0;
  for (let i = 0; i < batches.length; i++) if (i === 0 || batches[i]!.topic !== batches[i - 1]!.topic) topics++;
  uvarint(topics + 1);
  for (let i = 0; i < batches.length;) {
    const topic = batches[i]!.topic;
    let end = i;
    while (end < batches.length && batches[end]!.topic === topic) end++;
    ensure(5 + 3 * topic.length + 5);
    uvarint(Buffer.byteLength(topic, 'utf8') + 1);
    pos += buf.write(topic, pos, 'utf8');
    uvarint(end - i + 1);
    for (; i < end; i++) {
      const batch = batches[i]!;
      ensure(10);
      buf.writeInt32BE(batch.partition, pos);
      pos += 4;
      // The batch's compact-bytes length (length + 1) goes before it: leave 5 bytes, then close the gap.
      const lengthAt = pos;
      pos += 5;
      recordBatch(batch, o);
      const length = pos - lengthAt - 5;
      const used = uvarintSize(length + 1);
      const after = pos;
      pos = lengthAt;
      uvarint(length + 1);
      if (used < 5) buf.copyWithin(pos, lengthAt + 5, after);
      pos = after - (5 - used);
      ensure(1);
      buf[pos++] = EMPTY_TAGS; // partition's tagged fields
    }
    ensure(1);
    buf[pos++] = EMPTY_TAGS; // topic's tagged fields
  }
  ensure(1);
  buf[pos++] = EMPTY_TAGS; // request's tagged fields
  const out = Buffer.allocUnsafe(pos);
  buf.copy(out, 0, 0, pos);
  const writer = Writer.create().append(out);
  if (acks === 0) writer.context.noResponse = true;
  return writer;
}

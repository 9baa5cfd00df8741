import { Writer, crc32c } from '@platformatic/kafka';

/**
 * Kafka's Produce request (versions 9 to 11, which share one request layout) with its record batches
 * (magic 2, uncompressed) written in one pass into one buffer.
 *
 * Why Tide writes bytes @platformatic/kafka already writes: the library builds every record with a Writer
 * over a list of small buffers (one allocation per varint and per field), then concatenates them twice (for
 * the CRC and for the socket). On the source's drain of 1M rows that was about a third of the process' CPU
 * and much of its garbage (bench/source/hot-path.ts; README, Performance → Source). Everything else stays
 * the library's: metadata, leaders, connections, the idempotent producer's id and sequence numbers, retries,
 * and the response (`TidePlatformaticProducer` in kafka-producer.ts swaps in this request encoder only).
 *
 * The bytes are the library's `createRequest` bytes for the same arguments (test/unit/produce-request.test.ts
 * holds the two to that). Anything this encoder does not cover (compression, header keys or values that are
 * not bytes) returns undefined and the caller uses the library's own encoder.
 *
 * Layout (Kafka protocol guide, "Produce API" and "Record Batch"): transactional_id (compact nullable string),
 * acks int16, timeout int32, [topic: name, [partition: index int32, records (compact bytes)], tags], tags.
 * A record batch: baseOffset int64, batchLength int32, partitionLeaderEpoch int32, magic int8 (2), crc uint32
 * (CRC-32C of the rest), attributes int16, lastOffsetDelta int32, baseTimestamp int64, maxTimestamp int64,
 * producerId int64, producerEpoch int16, baseSequence int32, record count int32, records. A record: length
 * varint, attributes int8, timestampDelta varlong, offsetDelta varint, key (varint length, -1 = null), value
 * (same), header count varint, headers (key and value as varint length + bytes).
 */
export interface ProduceMessage {
  topic: string;
  partition?: number;
  key?: Uint8Array | null;
  value?: Uint8Array | null;
  headers?: Map<unknown, unknown>;
  timestamp?: bigint | number;
}

export interface ProduceOptions {
  compression?: string;
  producerId?: bigint;
  producerEpoch?: number;
  sequences?: { getWithDefault(key: string, fallback: number): number | undefined };
  transactionalId?: string;
  partitionLeaderEpoch?: number;
}

const IS_TRANSACTIONAL = 1 << 4;
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

/**
 * Zig-zag varlong (a record's timestamp delta), as Kafka's spec has it. For deltas beyond ±2^31 ms the
 * library writes another value (its int64ZigZagEncode shifts by 31, not 63); Tide never sets timestamps, so
 * its deltas are 0.
 */
function varlong(v: bigint): void {
  let z = BigInt.asUintN(64, (v << 1n) ^ (v >> 63n));
  while (z > 0x7fn) {
    buf[pos++] = Number(z & 0x7fn) | 0x80;
    z >>= 7n;
  }
  buf[pos++] = Number(z);
}

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

function isBytes(v: unknown): v is Uint8Array | null | undefined {
  return v == null || v instanceof Uint8Array;
}

/** The library's groupByProperty: an object's keys, so integer-like keys (partitions) come out in ascending order. */
function groupBy<T extends ProduceMessage>(entries: T[], property: 'topic' | 'partition'): [string, T[]][] {
  const buckets = Object.create(null) as Record<string, T[]>;
  for (const e of entries) (buckets[String(e[property])] ||= []).push(e);
  return Object.entries(buckets);
}

function recordBatch(messages: ProduceMessage[], o: ProduceOptions): void {
  const n = messages.length;
  const first = BigInt(messages[0]!.timestamp!);
  let max = first;
  let size = 61;
  for (const m of messages) {
    const ts = (m.timestamp = BigInt(m.timestamp!));
    if (ts > max) max = ts;
    size += 5 + 1 + 10 + 5 + sizeOfBytes(m.key) + sizeOfBytes(m.value) + 5;
    if (m.headers) for (const [k, v] of m.headers) size += sizeOfBytes(k as Uint8Array) + sizeOfBytes(v as Uint8Array);
  }
  ensure(size);
  buf.writeBigInt64BE(0n, pos); // baseOffset
  const lengthAt = pos + 8;
  buf.writeInt32BE(o.partitionLeaderEpoch ?? 0, pos + 12);
  buf[pos + 16] = 2; // magic
  const crcAt = pos + 17;
  pos += 21;
  const crcFrom = pos;
  buf.writeInt16BE(o.transactionalId ? IS_TRANSACTIONAL : 0, pos);
  buf.writeInt32BE(n - 1, pos + 2);
  buf.writeBigInt64BE(first, pos + 6);
  buf.writeBigInt64BE(max, pos + 14);
  buf.writeBigInt64BE(o.producerId ?? -1n, pos + 22);
  buf.writeInt16BE(o.producerEpoch ?? 0, pos + 30);
  const m0 = messages[0]!;
  buf.writeInt32BE(o.sequences ? (o.sequences.getWithDefault(`${m0.topic}:${m0.partition}`, 0) ?? 0) : 0, pos + 32);
  buf.writeInt32BE(n, pos + 36);
  pos += 40;
  for (let i = 0; i < n; i++) {
    const m = messages[i]!;
    const ts = m.timestamp as bigint;
    const delta = ts === first ? 0n : ts - first; // no BigInt arithmetic (an allocation) for Tide's records, which share one timestamp
    const small = delta >= -0x40000000n && delta < 0x40000000n;
    const headers = m.headers;
    let body = 1 + (small ? uvarintSize(zigzag(Number(delta))) : 10) + uvarintSize(zigzag(i)) + sizeOfBytes(m.key) + sizeOfBytes(m.value);
    body += uvarintSize(zigzag(headers?.size ?? 0));
    if (headers) for (const [k, v] of headers) body += sizeOfBytes(k as Uint8Array) + sizeOfBytes(v as Uint8Array);
    if (!small) {
      // A timestamp far from the batch's first: size the varlong exactly.
      const save = pos;
      varlong(delta);
      body += pos - save - 10;
      pos = save;
    }
    uvarint(zigzag(body));
    buf[pos++] = 0; // attributes
    if (small) uvarint(zigzag(Number(delta)));
    else varlong(delta);
    uvarint(zigzag(i));
    bytesOf(m.key);
    bytesOf(m.value);
    uvarint(zigzag(headers?.size ?? 0));
    if (headers)
      for (const [k, v] of headers) {
        bytesOf(k as Uint8Array);
        bytesOf(v as Uint8Array);
      }
  }
  buf.writeUInt32BE(crc32c(buf.subarray(crcFrom, pos)), crcAt);
  buf.writeInt32BE(pos - lengthAt - 4, lengthAt);
}

/**
 * The library's produce-v9/v10/v11 `createRequest(acks, timeout, topicData, options)`, or undefined when this
 * encoder does not cover the arguments (then use the library's). Mutates the messages as the library does
 * (missing partition → 0, missing timestamp → now).
 */
export function encodeProduceRequest(
  acks: number,
  timeout: number,
  topicData: ProduceMessage[],
  o: ProduceOptions = {},
): Writer | undefined {
  if ((o.compression ?? 'none') !== 'none') return undefined;
  for (const m of topicData) {
    if (!isBytes(m.key) || !isBytes(m.value)) return undefined;
    if (m.headers) for (const [k, v] of m.headers) if (!isBytes(k) || !isBytes(v)) return undefined;
  }
  const now = BigInt(Date.now());
  for (const m of topicData) {
    m.partition ??= 0;
    m.timestamp ??= now;
  }
  pos = 0;
  const tid = o.transactionalId == null ? null : Buffer.from(o.transactionalId, 'utf8');
  ensure(16 + (tid?.length ?? 0));
  if (tid) {
    uvarint(tid.length + 1);
    buf.set(tid, pos);
    pos += tid.length;
  } else uvarint(0);
  buf.writeInt16BE(acks, pos);
  buf.writeInt32BE(timeout, pos + 2);
  pos += 6;
  const topics = groupBy(topicData, 'topic');
  ensure(5);
  uvarint(topics.length + 1);
  for (const [topic, messages] of topics) {
    const name = Buffer.from(topic, 'utf8');
    const partitions = groupBy(messages, 'partition');
    ensure(name.length + 10);
    uvarint(name.length + 1);
    buf.set(name, pos);
    pos += name.length;
    uvarint(partitions.length + 1);
    for (const [partition, list] of partitions) {
      ensure(10);
      buf.writeInt32BE(Number(partition), pos);
      pos += 4;
      // The batch's compact-bytes length (length + 1) goes before it: leave 5 bytes, then close the gap.
      const lengthAt = pos;
      pos += 5;
      recordBatch(list, o);
      const length = pos - lengthAt - 5;
      const used = uvarintSize(length + 1);
      const end = pos;
      pos = lengthAt;
      uvarint(length + 1);
      if (used < 5) buf.copyWithin(pos, lengthAt + 5, end);
      pos = end - (5 - used);
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

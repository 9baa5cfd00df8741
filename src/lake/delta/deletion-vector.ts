import { randomUUID } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { RoaringBitmap32 } from 'roaring-wasm';
import type { ObjectStore } from '../storage/object-store.ts';
import { DeltaLogError } from './delta-errors.ts';
import { joinPath } from './log-paths.ts';

/**
 * Deletion vectors (PROTOCOL.md "Deletion Vectors", and the appendix "Deletion Vector Format" /
 * "Deletion Vector File Storage Format" of delta-io/delta): the set of row indexes (0-based
 * positions in a data file) that are logically deleted from it.
 *
 * The bitmap is a "RoaringBitmapArray": magic number 1681511377 (4 bytes, little endian), then
 * RoaringBitmap's portable 64-bit format: the number of 32-bit buckets (8 bytes LE), then per
 * bucket in ascending order its key (the high 32 bits, 4 bytes LE) and a 32-bit RoaringBitmap in
 * the portable ("Java/Go") serialization. The 32-bit bitmaps are `roaring-wasm`'s (CRoaring built
 * for WebAssembly, shipped inside its npm package): the native `roaring` package downloads prebuilt
 * binaries from GitHub or compiles with node-gyp at install time, neither of which a machine that
 * reaches only registries can do. Neither package offers the 64-bit portable envelope, which is
 * 12 bytes of header per bucket, so that part is written here.
 *
 * Files (`deletion_vector_<uuid>.bin` in the table root): version byte 1, then per vector its size
 * (4 bytes big endian), the bitmap bytes and their CRC-32 (4 bytes big endian). A descriptor's
 * `offset` points at the size field (Delta's kernel reads `sizeInBytes + 8` bytes from it).
 */

/** PROTOCOL.md "Deletion Vector Descriptor Schema". */
export interface DeletionVectorDescriptor {
  /** 'u': a file named from the UUID in pathOrInlineDv; 'i': inline (Z85 of the bitmap); 'p': an absolute path. */
  storageType: 'u' | 'i' | 'p';
  pathOrInlineDv: string;
  /** Byte offset of the vector in its file; absent for inline vectors (read as 0 when absent otherwise). */
  offset?: number;
  /** Bytes of the serialised bitmap (before Z85 when inline). */
  sizeInBytes: number;
  /** Number of rows the vector deletes. */
  cardinality: number;
}

export const DV_MAGIC = 1681511377;
const DV_MAGIC_NATIVE = 1681511376;
const FILE_FORMAT_VERSION = 1;

/** PROTOCOL.md "Derived Fields": uniqueId, used with the path as a logical file's key. */
export function dvUniqueId(dv: DeletionVectorDescriptor | undefined): string | undefined {
  if (!dv) return undefined;
  return dv.offset === undefined ? `${dv.storageType}${dv.pathOrInlineDv}` : `${dv.storageType}${dv.pathOrInlineDv}@${dv.offset}`;
}

// Z85 (ZeroMQ RFC 32), the Base85 variant Delta uses. Written here: it is 30 lines, and Delta's use
// (UUIDs as 16 bytes big endian; inline bitmaps padded to 4 bytes) needs exactly the block codec.
const Z85 = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#';
const Z85_DECODE = new Map([...Z85].map((c, i) => [c, i]));

export function z85Encode(bytes: Uint8Array): string {
  const padded = new Uint8Array(Math.ceil(bytes.length / 4) * 4);
  padded.set(bytes);
  let out = '';
  for (let i = 0; i < padded.length; i += 4) {
    let v = ((padded[i]! << 24) | (padded[i + 1]! << 16) | (padded[i + 2]! << 8) | padded[i + 3]!) >>> 0;
    const chunk: string[] = [];
    for (let k = 0; k < 5; k++) {
      chunk.unshift(Z85[v % 85]!);
      v = Math.floor(v / 85);
    }
    out += chunk.join('');
  }
  return out;
}

export function z85Decode(text: string, length?: number): Uint8Array {
  if (text.length % 5 !== 0) throw new Error(`Z85 text of ${text.length} characters is not a multiple of 5`);
  const out = new Uint8Array((text.length / 5) * 4);
  for (let i = 0, o = 0; i < text.length; i += 5, o += 4) {
    let v = 0;
    for (let k = 0; k < 5; k++) {
      const d = Z85_DECODE.get(text[i + k]!);
      if (d === undefined) throw new Error(`invalid Z85 character ${JSON.stringify(text[i + k])}`);
      v = v * 85 + d;
    }
    out[o] = (v >>> 24) & 0xff;
    out[o + 1] = (v >>> 16) & 0xff;
    out[o + 2] = (v >>> 8) & 0xff;
    out[o + 3] = v & 0xff;
  }
  return length === undefined ? out : out.subarray(0, length);
}

function uuidBytes(uuid: string): Uint8Array {
  return Buffer.from(uuid.replace(/-/g, ''), 'hex');
}

function uuidText(bytes: Uint8Array): string {
  const h = Buffer.from(bytes).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** The table-relative path of a 'u' vector's file: `<random prefix>/deletion_vector_<uuid>.bin` ("Derived Fields"). */
export function dvRelativePath(dv: DeletionVectorDescriptor): string | undefined {
  if (dv.storageType !== 'u') return undefined;
  const prefix = dv.pathOrInlineDv.slice(0, -20);
  const uuid = uuidText(z85Decode(dv.pathOrInlineDv.slice(-20), 16));
  return `${prefix ? `${prefix}/` : ''}deletion_vector_${uuid}.bin`;
}

/** Serialise sorted-or-not row indexes as a RoaringBitmapArray (magic + 64-bit portable format). */
export function serializeRowIndexes(rows: Iterable<number>): Uint8Array {
  return serializeCounted(rows).data;
}

/**
 * serializeRowIndexes, and how many distinct rows the vector holds (its descriptor's cardinality), counted by
 * the bitmaps. Rows below 2^32 (every file Tide writes) go into one bitmap as one typed array: a vector is
 * rewritten with all its rows on every merge that touches its file, so this is per merge work that grows with
 * the rows deleted so far (README "The whole pipeline, sustained").
 */
function serializeCounted(rows: Iterable<number>): SerializedVector {
  const list = Array.isArray(rows) ? (rows as number[]) : [...rows];
  let max = 0;
  for (const r of list) {
    if (!Number.isSafeInteger(r) || r < 0) throw new Error(`row index ${r} is not a non-negative integer`);
    if (r > max) max = r;
  }
  const buckets = new Map<number, Uint32Array>();
  if (max < 2 ** 32) {
    if (list.length) buckets.set(0, Uint32Array.from(list));
  } else {
    const lists = new Map<number, number[]>();
    for (const r of list) {
      const key = Math.floor(r / 2 ** 32);
      let b = lists.get(key);
      if (!b) lists.set(key, (b = []));
      b.push(r % 2 ** 32);
    }
    for (const [key, b] of lists) buckets.set(key, Uint32Array.from(b));
  }
  const parts: Uint8Array[] = [];
  const header = Buffer.alloc(12);
  header.writeUInt32LE(DV_MAGIC, 0);
  header.writeBigUInt64LE(BigInt(buckets.size), 4);
  parts.push(header);
  let cardinality = 0;
  for (const key of [...buckets.keys()].sort((a, b) => a - b)) {
    const bitmap = new RoaringBitmap32();
    try {
      bitmap.addMany(buckets.get(key)!);
      bitmap.runOptimize();
      cardinality += bitmap.size;
      const k = Buffer.alloc(4);
      k.writeUInt32LE(key, 0);
      parts.push(k, bitmap.serialize('portable'));
    } finally {
      bitmap.dispose();
    }
  }
  return { data: Buffer.concat(parts), cardinality };
}

/** One 2^32 bucket of a deletion vector: its rows are `key` × 2^32 + each of `lows` (ascending). */
export interface RowBucket {
  key: number;
  lows: Uint32Array;
}

/**
 * The rows of a RoaringBitmapArray as typed arrays, one per 2^32 bucket in ascending key order, each
 * straight from CRoaring (`toUint32Array`): no JS value per row. Reads the portable format (magic
 * 1681511377, what Delta writes) and the older "native" one (magic 1681511376: a 4-byte count, then per
 * bucket its byte size and a 32-bit bitmap, keys 0, 1, 2, …), as Delta's kernel does (RoaringBitmapArray.java).
 * Empty buckets are left out. Throws on an unknown magic number or truncated data.
 *
 * Readers over millions of deleted rows (a gold pass's view over silver, a merge's hits) use this: the
 * JS `number[]` of every row that `deserializeRowIndexes` builds, grown bucket by bucket, was 7 s of the
 * sink's main thread in 6 minutes of the sustained pipeline and a large part of its garbage.
 */
export function deserializeRowBuckets(data: Uint8Array): RowBucket[] {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const magic = buf.length >= 4 ? buf.readUInt32LE(0) : undefined;
  if (magic !== DV_MAGIC && magic !== DV_MAGIC_NATIVE)
    throw new Error(`not a deletion vector: expected magic number ${DV_MAGIC}, found ${magic ?? 'none'}`);
  const portable = magic === DV_MAGIC;
  if (buf.length < (portable ? 12 : 8)) throw new Error(`deletion vector of ${buf.length} bytes is truncated`);
  const count = portable ? Number(buf.readBigUInt64LE(4)) : buf.readUInt32LE(4);
  let pos = portable ? 12 : 8;
  const out: RowBucket[] = [];
  for (let b = 0; b < count; b++) {
    const key = portable ? buf.readUInt32LE(pos) : b;
    const size = portable ? undefined : buf.readUInt32LE(pos);
    pos += 4;
    const bitmap = RoaringBitmap32.deserialize('portable', buf.subarray(pos));
    try {
      pos += size ?? bitmap.getSerializationSizeInBytes('portable');
      if (bitmap.size > 0) out.push({ key, lows: bitmap.toUint32Array() });
    } finally {
      bitmap.dispose();
    }
  }
  return out;
}

/** How many rows the buckets hold. */
export function bucketRows(buckets: readonly RowBucket[]): number {
  let n = 0;
  for (const b of buckets) n += b.lows.length;
  return n;
}

/**
 * The row indexes of a RoaringBitmapArray, ascending, as numbers (`deserializeRowBuckets` for both formats;
 * rows at or above 2^32 too). For small vectors and tests: readers of large ones take the buckets.
 */
export function deserializeRowIndexes(data: Uint8Array): number[] {
  const buckets = deserializeRowBuckets(data);
  if (buckets.length === 1 && buckets[0]!.key === 0) return Array.from(buckets[0]!.lows);
  const out = new Array<number>(bucketRows(buckets));
  let at = 0;
  for (const { key, lows } of buckets) {
    const high = key * 2 ** 32;
    for (let i = 0; i < lows.length; i++) out[at++] = high + lows[i]!;
  }
  return out;
}

/** One vector to write: its rows, or its bitmap already serialised (`unionRowIndexes`). */
export type NewDeletionVector = { rows: number[] } | SerializedVector;

/** A RoaringBitmapArray's bytes and how many rows it deletes (its descriptor's cardinality). */
export interface SerializedVector {
  data: Uint8Array;
  cardinality: number;
}

/**
 * The vector that deletes the rows of `existing` (a serialised RoaringBitmapArray, or none) and `rows`.
 * A merge rewrites the vector of every file it touches with all its rows (random updates touch every
 * file), so this runs once per touched file and merge: the union is made inside the bitmap (CRoaring's
 * `addMany` onto the deserialised bitmap), not through a JS array of every row deleted so far, which
 * grew with the table's history (1.6-2.5 s a merge at 5M deleted rows; README "The whole pipeline,
 * sustained"). Vectors with rows at or above 2^32, or in the older native format, take the general path.
 */
export function unionRowIndexes(existing: Uint8Array | undefined, rows: readonly number[]): SerializedVector {
  if (!existing) return serializeCounted(rows);
  const buf = Buffer.from(existing.buffer, existing.byteOffset, existing.byteLength);
  const simple =
    buf.length >= 16 &&
    buf.readUInt32LE(0) === DV_MAGIC &&
    buf.readBigUInt64LE(4) === 1n &&
    buf.readUInt32LE(12) === 0 &&
    rows.every((r) => Number.isSafeInteger(r) && r >= 0 && r < 2 ** 32);
  if (!simple) return serializeCounted([...deserializeRowIndexes(existing), ...rows]);
  const bitmap = RoaringBitmap32.deserialize('portable', buf.subarray(16));
  try {
    bitmap.addMany(Uint32Array.from(rows));
    bitmap.runOptimize();
    const header = Buffer.alloc(16);
    header.writeUInt32LE(DV_MAGIC, 0);
    header.writeBigUInt64LE(1n, 4);
    header.writeUInt32LE(0, 12);
    return { data: Buffer.concat([header, bitmap.serialize('portable')]), cardinality: bitmap.size };
  } finally {
    bitmap.dispose();
  }
}

/**
 * Write the vectors in one `deletion_vector_<uuid>.bin` file at the table root and return their
 * descriptors (storageType 'u', in input order).
 */
export async function writeDeletionVectors(
  store: ObjectStore,
  root: string,
  vectors: NewDeletionVector[],
): Promise<DeletionVectorDescriptor[]> {
  const uuid = randomUUID();
  const pathOrInlineDv = z85Encode(uuidBytes(uuid));
  const parts: Buffer[] = [Buffer.from([FILE_FORMAT_VERSION])];
  let offset = 1;
  const out: DeletionVectorDescriptor[] = [];
  for (const v of vectors) {
    const counted = 'data' in v ? v : serializeCounted(v.rows);
    const data = Buffer.from(counted.data);
    const size = Buffer.alloc(4);
    size.writeUInt32BE(data.length, 0);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(data), 0);
    parts.push(size, data, crc);
    out.push({ storageType: 'u', pathOrInlineDv, offset, sizeInBytes: data.length, cardinality: counted.cardinality });
    offset += 8 + data.length;
  }
  await store.put(joinPath(root, `deletion_vector_${uuid}.bin`), Buffer.concat(parts));
  return out;
}

/** Reads vectors, fetching each DV file once per reader. */
export class DeletionVectorReader {
  private readonly files = new Map<string, Promise<Buffer>>();

  constructor(
    private readonly store: ObjectStore,
    private readonly root: string,
    /** How errors name the table. */
    private readonly label: string,
  ) {}

  /** The deleted row indexes of `dv`, ascending. */
  async rows(dv: DeletionVectorDescriptor): Promise<number[]> {
    const { data, at } = await this.bytes(dv);
    try {
      return deserializeRowIndexes(data);
    } catch (e) {
      throw new DeltaLogError(this.label, `deletion vector at ${at}: ${(e as Error).message}`, { cause: e });
    }
  }

  /** The deleted rows of `dv` as typed arrays, one per 2^32 bucket (`deserializeRowBuckets`). */
  async buckets(dv: DeletionVectorDescriptor): Promise<RowBucket[]> {
    const { data, at } = await this.bytes(dv);
    try {
      return deserializeRowBuckets(data);
    } catch (e) {
      throw new DeltaLogError(this.label, `deletion vector at ${at}: ${(e as Error).message}`, { cause: e });
    }
  }

  /** The serialised bitmap of `dv` (its checksum checked), and where it was read, for errors. */
  async bytes(dv: DeletionVectorDescriptor): Promise<{ data: Uint8Array; at: string }> {
    if (dv.storageType === 'i') return { data: z85Decode(dv.pathOrInlineDv, dv.sizeInBytes), at: 'inline' };
    const path = dv.storageType === 'u' ? joinPath(this.root, dvRelativePath(dv)!) : absoluteToStore(this.store, dv.pathOrInlineDv);
    let file = this.files.get(path);
    if (!file) {
      file = this.store.get(path).then((b) => {
        if (!b)
          throw new DeltaLogError(this.label, `deletion vector file ${path} is missing (removed by a vacuum too short, or never written)`);
        return b;
      });
      this.files.set(path, file);
    }
    const buf = await file;
    const offset = dv.offset ?? 0;
    if (buf.length < offset + 8 + dv.sizeInBytes || buf.readUInt32BE(offset) !== dv.sizeInBytes)
      throw new DeltaLogError(
        this.label,
        `deletion vector at ${path}@${offset}: the file does not hold a vector of ${dv.sizeInBytes} bytes there`,
      );
    const data = buf.subarray(offset + 4, offset + 4 + dv.sizeInBytes);
    if (crc32(data) !== buf.readUInt32BE(offset + 4 + dv.sizeInBytes))
      throw new DeltaLogError(this.label, `deletion vector at ${path}@${offset}: checksum mismatch (the file is damaged)`);
    return { data, at: `${path}@${offset}` };
  }
}

/** A 'p' vector's absolute path as a store path: only paths inside the store's own URI are readable. */
function absoluteToStore(store: ObjectStore, absolute: string): string {
  const base = store.uri.replace(/\/+$/, '');
  const plain = absolute.replace(/^file:\/\//, '');
  if (plain.startsWith(`${base}/`)) return plain.slice(base.length + 1);
  const fileBase = base.replace(/^file:\/\//, '');
  if (plain.startsWith(`${fileBase}/`)) return plain.slice(fileBase.length + 1);
  throw new Error(`deletion vector path ${absolute} lies outside the lake ${store.uri}`);
}

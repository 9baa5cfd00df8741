/**
 * An open-addressing hash table from a 64-bit integer key to where its live row is: (file id, row
 * position) and the row's version (`_commit_lsn`, `_event_index`). Everything is in typed arrays,
 * seven 32-bit columns a slot (28 bytes), so 10M keys at the target load of 0.7 take ≈ 400 MB and no
 * object per key. Linear probing; removed keys leave tombstones (reused by inserts, dropped by the
 * next resize). Written by hand because no npm library offers an int64-keyed table over typed
 * arrays with several value columns; a JS Map of 10M bigint keys costs several GB.
 *
 * Keys and LSNs are passed as (low, high) 32-bit halves (`split`), so lookups allocate nothing.
 */
const EMPTY = 0;
const TOMBSTONE = -1;
const TARGET_LOAD = 0.7;
const MAX_LOAD = 0.85;

/** The version of a row: its source commit's LSN and its index in that commit (unsigned). */
export interface RowVersion {
  lsnLo: number;
  lsnHi: number;
  event: number;
}

const scratch = new BigInt64Array(1);
const halves = new Int32Array(scratch.buffer);

/** A 64-bit integer (bigint, or a safe integer number) as its low and high 32-bit halves. */
export function split(value: bigint | number): [number, number] {
  scratch[0] = typeof value === 'bigint' ? BigInt.asIntN(64, value) : BigInt(value);
  return [halves[0]!, halves[1]!];
}

/** A version's `_commit_lsn` as the unsigned 64-bit LSN. */
export function commitLsnOf(v: RowVersion): bigint {
  return BigInt.asUintN(64, (BigInt(v.lsnHi) << 32n) | BigInt(v.lsnLo >>> 0));
}

/** Compare two versions: > 0 when a is newer than b. */
export function compareVersion(aLsnLo: number, aLsnHi: number, aEvent: number, b: RowVersion): number {
  const ah = aLsnHi >>> 0;
  const bh = b.lsnHi >>> 0;
  if (ah !== bh) return ah - bh;
  const al = aLsnLo >>> 0;
  const bl = b.lsnLo >>> 0;
  if (al !== bl) return al - bl;
  return (aEvent >>> 0) - (b.event >>> 0);
}

function hash(lo: number, hi: number): number {
  let h = Math.imul(lo ^ Math.imul(hi, 0x9e3779b1), 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Each slot's seven fields sit together in one Int32Array (one cache line per probe, not seven). */
const STRIDE = 7;
const K_LO = 0;
const K_HI = 1;
/** File id (≥ 1); EMPTY or TOMBSTONE for a free slot. */
const FILE = 2;
const ROW = 3;
const L_LO = 4;
const L_HI = 5;
const EVENT = 6;

export class KeyIndex {
  private cap = 0;
  private used = 0;
  private tombs = 0;
  private data = new Int32Array(0);

  constructor(expected = 0) {
    this.resize(Math.max(16, Math.ceil(expected / TARGET_LOAD)));
  }

  /** Live keys. */
  get size(): number {
    return this.used;
  }

  /** Memory held by the table. */
  get bytes(): number {
    return this.data.byteLength;
  }

  /** Make room for `more` keys without resizing on the way. */
  reserve(more: number): void {
    if (this.used + this.tombs + more > this.cap * MAX_LOAD) this.resize(Math.max(16, Math.ceil((this.used + more) / TARGET_LOAD)));
  }

  /** The slot of a key, or -1. */
  find(lo: number, hi: number): number {
    const cap = this.cap;
    const d = this.data;
    let s = Math.floor((hash(lo, hi) * cap) / 4294967296);
    for (;;) {
      const o = s * STRIDE;
      const f = d[o + FILE]!;
      if (f === EMPTY) return -1;
      if (f !== TOMBSTONE && d[o + K_LO] === lo && d[o + K_HI] === hi) return s;
      if (++s === cap) s = 0;
    }
  }

  fileAt(slot: number): number {
    return this.data[slot * STRIDE + FILE]!;
  }
  rowAt(slot: number): number {
    return this.data[slot * STRIDE + ROW]!;
  }
  versionAt(slot: number): RowVersion {
    const o = slot * STRIDE;
    return { lsnLo: this.data[o + L_LO]!, lsnHi: this.data[o + L_HI]!, event: this.data[o + EVENT]! };
  }

  /** Add a key; false (and nothing changes) when it is already there. */
  insert(lo: number, hi: number, file: number, row: number, lsnLo: number, lsnHi: number, event: number): boolean {
    if (file <= 0) throw new RangeError(`key index: file ids start at 1, got ${file}`);
    if (this.used + this.tombs + 1 > this.cap * MAX_LOAD) this.resize(Math.ceil((this.used + 1) / TARGET_LOAD) + 16);
    const cap = this.cap;
    const d = this.data;
    let s = Math.floor((hash(lo, hi) * cap) / 4294967296);
    let free = -1;
    for (;;) {
      const o = s * STRIDE;
      const f = d[o + FILE]!;
      if (f === EMPTY) break;
      if (f === TOMBSTONE) {
        if (free < 0) free = s;
      } else if (d[o + K_LO] === lo && d[o + K_HI] === hi) return false;
      if (++s === cap) s = 0;
    }
    if (free >= 0) {
      s = free;
      this.tombs--;
    }
    const o = s * STRIDE;
    d[o + K_LO] = lo;
    d[o + K_HI] = hi;
    d[o + FILE] = file;
    d[o + ROW] = row;
    d[o + L_LO] = lsnLo;
    d[o + L_HI] = lsnHi;
    d[o + EVENT] = event;
    this.used++;
    return true;
  }

  /**
   * Add a key, or when it is there replace its row if this version is newer (a history table's
   * index keeps each key's latest version: history-key-index.ts). True when the key's entry changed.
   */
  keepNewer(lo: number, hi: number, file: number, row: number, lsnLo: number, lsnHi: number, event: number): boolean {
    const s = this.find(lo, hi);
    if (s < 0) return this.insert(lo, hi, file, row, lsnLo, lsnHi, event);
    if (file <= 0) throw new RangeError(`key index: file ids start at 1, got ${file}`);
    if (compareVersion(lsnLo, lsnHi, event, this.versionAt(s)) <= 0) return false;
    const o = s * STRIDE;
    const d = this.data;
    d[o + FILE] = file;
    d[o + ROW] = row;
    d[o + L_LO] = lsnLo;
    d[o + L_HI] = lsnHi;
    d[o + EVENT] = event;
    return true;
  }

  /** Remove a key; false when it is not there. */
  remove(lo: number, hi: number): boolean {
    const s = this.find(lo, hi);
    if (s < 0) return false;
    this.data[s * STRIDE + FILE] = TOMBSTONE;
    this.used--;
    this.tombs++;
    return true;
  }

  /** Remove every key whose row is in one of these files (one pass over the table). */
  purge(files: ReadonlySet<number>): number {
    if (!files.size) return 0;
    const d = this.data;
    let n = 0;
    for (let o = FILE; o < d.length; o += STRIDE) {
      const f = d[o]!;
      if (f > 0 && files.has(f)) {
        d[o] = TOMBSTONE;
        n++;
      }
    }
    this.used -= n;
    this.tombs += n;
    return n;
  }

  private resize(cap: number): void {
    const old = this.data;
    this.cap = cap;
    this.data = new Int32Array(cap * STRIDE);
    this.used = 0;
    this.tombs = 0;
    for (let o = 0; o < old.length; o += STRIDE)
      if (old[o + FILE]! > 0)
        this.insert(old[o + K_LO]!, old[o + K_HI]!, old[o + FILE]!, old[o + ROW]!, old[o + L_LO]!, old[o + L_HI]!, old[o + EVENT]!);
  }
}

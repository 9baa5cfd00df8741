import { createAvroType, type AvroSchema } from './avro-types.ts';

/**
 * A hand-written Avro binary encoder for the source's hot path (Avro 1.11 spec,
 * "Binary Encoding": zig-zag varint int/long, length-prefixed bytes/string,
 * little-endian float/double, union = branch index + value, array = blocks
 * ending with a 0 count). avsc does the same job through generic Type objects;
 * on this path it cost ~30% of the source's CPU (union branch lookups, Tide's
 * int64 long going through an 8-byte buffer per value, one JS object per row).
 * The output is byte-for-byte what avsc writes for the same schema and value
 * (test/unit/event-writer.test.ts compares the two), so consumers see no change.
 *
 * Messages are written back to back into 1 MB slabs and handed out as views
 * (`end()`), as encodeFramed does: no allocation or copy per message. A view
 * keeps its slab alive; a slab is never written again once handed out.
 */
const SLAB_SIZE = 1 << 20;
/** Largest |n| whose zig-zag value (2|n| or 2|n|-1) is still an exact double. */
const EXACT_ZIGZAG = 2 ** 52;

export class AvroWriter {
  buf: Buffer = Buffer.allocUnsafe(SLAB_SIZE);
  pos = 0;
  private start = 0;

  /** Start a message: everything written until end() is one contiguous view. */
  begin(): void {
    if (SLAB_SIZE - this.pos < 4096) this.newSlab(0);
    this.start = this.pos;
  }

  /** The message written since begin(). */
  end(): Buffer {
    const view = this.buf.subarray(this.start, this.pos);
    this.start = this.pos;
    return view;
  }

  /** Make room for n more bytes, moving the message in progress to a fresh slab if needed. */
  ensure(n: number): void {
    if (this.pos + n > this.buf.length) this.newSlab(n);
  }

  private newSlab(need: number): void {
    const partial = this.pos - this.start;
    const next = Buffer.allocUnsafe(Math.max(SLAB_SIZE, 2 * (partial + need)));
    this.buf.copy(next, 0, this.start, this.pos);
    this.buf = next;
    this.start = 0;
    this.pos = partial;
  }

  byte(b: number): void {
    this.ensure(1);
    this.buf[this.pos++] = b;
  }

  /** Confluent's wire-format header: magic byte 0 and the 4-byte big-endian schema id. */
  confluentHeader(schemaId: number): void {
    if (schemaId < 0) throw new Error('schema not registered yet');
    this.ensure(5);
    this.buf[this.pos] = 0;
    this.buf.writeUInt32BE(schemaId, this.pos + 1);
    this.pos += 5;
  }

  /** Avro int or long from a JS number (a safe integer) or a bigint (int64). */
  long(v: number | bigint): void {
    if (typeof v === 'bigint') {
      if (v >= -9007199254740991n && v <= 9007199254740991n) v = Number(v);
      else return this.bigLong(v);
    }
    this.ensure(10);
    const buf = this.buf;
    let pos = this.pos;
    if (v >= -1073741824 && v < 1073741824) {
      let m = v >= 0 ? v << 1 : (~v << 1) | 1;
      while (m > 0x7f) {
        buf[pos++] = (m & 0x7f) | 0x80;
        m >>>= 7;
      }
      buf[pos++] = m;
    } else if (v >= -EXACT_ZIGZAG && v <= EXACT_ZIGZAG) {
      let f = v >= 0 ? v * 2 : -v * 2 - 1;
      while (f >= 128) {
        const low = f % 128;
        buf[pos++] = low | 0x80;
        f = (f - low) / 128;
      }
      buf[pos++] = f;
    } else {
      return this.bigLong(BigInt(v));
    }
    this.pos = pos;
  }

  private bigLong(v: bigint): void {
    if (v < -(2n ** 63n) || v >= 2n ** 63n) throw new RangeError(`${v} does not fit an Avro long (int64)`);
    let z = v >= 0n ? v << 1n : (-v << 1n) - 1n;
    this.ensure(10);
    while (z >= 128n) {
      this.buf[this.pos++] = Number(z & 0x7fn) | 0x80;
      z >>= 7n;
    }
    this.buf[this.pos++] = Number(z);
  }

  /** A length (non-negative int) as Avro long: the prefix of bytes, strings and array blocks. */
  length(n: number): void {
    if (n < 64) {
      this.ensure(1);
      this.buf[this.pos++] = n << 1;
    } else this.long(n);
  }

  string(s: string): void {
    const n = s.length;
    if (n < 64) {
      // ASCII fast path: one byte a character, one byte of length. Bail out at the first non-ASCII code unit.
      this.ensure(n + 1);
      const buf = this.buf;
      const at = this.pos;
      let i = 0;
      for (; i < n; i++) {
        const c = s.charCodeAt(i);
        if (c > 0x7f) break;
        buf[at + 1 + i] = c;
      }
      if (i === n) {
        buf[at] = n << 1;
        this.pos = at + 1 + n;
        return;
      }
    }
    const bytes = Buffer.byteLength(s, 'utf8');
    this.length(bytes);
    this.ensure(bytes);
    this.pos += this.buf.write(s, this.pos, bytes, 'utf8');
  }

  /**
   * The Avro string `${head}${n}"]` (source.sequence: head is ASCII, n the event's LSN), written without
   * building the string: one per event on the streaming path.
   */
  sequence(head: Buffer, n: number | bigint): void {
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) return this.string(`${head.toString('latin1')}${n}"]`);
    let digits = 1;
    for (let m = n; m >= 10; m = Math.floor(m / 10)) digits++;
    const len = head.length + digits + 2;
    this.length(len);
    this.ensure(len);
    const buf = this.buf;
    let pos = this.pos;
    for (let i = 0; i < head.length; i++) buf[pos++] = head[i]!;
    let m = n;
    for (let i = pos + digits - 1; i >= pos; i--) {
      buf[i] = 48 + (m % 10);
      m = Math.floor(m / 10);
    }
    pos += digits;
    buf[pos++] = 0x22; // "
    buf[pos++] = 0x5d; // ]
    this.pos = pos;
  }

  /** Avro bytes (length + content). */
  bytes(b: Uint8Array): void {
    this.length(b.length);
    this.ensure(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  /** Avro bytes/string whose content is src[start, end) (UTF-8 text stays as it is). */
  bytesFrom(src: Buffer, start: number, end: number): void {
    const n = end - start;
    this.length(n);
    this.ensure(n);
    if (n <= 32) {
      const buf = this.buf;
      let pos = this.pos;
      for (let i = start; i < end; i++) buf[pos++] = src[i]!;
      this.pos = pos;
    } else {
      src.copy(this.buf, this.pos, start, end);
      this.pos += n;
    }
  }

  /** Avro bytes of a decimal's unscaled value (a safe integer): the minimal two's-complement big-endian bytes, as encodeUnscaledNumber. */
  decimal(n: number): void {
    let len = 1;
    let lim = 128;
    while (n >= lim || n < -lim) {
      len++;
      lim *= 256;
    }
    this.length(len);
    this.ensure(len);
    const buf = this.buf;
    let v = n;
    for (let i = this.pos + len - 1; i >= this.pos; i--) {
      const b = ((v % 256) + 256) % 256; // low byte, also for negative v
      buf[i] = b;
      v = (v - b) / 256; // exact floor division
    }
    this.pos += len;
  }

  boolean(b: boolean): void {
    this.ensure(1);
    this.buf[this.pos++] = b ? 1 : 0;
  }

  float(f: number): void {
    this.ensure(4);
    this.buf.writeFloatLE(f, this.pos);
    this.pos += 4;
  }

  double(d: number): void {
    this.ensure(8);
    this.buf.writeDoubleLE(d, this.pos);
    this.pos += 8;
  }

  /** Raw bytes written as they are (pre-encoded Avro). */
  raw(b: Buffer): void {
    this.ensure(b.length);
    const n = b.length;
    if (n <= 64) {
      const buf = this.buf;
      let pos = this.pos;
      for (let i = 0; i < n; i++) buf[pos++] = b[i]!;
      this.pos = pos;
    } else {
      b.copy(this.buf, this.pos);
      this.pos += n;
    }
  }
}

/** Writes one value of a given Avro schema. Throws AvroValueError for a value the schema does not accept. */
export type ValueWriter = (w: AvroWriter, value: unknown) => void;

export class AvroValueError extends Error {
  constructor(schema: string, value: unknown) {
    super(`${typeof value === 'bigint' ? `${value}n` : (JSON.stringify(value) ?? String(value))} is not a valid Avro ${schema}`);
    this.name = 'AvroValueError';
  }
}

const INT32_MIN = -2147483648;
const INT32_MAX = 2147483647;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

const PRIMITIVES: Record<string, ValueWriter> = {
  null: (_w, v) => {
    if (v !== null) throw new AvroValueError('null', v);
  },
  boolean: (w, v) => {
    if (typeof v !== 'boolean') throw new AvroValueError('boolean', v);
    w.boolean(v);
  },
  int: (w, v) => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < INT32_MIN || v > INT32_MAX) throw new AvroValueError('int', v);
    w.long(v);
  },
  // Tide's long (avro-types.ts): a safe-integer number or an int64 bigint.
  long: (w, v) => {
    if (typeof v === 'number' ? !Number.isSafeInteger(v) : typeof v !== 'bigint' || v < INT64_MIN || v > INT64_MAX)
      throw new AvroValueError('long', v);
    w.long(v as number | bigint);
  },
  float: (w, v) => {
    if (typeof v !== 'number') throw new AvroValueError('float', v);
    w.float(v);
  },
  double: (w, v) => {
    if (typeof v !== 'number') throw new AvroValueError('double', v);
    w.double(v);
  },
  bytes: (w, v) => {
    if (!Buffer.isBuffer(v)) throw new AvroValueError('bytes', v);
    w.bytes(v);
  },
  string: (w, v) => {
    if (typeof v !== 'string') throw new AvroValueError('string', v);
    w.string(v);
  },
};

/**
 * A ValueWriter for `schema`, covering what Tide's type mapping produces:
 * primitives (logical types write their underlying type, as createAvroType
 * reads them), records, arrays and unions whose branches differ in JS type.
 * Anything else (enum, fixed, map, references to named types) is encoded by
 * avsc and copied, so every schema works; only the common ones are fast.
 */
export function compileWriter(schema: AvroSchema): ValueWriter {
  return compile(schema) ?? viaAvsc(schema);
}

function compile(schema: AvroSchema): ValueWriter | undefined {
  if (typeof schema === 'string') return PRIMITIVES[schema];
  if (Array.isArray(schema)) return compileUnion(schema);
  const t = schema.type;
  if (typeof t !== 'string') return compile(t);
  if (t === 'record') {
    const fields = (schema.fields as { name: string; type: AvroSchema }[]).map((f) => [f.name, compile(f.type)] as const);
    if (fields.some(([, fw]) => !fw)) return undefined;
    const names = fields.map(([n]) => n);
    const writers = fields.map(([, fw]) => fw!);
    return (w, v) => {
      if (v === null || typeof v !== 'object') throw new AvroValueError(`record ${String(schema.name)}`, v);
      const rec = v as Record<string, unknown>;
      for (let i = 0; i < writers.length; i++) writers[i]!(w, rec[names[i]!]);
    };
  }
  if (t === 'array') {
    const item = compile(schema.items as AvroSchema);
    if (!item) return undefined;
    return (w, v) => {
      if (!Array.isArray(v)) throw new AvroValueError('array', v);
      if (v.length > 0) {
        w.length(v.length);
        for (const x of v) item(w, x);
      }
      w.byte(0);
    };
  }
  return PRIMITIVES[t];
}

/** The JS shape a branch accepts, so a union picks its branch by one typeof check. */
function kindOf(schema: AvroSchema): string | undefined {
  const t =
    typeof schema === 'string' ? schema : Array.isArray(schema) ? undefined : typeof schema.type === 'string' ? schema.type : undefined;
  switch (t) {
    case 'null':
      return 'null';
    case 'boolean':
      return 'boolean';
    case 'string':
      return 'string';
    case 'bytes':
      return 'buffer';
    case 'record':
      return 'object';
    case 'array':
      return 'array';
    default:
      return undefined; // numbers: int, long, float and double cannot be told apart by JS type
  }
}

function jsKind(v: unknown): string {
  if (v === null) return 'null';
  if (Buffer.isBuffer(v)) return 'buffer';
  if (Array.isArray(v)) return 'array';
  return typeof v;
}

function compileUnion(branches: AvroSchema[]): ValueWriter | undefined {
  const kinds = branches.map(kindOf);
  const numeric = kinds.filter((k) => k === undefined).length;
  if (numeric > 1 || new Set(kinds).size !== kinds.length) return undefined; // ambiguous: leave it to avsc
  const writers = branches.map(compile);
  if (writers.some((bw) => !bw)) return undefined;
  return (w, v) => {
    const kind = jsKind(v);
    let i = kinds.indexOf(kind);
    if (i < 0 && (kind === 'number' || kind === 'bigint')) i = kinds.indexOf(undefined);
    if (i < 0) throw new AvroValueError(JSON.stringify(branches), v);
    w.length(i);
    writers[i]!(w, v);
  };
}

function viaAvsc(schema: AvroSchema): ValueWriter {
  const type = createAvroType(schema);
  return (w, v) => {
    if (!type.isValid(v)) throw new AvroValueError(JSON.stringify(schema), v);
    w.raw(type.toBuffer(v));
  };
}

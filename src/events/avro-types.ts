import avro from 'avsc';

/**
 * avsc helpers shared by the source (encoding) and the sink (decoding).
 *
 * - `long`: avsc's built-in long refuses anything outside ±2^53. Postgres int8,
 *   timestamps beyond year 2255 and the ±infinity sentinels need the full
 *   int64 range, so Tide's long takes a JS number (safe integer) or a bigint and
 *   decodes to a number when it is a safe integer, else to a bigint.
 * - Logical types are not instantiated: avsc then uses the underlying type, as
 *   the Avro spec says for logical types a reader does not know. Values are
 *   therefore plain: a decimal is a Buffer, a timestamp-micros is a long.
 * - Decimals are Avro `bytes` holding the two's-complement big-endian unscaled
 *   integer, the smallest such array (Java's BigInteger.toByteArray, which is
 *   what Confluent's and Debezium's converters write and read).
 */

/** An Avro schema as JSON: a name, a union, or an object with `type`. */
export type AvroSchema = string | AvroSchema[] | { type: AvroSchema; [key: string]: unknown };

const TWO32 = 4294967296;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
/**
 * avsc writes the 8 bytes returned by toBuffer into its own buffer at once
 * (and may flip them in place), so one scratch buffer serves every call: no
 * allocation per encoded long.
 */
const scratch = Buffer.alloc(8);

function isLong(v: unknown): boolean {
  if (typeof v === 'number') return Number.isSafeInteger(v);
  return typeof v === 'bigint' && v >= INT64_MIN && v <= INT64_MAX;
}

/** A bigint back to a number when that is exact, so equal values have one JS form. */
export function normalizeLong(v: bigint): number | bigint {
  return v >= -9007199254740991n && v <= 9007199254740991n ? Number(v) : v;
}

export const longType: avro.Type = avro.types.LongType.__with({
  fromBuffer(buf: Buffer): number | bigint {
    const lo = buf.readUInt32LE(0);
    const hi = buf.readInt32LE(4);
    if (hi >= -0x200000 && hi < 0x200000) {
      const n = hi * TWO32 + lo; // exact: |n| <= 2^53
      if (Number.isSafeInteger(n)) return n;
    }
    return buf.readBigInt64LE(0);
  },
  toBuffer(v: number | bigint): Buffer {
    if (typeof v === 'number') {
      const hi = Math.floor(v / TWO32);
      scratch.writeUInt32LE(v - hi * TWO32, 0);
      scratch.writeInt32LE(hi, 4);
    } else {
      scratch.writeBigInt64LE(v, 0);
    }
    return scratch;
  },
  fromJSON(v: unknown): number | bigint {
    if (typeof v === 'number' && Number.isSafeInteger(v)) return v;
    if (typeof v === 'bigint' || typeof v === 'string') return normalizeLong(BigInt(v));
    throw new Error(`not a long: ${String(v)}`);
  },
  // JSON has no int64: beyond ±2^53 the JSON form is the decimal string (fromJSON reads it back).
  toJSON: (v: number | bigint): number | string => (typeof v === 'number' ? v : String(v)),
  isValid: isLong,
  compare: (a: number | bigint, b: number | bigint): number => (a < b ? -1 : a > b ? 1 : 0),
}) as unknown as avro.Type;

function typeHook(schema: unknown): avro.Type | undefined {
  if (schema === 'long') return longType;
  if (schema !== null && typeof schema === 'object' && !Array.isArray(schema) && (schema as { type?: unknown }).type === 'long')
    return longType;
  return undefined;
}

/**
 * An avsc Type for `schema`, with Tide's long and logical types left as their
 * underlying type. Repeated definitions of one named type (two unconstrained
 * numeric columns both carry io.debezium.data.VariableScaleDecimal) are folded
 * into references first, see dedupeNamedTypes.
 */
export function createAvroType(schema: AvroSchema | object): avro.Type {
  // avsc's registry only covers references by name ("long"); objects like
  // {"type":"long","logicalType":"timestamp-micros"} go through the type hook.
  return avro.Type.forSchema(dedupeNamedTypes(schema as AvroSchema) as avro.Schema, { registry: { long: longType }, typeHook });
}

const NAMED = new Set(['record', 'error', 'enum', 'fixed']);

/**
 * Avro allows each named type to be defined once per schema; later uses must
 * be its full name. Column mappings are built one at a time, so a named type
 * (VariableScaleDecimal) may be defined in several fields. This keeps the
 * first definition and replaces the others with the full name. Two different
 * definitions under one name are an error. Call it on the final schema before
 * registering it.
 */
export function dedupeNamedTypes(schema: AvroSchema): AvroSchema {
  const seen = new Map<string, string>();
  const walk = (s: AvroSchema, namespace: string | undefined): AvroSchema => {
    if (typeof s === 'string') return s;
    if (Array.isArray(s)) return s.map((b) => walk(b, namespace));
    const out: { type: AvroSchema; [key: string]: unknown } = { ...s };
    let ns = namespace;
    if (typeof s.type === 'string' && NAMED.has(s.type) && typeof s.name === 'string') {
      const space = typeof s.namespace === 'string' ? s.namespace : ns;
      const full = s.name.includes('.') || !space ? s.name : `${space}.${s.name}`;
      ns = full.includes('.') ? full.slice(0, full.lastIndexOf('.')) : undefined;
      const text = JSON.stringify(s);
      const earlier = seen.get(full);
      if (earlier !== undefined) {
        if (earlier !== text) throw new Error(`Avro schema defines the named type ${full} twice, differently: ${earlier} and ${text}`);
        return full;
      }
      seen.set(full, text);
    } else if (typeof s.type !== 'string') {
      out.type = walk(s.type, ns);
    }
    if (Array.isArray(s.fields)) {
      out.fields = (s.fields as { type: AvroSchema }[]).map((f) => ({ ...f, type: walk(f.type, ns) }));
    }
    if (s.items !== undefined) out.items = walk(s.items as AvroSchema, ns);
    if (s.values !== undefined) out.values = walk(s.values as AvroSchema, ns);
    return out;
  };
  return walk(schema, undefined);
}

// ---------------------------------------------------------------------------
// Decimals: unscaled integer <-> two's-complement big-endian bytes.

/** Minimal two's-complement big-endian bytes of a safe integer (0 -> [0x00]). */
export function encodeUnscaledNumber(n: number): Buffer {
  let len = 1;
  let lim = 128;
  while (n >= lim || n < -lim) {
    len++;
    lim *= 256;
  }
  const buf = Buffer.allocUnsafe(len);
  let v = n;
  for (let i = len - 1; i >= 0; i--) {
    const b = ((v % 256) + 256) % 256; // low byte, also for negative v
    buf[i] = b;
    v = (v - b) / 256; // exact floor division
  }
  return buf;
}

/** Minimal two's-complement big-endian bytes of any integer. */
export function encodeUnscaledBigInt(n: bigint): Buffer {
  // A negative n is ~m for m = -n - 1 >= 0: encode m with a clear sign bit, then flip every bit.
  const neg = n < 0n;
  let hex = (neg ? -n - 1n : n).toString(16);
  if (hex.length % 2 === 1) hex = `0${hex}`;
  if (hex.charCodeAt(0) >= 0x38 /* '8'..'f': top bit set */) hex = `00${hex}`;
  const buf = Buffer.from(hex, 'hex');
  if (neg) for (let i = 0; i < buf.length; i++) buf[i] = ~buf[i]! & 0xff;
  return buf;
}

/** The unscaled integer held in two's-complement big-endian bytes. */
export function decodeUnscaled(buf: Buffer): bigint {
  if (buf.length === 0) return 0n;
  if (buf.length <= 6) return BigInt(buf.readIntBE(0, buf.length));
  const neg = (buf[0]! & 0x80) !== 0;
  let hex = '';
  for (let i = 0; i < buf.length; i++) hex += ((neg ? ~buf[i]! : buf[i]!) & 0xff).toString(16).padStart(2, '0');
  const m = BigInt(`0x${hex}`);
  return neg ? -m - 1n : m;
}

/** A decimal's exact text, e.g. (bytes of -12345, 2) -> "-123.45"; scale 0 -> "-12345". */
export function decodeDecimal(buf: Buffer, scale: number): string {
  const n = decodeUnscaled(buf);
  if (scale <= 0) return (scale === 0 ? n : n * 10n ** BigInt(-scale)).toString();
  const neg = n < 0n;
  const digits = (neg ? -n : n).toString().padStart(scale + 1, '0');
  return `${neg ? '-' : ''}${digits.slice(0, digits.length - scale)}.${digits.slice(digits.length - scale)}`;
}

/**
 * Parsers for Postgres' text output, as pgoutput (protocol v1) and a text-mode
 * query deliver it under the session settings in session-settings.ts
 * (timezone UTC, DateStyle ISO, IntervalStyle iso_8601, bytea_output hex).
 *
 * Why not pg-types (node-postgres' parsers, also used by pg-logical-replication):
 * it turns timestamps into JS Dates (milliseconds: microseconds lost; beyond
 * year 275760 invalid) and dates into local-time midnights, leaves int8 and
 * numeric as strings, and its interval parser only reads IntervalStyle
 * postgres (a regex), not iso_8601. Its regex-based parsers also cost more per
 * value than reading the characters, which these do (no regexes, no
 * intermediate objects) because they run once per column per row.
 *
 * Every parser throws PgTextError on text it does not understand, its message
 * a predicate ('is not a valid date'); type-mapping.ts wraps it into a
 * TypeConversionError naming the column, the type and the value.
 */

export class PgTextError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PgTextError';
  }
}

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
/**
 * What 'infinity' / '-infinity' become: the last and first instants and days that every common Avro
 * consumer can hold — 9999-12-31T23:59:59.999999Z / 0001-01-01T00:00:00Z and 9999-12-31 / 0001-01-01,
 * the range of Python's datetime and date, which Java and Spark hold too. Debezium's convention (int64
 * max/min micros) and Postgres' own int32 max/min days made Confluent's stock Python AvroDeserializer fail
 * ("OverflowError: date value out of range"; issue 11, item 11). A real value at those very bounds reads
 * the same as the infinity (README, "Type mapping").
 */
export const TIMESTAMP_POS_INFINITY = 253_402_300_799_999_999n;
export const TIMESTAMP_NEG_INFINITY = -62_135_596_800_000_000n;
export const DATE_POS_INFINITY = 2_932_896;
export const DATE_NEG_INFINITY = -719_162;

function bad(what: string): never {
  throw new PgTextError(`is not a valid ${what}`);
}

/** int2 / int4: optional '-', then digits; within [min, max]. */
export function parseSmallInt(text: string, min: number, max: number): number {
  const len = text.length;
  let i = text.charCodeAt(0) === 45 ? 1 : 0;
  if (len === i || len - i > 10) bad('integer');
  let n = 0;
  for (; i < len; i++) {
    const d = text.charCodeAt(i) - 48;
    if (d < 0 || d > 9) bad('integer');
    n = n * 10 + d;
  }
  if (text.charCodeAt(0) === 45) n = -n;
  if (n < min || n > max) bad(`integer in range ${min}..${max}`);
  return n;
}

/** int8: a number when it is a safe integer, else a bigint (Tide's Avro long takes both). */
export function parseBigInt(text: string): number | bigint {
  const len = text.length;
  const neg = text.charCodeAt(0) === 45;
  let i = neg ? 1 : 0;
  if (len === i || len - i > 19) bad('bigint');
  let n = 0;
  for (; i < len; i++) {
    const d = text.charCodeAt(i) - 48;
    if (d < 0 || d > 9) bad('bigint');
    n = n * 10 + d;
  }
  if (len - (neg ? 1 : 0) <= 15) return neg ? -n : n; // < 10^15: exact as a double
  const b = BigInt(text);
  if (b < INT64_MIN || b > INT64_MAX) bad('bigint in range (int64)');
  return b >= -9007199254740991n && b <= 9007199254740991n ? Number(b) : b;
}

/** float4 / float8 text ('1.5', '1e-45', 'NaN', 'Infinity', '-Infinity', '-0'). */
export function parseFloatText(text: string): number {
  if (text.length === 0 || text.charCodeAt(0) <= 32) bad('floating-point number');
  const n = Number(text);
  if (n !== n && text !== 'NaN') bad('floating-point number');
  return n;
}

/** bool output is 't' / 'f'; a `::text` cast gives 'true' / 'false'. Both are accepted. */
export function parseBool(text: string): boolean {
  if (text === 't' || text === 'true') return true;
  if (text === 'f' || text === 'false') return false;
  return bad('boolean');
}

/** bytea in hex output: '\x' then two hex digits per byte. */
export function parseByteaHex(text: string): Buffer {
  if (text.charCodeAt(0) !== 92 || text.charCodeAt(1) !== 120 || text.length % 2 !== 0) bad('bytea (hex format)');
  const buf = Buffer.from(text.slice(2), 'hex');
  // Buffer.from stops silently at the first non-hex character: check everything was read.
  if (buf.length * 2 !== text.length - 2) bad('bytea (hex format)');
  return buf;
}

// --- dates and times -------------------------------------------------------

let pos = 0; // cursor shared by the helpers below (single-threaded, never re-entered)

/** Exactly `n` digits at `pos`. */
function digits(text: string, n: number, what: string): number {
  let v = 0;
  for (let end = pos + n; pos < end; pos++) {
    const d = text.charCodeAt(pos) - 48;
    if (d < 0 || d > 9) bad(what);
    v = v * 10 + d;
  }
  return v;
}

function expect(text: string, code: number, what: string): void {
  if (text.charCodeAt(pos) !== code) bad(what);
  pos++;
}

/** Days from 1970-01-01 to a proleptic Gregorian date (astronomical year: 1 BC = 0); Hinnant's days_from_civil. */
export function daysFromCivil(y: number, m: number, d: number): number {
  y -= m <= 2 ? 1 : 0;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (m > 2 ? m - 3 : m + 9) + 2) / 5) + d - 1;
  return era * 146097 + yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy - 719468;
}

/** 'YYYY-MM-DD' (4 to 7 digit year) at pos, packed as y*10000 + m*100 + d (no object per value). */
function datePart(text: string, what: string): number {
  const start = pos;
  while (pos < text.length && text.charCodeAt(pos) !== 45) pos++;
  const yLen = pos - start;
  if (yLen < 4 || yLen > 7) bad(what);
  pos = start;
  const y = digits(text, yLen, what);
  expect(text, 45, what);
  const m = digits(text, 2, what);
  expect(text, 45, what);
  const d = digits(text, 2, what);
  if (m < 1 || m > 12 || d < 1 || d > 31) bad(what);
  return y * 10000 + m * 100 + d;
}

function daysOf(ymd: number, bc: boolean): number {
  const y = Math.floor(ymd / 10000);
  return daysFromCivil(bc ? 1 - y : y, Math.floor(ymd / 100) % 100, ymd % 100);
}

/** Checks for ' BC' at pos (the last thing in date and timestamp output). */
function bcSuffix(text: string): boolean {
  if (pos === text.length) return false;
  if (pos + 3 === text.length && text.charCodeAt(pos) === 32 && text.charCodeAt(pos + 1) === 66 && text.charCodeAt(pos + 2) === 67) {
    pos += 3;
    return true;
  }
  return bad('date/time (unexpected trailing text)');
}

/** date -> days since 1970-01-01; 'infinity' / '-infinity' -> 9999-12-31 / 0001-01-01 (DATE_POS_INFINITY). */
export function parseDate(text: string): number {
  if (text === 'infinity') return DATE_POS_INFINITY;
  if (text === '-infinity') return DATE_NEG_INFINITY;
  pos = 0;
  const ymd = datePart(text, 'date');
  return daysOf(ymd, bcSuffix(text));
}

/** 'HH:MM:SS[.ffffff]' at pos -> microseconds (24:00:00 allowed, as Postgres allows it). */
function timePart(text: string, what: string): number {
  const h = digits(text, 2, what);
  expect(text, 58, what);
  const mi = digits(text, 2, what);
  expect(text, 58, what);
  const s = digits(text, 2, what);
  if (h > 24 || mi > 59 || s > 59 || (h === 24 && (mi > 0 || s > 0))) bad(what);
  let frac = 0;
  if (text.charCodeAt(pos) === 46) {
    pos++;
    let n = 0;
    while (n < 6 && pos < text.length) {
      const d = text.charCodeAt(pos) - 48;
      if (d < 0 || d > 9) break;
      frac = frac * 10 + d;
      pos++;
      n++;
    }
    if (n === 0) bad(what);
    for (; n < 6; n++) frac *= 10;
    if (h === 24 && frac > 0) bad(what);
  }
  return (h * 3600 + mi * 60 + s) * 1_000_000 + frac;
}

/** '+HH[:MM[:SS]]' / '-…' at pos -> offset east of UTC in seconds; pos is left after it. */
function offsetPart(text: string, what: string): number {
  const c = text.charCodeAt(pos);
  if (c !== 43 && c !== 45) bad(what);
  pos++;
  let secs = digits(text, 2, what) * 3600;
  if (text.charCodeAt(pos) === 58) {
    pos++;
    secs += digits(text, 2, what) * 60;
    if (text.charCodeAt(pos) === 58) {
      pos++;
      secs += digits(text, 2, what);
    }
  }
  return c === 45 ? -secs : secs;
}

/** time -> microseconds since midnight. */
export function parseTime(text: string): number {
  pos = 0;
  const micros = timePart(text, 'time');
  if (pos !== text.length) bad('time');
  return micros;
}

/**
 * timetz -> ISO-8601 time with offset, the offset always with minutes:
 * '12:34:56.5+05:30', '08:00:00+02' -> '08:00:00+02:00', seconds kept ('-00:00:30').
 * The offset is kept as written, not folded into UTC: timetz has no date, so
 * that would only lose information.
 */
export function parseTimeTz(text: string): string {
  pos = 0;
  timePart(text, 'time with time zone');
  const at = pos;
  offsetPart(text, 'time with time zone');
  if (pos !== text.length) bad('time with time zone');
  return pos - at === 3 ? `${text}:00` : text;
}

/**
 * timestamp / timestamptz -> microseconds since 1970-01-01T00:00:00 (UTC for
 * timestamptz, any printed offset applied). A number while exact (about years
 * 1685 to 2255), else a bigint. 'infinity' / '-infinity' -> 9999-12-31T23:59:59.999999Z /
 * 0001-01-01T00:00:00Z (TIMESTAMP_POS_INFINITY); values beyond int64 microseconds
 * (after 294247-01-10) are rejected.
 */
export function parseTimestamp(text: string, withZone: boolean): number | bigint {
  const what = withZone ? 'timestamp with time zone' : 'timestamp';
  if (text === 'infinity') return TIMESTAMP_POS_INFINITY;
  if (text === '-infinity') return TIMESTAMP_NEG_INFINITY;
  pos = 0;
  const ymd = datePart(text, what);
  expect(text, 32, what);
  const micros = timePart(text, what);
  let offset = 0;
  if (pos < text.length && text.charCodeAt(pos) !== 32) {
    if (!withZone) bad(what);
    offset = offsetPart(text, what);
  }
  const secs = daysOf(ymd, bcSuffix(text)) * 86400 - offset; // exact: |secs| < 10^13
  // secs * 10^6 + micros stays below 2^53 while |secs| < 9e9.
  if (secs < 9e9 && secs > -9e9) return secs * 1_000_000 + micros;
  const total = BigInt(secs) * 1_000_000n + BigInt(micros);
  if (total >= INT64_MAX || total <= INT64_MIN) {
    throw new PgTextError('is outside the range of Avro timestamp-micros (int64 microseconds since 1970, years 290308 BC to 294247 AD)');
  }
  return total >= -9007199254740991n && total <= 9007199254740991n ? Number(total) : total;
}

// --- intervals -------------------------------------------------------------

/** An optionally signed run of digits at pos. Returns NaN (without moving) if there is none. */
function signedInt(text: string): number {
  const start = pos;
  const neg = text.charCodeAt(pos) === 45;
  if (neg) pos++;
  let n = 0;
  const first = pos;
  for (; pos < text.length; pos++) {
    const d = text.charCodeAt(pos) - 48;
    if (d < 0 || d > 9) break;
    n = n * 10 + d;
  }
  if (pos === first) {
    pos = start;
    return NaN;
  }
  return neg ? -n : n;
}

/**
 * interval (IntervalStyle iso_8601) -> a normalised ISO-8601 duration.
 *
 * Postgres keeps three independent fields — months, days, microseconds — with
 * their own signs ('1 mon -1 day' is not '29 days': it depends on the month).
 * The output keeps exactly those three, never folding one into another:
 * years/months from the months field, days, and hours/minutes/seconds (one
 * sign) from the microseconds; zero parts are left out, zero is 'PT0S', each
 * part carries its own sign ('P1M-1D', 'PT-1H-30M'). That is Postgres' own
 * iso_8601 output, so its output passes through unchanged; other spellings
 * ('-P1D', 'PT90M', 'P14M') are normalised ('P-1D', 'PT1H30M', 'P1Y2M').
 * 'infinity' / '-infinity' (Postgres 17+) pass through.
 */
export function parseInterval(text: string): string {
  if (text === 'infinity' || text === '-infinity') return text;
  const what = 'interval (ISO 8601)';
  pos = 0;
  const negateAll = text.charCodeAt(0) === 45;
  if (negateAll) pos++;
  expect(text, 80, what); // 'P'
  let months = 0;
  let days = 0;
  let seconds = 0; // whole seconds of the time part
  let micros = 0; // sub-second part, same sign as its seconds field
  let inTime = false;
  let any = false;
  while (pos < text.length) {
    if (!inTime && text.charCodeAt(pos) === 84) {
      inTime = true;
      pos++;
      continue;
    }
    const negField = text.charCodeAt(pos) === 45;
    const n = signedInt(text);
    if (n !== n) bad(what);
    any = true;
    let unit = text.charCodeAt(pos++);
    let frac = 0;
    if (unit === 46 && inTime) {
      // fraction of seconds: up to 6 digits, then 'S'
      let k = 0;
      while (k < 6 && pos < text.length) {
        const d = text.charCodeAt(pos) - 48;
        if (d < 0 || d > 9) break;
        frac = frac * 10 + d;
        pos++;
        k++;
      }
      if (k === 0) bad(what);
      for (; k < 6; k++) frac *= 10;
      unit = text.charCodeAt(pos++);
      if (unit !== 83) bad(what);
      if (negField) frac = -frac;
    }
    if (!inTime && unit === 89) months += n * 12;
    else if (!inTime && unit === 77) months += n;
    else if (!inTime && unit === 87) days += n * 7;
    else if (!inTime && unit === 68) days += n;
    else if (inTime && unit === 72) seconds += n * 3600;
    else if (inTime && unit === 77) seconds += n * 60;
    else if (inTime && unit === 83) {
      seconds += n;
      micros += frac;
    } else bad(what);
  }
  if (!any) bad(what);
  if (negateAll) {
    months = -months;
    days = -days;
    seconds = -seconds;
    micros = -micros;
  }
  // One sign for the whole time part: borrow a second when seconds and micros disagree.
  if (seconds > 0 && micros < 0) {
    seconds -= 1;
    micros += 1_000_000;
  } else if (seconds < 0 && micros > 0) {
    seconds += 1;
    micros -= 1_000_000;
  }
  if (!Number.isSafeInteger(months) || !Number.isSafeInteger(days) || !Number.isSafeInteger(seconds)) bad(what);
  return formatInterval(months, days, seconds, micros);
}

function formatInterval(months: number, days: number, seconds: number, micros: number): string {
  if (months === 0 && days === 0 && seconds === 0 && micros === 0) return 'PT0S';
  let out = 'P';
  const y = Math.trunc(months / 12);
  const mo = months % 12;
  if (y !== 0) out += `${y}Y`;
  if (mo !== 0) out += `${mo}M`;
  if (days !== 0) out += `${days}D`;
  if (seconds === 0 && micros === 0) return out;
  out += 'T';
  const h = Math.trunc(seconds / 3600);
  const mi = Math.trunc((seconds % 3600) / 60);
  const s = seconds % 60;
  if (h !== 0) out += `${h}H`;
  if (mi !== 0) out += `${mi}M`;
  if (s !== 0 || micros !== 0) {
    const neg = s < 0 || micros < 0;
    out += `${neg ? '-' : ''}${Math.abs(s)}`;
    if (micros !== 0) out += `.${String(Math.abs(micros)).padStart(6, '0').replace(/0+$/, '')}`;
    out += 'S';
  }
  return out;
}

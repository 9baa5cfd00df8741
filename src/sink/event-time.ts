import type { LakeType } from '../lake/lake-schema.ts';

/**
 * Event times of event topics (input.format events): the `timestamp.field` of each event, as microseconds
 * since the epoch (UTC), whatever the field's type. Hand-written rather than `Date.parse`: Date keeps
 * milliseconds only and accepts many non-ISO forms (engine-dependent), and a time that cannot be read
 * must be a dead letter, never a guess.
 */
const ISO = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?\s*(Z|z|[+-]\d{2}(?::?\d{2})?)?$/;

export const DAY_MICROS = 86_400_000_000n;

/** An ISO-8601 date-time (`2026-12-06T21:05:00.123456Z`, `…+01:00`; no offset = UTC; a date alone = its midnight) as µs, or undefined. */
export function parseIsoMicros(text: string): bigint | undefined {
  const m = ISO.exec(text.trim());
  if (!m) return undefined;
  const [, y, mo, d, h = '0', mi = '0', s = '0', frac = '', zone] = m;
  const ms = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s));
  const back = new Date(ms);
  // Date.UTC rolls 2026-02-30 over into March: a field out of range is not a time.
  if (
    Number.isNaN(ms) ||
    back.getUTCFullYear() !== Number(y) ||
    back.getUTCMonth() !== Number(mo) - 1 ||
    back.getUTCDate() !== Number(d) ||
    back.getUTCHours() !== Number(h) ||
    back.getUTCMinutes() !== Number(mi) ||
    back.getUTCSeconds() !== Number(s)
  )
    return undefined;
  let micros = BigInt(ms) * 1000n + BigInt((frac + '000000').slice(0, 6));
  if (zone && zone !== 'Z' && zone !== 'z') {
    const sign = zone[0] === '-' ? -1n : 1n;
    const digits = zone.slice(1).replace(':', '');
    const hours = BigInt(digits.slice(0, 2));
    const minutes = BigInt(digits.slice(2) || '0');
    if (hours > 23n || minutes > 59n) return undefined;
    micros -= sign * (hours * 3_600_000_000n + minutes * 60_000_000n);
  }
  return micros;
}

/**
 * The event time of a decoded value of a lake column of type `type`: a timestamp (µs) as is, a date at its
 * midnight, a long or integer as epoch milliseconds, a string as ISO-8601. undefined when it cannot be read.
 */
export function eventTimeMicros(type: LakeType, value: unknown): bigint | undefined {
  if (value === null || value === undefined) return undefined;
  switch (type.kind) {
    case 'timestamp':
      return typeof value === 'bigint' ? value : typeof value === 'number' && Number.isSafeInteger(value) ? BigInt(value) : undefined;
    case 'date':
      return typeof value === 'number' ? BigInt(value) * DAY_MICROS : undefined;
    case 'long':
    case 'integer':
      if (typeof value === 'bigint') return value * 1000n;
      return typeof value === 'number' && Number.isSafeInteger(value) ? BigInt(value) * 1000n : undefined;
    case 'string':
      return typeof value === 'string' ? parseIsoMicros(value) : undefined;
    default:
      return undefined;
  }
}

/** The UTC day (days since the epoch) of a time in µs: bronze's `_event_date` partition. */
export function dayOf(micros: bigint): number {
  const d = micros / DAY_MICROS;
  return Number(micros < 0n && d * DAY_MICROS !== micros ? d - 1n : d);
}

import { z } from 'zod';
import { ConfigError } from '../errors.ts';
import { formatBytes, formatDuration, parseBytes, parseDurationSeconds } from '../units.ts';

/**
 * The thresholds a replication slot is judged by (issue 5, "Slots"): retained WAL, lag and time inactive,
 * each with a warning and a critical level. They come, most specific first, from the flags of
 * `tide slots check`, from the slot's source connector file (`slot.*` keys below), or from these defaults.
 * The running source uses its file's values for its own slot watch.
 */
export interface SlotThresholds {
  retainedWalWarningBytes: number;
  retainedWalCriticalBytes: number;
  lagWarningBytes: number;
  lagCriticalBytes: number;
  /** Applied to inactive slots only. */
  inactiveWarningSeconds: number;
  inactiveCriticalSeconds: number;
}

export const DEFAULT_SLOT_THRESHOLDS: Readonly<SlotThresholds> = {
  retainedWalWarningBytes: 2 ** 30,
  retainedWalCriticalBytes: 4 * 2 ** 30,
  lagWarningBytes: 256 * 2 ** 20,
  lagCriticalBytes: 2 ** 30,
  inactiveWarningSeconds: 3600,
  inactiveCriticalSeconds: 24 * 3600,
};

/** Given values, by field; absent ones fall back to the base. */
export type GivenThresholds = { [K in keyof SlotThresholds]?: number | undefined };

/** What the user calls each field where it came from (a config key or a flag), for messages. */
export type ThresholdNames = Record<keyof SlotThresholds, string>;

interface Pair {
  warning: keyof SlotThresholds;
  critical: keyof SlotThresholds;
  show: (n: number) => string;
}
const PAIRS: Pair[] = [
  { warning: 'retainedWalWarningBytes', critical: 'retainedWalCriticalBytes', show: formatBytes },
  { warning: 'lagWarningBytes', critical: 'lagCriticalBytes', show: formatBytes },
  { warning: 'inactiveWarningSeconds', critical: 'inactiveCriticalSeconds', show: formatDuration },
];

/**
 * `given` over `base`, pair by pair. A critical level given alone pulls the base warning down to it (a
 * warning never fires after the critical one); a given warning above the resulting critical level is an error
 * that names both settings.
 */
export function resolveSlotThresholds(given: GivenThresholds, base: Readonly<SlotThresholds>, names: ThresholdNames): SlotThresholds {
  const out = { ...base };
  for (const { warning, critical, show } of PAIRS) {
    const c = given[critical] ?? base[critical];
    const w = given[warning] ?? Math.min(base[warning], c);
    if (w > c)
      throw new ConfigError(
        names[warning],
        `${show(w)} is above the critical threshold ${show(c)}${given[critical] === undefined ? ` (${names[critical]}, not set, so its default)` : ` (${names[critical]})`}: set ${names[critical]} to at least ${show(w)}, or lower ${names[warning]}`,
      );
    out[warning] = w;
    out[critical] = c;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// The source connector file's keys

const byteSize = z.union([z.number(), z.string()]).transform((v, ctx) => {
  const n = typeof v === 'number' ? v : parseBytes(v);
  if (!Number.isInteger(n) || n < 0) {
    ctx.addIssue({ code: 'custom', message: `${JSON.stringify(v)} is not a size: use e.g. "512MB", "2GB" or a number of bytes` });
    return z.NEVER;
  }
  return n;
});

const duration = z.union([z.number(), z.string()]).transform((v, ctx) => {
  const n = typeof v === 'number' ? v : parseDurationSeconds(v);
  if (!Number.isFinite(n) || n < 0) {
    ctx.addIssue({
      code: 'custom',
      message: `${JSON.stringify(v)} is not a duration: use e.g. "90s", "30m", "6h", "2d" or a number of seconds`,
    });
    return z.NEVER;
  }
  return n;
});

/** Config key → field. */
export const SLOT_THRESHOLD_KEYS = {
  'slot.retained.wal.warning': 'retainedWalWarningBytes',
  'slot.retained.wal.critical': 'retainedWalCriticalBytes',
  'slot.lag.warning': 'lagWarningBytes',
  'slot.lag.critical': 'lagCriticalBytes',
  'slot.inactive.warning': 'inactiveWarningSeconds',
  'slot.inactive.critical': 'inactiveCriticalSeconds',
} as const satisfies Record<string, keyof SlotThresholds>;

type ThresholdKey = keyof typeof SLOT_THRESHOLD_KEYS;

/** The zod shape of those keys, spread into the source connector's schema. */
export const slotThresholdConfigShape = {
  'slot.retained.wal.warning': byteSize.optional(),
  'slot.retained.wal.critical': byteSize.optional(),
  'slot.lag.warning': byteSize.optional(),
  'slot.lag.critical': byteSize.optional(),
  'slot.inactive.warning': duration.optional(),
  'slot.inactive.critical': duration.optional(),
} satisfies Record<ThresholdKey, z.ZodType>;

export const CONFIG_THRESHOLD_NAMES = Object.fromEntries(
  Object.entries(SLOT_THRESHOLD_KEYS).map(([key, field]) => [field, key]),
) as ThresholdNames;

/** The fields a parsed config sets (its `slot.*` threshold keys). */
export function givenThresholdsOf(config: { [K in ThresholdKey]?: number | undefined }): GivenThresholds {
  const out: GivenThresholds = {};
  for (const [key, field] of Object.entries(SLOT_THRESHOLD_KEYS) as [ThresholdKey, keyof SlotThresholds][])
    if (config[key] !== undefined) out[field] = config[key];
  return out;
}

/** A parsed config's thresholds over the defaults (throws ConfigError naming the key when a pair is inverted). */
export function slotThresholdsOf(config: { [K in ThresholdKey]?: number | undefined }): SlotThresholds {
  return resolveSlotThresholds(givenThresholdsOf(config), DEFAULT_SLOT_THRESHOLDS, CONFIG_THRESHOLD_NAMES);
}

/** A zod refinement for the source schema: an inverted pair is reported at its warning key. */
export function checkSlotThresholds(config: { [K in ThresholdKey]?: number | undefined }, ctx: z.RefinementCtx): void {
  try {
    slotThresholdsOf(config);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    ctx.addIssue({ code: 'custom', path: [err.key], message: err.message.slice(err.key.length + 2) });
  }
}

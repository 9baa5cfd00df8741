/**
 * The table properties (metaData.configuration, PROTOCOL.md "Table Properties" and Delta's
 * documented `delta.*` settings) that change what the log writer does.
 */

export const DEFAULT_CHECKPOINT_INTERVAL = 10;
/** Delta's default `delta.deletedFileRetentionDuration`: interval 1 week. */
export const DEFAULT_TOMBSTONE_RETENTION_MS = 7 * 86_400_000;

/** A property has a value Tide cannot use; the message names the key. */
export class TablePropertyError extends Error {
  constructor(
    readonly key: string,
    readonly value: string,
    expected: string,
  ) {
    super(`table property ${key} = ${JSON.stringify(value)}: expected ${expected}`);
    this.name = 'TablePropertyError';
  }
}

/** `delta.checkpointInterval`: write a checkpoint after every version that is a multiple of it (default 10). */
export function checkpointInterval(configuration: Record<string, string>): number {
  const raw = configuration['delta.checkpointInterval'];
  if (raw === undefined) return DEFAULT_CHECKPOINT_INTERVAL;
  const n = Number(raw.trim());
  if (!Number.isInteger(n) || n < 1) throw new TablePropertyError('delta.checkpointInterval', raw, 'a positive integer');
  return n;
}

/** `delta.checkpoint.writeStatsAsJson` (default true): whether checkpoints keep each add's stats string. */
export function writeStatsAsJson(configuration: Record<string, string>): boolean {
  return configuration['delta.checkpoint.writeStatsAsJson']?.trim().toLowerCase() !== 'false';
}

const UNIT_MS: Record<string, number> = {
  millisecond: 1,
  second: 1000,
  minute: 60_000,
  hour: 3_600_000,
  day: 86_400_000,
  week: 7 * 86_400_000,
};

/**
 * `delta.deletedFileRetentionDuration` in milliseconds: how long remove tombstones are kept in
 * checkpoints. Spark writes it as a calendar interval, e.g. `interval 1 week` or `interval 168 hours`.
 */
export function tombstoneRetentionMs(configuration: Record<string, string>): number {
  const key = 'delta.deletedFileRetentionDuration';
  const raw = configuration[key];
  if (raw === undefined) return DEFAULT_TOMBSTONE_RETENTION_MS;
  const m = /^\s*(?:interval\s+)?(\d+)\s*([a-z]+?)s?\s*$/i.exec(raw);
  const unit = m ? UNIT_MS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined)
    throw new TablePropertyError(
      key,
      raw,
      `"interval <n> <unit>" with unit one of ${Object.keys(UNIT_MS).join(', ')} (singular or plural)`,
    );
  return Number(m[1]) * unit;
}

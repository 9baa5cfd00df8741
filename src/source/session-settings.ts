/**
 * Session settings for every connection the source opens (replication and
 * snapshot). Values reach Tide as Postgres' text output, and these fix its
 * format so the converters in type-mapping.ts see one shape:
 * UTC timestamps in ISO form, ISO-8601 intervals, shortest exact floats, hex bytea.
 */
export const SOURCE_SESSION_SETTINGS: Readonly<Record<string, string>> = {
  timezone: 'UTC',
  datestyle: 'ISO, YMD',
  intervalstyle: 'iso_8601',
  extra_float_digits: '3',
  bytea_output: 'hex',
};

/** As a libpq `options` string: `-c timezone=UTC -c ...`. */
export function sessionOptions(): string {
  return Object.entries(SOURCE_SESSION_SETTINGS)
    .map(([k, v]) => `-c ${k}=${v.replace(/ /g, '\\ ')}`)
    .join(' ');
}

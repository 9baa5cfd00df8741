/** Sizes and durations the way DBAs read and write them (postgresql.conf style), for slot commands, config and messages. */

const UNITS: [string, number][] = [
  ['TB', 2 ** 40],
  ['GB', 2 ** 30],
  ['MB', 2 ** 20],
  ['kB', 2 ** 10],
];

/** Bytes as Postgres' pg_size_pretty and postgresql.conf write them: kB/MB/GB/TB in multiples of 1024. */
export function formatBytes(bytes: number | null): string {
  if (bytes === null) return '-';
  const sign = bytes < 0 ? '-' : '';
  const b = Math.abs(bytes);
  for (const [unit, size] of UNITS) if (b >= size) return `${sign}${(b / size).toFixed(b / size >= 100 ? 0 : 1)} ${unit}`;
  return `${sign}${b} B`;
}

/** "20MB", "1.5 GB", "512kB", "4096" (bytes), also KiB/MiB/GiB/TiB; case-insensitive. NaN when unparsable. */
export function parseBytes(input: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)?\s*$/i.exec(input);
  if (!m) return NaN;
  const unit = (m[2] ?? 'b').toLowerCase().replace('ib', 'b');
  const factor = { b: 1, kb: 2 ** 10, mb: 2 ** 20, gb: 2 ** 30, tb: 2 ** 40 }[unit];
  return factor === undefined ? NaN : Math.round(Number(m[1]) * factor);
}

/** Seconds as "45s", "12m", "3h 5m", "2d 4h". */
export function formatDuration(seconds: number | null): string {
  if (seconds === null) return '-';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  const two = (big: number, bigUnit: string, small: number, smallUnit: string) => `${big}${bigUnit}${small ? ` ${small}${smallUnit}` : ''}`;
  if (s < 86400) return two(Math.floor(s / 3600), 'h', Math.floor((s % 3600) / 60), 'm');
  return two(Math.floor(s / 86400), 'd', Math.floor((s % 86400) / 3600), 'h');
}

/** "90s", "15m", "6h", "2d", "1h30m" or plain seconds. NaN when unparsable. */
export function parseDurationSeconds(input: string): number {
  const t = input.trim();
  if (/^\d+(\.\d+)?$/.test(t)) return Number(t);
  const parts = [...t.matchAll(/(\d+(?:\.\d+)?)\s*(d|h|m|s)/g)];
  const strip = (x: string) => x.replace(/\s+/g, '');
  if (parts.length === 0 || strip(parts.map((p) => p[0]).join('')) !== strip(t)) return NaN;
  const unit = { d: 86400, h: 3600, m: 60, s: 1 };
  return parts.reduce((sum, p) => sum + Number(p[1]) * unit[p[2] as keyof typeof unit], 0);
}

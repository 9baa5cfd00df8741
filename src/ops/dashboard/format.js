// How the dashboard writes numbers and times. Plain functions, shared by the page and its test so
// both agree on what "Orders: 1,234" means. Money arrives as exact decimal strings and stays text.

/** 1234567 → "1,234,567" (digit grouping as in en-US, whatever the browser's locale). */
export function formatCount(n) {
  return Number(n).toLocaleString('en-US', { maximumFractionDigits: 0 });
}

/** "-1234567.50" → "-1,234,567.50", digit by digit: no float rounding. */
export function formatMoney(decimal) {
  const m = /^(-?)(\d+)(\.\d+)?$/.exec(String(decimal));
  if (!m) return String(decimal);
  return `${m[1]}${m[2].replace(/\B(?=(\d{3})+(?!\d))/g, ',')}${m[3] ?? ''}`;
}

/** ISO 8601 → "2026-11-24 12:34:56 UTC"; null → "never". */
export function formatTime(iso) {
  if (iso === null || iso === undefined) return 'never';
  return `${new Date(iso).toISOString().slice(0, 19).replace('T', ' ')} UTC`;
}

/** The per-minute orders panel's line. */
export function ordersLine(orders, lastUpdate) {
  return `Orders: ${formatCount(orders)} — last update: ${formatTime(lastUpdate)}`;
}

export function formatBytes(n) {
  if (n === null || n === undefined) return '—';
  const abs = Math.abs(n);
  if (abs < 1024) return `${n} B`;
  if (abs < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  if (abs < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

/** Seconds → "42 s", "3.5 min", "2.0 h", "4.1 d". */
export function formatSeconds(s) {
  if (s === null || s === undefined) return '—';
  if (s < 120) return `${Math.round(s)} s`;
  if (s < 7200) return `${(s / 60).toFixed(1)} min`;
  if (s < 172800) return `${(s / 3600).toFixed(1)} h`;
  return `${(s / 86400).toFixed(1)} d`;
}

export function formatRate(perSecond) {
  if (perSecond === null || perSecond === undefined || !Number.isFinite(perSecond)) return '—';
  return `${perSecond < 10 ? perSecond.toFixed(1) : formatCount(Math.round(perSecond))}/s`;
}

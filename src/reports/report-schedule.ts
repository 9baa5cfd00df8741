/**
 * When a gold report is rebuilt: its `-- tide: refresh = …` header (report-file.ts parses it). Pure
 * functions of an injected clock, so the rules are unit-tested without waiting (test/unit/report-schedule.test.ts).
 *
 * - `on-change` (the default): after the lake tables the report reads changed, at most once per the
 *   connector's `gold.refresh.interval.ms`.
 * - `every <n>s|m|h`: after the tables it reads changed, at most once per that period (a heavy report
 *   can be rebuilt less often than the cheap ones).
 * - `daily HH:MM UTC`: once a day, at the first check at or after HH:MM UTC, whether or not its inputs
 *   changed (billing). A build missed while the sink was down runs at the first check after it starts;
 *   a report never built is built at once.
 */
export type Schedule = { kind: 'on-change' } | { kind: 'every'; ms: number } | { kind: 'daily'; minuteOfDay: number };

export const ON_CHANGE: Schedule = { kind: 'on-change' };

const DAY_MS = 86_400_000;

/** `on-change`, `every 60s` (s, m or h), `daily 02:00 UTC`; undefined when the text is none of these. */
export function parseSchedule(text: string): Schedule | undefined {
  const t = text.trim();
  if (/^on-change$/i.test(t)) return ON_CHANGE;
  const every = /^every\s+(\d+)\s*(s|m|h)$/i.exec(t);
  if (every) {
    const n = Number(every[1]);
    if (n <= 0) return undefined;
    return { kind: 'every', ms: n * { s: 1000, m: 60_000, h: 3_600_000 }[every[2]!.toLowerCase() as 's' | 'm' | 'h'] };
  }
  const daily = /^daily\s+(\d{2}):(\d{2})\s+UTC$/i.exec(t);
  if (daily) {
    const [h, m] = [Number(daily[1]), Number(daily[2])];
    if (h > 23 || m > 59) return undefined;
    return { kind: 'daily', minuteOfDay: h * 60 + m };
  }
  return undefined;
}

export function describeSchedule(s: Schedule): string {
  if (s.kind === 'on-change') return 'on-change';
  if (s.kind === 'every')
    return s.ms % 3_600_000 === 0
      ? `every ${s.ms / 3_600_000}h`
      : s.ms % 60_000 === 0
        ? `every ${s.ms / 60_000}m`
        : `every ${s.ms / 1000}s`;
  const hh = String(Math.floor(s.minuteOfDay / 60)).padStart(2, '0');
  const mm = String(s.minuteOfDay % 60).padStart(2, '0');
  return `daily ${hh}:${mm} UTC`;
}

/** The latest daily build time (ms) at or before `nowMs`. */
export function lastDailySlot(minuteOfDay: number, nowMs: number): number {
  const today = Math.floor(nowMs / DAY_MS) * DAY_MS + minuteOfDay * 60_000;
  return today <= nowMs ? today : today - DAY_MS;
}

export interface DueInput {
  nowMs: number;
  /** When the report was last built (ms); undefined if never (since this process started, or ever for daily: see GoldRefresher). */
  lastBuildMs: number | undefined;
  /** A table the report reads changed since its last build. */
  inputsChanged: boolean;
  /** gold.refresh.interval.ms: the least time between two on-change builds. */
  onChangeIntervalMs: number;
}

/** Whether the report should be rebuilt now. */
export function isDue(schedule: Schedule, d: DueInput): boolean {
  const since = d.lastBuildMs === undefined ? Infinity : d.nowMs - d.lastBuildMs;
  switch (schedule.kind) {
    case 'on-change':
      return d.inputsChanged && since >= d.onChangeIntervalMs;
    case 'every':
      return d.inputsChanged && since >= schedule.ms;
    case 'daily':
      return d.lastBuildMs === undefined || d.lastBuildMs < lastDailySlot(schedule.minuteOfDay, d.nowMs);
  }
}

/**
 * The least time from the end of an on-change report's build to its next: `gold.refresh.interval.ms`, or longer
 * when the last build took so long that building again sooner would keep gold busy more than `maxShare` of the
 * time (one core: the sink's gold runs on one DuckDB thread beside the flushes). A build of t ms then waits
 * t × (1/maxShare − 1): busy t of every t/maxShare. Over a lake that grows, a report's build grows with it, and
 * without this bound gold would take an ever larger share of the CPU the flushes need (README "Gold reports").
 */
export function onChangeSpacingMs(intervalMs: number, lastBuildTookMs: number | undefined, maxShare: number): number {
  if (lastBuildTookMs === undefined || !(maxShare < 1)) return intervalMs;
  return Math.max(intervalMs, Math.ceil(lastBuildTookMs * (1 / maxShare - 1)));
}

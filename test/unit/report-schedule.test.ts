import { describe, expect, it } from 'vitest';
import {
  describeSchedule,
  isDue,
  lastDailySlot,
  onChangeSpacingMs,
  parseSchedule,
  type Schedule,
} from '../../src/reports/report-schedule.ts';

const at = (iso: string) => Date.parse(iso);

describe('refresh schedules', () => {
  it('parses the three forms and refuses anything else', () => {
    expect(parseSchedule('on-change')).toEqual({ kind: 'on-change' });
    expect(parseSchedule(' every 60s ')).toEqual({ kind: 'every', ms: 60_000 });
    expect(parseSchedule('every 5m')).toEqual({ kind: 'every', ms: 300_000 });
    expect(parseSchedule('every 2h')).toEqual({ kind: 'every', ms: 7_200_000 });
    expect(parseSchedule('daily 02:00 UTC')).toEqual({ kind: 'daily', minuteOfDay: 120 });
    expect(parseSchedule('daily 23:59 utc')).toEqual({ kind: 'daily', minuteOfDay: 1439 });
    for (const bad of ['every 0s', 'every 1d', 'daily 24:00 UTC', 'daily 2:00 UTC', 'daily 02:00', 'hourly', ''])
      expect(parseSchedule(bad), bad).toBeUndefined();
    for (const text of ['on-change', 'every 90s', 'every 5m', 'every 2h', 'daily 02:05 UTC'])
      expect(describeSchedule(parseSchedule(text)!)).toBe(text);
  });

  it('finds the latest daily slot at or before now, in UTC', () => {
    expect(lastDailySlot(120, at('2026-12-06T02:00:00Z'))).toBe(at('2026-12-06T02:00:00Z'));
    expect(lastDailySlot(120, at('2026-12-06T01:59:59.999Z'))).toBe(at('2026-12-05T02:00:00Z'));
    expect(lastDailySlot(120, at('2026-12-06T23:00:00Z'))).toBe(at('2026-12-06T02:00:00Z'));
    expect(lastDailySlot(0, at('2027-01-01T00:00:00Z'))).toBe(at('2027-01-01T00:00:00Z'));
  });

  const base = { inputsChanged: true, onChangeIntervalMs: 30_000 };

  it('on-change: after a change, at most once per gold.refresh.interval.ms', () => {
    const s: Schedule = { kind: 'on-change' };
    const now = at('2026-12-06T10:00:00Z');
    expect(isDue(s, { ...base, nowMs: now, lastBuildMs: undefined })).toBe(true);
    expect(isDue(s, { ...base, nowMs: now, lastBuildMs: now - 29_999 })).toBe(false);
    expect(isDue(s, { ...base, nowMs: now, lastBuildMs: now - 30_000 })).toBe(true);
    expect(isDue(s, { ...base, inputsChanged: false, nowMs: now, lastBuildMs: now - 3_600_000 })).toBe(false);
  });

  it('every N: after a change, at most once per N, whatever the connector interval', () => {
    const s = parseSchedule('every 5m')!;
    const now = at('2026-12-06T10:00:00Z');
    expect(isDue(s, { ...base, nowMs: now, lastBuildMs: now - 60_000 })).toBe(false);
    expect(isDue(s, { ...base, nowMs: now, lastBuildMs: now - 300_000 })).toBe(true);
    expect(isDue(s, { ...base, inputsChanged: false, nowMs: now, lastBuildMs: now - 3_600_000 })).toBe(false);
    expect(isDue(s, { ...base, nowMs: now, lastBuildMs: undefined })).toBe(true);
  });

  it('daily HH:MM UTC: once per day from that time, changed or not; a missed day runs at the next check', () => {
    const s = parseSchedule('daily 02:00 UTC')!;
    const quiet = { inputsChanged: false, onChangeIntervalMs: 30_000 };
    // Built yesterday at 02:00:01: not due before 02:00 today, due from 02:00 on, and only once.
    const built = at('2026-12-05T02:00:01Z');
    expect(isDue(s, { ...quiet, nowMs: at('2026-12-06T01:59:59Z'), lastBuildMs: built })).toBe(false);
    expect(isDue(s, { ...quiet, nowMs: at('2026-12-06T02:00:00Z'), lastBuildMs: built })).toBe(true);
    expect(isDue(s, { ...quiet, nowMs: at('2026-12-06T02:00:30Z'), lastBuildMs: at('2026-12-06T02:00:10Z') })).toBe(false);
    expect(isDue(s, { ...quiet, nowMs: at('2026-12-06T23:59:59Z'), lastBuildMs: at('2026-12-06T02:00:10Z') })).toBe(false);
    // The sink was down at 02:00 for two days: one build at the first check after it starts.
    expect(isDue(s, { ...quiet, nowMs: at('2026-12-08T09:15:00Z'), lastBuildMs: built })).toBe(true);
    // Never built: at once.
    expect(isDue(s, { ...quiet, nowMs: at('2026-12-06T01:00:00Z'), lastBuildMs: undefined })).toBe(true);
  });

  it('on-change spacing: the interval, or longer after a long build so gold stays under gold.build.max.share', () => {
    expect(onChangeSpacingMs(30_000, undefined, 0.25)).toBe(30_000); // no build in this process yet
    expect(onChangeSpacingMs(30_000, 5_000, 0.25)).toBe(30_000); // 5 s of every 35 s: under a quarter
    expect(onChangeSpacingMs(30_000, 16_000, 0.25)).toBe(48_000); // busy 16 s of every 64 s
    expect(onChangeSpacingMs(30_000, 16_000, 0.5)).toBe(30_000);
    expect(onChangeSpacingMs(30_000, 40_000, 0.5)).toBe(40_000);
    expect(onChangeSpacingMs(30_000, 16_000, 1)).toBe(30_000); // 1: only the interval counts
    expect(onChangeSpacingMs(0, 1_000, 0.1)).toBe(9_000);
  });
});

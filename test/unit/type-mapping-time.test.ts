import { describe, expect, it } from 'vitest';
import { TypeConversionError } from '../../src/errors.ts';
import { col, convertAll, days, map, rt, utcMicros } from '../support/type-mapping.ts';

// --- dates and times -------------------------------------------------------------

describe('date', () => {
  it('-> int days since 1970-01-01, BC and 7-digit years included', () => {
    const { m } = map(col('date'));
    expect(m.avroType).toMatchObject({ type: 'int', logicalType: 'date', 'connect.name': 'io.debezium.time.Date' });
    expect(rt(m, '1970-01-01')).toBe(0);
    expect(rt(m, '1969-12-31')).toBe(-1);
    expect(rt(m, '2000-02-29')).toBe(11016);
    expect(rt(m, '0001-01-01')).toBe(days(1, 1, 1));
    expect(rt(m, '0001-12-31 BC')).toBe(days(0, 12, 31)); // 1 BC is astronomical year 0
    expect(rt(m, '0044-03-15 BC')).toBe(days(-43, 3, 15));
    expect(rt(m, '4714-11-24 BC')).toBe(-2440588); // Julian day 0, Postgres' first date
    expect(rt(m, '5874897-12-31')).toBe(2145042905); // Postgres' last date
  });
  it("'infinity' / '-infinity' -> 9999-12-31 / 0001-01-01, the range every common Avro consumer holds", () => {
    expect(convertAll(col('date'), ['infinity', '-infinity'])).toEqual([2932896, -719162]);
  });
  it('rejects malformed dates', () => {
    for (const bad of ['2024-13-01', '2024-1-01', '24-01-01', '2024-01-01 AD', '2024-01-01 BC x', ''])
      expect(() => map(col('date')).m.convert(bad)).toThrow(TypeConversionError);
  });
});

describe('time and timetz', () => {
  it('time -> long time-micros, 1 to 6 fraction digits, 24:00:00', () => {
    const { m } = map(col('time'));
    expect(m.avroType).toMatchObject({ type: 'long', logicalType: 'time-micros', 'connect.name': 'io.debezium.time.MicroTime' });
    expect(['00:00:00', '12:34:56.5', '12:34:56.000001', '23:59:59.999999', '24:00:00'].map((t) => rt(m, t))).toEqual([
      0, 45296500000, 45296000001, 86399999999, 86400000000,
    ]);
    for (const bad of ['24:00:01', '12:60:00', '12:34', '12:34:56.', '12:34:56.1234567', '12:34:56+00'])
      expect(() => m.convert(bad)).toThrow(TypeConversionError);
  });
  it('timetz -> ISO time with its own offset (minutes always written)', () => {
    const { m } = map(col('timetz'));
    expect(m.avroType).toMatchObject({ type: 'string', 'connect.name': 'io.debezium.time.ZonedTime' });
    expect(rt(m, '12:34:56.5+05:30')).toBe('12:34:56.5+05:30');
    expect(rt(m, '24:00:00+14')).toBe('24:00:00+14:00');
    expect(rt(m, '23:59:59.999999-15:59')).toBe('23:59:59.999999-15:59');
    expect(rt(m, '00:00:00-00:00:30')).toBe('00:00:00-00:00:30');
    expect(() => m.convert('12:00:00')).toThrow(TypeConversionError);
  });
});

describe('timestamp and timestamptz', () => {
  it('timestamp -> long local-timestamp-micros', () => {
    const { m } = map(col('timestamp'));
    expect(m.avroType).toMatchObject({
      type: 'long',
      logicalType: 'local-timestamp-micros',
      'connect.name': 'io.debezium.time.MicroTimestamp',
    });
    expect(rt(m, '1970-01-01 00:00:00')).toBe(0);
    expect(rt(m, '2024-05-01 12:34:56.789')).toBe(utcMicros(2024, 5, 1, 12, 34, 56, 789000));
    for (const [frac, us] of [
      ['1', 100000],
      ['12', 120000],
      ['123', 123000],
      ['1234', 123400],
      ['12345', 123450],
      ['123456', 123456],
    ] as const) {
      expect(rt(m, `1999-12-31 23:59:59.${frac}`)).toBe(utcMicros(1999, 12, 31, 23, 59, 59, us));
    }
    expect(rt(m, '1969-12-31 23:59:59.999999')).toBe(-1);
  });
  it('timestamptz -> long timestamp-micros in UTC, any printed offset applied', () => {
    const { m } = map(col('timestamptz'));
    expect(m.avroType).toEqual({ type: 'long', logicalType: 'timestamp-micros' });
    expect(rt(m, '2024-05-01 10:34:56.789+00')).toBe(utcMicros(2024, 5, 1, 10, 34, 56, 789000));
    expect(rt(m, '2024-05-01 12:34:56.789+02')).toBe(utcMicros(2024, 5, 1, 10, 34, 56, 789000));
    expect(rt(m, '2024-05-01 05:04:56-05:30')).toBe(utcMicros(2024, 5, 1, 10, 34, 56));
    expect(() => map(col('timestamp')).m.convert('2024-05-01 10:34:56+00')).toThrow(TypeConversionError);
  });
  it('BC and years beyond 9999, as bigint once past 2^53 microseconds', () => {
    const { m } = map(col('timestamptz'));
    expect(rt(m, '0044-03-15 12:00:00+00 BC')).toBe(utcMicros(-43, 3, 15, 12));
    expect(rt(m, '4714-11-24 00:00:00+00 BC')).toBe(-2440588n * 86_400_000_000n);
    expect(rt(m, '10000-01-01 00:00:00+00')).toBe(utcMicros(10000, 1, 1));
    expect(rt(m, '2255-06-05 23:47:34.740991+00')).toBe(Number.MAX_SAFE_INTEGER);
    expect(rt(m, '2255-06-05 23:47:34.740992+00')).toBe(2n ** 53n);
    expect(rt(m, '275760-09-13 00:00:00+00')).toBe(utcMicros(275760, 9, 13));
    const t = map(col('timestamp')).m;
    expect(rt(t, '294247-01-10 04:00:54.775806')).toBe(2n ** 63n - 2n); // the last representable microsecond
  });
  it("'infinity' / '-infinity' -> 9999-12-31T23:59:59.999999Z / 0001-01-01T00:00:00Z; values beyond int64 µs are refused", () => {
    for (const type of ['timestamp', 'timestamptz']) {
      const { m } = map(col(type));
      expect(rt(m, 'infinity')).toBe(253_402_300_799_999_999n);
      expect(rt(m, '-infinity')).toBe(-62_135_596_800_000_000n);
    }
    const { m } = map(col('timestamp', { name: 'ts' }));
    expect(() => m.convert('294247-01-10 04:00:54.775807')).toThrow(/column ts \(timestamp\).*outside the range of Avro timestamp-micros/);
    expect(() => m.convert('294276-12-31 23:59:59.999999')).toThrow(TypeConversionError);
  });
  it('rejects malformed timestamps', () => {
    const { m } = map(col('timestamptz'));
    for (const bad of ['2024-05-01T10:34:56+00', '2024-05-01 10:34:56+', '2024-05-01', '2024-05-01 10:34:56+00 AD', 'Infinity'])
      expect(() => m.convert(bad)).toThrow(TypeConversionError);
  });
});

describe('interval', () => {
  const { m } = map(col('interval'));
  it("-> string, Postgres' iso_8601 output unchanged", () => {
    expect(m.avroType).toMatchObject({ type: 'string', 'connect.name': 'io.debezium.time.Interval' });
    for (const t of [
      'P1Y2M3DT4H5M6.5S',
      'P-1D',
      'PT0S',
      'P-1Y-2M3DT-4H-5M-6.000001S',
      'PT2562047788H54.775807S',
      'PT-2562047788H-54.775808S',
      'P-178000000Y',
      'P1M-1D',
      'PT-0.5S',
      'PT59.5S',
      'PT-30M',
      'P10DT0.5S',
    ]) {
      expect(rt(m, t)).toBe(t);
    }
  });
  it('other spellings normalised, nothing folded between months, days and time', () => {
    expect(m.convert('-P1D')).toBe('P-1D');
    expect(m.convert('-P1Y2M3DT4H5M6.5S')).toBe('P-1Y-2M-3DT-4H-5M-6.5S');
    expect(m.convert('PT90M')).toBe('PT1H30M');
    expect(m.convert('P14M')).toBe('P1Y2M');
    expect(m.convert('PT1H-0.5S')).toBe('PT59M59.5S');
    expect(m.convert('P1W')).toBe('P7D');
    expect(m.convert('PT24H')).toBe('PT24H'); // not 1 day
    expect(m.convert('P0D')).toBe('PT0S');
    expect(m.convert('infinity')).toBe('infinity');
  });
  it('rejects what is not an ISO duration', () => {
    for (const bad of ['', 'P', 'P1', 'PT1X', '1 day', 'P1.5D', '1 mon 2 days', 'PT1.S'])
      expect(() => m.convert(bad)).toThrow(TypeConversionError);
  });
});

import { describe, expect, it } from 'vitest';
import type { LakeColumn, LakeType } from '../../src/lake/lake-schema.ts';
import {
  boundJson,
  decimalText,
  isoDate,
  isoTimestampMillis,
  statsJson,
  stringLowerBound,
  stringUpperBound,
  type ColumnAggregate,
} from '../../src/lake/parquet/file-stats.ts';
import { encodeDeltaPath, hiveEscape, joinStorePath, partitionDir } from '../../src/lake/parquet/partition-path.ts';

const col = (name: string, type: LakeType, nullable = true): LakeColumn => ({ name, type, nullable });
const agg = (column: LakeColumn, min: unknown, max: unknown, nullCount = 0): ColumnAggregate => ({ column, min, max, nullCount });

describe('stats JSON', () => {
  it('formats every type as Delta readers parse it', () => {
    const json = statsJson(3, [
      agg(col('id', { kind: 'long' }), -(2n ** 63n), 2n ** 63n - 1n),
      agg(col('n', { kind: 'integer' }), -5, 7, 1),
      agg(col('amount', { kind: 'decimal', precision: 38, scale: 4 }), -12345n, 10n ** 37n + 1n),
      agg(col('whole', { kind: 'decimal', precision: 5, scale: 0 }), -3n, 99999n),
      agg(col('ts', { kind: 'timestamp' }), -1_500n, 1_700_000_000_000_001n),
      agg(col('day', { kind: 'date' }), -719162, 2932896),
      agg(col('name', { kind: 'string' }), 'Ann "A"', 'Zoë'),
      agg(col('ok', { kind: 'boolean' }), false, true),
      agg(col('x', { kind: 'double' }), -0.5, 1e300),
      agg(col('blob', { kind: 'binary' }), null, null, 2),
      agg(col('tags', { kind: 'array', element: { kind: 'string' } }), null, null, 3),
      agg(col('empty', { kind: 'string' }), null, null, 3),
    ]);
    expect(JSON.parse(json)).toBeTruthy();
    expect(json).toBe(
      '{"numRecords":3,' +
        '"minValues":{"id":-9223372036854775808,"n":-5,"amount":-1.2345,"whole":-3,"ts":"1969-12-31T23:59:59.998Z","day":"0001-01-01","name":"Ann \\"A\\"","ok":false,"x":-0.5},' +
        '"maxValues":{"id":9223372036854775807,"n":7,"amount":1000000000000000000000000000000000.0001,"whole":99999,"ts":"2023-11-14T22:13:20.001Z","day":"9999-12-31","name":"Zoë","ok":true,"x":1e+300},' +
        '"nullCount":{"id":0,"n":1,"amount":0,"whole":0,"ts":0,"day":0,"name":0,"ok":0,"x":0,"blob":2,"tags":3,"empty":3}}',
    );
  });

  it('leaves out bounds that JSON or readers cannot hold', () => {
    const d = col('d', { kind: 'double' });
    expect(boundJson(d.type, Number.NaN, 'max')).toBeUndefined();
    expect(boundJson(d.type, Number.NEGATIVE_INFINITY, 'min')).toBeUndefined();
    expect(boundJson({ kind: 'date' }, 2932897, 'max')).toBeUndefined(); // 10000-01-01
    expect(boundJson({ kind: 'timestamp' }, 253402300800000000n, 'max')).toBeUndefined();
    expect(statsJson(1, [agg(d, Number.NEGATIVE_INFINITY, Number.NaN)])).toBe(
      '{"numRecords":1,"minValues":{},"maxValues":{},"nullCount":{"d":0}}',
    );
  });
});

describe('string bounds', () => {
  it('keeps strings up to 32 code points exactly', () => {
    const s = '🌊'.repeat(32);
    expect(stringLowerBound(s)).toBe(s);
    expect(stringUpperBound(s)).toBe(s);
  });

  it('truncates a long min to a prefix and a long max to a prefix that sorts after it', () => {
    const long = 'a'.repeat(31) + 'bc';
    expect(stringLowerBound(long)).toBe('a'.repeat(31) + 'b');
    expect(stringUpperBound(long)).toBe('a'.repeat(31) + 'c');
    // A max whose 32nd code point is U+10FFFF increments the one before it.
    expect(stringUpperBound('a'.repeat(31) + '\u{10FFFF}zz')).toBe('a'.repeat(30) + 'b');
    // Incrementing past U+D7FF skips the surrogate range.
    expect(stringUpperBound('a'.repeat(31) + '\uD7FFzz')).toBe('a'.repeat(31) + '\uE000');
    expect(stringUpperBound('\u{10FFFF}'.repeat(40))).toBeUndefined();
  });

  it('gives bounds that hold in UTF-8 byte order for random strings', () => {
    const utf8 = (s: string): Buffer => Buffer.from(s, 'utf8');
    const alphabet = ['a', 'z', 'é', '\uFFFF', '🌊', '\u{10FFFF}', '\uD7FF', '\uE000', '0'];
    let seed = 7;
    const rand = (n: number): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n;
    for (let i = 0; i < 2000; i++) {
      const s = Array.from({ length: 25 + rand(20) }, () => alphabet[rand(alphabet.length)]).join('');
      const lo = stringLowerBound(s);
      const hi = stringUpperBound(s);
      expect(Buffer.compare(utf8(lo), utf8(s))).toBeLessThanOrEqual(0);
      if (hi !== undefined) expect(Buffer.compare(utf8(hi), utf8(s))).toBeGreaterThanOrEqual(0);
    }
  });
});

describe('timestamps, dates, decimals', () => {
  it('rounds the min down and the max up to the millisecond, on both sides of the epoch', () => {
    expect(isoTimestampMillis(0n, 'floor')).toBe('1970-01-01T00:00:00.000Z');
    expect(isoTimestampMillis(1n, 'floor')).toBe('1970-01-01T00:00:00.000Z');
    expect(isoTimestampMillis(1n, 'ceil')).toBe('1970-01-01T00:00:00.001Z');
    expect(isoTimestampMillis(-1n, 'floor')).toBe('1969-12-31T23:59:59.999Z');
    expect(isoTimestampMillis(-1n, 'ceil')).toBe('1970-01-01T00:00:00.000Z');
    expect(isoTimestampMillis(-1000n, 'ceil')).toBe('1969-12-31T23:59:59.999Z');
    expect(isoTimestampMillis(-62135596800000000n, 'floor')).toBe('0001-01-01T00:00:00.000Z');
    expect(isoTimestampMillis(-62135596800000001n, 'floor')).toBeUndefined();
    expect(isoTimestampMillis(253402300799999000n, 'ceil')).toBe('9999-12-31T23:59:59.999Z');
    expect(isoTimestampMillis(253402300799999999n, 'floor')).toBe('9999-12-31T23:59:59.999Z');
    expect(isoTimestampMillis(253402300799999001n, 'ceil')).toBeUndefined();
  });

  it('formats dates and decimals exactly', () => {
    expect(isoDate(0)).toBe('1970-01-01');
    expect(isoDate(-1)).toBe('1969-12-31');
    expect(isoDate(-719163)).toBeUndefined();
    expect(decimalText(0n, 2)).toBe('0.00');
    expect(decimalText(-5n, 3)).toBe('-0.005');
    expect(decimalText(12345n, 2)).toBe('123.45');
    expect(decimalText(-(10n ** 38n - 1n), 0)).toBe('-' + '9'.repeat(38));
  });
});

describe('partition paths', () => {
  it('escapes like Hive and URI-encodes like Delta add.path', () => {
    expect(hiveEscape('a b/c=d:e%')).toBe('a b%2Fc%3Dd%3Ae%25');
    const dir = partitionDir(['day', 'city name'], { day: '2024-01-02', 'city name': 'São Paulo/SP' });
    expect(dir).toBe('day=2024-01-02/city name=São Paulo%2FSP');
    const encoded = encodeDeltaPath(`${dir}/part-0.parquet`);
    expect(encoded).toBe('day=2024-01-02/city%20name=S%C3%A3o%20Paulo%252FSP/part-0.parquet');
    expect(decodeURIComponent(encoded)).toBe(`${dir}/part-0.parquet`);
    expect(partitionDir(['p'], { p: null })).toBe('p=__HIVE_DEFAULT_PARTITION__');
  });

  it('joins store paths', () => {
    expect(joinStorePath('silver/orders/', 'a/b.parquet')).toBe('silver/orders/a/b.parquet');
    expect(joinStorePath('', 'b.parquet')).toBe('b.parquet');
  });
});

import { DuckDBBlobValue, DuckDBDateValue, DuckDBDecimalValue, DuckDBListValue, DuckDBTimestampTZValue } from '@duckdb/node-api';
import { describe, expect, it } from 'vitest';
import type { LakeType } from '../../src/lake/lake-schema.ts';
import { duckdbType } from '../../src/lake/parquet/parquet-engine.ts';
import { LakeTypeError } from '../../src/lake/parquet/parquet-errors.ts';
import { partitionValueSql } from '../../src/lake/parquet/partition-path.ts';
import { fromDuckDBValue, toDuckDBValue, ValueMismatch } from '../../src/lake/parquet/values.ts';

describe('duckdbType', () => {
  it('maps every lake type', () => {
    const cases: [LakeType, string][] = [
      [{ kind: 'string' }, 'VARCHAR'],
      [{ kind: 'long' }, 'BIGINT'],
      [{ kind: 'integer' }, 'INTEGER'],
      [{ kind: 'short' }, 'SMALLINT'],
      [{ kind: 'double' }, 'DOUBLE'],
      [{ kind: 'float' }, 'FLOAT'],
      [{ kind: 'boolean' }, 'BOOLEAN'],
      [{ kind: 'binary' }, 'BLOB'],
      [{ kind: 'date' }, 'DATE'],
      [{ kind: 'timestamp' }, 'TIMESTAMPTZ'],
      [{ kind: 'decimal', precision: 12, scale: 2 }, 'DECIMAL(12,2)'],
      [{ kind: 'decimal', precision: 38, scale: 0 }, 'DECIMAL(38,0)'],
      [{ kind: 'decimal', precision: 1, scale: 1 }, 'DECIMAL(1,1)'],
      [{ kind: 'array', element: { kind: 'long' } }, 'BIGINT[]'],
      [{ kind: 'array', element: { kind: 'array', element: { kind: 'decimal', precision: 5, scale: 3 } } }, 'DECIMAL(5,3)[][]'],
    ];
    for (const [t, sql] of cases) expect(duckdbType(t)).toBe(sql);
  });

  it('refuses decimals beyond precision 38 with a message that names the column and the fix', () => {
    expect(() => duckdbType({ kind: 'decimal', precision: 39, scale: 2 }, 'amount')).toThrow(LakeTypeError);
    expect(() => duckdbType({ kind: 'decimal', precision: 39, scale: 2 }, 'amount')).toThrowErrorMatchingInlineSnapshot(
      `[LakeTypeError: column amount: decimal(39,2): precision must be 1..38 (Delta and Parquet DECIMAL limit); map wider numerics to string or double upstream]`,
    );
    expect(() => duckdbType({ kind: 'decimal', precision: 10, scale: 11 })).toThrow(/scale must be 0..precision/);
    expect(() => duckdbType({ kind: 'decimal', precision: 0, scale: 0 })).toThrow(LakeTypeError);
    expect(() => duckdbType({ kind: 'array', element: { kind: 'decimal', precision: 40, scale: 0 } })).toThrow(LakeTypeError);
  });
});

describe('partition columns', () => {
  it('serialise through SQL by type, and refuse binary and arrays', () => {
    expect(partitionValueSql({ name: 'd', type: { kind: 'date' }, nullable: true })).toBe('CAST("d" AS VARCHAR)');
    expect(partitionValueSql({ name: 's', type: { kind: 'string' }, nullable: true })).toBe(`NULLIF("s", '')`);
    expect(partitionValueSql({ name: 't', type: { kind: 'timestamp' }, nullable: true })).toBe(`strftime("t", '%Y-%m-%dT%H:%M:%S.%fZ')`);
    expect(() => partitionValueSql({ name: 'b', type: { kind: 'binary' }, nullable: true })).toThrow(LakeTypeError);
    expect(() => partitionValueSql({ name: 'a', type: { kind: 'array', element: { kind: 'string' } }, nullable: true })).toThrow(
      /column a: a array column cannot be a partition column/,
    );
  });
});

describe('lake values to DuckDB values', () => {
  it('converts each type, with null passing through', () => {
    expect(toDuckDBValue({ kind: 'long' })(5)).toBe(5n);
    expect(toDuckDBValue({ kind: 'long' })(2n ** 63n - 1n)).toBe(2n ** 63n - 1n);
    expect(toDuckDBValue({ kind: 'timestamp' })(-1n)).toEqual(new DuckDBTimestampTZValue(-1n));
    expect(toDuckDBValue({ kind: 'date' })(-719162)).toEqual(new DuckDBDateValue(-719162));
    expect(toDuckDBValue({ kind: 'decimal', precision: 5, scale: 2 })(-99999n)).toEqual(new DuckDBDecimalValue(-99999n, 5, 2));
    expect(toDuckDBValue({ kind: 'binary' })(new Uint8Array([1]))).toEqual(new DuckDBBlobValue(new Uint8Array([1])));
    expect(toDuckDBValue({ kind: 'array', element: { kind: 'long' } })([1n, null])).toEqual(new DuckDBListValue([1n, null]));
    for (const t of [
      { kind: 'string' },
      { kind: 'decimal', precision: 3, scale: 0 },
      { kind: 'array', element: { kind: 'date' } },
    ] as LakeType[]) {
      expect(toDuckDBValue(t)(null)).toBeNull();
    }
  });

  it('refuses values that do not fit', () => {
    const bad: [LakeType, unknown, RegExp][] = [
      [{ kind: 'long' }, 2n ** 63n, /64-bit/],
      [{ kind: 'long' }, 1.5, /integer/],
      [{ kind: 'long' }, 2 ** 53, /safe-integer/],
      [{ kind: 'integer' }, 2 ** 31, /32-bit/],
      [{ kind: 'short' }, -32769, /16-bit/],
      [{ kind: 'string' }, 1, /not a string/],
      [{ kind: 'double' }, '1', /not a number/],
      [{ kind: 'boolean' }, 0, /not a boolean/],
      [{ kind: 'binary' }, [1], /Uint8Array/],
      [{ kind: 'decimal', precision: 5, scale: 2 }, 100000n, /more than 5 digits/],
      [{ kind: 'decimal', precision: 5, scale: 2 }, '1.5', /unscaled/],
      [{ kind: 'timestamp' }, new Date(0), /bigint/],
      [{ kind: 'array', element: { kind: 'long' } }, [1.5], /integer/],
    ];
    for (const [t, v, msg] of bad) {
      expect(() => toDuckDBValue(t)(v), `${JSON.stringify(t)} ${String(v)}`).toThrow(ValueMismatch);
      expect(() => toDuckDBValue(t)(v)).toThrow(msg);
    }
  });

  it('converts DuckDB values back to the lake representation', () => {
    expect(fromDuckDBValue(new DuckDBTimestampTZValue(-5n))).toBe(-5n);
    expect(fromDuckDBValue(new DuckDBDecimalValue(-12345n, 10, 2))).toBe(-12345n);
    expect(fromDuckDBValue(new DuckDBDateValue(19000))).toBe(19000);
    expect(fromDuckDBValue(new DuckDBBlobValue(new Uint8Array([7, 8])))).toEqual(new Uint8Array([7, 8]));
    expect(fromDuckDBValue(new DuckDBListValue([new DuckDBDateValue(1), null]))).toEqual([1, null]);
    expect(fromDuckDBValue(9007199254740993n)).toBe(9007199254740993n);
    expect(fromDuckDBValue('x')).toBe('x');
    expect(fromDuckDBValue(null)).toBeNull();
  });
});

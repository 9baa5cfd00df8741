import { expect } from 'vitest';
import { TypeConversionError } from '../../src/errors.ts';
import { createAvroType, decodeDecimal } from '../../src/events/avro-types.ts';
import { mapColumn, type ColumnInfo, type ColumnMapping, type DecimalHandlingMode } from '../../src/source/type-mapping.ts';

/** Helpers for the type-mapping unit tests. */

export type Warning = { message: string; details: Record<string, unknown> };

export function col(typeName: string, extra: Partial<ColumnInfo> = {}): ColumnInfo {
  const category: Record<string, string> = {
    int2: 'N',
    int4: 'N',
    int8: 'N',
    numeric: 'N',
    float4: 'N',
    float8: 'N',
    text: 'S',
    varchar: 'S',
    bpchar: 'S',
  };
  return {
    name: 'c',
    typeOid: 0,
    typeMod: -1,
    typeName,
    typeCategory: category[typeName] ?? 'U',
    notNull: false,
    hasDefault: false,
    ...extra,
  };
}

/** numeric(p,s) typmod as Postgres computes it (scale as 11-bit two's complement). */
export const numericMod = (p: number, s: number): number => ((p << 16) | (s & 0x7ff)) + 4;

export function map(info: ColumnInfo, mode: DecimalHandlingMode = 'precise'): { m: ColumnMapping; warnings: Warning[] } {
  const warnings: Warning[] = [];
  const m = mapColumn(info, { decimalHandlingMode: mode }, (message, details) => warnings.push({ message, details }));
  return { m, warnings };
}

/** Convert, then prove schema and value agree: encode and decode through avsc, inside a record and nullable. */
export function rt(m: ColumnMapping, text: string): unknown {
  const value = m.convert(text);
  const type = createAvroType({ type: 'record', name: 'Row', fields: [{ name: 'v', type: ['null', m.avroType] }] });
  expect(type.isValid({ v: value }), `schema rejects ${text}`).toBe(true);
  const back = (type.fromBuffer(type.toBuffer({ v: value })) as { v: unknown }).v;
  expect(back).toEqual(value);
  return value;
}

export const convertAll = (info: ColumnInfo, texts: string[], mode: DecimalHandlingMode = 'precise'): unknown[] => {
  const { m } = map(info, mode);
  return texts.map((t) => rt(m, t));
};

export function conversionError(fn: () => unknown): TypeConversionError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(TypeConversionError);
    return err as TypeConversionError;
  }
  throw new Error('expected a TypeConversionError');
}

/** Microseconds since 1970 for a proleptic Gregorian UTC time (astronomical year), via JS Date (±275760 years). */
export function utcMicros(y: number, mo: number, d: number, h = 0, mi = 0, s = 0, us = 0): number | bigint {
  const date = new Date(0);
  date.setUTCFullYear(y, mo - 1, d);
  date.setUTCHours(h, mi, s, 0);
  const v = BigInt(date.getTime()) * 1000n + BigInt(us);
  return v >= -9007199254740991n && v <= 9007199254740991n ? Number(v) : v;
}
export const days = (y: number, mo: number, d: number): number => Number(BigInt(utcMicros(y, mo, d)) / 86_400_000_000n);

export const decimalText = (m: ColumnMapping, text: string, scale: number): string => decodeDecimal(rt(m, text) as Buffer, scale);

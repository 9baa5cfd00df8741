import avro from 'avsc';
import { describe, expect, it } from 'vitest';
import {
  createAvroType,
  decodeDecimal,
  decodeUnscaled,
  dedupeNamedTypes,
  encodeUnscaledBigInt,
  encodeUnscaledNumber,
  longType,
  type AvroSchema,
} from '../../src/events/avro-types.ts';
import { col, map } from '../support/type-mapping.ts';

describe('Tide long type', () => {
  const native = avro.Type.forSchema('long');
  it('writes the same bytes as avsc for the integers avsc takes (|n| <= 2^52), and reads them back as numbers', () => {
    for (const n of [0, 1, -1, 63, -64, 64, 2 ** 31, -(2 ** 31) - 1, 2 ** 32, 1_700_000_000_000_000, 2 ** 52, -(2 ** 52)]) {
      expect(longType.toBuffer(n)).toEqual(native.toBuffer(n));
      expect(longType.fromBuffer(native.toBuffer(n))).toBe(n);
    }
  });
  it('carries the full int64 range as bigint, zigzag-varint encoded', () => {
    const zigzag = (v: bigint): Buffer => {
      let z = BigInt.asUintN(64, (v << 1n) ^ (v >> 63n));
      const out: number[] = [];
      do {
        out.push(Number(z & 0x7fn) | (z > 0x7fn ? 0x80 : 0));
        z >>= 7n;
      } while (z > 0n);
      return Buffer.from(out);
    };
    for (const v of [2n ** 63n - 1n, -(2n ** 63n), 2n ** 53n, -(2n ** 53n), 123456789012345678n]) {
      expect(longType.toBuffer(v)).toEqual(zigzag(v));
      expect(longType.fromBuffer(zigzag(v))).toBe(v);
    }
    for (const n of [Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER, 2 ** 52 + 1, -(2 ** 52) - 1]) {
      expect(longType.toBuffer(n)).toEqual(zigzag(BigInt(n)));
      expect(longType.fromBuffer(zigzag(BigInt(n)))).toBe(n);
    }
    // a bigint that fits a double decodes as a number: one JS form per value
    expect(longType.fromBuffer(longType.toBuffer(42n))).toBe(42);
  });
  it('rejects what is not an int64', () => {
    expect(longType.isValid(2n ** 63n)).toBe(false);
    expect(longType.isValid(1.5)).toBe(false);
    expect(longType.isValid(2 ** 53)).toBe(false);
    expect(longType.isValid('1')).toBe(false);
  });
  it('is used for long inside records, unions, arrays and under logical types', () => {
    const t = createAvroType({
      type: 'record',
      name: 'R',
      fields: [
        { name: 'a', type: 'long' },
        { name: 'b', type: ['null', { type: 'long', logicalType: 'timestamp-micros' }] },
        { name: 'c', type: { type: 'array', items: ['null', 'long'] } },
      ],
    });
    const v = { a: -(2n ** 63n), b: 2n ** 63n - 1n, c: [null, 2n ** 60n, 7] };
    expect(t.fromBuffer(t.toBuffer(v))).toEqual(v);
  });
});

describe('decimal bytes', () => {
  it('are minimal two-s complement big-endian, as Java BigInteger.toByteArray', () => {
    const cases: [bigint, string][] = [
      [0n, '00'],
      [1n, '01'],
      [-1n, 'ff'],
      [127n, '7f'],
      [128n, '0080'],
      [-128n, '80'],
      [-129n, 'ff7f'],
      [255n, '00ff'],
      [32767n, '7fff'],
      [-32768n, '8000'],
      [2n ** 63n, '008000000000000000'],
    ];
    for (const [n, hex] of cases) {
      expect(encodeUnscaledBigInt(n).toString('hex')).toBe(hex);
      if (n >= -(2n ** 53n) && n < 2n ** 53n) expect(encodeUnscaledNumber(Number(n)).toString('hex')).toBe(hex);
      expect(decodeUnscaled(Buffer.from(hex, 'hex'))).toBe(n);
    }
    for (let n = -70000; n <= 70000; n += 97) expect(encodeUnscaledNumber(n)).toEqual(encodeUnscaledBigInt(BigInt(n)));
  });
  it('decode exactly at any scale', () => {
    const big = 10n ** 40n + 1n;
    expect(decodeDecimal(encodeUnscaledBigInt(-12345n), 2)).toBe('-123.45');
    expect(decodeDecimal(encodeUnscaledBigInt(5n), 3)).toBe('0.005');
    expect(decodeDecimal(encodeUnscaledBigInt(-5n), 3)).toBe('-0.005');
    expect(decodeDecimal(encodeUnscaledBigInt(big), 10)).toBe('1000000000000000000000000000000.0000000001');
    expect(decodeDecimal(encodeUnscaledBigInt(-big), 0)).toBe(`-${big}`);
  });
});

describe('dedupeNamedTypes', () => {
  it('keeps the first definition of a named type and refers to it afterwards', () => {
    const { m } = map(col('numeric'));
    const schema = {
      type: 'record',
      name: 'Value',
      fields: [
        { name: 'a', type: ['null', m.avroType] },
        { name: 'b', type: m.avroType },
        { name: 'c', type: { type: 'array', items: ['null', m.avroType] } },
      ],
    } as AvroSchema;
    const out = JSON.stringify(dedupeNamedTypes(schema));
    expect(out.match(/"name":"VariableScaleDecimal"/g)).toHaveLength(1);
    expect(out).toContain('"type":"io.debezium.data.VariableScaleDecimal"');
    const t = createAvroType(schema); // would throw "duplicate type name" without the dedupe
    const v = { a: m.convert('1.5'), b: m.convert('-2'), c: [null, m.convert('0.001')] };
    expect(t.fromBuffer(t.toBuffer(v))).toEqual(v);
  });
  it('refuses two different definitions under one name', () => {
    const r = (f: string): AvroSchema => ({ type: 'record', name: 'X', fields: [{ name: f, type: 'int' }] });
    expect(() =>
      dedupeNamedTypes({
        type: 'record',
        name: 'R',
        fields: [
          { name: 'a', type: r('p') },
          { name: 'b', type: r('q') },
        ],
      } as AvroSchema),
    ).toThrow(/defines the named type X twice/);
  });
});

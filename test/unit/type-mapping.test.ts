import { describe, expect, it } from 'vitest';
import { TypeConversionError } from '../../src/errors.ts';
import { decodeDecimal } from '../../src/events/avro-types.ts';
import type { ColumnInfo } from '../../src/source/type-mapping.ts';
import { col, conversionError, convertAll, decimalText, map, numericMod, rt, utcMicros } from '../support/type-mapping.ts';

// Every value goes through rt(): converted, then encoded and decoded with createAvroType(schema) to prove schema and value agree.
// Dates, times and intervals: type-mapping-time.test.ts. The Avro helpers: avro-types.test.ts.

// --- integers, booleans, floats -----------------------------------------------------

describe('integers', () => {
  it('int2 -> int with the int16 hint', () => {
    const { m } = map(col('int2'));
    expect(m.avroType).toEqual({ type: 'int', 'connect.type': 'int16' });
    expect(['-32768', '0', '32767'].map((t) => rt(m, t))).toEqual([-32768, 0, 32767]);
    expect(() => m.convert('32768')).toThrow(TypeConversionError);
  });
  it('int4 -> int over its full range', () => {
    expect(convertAll(col('int4'), ['-2147483648', '-1', '0', '2147483647'])).toEqual([-2147483648, -1, 0, 2147483647]);
    const { m } = map(col('int4'));
    for (const bad of ['2147483648', '-2147483649', '', '-', '1.0', ' 1', '1e3', '0x10', '12a'])
      expect(() => m.convert(bad)).toThrow(TypeConversionError);
  });
  it('int8 -> long over the full int64 range (bigint beyond 2^53)', () => {
    const texts = [
      '-9223372036854775808',
      '-9007199254740992',
      '-9007199254740991',
      '-1',
      '0',
      '999999999999999',
      '9007199254740991',
      '9007199254740992',
      '9223372036854775807',
    ];
    expect(convertAll(col('int8'), texts)).toEqual([
      -(2n ** 63n),
      -(2n ** 53n),
      Number.MIN_SAFE_INTEGER,
      -1,
      0,
      999999999999999,
      Number.MAX_SAFE_INTEGER,
      2n ** 53n,
      2n ** 63n - 1n,
    ]);
    const { m } = map(col('int8'));
    expect(m.avroType).toBe('long');
    for (const bad of ['9223372036854775808', '-9223372036854775809', '12345678901234567890', 'abc', ''])
      expect(() => m.convert(bad)).toThrow(TypeConversionError);
  });
  it('oid -> long', () => expect(convertAll(col('oid'), ['0', '4294967295'])).toEqual([0, 4294967295]));
});

describe('bool', () => {
  it("'t' / 'f' (and the ::text forms) -> boolean", () => {
    expect(convertAll(col('bool'), ['t', 'f', 'true', 'false'])).toEqual([true, false, true, false]);
    expect(() => map(col('bool')).m.convert('yes')).toThrow(TypeConversionError);
  });
});

describe('floats', () => {
  it('float4 -> float, exactly the float32 value Postgres prints', () => {
    const { m } = map(col('float4'));
    expect(m.avroType).toBe('float');
    expect(rt(m, '3.4028235e+38')).toBe(Math.fround(3.4028235e38));
    expect(rt(m, '1e-45')).toBe(Math.fround(1e-45));
    expect(rt(m, '0.1')).toBe(Math.fround(0.1));
    expect(rt(m, 'NaN')).toBeNaN();
    expect(rt(m, 'Infinity')).toBe(Infinity);
    expect(rt(m, '-Infinity')).toBe(-Infinity);
    expect(Object.is(rt(m, '-0'), -0)).toBe(true);
  });
  it('float8 -> double incl. NaN, ±Infinity, subnormals', () => {
    const values = convertAll(col('float8'), ['0.1', '5e-324', '1.7976931348623157e+308', '-Infinity', 'Infinity', '-1.5']);
    expect(values).toEqual([0.1, 5e-324, 1.7976931348623157e308, -Infinity, Infinity, -1.5]);
    expect(rt(map(col('float8')).m, 'NaN')).toBeNaN();
    for (const bad of ['', 'nan', 'inf', 'abc', ' 1']) expect(() => map(col('float8')).m.convert(bad)).toThrow(TypeConversionError);
  });
});

// --- numeric -------------------------------------------------------------------------

describe('numeric, decimal.handling.mode=precise', () => {
  it('numeric(p,s) -> bytes decimal(p,s) with the Kafka Connect hints, rescaled exactly', () => {
    const { m } = map(col('numeric', { typeMod: numericMod(12, 2) }));
    expect(m.avroType).toMatchObject({
      type: 'bytes',
      logicalType: 'decimal',
      precision: 12,
      scale: 2,
      'connect.name': 'org.apache.kafka.connect.data.Decimal',
    });
    expect(m.semanticType).toBe('decimal(12,2)');
    for (const t of ['0.00', '12.50', '-0.01', '9999999999.99', '-9999999999.99']) expect(decimalText(m, t, 2)).toBe(t);
    expect(decimalText(m, '1.5', 2)).toBe('1.50'); // fewer digits than the scale: padded
    expect(decimalText(m, '7', 2)).toBe('7.00');
    expect((m.convert('12.50') as Buffer).toString('hex')).toBe('04e2'); // 1250
  });
  it('rejects a value that does not fit, never rounding it', () => {
    const { m } = map(col('numeric', { typeMod: numericMod(12, 2), name: 'price' }));
    const err = conversionError(() => m.convert('10000000000.00'));
    expect(err.message).toBe('column price (numeric(12,2)): value "10000000000.00" has 11 integer digits; the column allows 10');
    expect(err).toMatchObject({ column: 'price', type: 'numeric(12,2)', value: '10000000000.00' });
    expect(() => m.convert('1.234')).toThrow(/more than 2 fraction digits/);
    expect(decimalText(m, '1.230', 2)).toBe('1.23'); // extra zeros are fine
    for (const bad of ['', '-', '1.', '.5', '1,5', '1e5', 'abc']) expect(() => m.convert(bad)).toThrow(TypeConversionError);
  });
  it('38 digits and more, negative, via bigint', () => {
    const { m } = map(col('numeric', { typeMod: numericMod(38, 10) }));
    for (const t of [
      '1234567890123456789012345678.1234567890',
      '-9999999999999999999999999999.9999999999',
      '0.0000000001',
      '-0.0000000001',
    ]) {
      expect(decimalText(m, t, 10)).toBe(t);
    }
    const wide = map(col('numeric', { typeMod: numericMod(1000, 500) })).m;
    const t = `-${'9'.repeat(500)}.${'1'.repeat(500)}`;
    expect(decimalText(wide, t, 500)).toBe(t);
  });
  it('Postgres 15 negative scale and scale > precision fit a wider Avro decimal', () => {
    const neg = map(col('numeric', { typeMod: numericMod(3, -2) })).m;
    expect(neg.avroType).toMatchObject({ precision: 5, scale: 0 });
    expect(decimalText(neg, '99900', 0)).toBe('99900');
    expect(decimalText(neg, '-100', 0)).toBe('-100');
    const tiny = map(col('numeric', { typeMod: numericMod(2, 5) })).m;
    expect(tiny.avroType).toMatchObject({ precision: 5, scale: 5 });
    expect(decimalText(tiny, '0.00099', 5)).toBe('0.00099');
  });
  it('NaN: null and a warning in a nullable column; an error naming the fix in a NOT NULL one', () => {
    const { m, warnings } = map(col('numeric', { typeMod: numericMod(12, 2), name: 'price' }));
    expect(rt(m, 'NaN')).toBeNull();
    expect(warnings).toHaveLength(1);
    expect(warnings[0]!.details).toMatchObject({ column: 'price', value: 'NaN', occurrences: 1 });
    for (let i = 0; i < 20; i++) m.convert('NaN');
    expect(warnings.map((w) => w.details.occurrences)).toEqual([1, 10]); // 1st, 10th, 100th, ...
    const strict = map(col('numeric', { typeMod: numericMod(12, 2), notNull: true })).m;
    expect(() => strict.convert('NaN')).toThrow(/NOT NULL.*decimal.handling.mode to string or double/);
  });
  it('unconstrained numeric -> VariableScaleDecimal keeping each value its own scale', () => {
    const { m } = map(col('numeric'));
    expect(m.avroType).toMatchObject({ type: 'record', name: 'VariableScaleDecimal', namespace: 'io.debezium.data' });
    const cases: [string, number][] = [
      ['1.50', 2],
      ['0', 0],
      ['-7', 0],
      ['100000000000000000000', 0],
      ['0.00000000000000000001', 20],
      ['-123456789012345678901234567890.123456789', 9],
      [`1${'0'.repeat(999)}`, 0],
    ];
    for (const [t, scale] of cases) {
      const v = rt(m, t) as { scale: number; value: Buffer };
      expect(v.scale).toBe(scale);
      expect(decodeDecimal(v.value, v.scale)).toBe(t);
    }
    expect([rt(m, 'NaN'), rt(m, 'Infinity'), rt(m, '-Infinity')]).toEqual([null, null, null]);
    expect(() => map(col('numeric', { notNull: true })).m.convert('Infinity')).toThrow(TypeConversionError);
  });
});

describe('numeric, decimal.handling.mode=double and string', () => {
  it('double: nearest double; NaN and ±Infinity as IEEE values; overflow warned', () => {
    const { m, warnings } = map(col('numeric', { typeMod: numericMod(12, 2) }), 'double');
    expect(m.avroType).toBe('double');
    expect(['12.50', '-0.01', 'Infinity', '-Infinity'].map((t) => rt(m, t))).toEqual([12.5, -0.01, Infinity, -Infinity]);
    expect(rt(m, 'NaN')).toBeNaN();
    expect(warnings).toHaveLength(0);
    const u = map(col('numeric'), 'double');
    expect(rt(u.m, `1${'0'.repeat(400)}`)).toBe(Infinity);
    expect(u.warnings).toHaveLength(1);
  });
  it('string: the text as Postgres prints it, NaN and Infinity included', () => {
    const { m } = map(col('numeric'), 'string');
    expect(m.avroType).toBe('string');
    for (const t of ['1.50', 'NaN', 'Infinity', '-Infinity', `-${'9'.repeat(60)}.5`]) expect(rt(m, t)).toBe(t);
  });
});

// --- strings, bytes, uuid, json, enums ---------------------------------------------------

describe('strings and bytes', () => {
  it('text, varchar, bpchar, name, citext, inet, cidr, macaddr -> string; unicode survives', () => {
    for (const t of ['text', 'varchar', 'bpchar', 'name', 'citext', 'inet', 'cidr', 'macaddr']) {
      const { m, warnings } = map(col(t, { typeCategory: t === 'inet' || t === 'cidr' || t === 'macaddr' ? 'I' : 'S' }));
      expect(m.avroType).toBe('string');
      expect(warnings).toEqual([]);
      for (const s of ['', 'ü😀 中文 \u0000-free', 'a  ', '\'quoted\' "double" \\back', '192.168.0.1/24']) expect(rt(m, s)).toBe(s);
    }
  });
  it('bytea hex -> bytes', () => {
    const { m } = map(col('bytea'));
    expect(rt(m, '\\x')).toEqual(Buffer.alloc(0));
    expect(rt(m, '\\x00ff7f80')).toEqual(Buffer.from([0, 255, 127, 128]));
    expect(rt(m, '\\xDEADbeef')).toEqual(Buffer.from('deadbeef', 'hex'));
    for (const bad of ['\\x0', '\\xzz', 'abc', '\\000', '\\x00g0']) expect(() => m.convert(bad)).toThrow(TypeConversionError);
  });
  it('uuid -> string, logicalType uuid', () => {
    const { m } = map(col('uuid'));
    expect(m.avroType).toMatchObject({ type: 'string', logicalType: 'uuid', 'connect.name': 'io.debezium.data.Uuid' });
    expect(rt(m, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11')).toBe('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11');
    expect(() => m.convert('a0eebc99')).toThrow(TypeConversionError);
  });
  it('json and jsonb -> string with the io.debezium.data.Json hint', () => {
    for (const t of ['json', 'jsonb']) {
      const { m } = map(col(t));
      expect(m.avroType).toEqual({ type: 'string', 'connect.version': 1, 'connect.name': 'io.debezium.data.Json' });
      expect(rt(m, '{"a": [1, 2], "b": "ü😀"}')).toBe('{"a": [1, 2], "b": "ü😀"}');
    }
  });
  it('enum -> string listing the allowed labels; a label not listed is sent and warned about', () => {
    const { m, warnings } = map(col('order_status', { typeCategory: 'E', enumValues: ['draft', 'placed', 'paid'] }));
    expect(m.avroType).toEqual({
      type: 'string',
      'connect.parameters': { allowed: 'draft,placed,paid' },
      'connect.version': 1,
      'connect.name': 'io.debezium.data.Enum',
    });
    expect(rt(m, 'placed')).toBe('placed');
    expect(warnings).toEqual([]);
    expect(rt(m, 'refunded')).toBe('refunded');
    expect(warnings).toHaveLength(1);
  });
});

// --- arrays, fallbacks ------------------------------------------------------------------

describe('arrays', () => {
  const arr = (elem: string, extra: Partial<ColumnInfo> = {}): ColumnInfo =>
    col(`_${elem}`, { typeCategory: 'A', elementTypeName: elem, elementTypeCategory: col(elem).typeCategory, ...extra });

  it('text[] -> array of nullable strings, quotes, escapes, NULL vs "NULL"', () => {
    const { m } = map(arr('text'));
    expect(m.avroType).toEqual({ type: 'array', items: ['null', 'string'] });
    expect(rt(m, '{"a b","NULL",NULL,"x\\"y","c,d","{}","back\\\\slash",""}')).toEqual([
      'a b',
      'NULL',
      null,
      'x"y',
      'c,d',
      '{}',
      'back\\slash',
      '',
    ]);
    expect(rt(m, '{" lead",ü😀,"null",plain}')).toEqual([' lead', 'ü😀', 'null', 'plain']);
    expect(rt(m, '{"a\tb","new\nline"}')).toEqual(['a\tb', 'new\nline']);
    expect(rt(m, '{}')).toEqual([]);
    expect(rt(m, '{""}')).toEqual(['']);
    expect(rt(m, '{NULL}')).toEqual([null]);
  });
  it('elements go through the element mapping', () => {
    expect(rt(map(arr('int4')).m, '{1,-2,NULL,2147483647}')).toEqual([1, -2, null, 2147483647]);
    expect(rt(map(arr('int8')).m, '{9223372036854775807,1}')).toEqual([2n ** 63n - 1n, 1]);
    expect(rt(map(arr('bytea')).m, '{"\\\\x0102",NULL}')).toEqual([Buffer.from([1, 2]), null]);
    expect(rt(map(arr('timestamptz')).m, '{"2020-01-01 00:00:00+00",infinity}')).toEqual([utcMicros(2020, 1, 1), 253_402_300_799_999_999n]);
    expect(rt(map(arr('jsonb')).m, '{"{\\"a\\": 1}"}')).toEqual(['{"a": 1}']);
    expect(rt(map(arr('bpchar')).m, '{"a  "}')).toEqual(['a  ']);
    const dec = map(arr('numeric', { typeMod: numericMod(5, 2) })).m;
    expect((rt(dec, '{1.50,NaN,-999.99}') as (Buffer | null)[]).map((b) => (b ? decodeDecimal(b, 2) : b))).toEqual([
      '1.50',
      null,
      '-999.99',
    ]);
    const en = map(arr('mood', { elementTypeCategory: 'E', enumValues: ['sad', 'ok'] }));
    expect(rt(en.m, '{ok,sad,NULL}')).toEqual(['ok', 'sad', null]);
    expect(en.m.avroType).toMatchObject({ items: ['null', { 'connect.parameters': { allowed: 'sad,ok' } }] });
    expect(rt(map(arr('box')).m, '{(1,1),(0,0);(2,2),(1,1)}')).toEqual(['(1,1),(0,0)', '(2,2),(1,1)']);
  });
  it('a bad element names its position', () => {
    const { m } = map(arr('int4', { name: 'qty' }));
    expect(() => m.convert('{1,x}')).toThrow('column qty (int4[]): value "{1,x}" has element 2 "x" that is not a valid integer');
  });
  it('explicit bounds: elements kept, bounds dropped, warned', () => {
    const { m, warnings } = map(arr('int4'));
    expect(rt(m, '[0:1]={1,2}')).toEqual([1, 2]);
    expect(warnings).toHaveLength(1);
  });
  it('multi-dimensional: declared -> string with a warning; undeclared value -> TypeConversionError', () => {
    const declared = map(arr('int4', { arrayDimensions: 2 }));
    expect(declared.m.avroType).toBe('string');
    expect(declared.warnings).toHaveLength(1);
    expect(rt(declared.m, '{{1,2},{3,4}}')).toBe('{{1,2},{3,4}}');
    const { m } = map(arr('int4'));
    expect(() => m.convert('{{1,2},{3,4}}')).toThrow(/multi-dimensional/);
    expect(() => m.convert('[1:2][1:2]={{1,2},{3,4}}')).toThrow(/multi-dimensional/);
  });
  it('an element type from the array type name when the catalog gives none', () => {
    expect(rt(map(col('_int2', { typeCategory: 'A' })).m, '{1,2}')).toEqual([1, 2]);
  });
  it('rejects malformed array text', () => {
    const { m } = map(arr('text'));
    for (const bad of ['', '{', '{a', '{"a}', '{a,}', '{a}x', 'a', '{,}']) expect(() => m.convert(bad), bad).toThrow(TypeConversionError);
  });
});

describe('unmapped types', () => {
  it('-> string, with one warning per column mapping and none per value', () => {
    for (const [t, cat] of [
      ['point', 'G'],
      ['tsvector', 'U'],
      ['money', 'N'],
      ['int4range', 'R'],
    ]) {
      const { m, warnings } = map(col(t!, { typeCategory: cat!, name: 'odd' }));
      expect(m.avroType).toBe('string');
      expect(warnings).toHaveLength(1);
      expect(warnings[0]!.message).toContain(`column odd has type ${t}`);
      expect(rt(m, '(1,2)')).toBe('(1,2)');
      m.convert('x');
      expect(warnings).toHaveLength(1);
    }
  });
  it('arrays of unmapped types -> arrays of strings', () => {
    const { m, warnings } = map(col('_point', { typeCategory: 'A', elementTypeName: 'point', elementTypeCategory: 'G' }));
    expect(rt(m, '{"(1,2)",NULL}')).toEqual(['(1,2)', null]);
    expect(warnings).toHaveLength(1);
  });
  it('int2vector and oidvector (category A, not brace arrays) -> string', () => {
    const { m, warnings } = map(col('int2vector', { typeCategory: 'A', elementTypeName: 'int2' }));
    expect(rt(m, '1 2 3')).toBe('1 2 3');
    expect(warnings).toHaveLength(1);
  });
});

import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TypeConversionError } from '../../src/errors.ts';
import { createAvroType, decodeDecimal } from '../../src/events/avro-types.ts';
import { readTables } from '../../src/source/catalog.ts';
import { sessionOptions } from '../../src/source/session-settings.ts';
import { mapColumn, type ColumnInfo, type ColumnMapping } from '../../src/source/type-mapping.ts';
import { createTestDatabase } from '../support/db.ts';

/**
 * The converters against Postgres' real text output. One column per type,
 * one row per edge value; each value is read three ways:
 *   - raw: the type's output function, in a text-mode SELECT without casts
 *     (pg's own type parsers switched off) — the text pgoutput sends;
 *   - pgoutput: the Insert messages of a real pgoutput (protocol v1) slot,
 *     decoded in this session, so under the same session settings;
 *   - ::text: what the brief's `SELECT col::text` gives, which is NOT always
 *     the output function (see CAST_DIFFERS).
 * raw must equal pgoutput for every value, and the converter must give the
 * expected Avro value for raw, which must survive an Avro round trip.
 */

const INT64_MAX = 2n ** 63n - 1n;
const TS_POS_INF = 253_402_300_799_999_999n; // 'infinity': 9999-12-31T23:59:59.999999Z
const TS_NEG_INF = -62_135_596_800_000_000n; // '-infinity': 0001-01-01T00:00:00Z
const INT64_MIN = -(2n ** 63n);

function utcMicros(y: number, mo: number, d: number, h = 0, mi = 0, s = 0, us = 0): number | bigint {
  const date = new Date(0);
  date.setUTCFullYear(y, mo - 1, d);
  date.setUTCHours(h, mi, s, 0);
  const v = BigInt(date.getTime()) * 1000n + BigInt(us);
  return v >= -9007199254740991n && v <= 9007199254740991n ? Number(v) : v;
}
const days = (y: number, mo: number, d: number): number => Number(BigInt(utcMicros(y, mo, d)) / 86_400_000_000n);

/** Expected values: a plain value, a check function, or the error the converter must throw. */
type Expect = unknown | ((v: unknown) => void) | typeof TypeConversionError;
const dec =
  (scale: number, text: string) =>
  (v: unknown): void =>
    expect(decodeDecimal(v as Buffer, scale)).toBe(text);
const vsd =
  (scale: number, text: string) =>
  (v: unknown): void => {
    const r = v as { scale: number; value: Buffer };
    expect(r.scale).toBe(scale);
    expect(decodeDecimal(r.value, r.scale)).toBe(text);
  };
const isNaNValue = (v: unknown): void => expect(v).toBeNaN();
const isNegZero = (v: unknown): void => expect(Object.is(v, -0)).toBe(true);

/** [column, SQL type, [SQL literal, expected][]] */
const CASES: [string, string, [string, Expect][]][] = [
  [
    'c_int2',
    'int2',
    [
      ['-32768', -32768],
      ['32767', 32767],
      ['0', 0],
    ],
  ],
  [
    'c_int4',
    'int4',
    [
      ['-2147483648', -2147483648],
      ['2147483647', 2147483647],
    ],
  ],
  [
    'c_int8',
    'int8',
    [
      ['-9223372036854775808', INT64_MIN],
      ['9223372036854775807', INT64_MAX],
      ['9007199254740993', 9007199254740993n],
      ['-42', -42],
    ],
  ],
  // prettier-ignore
  ['c_num_12_2', 'numeric(12,2)', [['0', dec(2, '0.00')], ['-0.01', dec(2, '-0.01')], ['9999999999.99', dec(2, '9999999999.99')], ['12.5', dec(2, '12.50')], ['0.005', dec(2, '0.01')], ["'NaN'", null]]],
  [
    'c_num_38_10',
    'numeric(38,10)',
    [
      ['-1234567890123456789012345678.1234567890', dec(10, '-1234567890123456789012345678.1234567890')],
      ['1e-10', dec(10, '0.0000000001')],
    ],
  ],
  [
    'c_num_neg_scale',
    'numeric(3,-2)',
    [
      ['123.456', dec(0, '100')],
      ['-99900', dec(0, '-99900')],
    ],
  ],
  ['c_num_tiny', 'numeric(2,5)', [['0.00012', dec(5, '0.00012')]]],
  // prettier-ignore
  ['c_num', 'numeric', [['1.50', vsd(2, '1.50')], ['1e20', vsd(0, '100000000000000000000')], ['1e-20', vsd(20, '0.00000000000000000001')], ['-0.0', vsd(1, '0.0')], ["'NaN'", null], ["'Infinity'", null], ["'-Infinity'", null], [`'${'9'.repeat(120)}.${'1'.repeat(40)}'`, vsd(40, `${'9'.repeat(120)}.${'1'.repeat(40)}`)]]],
  // prettier-ignore
  ['c_float4', 'float4', [["'NaN'", isNaNValue], ["'Infinity'", Infinity], ["'-Infinity'", -Infinity], ['3.4028235e38', Math.fround(3.4028235e38)], ['1e-45', Math.fround(1e-45)], ['0.1', Math.fround(0.1)], ["'-0'", isNegZero]]],
  // prettier-ignore
  ['c_float8', 'float8', [['0.1', 0.1], ['5e-324', 5e-324], ['1.7976931348623157e308', 1.7976931348623157e308], ["'NaN'", isNaNValue], ["'-Infinity'", -Infinity], ["'-0'", isNegZero], ['1/3.0::float8', 1 / 3]]],
  [
    'c_bool',
    'bool',
    [
      ['true', true],
      ['false', false],
    ],
  ],
  // prettier-ignore
  ['c_text', 'text', [["'ü😀 中文 \u00e9'", 'ü😀 中文 é'], ["''", ''], [`E'quote\\' "dq" back\\\\slash\\nnewline\\ttab'`, 'quote\' "dq" back\\slash\nnewline\ttab'], ["'NULL'", 'NULL']]],
  [
    'c_varchar',
    'varchar(10)',
    [
      ["'abc'", 'abc'],
      ["'😀😀'", '😀😀'],
    ],
  ],
  [
    'c_char',
    'char(5)',
    [
      ["'ab'", 'ab   '],
      ["'ü'", 'ü    '],
    ],
  ],
  ['c_name', 'name', [["'pg_class'", 'pg_class']]],
  ['c_citext', 'citext', [["'MiXeD'", 'MiXeD']]],
  [
    'c_bytea',
    'bytea',
    [
      ["''", Buffer.alloc(0)],
      ["'\\x00ff7f80'", Buffer.from([0, 255, 127, 128])],
      ["(select string_agg(set_byte('\\x00'::bytea, 0, i), '') from generate_series(0,255) i)", Buffer.from([...Array(256).keys()])],
    ],
  ],
  // prettier-ignore
  ['c_date', 'date', [["'1970-01-01'", 0], ["'2000-02-29'", 11016], ["'0001-01-01 BC'", days(0, 1, 1)], ["'4714-11-24 BC'", -2440588], ["'5874897-12-31'", 2145042905], ["'infinity'", 2932896], ["'-infinity'", -719162]]],
  [
    'c_time',
    'time',
    [
      ["'00:00:00'", 0],
      ["'24:00:00'", 86400000000],
      ["'23:59:59.999999'", 86399999999],
      ["'12:34:56.5'", 45296500000],
    ],
  ],
  // prettier-ignore
  ['c_timetz', 'timetz', [["'12:34:56.5+05:30'", '12:34:56.5+05:30'], ["'24:00:00+14'", '24:00:00+14:00'], ["'00:00:00-00:00:30'", '00:00:00-00:00:30'], ["'08:00:00+02'", '08:00:00+02:00']]],
  // prettier-ignore
  ['c_ts', 'timestamp', [["'2024-05-01 12:34:56.789'", utcMicros(2024, 5, 1, 12, 34, 56, 789000)], ["'1999-12-31 23:59:59.1'", utcMicros(1999, 12, 31, 23, 59, 59, 100000)], ["'1999-12-31 23:59:59.12345'", utcMicros(1999, 12, 31, 23, 59, 59, 123450)], ["'0044-03-15 12:00:00 BC'", utcMicros(-43, 3, 15, 12)], ["'4714-11-24 00:00:00 BC'", -2440588n * 86_400_000_000n], ["'10000-01-01 00:00:00'", utcMicros(10000, 1, 1)], ["'294247-01-10 04:00:54.775806'", INT64_MAX - 1n], ["'294276-12-31 23:59:59.999999'", TypeConversionError], ["'infinity'", TS_POS_INF], ["'-infinity'", TS_NEG_INF]]],
  // prettier-ignore
  ['c_tstz', 'timestamptz', [["'2024-05-01 12:34:56.789+02'", utcMicros(2024, 5, 1, 10, 34, 56, 789000)], ["'1970-01-01 00:00:00.000001+00'", 1], ["'1969-12-31 23:59:59.999999+00'", -1], ["'0044-03-15 12:00:00+00 BC'", utcMicros(-43, 3, 15, 12)], ["'2300-01-01 00:00:00+00'", utcMicros(2300, 1, 1)], ["'infinity'", TS_POS_INF], ["'-infinity'", TS_NEG_INF]]],
  // prettier-ignore
  ['c_interval', 'interval', [["'1 year 2 mons 3 days 4 hours 5 minutes 6.5 seconds'", 'P1Y2M3DT4H5M6.5S'], ["'-1 day'", 'P-1D'], ["'0'", 'PT0S'], ["'-1 year -2 mons +3 days -04:05:06.000001'", 'P-1Y-2M3DT-4H-5M-6.000001S'], ["'1 mon -1 day'", 'P1M-1D'], ["'-0.5 seconds'", 'PT-0.5S'], ["'1 minute -0.5 seconds'", 'PT59.5S'], ["'36 hours'", 'PT36H'], ["'2562047788 hours 54.775807 seconds'", 'PT2562047788H54.775807S'], ["'-2562047788 hours -54.775808 seconds'", 'PT-2562047788H-54.775808S'], ["'-178000000 years'", 'P-178000000Y']]],
  ['c_uuid', 'uuid', [["'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'", 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11']]],
  ['c_json', 'json', [['\'{"b":1,  "a" : [1,2]}\'', '{"b":1,  "a" : [1,2]}']]],
  ['c_jsonb', 'jsonb', [['\'{"b":1,  "a" : [1,2], "e": "😀"}\'', '{"a": [1, 2], "b": 1, "e": "😀"}']]],
  [
    'c_enum',
    'mood',
    [
      ["'ok'", 'ok'],
      ["'so so'", 'so so'],
    ],
  ],
  [
    'c_inet',
    'inet',
    [
      ["'192.168.0.1'", '192.168.0.1'],
      ["'10.1.0.0/16'", '10.1.0.0/16'],
      ["'::1'", '::1'],
    ],
  ],
  ['c_cidr', 'cidr', [["'10.0.0.0/8'", '10.0.0.0/8']]],
  ['c_macaddr', 'macaddr', [["'08:00:2B:01:02:03'", '08:00:2b:01:02:03']]],
  // prettier-ignore
  ['c_text_arr', 'text[]', [[`ARRAY['a b','NULL',NULL,'x"y','c,d','{}','back\\slash','',' lead','ü😀']`, ['a b', 'NULL', null, 'x"y', 'c,d', '{}', 'back\\slash', '', ' lead', 'ü😀']], ["'{}'", []], ["'{NULL}'", [null]]]],
  [
    'c_int_arr',
    'int4[]',
    [
      ["'{1,-2,NULL}'", [1, -2, null]],
      ["'[0:1]={7,8}'", [7, 8]],
      ["'{{1,2},{3,4}}'", TypeConversionError],
    ],
  ],
  [
    'c_int_2d',
    'int4[][]',
    [
      ["'{{1,2},{3,4}}'", '{{1,2},{3,4}}'],
      ["'{5}'", '{5}'],
    ],
  ],
  [
    'c_num_arr',
    'numeric(5,2)[]',
    [
      [
        "'{1.5,NaN,-999.99}'",
        (v: unknown) => expect((v as (Buffer | null)[]).map((b) => b && decodeDecimal(b, 2))).toEqual(['1.50', null, '-999.99']),
      ],
    ],
  ],
  ['c_tstz_arr', 'timestamptz[]', [["ARRAY['2020-01-01 00:00:00+00'::timestamptz, 'infinity']", [utcMicros(2020, 1, 1), TS_POS_INF]]]],
  ['c_date_arr', 'date[]', [["'{2000-02-29,-infinity,NULL}'", [11016, -719162, null]]]],
  ['c_bytea_arr', 'bytea[]', [["ARRAY['\\x0102'::bytea, NULL, '']", [Buffer.from([1, 2]), null, Buffer.alloc(0)]]]],
  ['c_jsonb_arr', 'jsonb[]', [['ARRAY[\'{"a": "x,y}"}\'::jsonb]', ['{"a": "x,y}"}']]]],
  ['c_enum_arr', 'mood[]', [['\'{ok,"so so",NULL}\'', ['ok', 'so so', null]]]],
  ['c_bool_arr', 'bool[]', [["'{t,f}'", [true, false]]]],
  ['c_char_arr', 'char(3)[]', [["ARRAY['a']", ['a  ']]]],
  ['c_interval_arr', 'interval[]', [["ARRAY['1 day 2 hours'::interval]", ['P1DT2H']]]],
  ['c_point', 'point', [["'(1.5,2)'", '(1.5,2)']]],
  ['c_range', 'int4range', [["'[1,5)'", '[1,5)']]],
  ['c_xml', 'xml', [["'<a>ü</a>'", '<a>ü</a>']]],
];

/** Types whose `::text` cast is not their output function (and so not what pgoutput sends). */
const CAST_DIFFERS: Record<string, (raw: string) => string> = {
  c_bool: (raw) => (raw === 't' ? 'true' : 'false'), // text(boolean)
  c_char: (raw) => raw.replace(/ +$/, ''), // text(bpchar) drops the padding
  c_inet: (raw) => (raw.includes('/') ? raw : `${raw}/${raw.includes(':') ? 128 : 32}`), // text(inet) always shows the mask
};

const ROWS = Math.max(...CASES.map(([, , values]) => values.length));

describe('type mapping against real Postgres text output', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let client: pg.Client;
  const raw: Record<string, string | null>[] = [];
  const cast: Record<string, string | null>[] = [];
  const pgoutput = new Map<number, (string | null)[]>();
  const mappings = new Map<string, ColumnMapping>();
  const warnings: string[] = [];
  const slot = `tide_type_text_${process.pid}`;

  beforeAll(async () => {
    db = await createTestDatabase('type-text');
    client = new pg.Client({ connectionString: db.url, options: sessionOptions() });
    await client.connect();
    await client.query(`CREATE EXTENSION IF NOT EXISTS citext`);
    await client.query(`CREATE TYPE mood AS ENUM ('sad', 'ok', 'so so')`);
    await client.query(`CREATE TABLE typed (id int PRIMARY KEY, ${CASES.map(([c, t]) => `${c} ${t}`).join(', ')})`);
    await client.query(`CREATE PUBLICATION tide_types FOR TABLE typed`);
    await client.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [slot]);
    for (let row = 0; row < ROWS; row++) {
      const values = CASES.map(([, type, vs]) => (vs[row] ? `(${vs[row]![0]})::${type}` : 'NULL'));
      await client.query(`INSERT INTO typed VALUES (${row}, ${values.join(', ')})`);
    }
    // Every column as its output function's text: pg's type parsers off.
    const noParse = { getTypeParser: () => (v: string) => v };
    const r = await client.query({ text: 'SELECT * FROM typed ORDER BY id', types: noParse } as pg.QueryConfig);
    raw.push(...(r.rows as Record<string, string | null>[]));
    const c = await client.query({
      text: `SELECT ${CASES.map(([col]) => `${col}::text AS ${col}`).join(', ')} FROM typed ORDER BY id`,
      types: noParse,
    } as pg.QueryConfig);
    cast.push(...(c.rows as Record<string, string | null>[]));
    // The same rows as pgoutput sends them.
    const changes = await client.query<{ data: Buffer }>(
      `SELECT data FROM pg_logical_slot_get_binary_changes($1, NULL, NULL, 'proto_version', '1', 'publication_names', 'tide_types')`,
      [slot],
    );
    for (const { data } of changes.rows) {
      if (data[0] !== 0x49 /* 'I' */) continue;
      const cols: (string | null)[] = [];
      let p = 1 + 4 + 1; // tag, relation oid, 'N'
      const n = data.readInt16BE(p);
      p += 2;
      for (let i = 0; i < n; i++) {
        const kind = data[p++];
        if (kind === 0x6e /* n */) cols.push(null);
        else {
          expect(kind).toBe(0x74); // 't': text
          const len = data.readInt32BE(p);
          cols.push(data.toString('utf8', p + 4, p + 4 + len));
          p += 4 + len;
        }
      }
      pgoutput.set(Number(cols[0]), cols.slice(1));
    }
    // Column metadata as the source reads it, plus attndims (declared array dimensions).
    const [table] = await readTables(
      client,
      (await client.query<{ oid: number }>(`SELECT 'typed'::regclass::oid::int AS oid`)).rows[0]!.oid,
    );
    const dims = await client.query<{ attname: string; attndims: number }>(
      `SELECT attname, attndims FROM pg_attribute WHERE attrelid = 'typed'::regclass AND attnum > 0`,
    );
    for (const column of table!.columns) {
      const info: ColumnInfo = { ...column, arrayDimensions: dims.rows.find((d) => d.attname === column.name)!.attndims };
      mappings.set(
        column.name,
        mapColumn(info, { decimalHandlingMode: 'precise' }, (m) => warnings.push(m)),
      );
    }
  });

  afterAll(async () => {
    await client?.query(`SELECT pg_drop_replication_slot($1)`, [slot]).catch(() => undefined);
    await client?.end();
    await db?.drop();
  });

  it('pgoutput sends exactly the output functions text, under the session settings', () => {
    expect(pgoutput.size).toBe(ROWS);
    for (let row = 0; row < ROWS; row++) {
      expect(pgoutput.get(row)).toEqual(CASES.map(([col]) => raw[row]![col]));
    }
  });

  it('`::text` differs from the output function only for bool, char(n) and inet', () => {
    for (let row = 0; row < ROWS; row++) {
      for (const [col] of CASES) {
        const r = raw[row]![col] ?? null;
        const expected = r === null ? null : (CAST_DIFFERS[col]?.(r) ?? r);
        expect(cast[row]![col], `${col} row ${row}: raw ${r}`).toBe(expected);
      }
    }
    expect(raw[0]!.c_bool).toBe('t');
    expect(cast[0]!.c_bool).toBe('true');
  });

  for (const [col, type, values] of CASES) {
    it(`${col} ${type}`, () => {
      const m = mappings.get(col)!;
      const avroType = createAvroType({ type: 'record', name: 'Row', fields: [{ name: 'v', type: ['null', m.avroType] }] });
      values.forEach(([literal, expected], row) => {
        const text = raw[row]![col];
        expect(text, `${literal} is NULL in Postgres`).not.toBeNull();
        const where = `${col} ${literal} -> Postgres text ${JSON.stringify(text)}`;
        if (expected === TypeConversionError) {
          expect(() => m.convert(text!), where).toThrow(TypeConversionError);
          return;
        }
        const value = m.convert(text!);
        if (typeof expected === 'function') (expected as (v: unknown) => void)(value);
        else expect(value, where).toEqual(expected);
        const back = (avroType.fromBuffer(avroType.toBuffer({ v: value })) as { v: unknown }).v;
        expect(back, `${where}: Avro round trip`).toEqual(value);
      });
    });
  }

  it('warns for the unmapped types, the dropped bounds and NaN in precise mode, and nothing else', () => {
    expect(warnings.filter((w) => w.includes('does not map')).sort()).toEqual([
      expect.stringContaining('column c_point has type point'),
      expect.stringContaining('column c_range has type int4range'),
    ]);
    expect(warnings.some((w) => w.includes('c_int_2d') && w.includes('2 dimensions'))).toBe(true);
    expect(warnings.some((w) => w.includes('c_int_arr') && w.includes('explicit bounds'))).toBe(true);
    expect(warnings.some((w) => w.includes('c_num_12_2') && w.includes('sent as null'))).toBe(true);
    expect(warnings.some((w) => w.includes('c_num:') && w.includes('sent as null'))).toBe(true);
    expect(warnings.some((w) => w.includes('c_num_arr[]:') && w.includes('sent as null'))).toBe(true);
    expect(warnings).toHaveLength(7);
  });
});

import { SchemaRegistry, SchemaType } from '@kafkajs/confluent-schema-registry';
import avro from 'avsc';
import type { KafkaMessage } from 'kafkajs';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase } from '../support/db.ts';
import { kafka } from '../support/kafka.ts';
import { dropSlot, sourceConfig, startSource, type RunningSource } from '../support/source.ts';
import { CONTROL_HEADER } from '../../src/events/snapshot-end.ts';

/**
 * The end-to-end type round trip: one column per type of the README's
 * "Type mapping" table, rows written before the source starts (snapshot,
 * op=r, read with SELECT) and the same rows written after (stream, op=c,
 * read from pgoutput), consumed from Kafka and decoded with
 * @kafkajs/confluent-schema-registry against the registered schema (not with
 * Tide's own codec). Every decoded `after` field must be the documented value,
 * and the snapshot and the stream must agree value for value.
 *
 * The decoder gets one option: a long that decodes to a bigint. avsc's default
 * long throws "potential precision loss" beyond ±2^53, and int8's extremes,
 * BC and far-future timestamps and the ±infinity sentinels are all beyond it
 * (consumeUntil in test/support/kafka.ts uses the default, so it cannot read this
 * topic). Every long here, small or not, therefore decodes to a bigint.
 */

const REGISTRY = process.env.SCHEMA_REGISTRY_URL ?? 'http://127.0.0.1:58081/apis/ccompat/v7';
const INT64_MAX = 2n ** 63n - 1n;
const TS_POS_INF = 253_402_300_799_999_999n; // 'infinity': 9999-12-31T23:59:59.999999Z
const TS_NEG_INF = -62_135_596_800_000_000n; // '-infinity': 0001-01-01T00:00:00Z
const INT64_MIN = -(2n ** 63n);

// --- an independent decoder -------------------------------------------------

const int64 = avro.types.LongType.__with({
  fromBuffer: (buf: Buffer): bigint => buf.readBigInt64LE(0),
  toBuffer: (n: bigint): Buffer => {
    const buf = Buffer.alloc(8);
    buf.writeBigInt64LE(n);
    return buf;
  },
  fromJSON: (v: unknown): bigint => BigInt(v as string),
  toJSON: (n: bigint): string => n.toString(),
  isValid: (n: unknown): boolean => typeof n === 'bigint',
  compare: (a: bigint, b: bigint): number => (a < b ? -1 : a > b ? 1 : 0),
}) as unknown as avro.Type;

const int64Hook = (schema: unknown): avro.Type | undefined =>
  schema === 'long' || (typeof schema === 'object' && schema !== null && (schema as { type?: unknown }).type === 'long')
    ? int64
    : undefined;

interface Decoded {
  key: Record<string, unknown>;
  value: Envelope;
}
interface Envelope {
  op: string;
  before: Record<string, unknown> | null;
  after: Record<string, unknown> | null;
  source: Record<string, unknown>;
}

/** Read `topic` from the beginning until `count` messages arrived, then decode them through the registry. */
async function consumeDecoded(topic: string, count: number, timeoutMs = 60_000): Promise<Decoded[]> {
  const consumer = kafka().consumer({ groupId: `tide-test-types-${Date.now()}-${Math.random().toString(36).slice(2)}` });
  const messages: KafkaMessage[] = [];
  await consumer.connect();
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    let resolveDone!: () => void;
    const done = new Promise<void>((r) => (resolveDone = r));
    await consumer.run({
      eachMessage: async ({ message }) => {
        // The end-of-snapshot markers (src/events/snapshot-end.ts) are no change events.
        if (message.value === null && message.headers?.[CONTROL_HEADER] !== undefined) return;
        messages.push(message);
        if (messages.length >= count) resolveDone();
      },
    });
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      done,
      new Promise<void>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`timed out after ${timeoutMs} ms with ${messages.length}/${count} messages on ${topic}`)),
          timeoutMs,
        );
      }),
    ]).finally(() => clearTimeout(timer));
  } finally {
    await consumer.disconnect();
  }
  const registry = new SchemaRegistry({ host: REGISTRY }, { [SchemaType.AVRO]: { typeHook: int64Hook } });
  const out: Decoded[] = [];
  for (const m of messages) {
    expect(m.key, 'every event has a key').not.toBeNull();
    expect(m.value, 'no tombstones for inserts').not.toBeNull();
    out.push({
      key: (await registry.decode(m.key!)) as Record<string, unknown>,
      value: (await registry.decode(m.value!)) as Envelope,
    });
  }
  return out;
}

// --- expected values ----------------------------------------------------------

/** Microseconds since 1970 (UTC) of a proleptic Gregorian time, astronomical year (1 BC = 0). */
function utcMicros(y: number, mo: number, d: number, h = 0, mi = 0, s = 0, us = 0): bigint {
  const date = new Date(0);
  date.setUTCFullYear(y, mo - 1, d); // not Date.UTC: it maps years 0..99 to 1900..1999
  date.setUTCHours(h, mi, s, 0);
  return BigInt(date.getTime()) * 1000n + BigInt(us);
}
const days = (y: number, mo: number, d: number): number => Number(utcMicros(y, mo, d) / 86_400_000_000n);

type AvroJson = string | AvroJson[] | { [key: string]: unknown };

const DECIMAL = (precision: number, scale: number) => ({
  type: 'bytes',
  logicalType: 'decimal',
  precision,
  scale,
  'connect.name': 'org.apache.kafka.connect.data.Decimal',
  'connect.parameters': { scale: String(scale), 'connect.decimal.precision': String(precision) },
});
const VARIABLE_SCALE_DECIMAL = {
  type: 'record',
  name: 'VariableScaleDecimal',
  namespace: 'io.debezium.data',
  fields: [
    { name: 'scale', type: 'int' },
    { name: 'value', type: 'bytes' },
  ],
  'connect.name': 'io.debezium.data.VariableScaleDecimal',
};
const DATE = { type: 'int', logicalType: 'date', 'connect.name': 'io.debezium.time.Date' };
const TIMESTAMPTZ = { type: 'long', logicalType: 'timestamp-micros' };
const JSON_STRING = { type: 'string', 'connect.name': 'io.debezium.data.Json' };
const MOOD_LABELS = ['sad', 'ok', 'so so', 'happy 😀'];
const ENUM = { type: 'string', 'connect.name': 'io.debezium.data.Enum', 'connect.parameters': { allowed: MOOD_LABELS.join(',') } };
const arrayOf = (items: AvroJson): AvroJson => ({ type: 'array', items: ['null', items] });

interface Case {
  col: string;
  sqlType: string;
  /** The registered non-null field type (objects are matched as a subset: extra hints are allowed). */
  avro: AvroJson;
  /** [SQL expression, expected decoded value]; decimals are compared as their exact text. Rows past the list are NULL. */
  values: [string, unknown][];
}

const ALL_BYTES = Buffer.from([...Array(256).keys()]);

// prettier-ignore
const CASES: Case[] = [
  { col: 'c_int2', sqlType: 'smallint', avro: { type: 'int', 'connect.type': 'int16' }, values: [['-32768', -32768], ['32767', 32767], ['0', 0]] },
  { col: 'c_int4', sqlType: 'integer', avro: 'int', values: [['-2147483648', -2147483648], ['2147483647', 2147483647], ['42', 42]] },
  { col: 'c_int8', sqlType: 'bigint', avro: 'long', values: [['-9223372036854775808', INT64_MIN], ['9223372036854775807', INT64_MAX], ['9007199254740993', 9007199254740993n], ['-1', -1n], ['0', 0n]] },
  { col: 'c_num', sqlType: 'numeric(12,2)', avro: DECIMAL(12, 2), values: [['1234567890.12', '1234567890.12'], ['-0.01', '-0.01'], ['12.5', '12.50'], ['-9999999999.99', '-9999999999.99'], ["'NaN'", null], ['0', '0.00'], ['0.005', '0.01']] },
  { col: 'c_num_big', sqlType: 'numeric(38,10)', avro: DECIMAL(38, 10), values: [
    ['-1234567890123456789012345678.1234567890', '-1234567890123456789012345678.1234567890'],
    ['1e-10', '0.0000000001'],
    ['9999999999999999999999999999.9999999999', '9999999999999999999999999999.9999999999'],
    ['-0.5', '-0.5000000000'],
    ['128', '128.0000000000'],
  ] },
  { col: 'c_num_any', sqlType: 'numeric', avro: VARIABLE_SCALE_DECIMAL, values: [
    ["'1.50'", '1.50'],
    ["'-123456789012345678901234567890.123'", '-123456789012345678901234567890.123'],
    ["'NaN'", null],
    ['0', '0'],
    ["'1e20'", '100000000000000000000'],
    ["'Infinity'", null],
    ["'-0.000000000000000000001'", '-0.000000000000000000001'],
    ["'-128'", '-128'],
    ["'-Infinity'", null],
  ] },
  { col: 'c_real', sqlType: 'real', avro: 'float', values: [["'1.5'", 1.5], ["'NaN'", NaN], ["'-Infinity'", -Infinity], ["'3.4028235e38'", Math.fround(3.4028235e38)], ["'1e-45'", Math.fround(1e-45)], ["'0.1'", Math.fround(0.1)], ["'-0'", -0]] },
  { col: 'c_double', sqlType: 'double precision', avro: 'double', values: [["'0.1'", 0.1], ["'5e-324'", 5e-324], ["'1.7976931348623157e308'", 1.7976931348623157e308], ["'NaN'", NaN], ["'Infinity'", Infinity], ["'-0'", -0], ['1/3.0::float8', 1 / 3]] },
  { col: 'c_bool', sqlType: 'boolean', avro: 'boolean', values: [['true', true], ['false', false]] },
  { col: 'c_text', sqlType: 'text', avro: 'string', values: [
    ["'ü😀 中文 é'", 'ü😀 中文 é'],
    ["''", ''],
    [`E'quote\\' "dq" back\\\\slash\\nnewline\\ttab'`, 'quote\' "dq" back\\slash\nnewline\ttab'],
    ["'NULL'", 'NULL'],
    ["'👩‍👩‍👧‍👦 zwj, 𝄞 astral'", '👩‍👩‍👧‍👦 zwj, 𝄞 astral'],
    ["repeat('ü😀', 50000)", 'ü😀'.repeat(50_000)], // TOASTed (compressed, out of line) in the table
  ] },
  { col: 'c_varchar', sqlType: 'varchar(10)', avro: 'string', values: [["'abc'", 'abc'], ["'😀😀'", '😀😀'], ["'0123456789'", '0123456789']] },
  { col: 'c_char', sqlType: 'char(5)', avro: 'string', values: [["'ab'", 'ab   '], ["'ü'", 'ü    '], ["'abcde'", 'abcde'], ["''", '     ']] },
  { col: 'c_bytea', sqlType: 'bytea', avro: 'bytes', values: [
    ["'\\x00ff7f80'", Buffer.from([0, 255, 127, 128])],
    ["''", Buffer.alloc(0)],
    ["'\\x000000'", Buffer.from([0, 0, 0])],
    ["(SELECT string_agg(set_byte('\\x00'::bytea, 0, i), '' ORDER BY i) FROM generate_series(0, 255) i)", ALL_BYTES],
  ] },
  { col: 'c_date', sqlType: 'date', avro: DATE, values: [
    ["'1970-01-01'", 0],
    ["'2000-02-29'", 11016],
    ["'0044-03-15 BC'", days(-43, 3, 15)],
    ["'infinity'", 2932896],
    ["'-infinity'", -719162],
    ["'0001-12-31 BC'", days(0, 12, 31)],
    ["'1969-12-31'", -1],
    ["'5874897-12-31'", 2145042905],
  ] },
  { col: 'c_time', sqlType: 'time', avro: { type: 'long', logicalType: 'time-micros', 'connect.name': 'io.debezium.time.MicroTime' }, values: [
    ["'00:00:00'", 0n],
    ["'24:00:00'", 86_400_000_000n],
    ["'23:59:59.999999'", 86_399_999_999n],
    ["'12:34:56.5'", 45_296_500_000n],
  ] },
  { col: 'c_timetz', sqlType: 'timetz', avro: { type: 'string', 'connect.name': 'io.debezium.time.ZonedTime' }, values: [
    ["'12:34:56.5+05:30'", '12:34:56.5+05:30'],
    ["'08:00:00+02'", '08:00:00+02:00'],
    ["'00:00:00-00:00:30'", '00:00:00-00:00:30'],
    ["'23:59:59.999999-12'", '23:59:59.999999-12:00'],
  ] },
  { col: 'c_ts', sqlType: 'timestamp', avro: { type: 'long', logicalType: 'local-timestamp-micros', 'connect.name': 'io.debezium.time.MicroTimestamp' }, values: [
    ["'2024-05-01 12:34:56.789'", utcMicros(2024, 5, 1, 12, 34, 56, 789_000)],
    ["'0044-03-15 12:00:00 BC'", utcMicros(-43, 3, 15, 12)],
    ["'10000-01-01 00:00:00'", utcMicros(10000, 1, 1)],
    ["'infinity'", TS_POS_INF],
    ["'-infinity'", TS_NEG_INF],
    ["'1999-12-31 23:59:59.123456'", utcMicros(1999, 12, 31, 23, 59, 59, 123_456)],
    ["'1969-12-31 23:59:59.999999'", -1n],
    ["'2000-01-01 00:00:00.12345'", utcMicros(2000, 1, 1, 0, 0, 0, 123_450)],
    ["'2000-01-01 00:00:00.1'", utcMicros(2000, 1, 1, 0, 0, 0, 100_000)],
  ] },
  { col: 'c_tstz', sqlType: 'timestamptz', avro: TIMESTAMPTZ, values: [
    ["'2024-05-01 12:34:56.789+02'", utcMicros(2024, 5, 1, 10, 34, 56, 789_000)],
    ["'1969-12-31 23:59:59.999999+00'", -1n],
    ["'infinity'", TS_POS_INF],
    ["'-infinity'", TS_NEG_INF],
    ["'0044-03-15 12:00:00+00 BC'", utcMicros(-43, 3, 15, 12)],
    ["'2024-03-31 02:30:00-05:30'", utcMicros(2024, 3, 31, 8)],
  ] },
  { col: 'c_interval', sqlType: 'interval', avro: { type: 'string', 'connect.name': 'io.debezium.time.Interval' }, values: [
    ["'1 year 2 mons 3 days 4 hours 5 minutes 6.5 seconds'", 'P1Y2M3DT4H5M6.5S'],
    ["'1 mon -1 day'", 'P1M-1D'],
    ["'0'", 'PT0S'],
    ["'-0.5 seconds'", 'PT-0.5S'],
    ["'-1 day'", 'P-1D'],
    ["'36 hours'", 'PT36H'],
    ["'2562047788 hours 54.775807 seconds'", 'PT2562047788H54.775807S'],
    ["'-178000000 years'", 'P-178000000Y'],
    ["'1 minute -0.5 seconds'", 'PT59.5S'],
  ] },
  { col: 'c_uuid', sqlType: 'uuid', avro: { type: 'string', logicalType: 'uuid', 'connect.name': 'io.debezium.data.Uuid' }, values: [
    ["'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'", 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'],
    ["'00000000-0000-0000-0000-000000000000'", '00000000-0000-0000-0000-000000000000'],
  ] },
  { col: 'c_json', sqlType: 'json', avro: JSON_STRING, values: [
    [`'{"b":1,  "a" : [1,2], "e": "😀"}'`, '{"b":1,  "a" : [1,2], "e": "😀"}'],
    ["'[]'", '[]'],
    ["'null'", 'null'], // JSON null, not SQL NULL
  ] },
  { col: 'c_jsonb', sqlType: 'jsonb', avro: JSON_STRING, values: [
    [`'{"b":1,  "a" : [1,2], "e": "😀"}'`, '{"a": [1, 2], "b": 1, "e": "😀"}'],
    [`'"str"'`, '"str"'],
    ["'null'", 'null'],
  ] },
  { col: 'c_enum', sqlType: 'mood', avro: ENUM, values: [["'sad'", 'sad'], ["'so so'", 'so so'], ["'happy 😀'", 'happy 😀']] },
  { col: 'c_text_arr', sqlType: 'text[]', avro: arrayOf('string'), values: [
    [`ARRAY['a b', 'NULL', NULL, 'x"y', 'c,d', '{}', 'back\\slash', '', ' lead', 'ü😀']`, ['a b', 'NULL', null, 'x"y', 'c,d', '{}', 'back\\slash', '', ' lead', 'ü😀']],
    ["'{}'", []],
    ["'{NULL}'", [null]],
    [`ARRAY['"', '\\', '}{', 'NuLl', 'a\\"b']`, ['"', '\\', '}{', 'NuLl', 'a\\"b']],
  ] },
  { col: 'c_int_arr', sqlType: 'integer[]', avro: arrayOf('int'), values: [["'{1,-2,NULL}'", [1, -2, null]], ["'{}'", []], ["'{2147483647}'", [2147483647]]] },
  { col: 'c_int8_arr', sqlType: 'bigint[]', avro: arrayOf('long'), values: [["'{-9223372036854775808,9223372036854775807,NULL,7}'", [INT64_MIN, INT64_MAX, null, 7n]], ["'{}'", []]] },
  { col: 'c_num_arr', sqlType: 'numeric(5,2)[]', avro: arrayOf(DECIMAL(5, 2)), values: [["'{1.5,-999.99,NULL}'", ['1.50', '-999.99', null]], ["'{NaN}'", [null]], ["'{}'", []]] },
  { col: 'c_numany_arr', sqlType: 'numeric[]', avro: arrayOf(VARIABLE_SCALE_DECIMAL), values: [["'{1.50,NaN,-0.001,NULL,Infinity,123456789012345678901234567890}'", ['1.50', null, '-0.001', null, null, '123456789012345678901234567890']]] },
  { col: 'c_tstz_arr', sqlType: 'timestamptz[]', avro: arrayOf(TIMESTAMPTZ), values: [["ARRAY['2020-01-01 00:00:00+00'::timestamptz, 'infinity', '-infinity', NULL]", [utcMicros(2020, 1, 1), TS_POS_INF, TS_NEG_INF, null]]] },
  { col: 'c_date_arr', sqlType: 'date[]', avro: arrayOf(DATE), values: [["'{2000-02-29,-infinity,NULL}'", [11016, -719162, null]], ["'{}'", []]] },
  { col: 'c_enum_arr', sqlType: 'mood[]', avro: arrayOf(ENUM), values: [[`'{ok,"so so",NULL,"happy 😀"}'`, ['ok', 'so so', null, 'happy 😀']]] },
  { col: 'c_jsonb_arr', sqlType: 'jsonb[]', avro: arrayOf(JSON_STRING), values: [[`ARRAY['{"a": "x,y}"}'::jsonb, 'null']`, ['{"a": "x,y}"}', 'null']]] },
  { col: 'c_bytea_arr', sqlType: 'bytea[]', avro: arrayOf('bytes'), values: [["ARRAY['\\x0001'::bytea, NULL, '']", [Buffer.from([0, 1]), null, Buffer.alloc(0)]]] },
  { col: 'c_bool_arr', sqlType: 'boolean[]', avro: arrayOf('boolean'), values: [["'{t,f,NULL}'", [true, false, null]]] },
  { col: 'c_char_arr', sqlType: 'char(3)[]', avro: arrayOf('string'), values: [["ARRAY['a', NULL, 'abc']", ['a  ', null, 'abc']]] },
  { col: 'c_interval_arr', sqlType: 'interval[]', avro: arrayOf({ type: 'string', 'connect.name': 'io.debezium.time.Interval' }), values: [["ARRAY['1 day 2 hours'::interval, '-1 mon', NULL]", ['P1DT2H', 'P-1M', null]]] },
  { col: 'c_uuid_arr', sqlType: 'uuid[]', avro: arrayOf({ type: 'string', logicalType: 'uuid', 'connect.name': 'io.debezium.data.Uuid' }), values: [["ARRAY['A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'::uuid]", ['a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11']]] },
  { col: 'c_bounds_arr', sqlType: 'integer[]', avro: arrayOf('int'), values: [["'[0:1]={7,8}'", [7, 8]]] },
  { col: 'c_int_2d', sqlType: 'integer[][]', avro: 'string', values: [["'{{1,2},{3,4}}'", '{{1,2},{3,4}}'], ["'{5}'", '{5}']] },
  { col: 'c_oid', sqlType: 'oid', avro: 'long', values: [['4294967295', 4294967295n], ['0', 0n]] },
  { col: 'c_qchar', sqlType: '"char"', avro: 'string', values: [["'x'", 'x']] },
  { col: 'c_name', sqlType: 'name', avro: 'string', values: [["'pg_class'", 'pg_class']] },
  { col: 'c_citext', sqlType: 'citext', avro: 'string', values: [["'MiXeD ü'", 'MiXeD ü']] },
  { col: 'c_macaddr', sqlType: 'macaddr', avro: 'string', values: [["'08:00:2B:01:02:03'", '08:00:2b:01:02:03']] },
  { col: 'c_macaddr8', sqlType: 'macaddr8', avro: 'string', values: [["'08:00:2b:01:02:03:04:05'", '08:00:2b:01:02:03:04:05']] },
  { col: 'c_xml', sqlType: 'xml', avro: { type: 'string', 'connect.name': 'io.debezium.data.Xml' }, values: [["'<a x=\"1\">ü😀</a>'", '<a x="1">ü😀</a>']] },
  { col: 'c_inet', sqlType: 'inet', avro: 'string', values: [["'192.168.0.1'", '192.168.0.1'], ["'10.1.0.0/16'", '10.1.0.0/16'], ["'::1'", '::1']] },
  { col: 'c_cidr', sqlType: 'cidr', avro: 'string', values: [["'10.0.0.0/8'", '10.0.0.0/8'], ["'2001:db8::/32'", '2001:db8::/32']] },
  { col: 'c_point', sqlType: 'point', avro: 'string', values: [["'(1.5,2)'", '(1.5,2)'], ["'(-0.5,1e+20)'", '(-0.5,1e+20)']] },
  { col: 'c_tsvector', sqlType: 'tsvector', avro: 'string', values: [["'a fat cat'", "'a' 'cat' 'fat'"]] },
  { col: 'c_range', sqlType: 'int4range', avro: 'string', values: [["'[1,5)'", '[1,5)'], ["'empty'", 'empty']] },
  { col: 'c_varbit', sqlType: 'bit varying', avro: 'string', values: [["B'10110'", '10110']] },
];

/** Row 0 is NULL in every nullable column; row k > 0 holds each case's (k-1)th value, or NULL past its list. */
const ROWS = 1 + Math.max(...CASES.map((c) => c.values.length));
const SNAPSHOT_ID = (row: number): number => 1 + row;
const STREAM_ID = (row: number): number => 101 + row;
/** A NOT NULL column of a fixed-size type (not TOAST-able): the only kind Avro declares without null. */
const REQUIRED = 'c_required';

// --- decoding helpers ---------------------------------------------------------

/** The unscaled integer of a decimal's bytes, read independently: big-endian two's complement. */
function unscaled(buf: Buffer): bigint {
  if (buf.length === 0) return 0n;
  return BigInt.asIntN(buf.length * 8, BigInt(`0x${buf.toString('hex')}`));
}

/** Java's BigInteger.toByteArray is minimal: no leading 0x00 before a clear sign bit, no 0xff before a set one. */
function isMinimal(buf: Buffer): boolean {
  if (buf.length < 2) return buf.length === 1;
  return !(buf[0] === 0x00 && buf[1]! < 0x80) && !(buf[0] === 0xff && buf[1]! >= 0x80);
}

function decimalText(buf: Buffer, scale: number): string {
  expect(isMinimal(buf), `decimal bytes ${buf.toString('hex')} are the minimal two's complement`).toBe(true);
  const n = unscaled(buf);
  const neg = n < 0n;
  const digits = (neg ? -n : n).toString().padStart(scale + 1, '0');
  const int = digits.slice(0, digits.length - scale);
  return `${neg ? '-' : ''}${scale > 0 ? `${int}.${digits.slice(digits.length - scale)}` : int}`;
}

type Named = Map<string, Record<string, unknown>>;

/** Every named type defined in `schema`, by full name. */
function namedTypes(schema: AvroJson, named: Named = new Map(), ns?: string): Named {
  if (typeof schema === 'string') return named;
  if (Array.isArray(schema)) {
    for (const s of schema) namedTypes(s, named, ns);
    return named;
  }
  let space = ns;
  if (typeof schema.name === 'string' && ['record', 'enum', 'fixed'].includes(schema.type as string)) {
    const full = schema.name.includes('.')
      ? schema.name
      : `${(schema.namespace as string | undefined) ?? ns ?? ''}.${schema.name}`.replace(/^\./, '');
    named.set(full, schema);
    space = full.includes('.') ? full.slice(0, full.lastIndexOf('.')) : undefined;
  }
  if (typeof schema.type !== 'string') namedTypes(schema.type as AvroJson, named, space);
  for (const f of (schema.fields as { type: AvroJson }[] | undefined) ?? []) namedTypes(f.type, named, space);
  if (schema.items) namedTypes(schema.items as AvroJson, named, space);
  return named;
}

/** `schema` with references to named types replaced by their definitions. */
function deref(schema: AvroJson, named: Named): AvroJson {
  if (typeof schema === 'string') return named.has(schema) ? deref(named.get(schema) as AvroJson, named) : schema;
  if (Array.isArray(schema)) return schema.map((s) => deref(s, named));
  const out: Record<string, unknown> = { ...schema };
  if (typeof schema.type !== 'string') out.type = deref(schema.type as AvroJson, named);
  if (schema.items) out.items = deref(schema.items as AvroJson, named);
  return out;
}

/** A decoded value in comparable form: decimals (per the registered schema) as their exact text, the rest as decoded. */
function comparable(type: AvroJson, v: unknown): unknown {
  if (v === null) return null;
  if (Array.isArray(type)) {
    const branches = type.filter((b) => b !== 'null');
    expect(branches, 'unions are ["null", T]').toHaveLength(1);
    return comparable(branches[0]!, v);
  }
  if (typeof type === 'string') return v;
  if (type.type === 'array') return (v as unknown[]).map((x) => comparable(type.items as AvroJson, x));
  if (type.logicalType === 'decimal') return decimalText(v as Buffer, type.scale as number);
  if (type.name === 'VariableScaleDecimal') {
    const r = v as { scale: number; value: Buffer };
    return decimalText(r.value, r.scale);
  }
  return v;
}

// --- the test -----------------------------------------------------------------

describe('source connector: every mapped type, end to end (Postgres -> Kafka -> registry decode)', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let sql: pg.Client;
  let file: ReturnType<typeof sourceConfig>;
  let running: RunningSource | undefined;
  let events: Decoded[] = [];
  let valueSchema: Record<string, unknown>;
  let named: Named;
  /** The `after` record's fields, references resolved. */
  let afterFields: Map<string, { name: string; type: AvroJson; default?: unknown; [k: string]: unknown }>;
  const snapshot = new Map<number, Decoded>();
  const stream = new Map<number, Decoded>();
  const topic = () => `${file.config['topic.prefix']}.public.typed`;

  const insertRow = async (id: number, row: number): Promise<void> => {
    const values = CASES.map((c) => (row > 0 && c.values[row - 1] ? `(${c.values[row - 1]![0]})::${c.sqlType}` : 'NULL'));
    await sql.query(
      `INSERT INTO typed (id, ${REQUIRED}, ${CASES.map((c) => c.col).join(', ')}) VALUES (${id}, ${row}, ${values.join(', ')})`,
    );
  };

  beforeAll(async () => {
    db = await createTestDatabase('source_types');
    sql = new pg.Client({ connectionString: db.url });
    await sql.connect();
    await sql.query('CREATE EXTENSION IF NOT EXISTS citext');
    await sql.query(`CREATE TYPE mood AS ENUM (${MOOD_LABELS.map((l) => `'${l}'`).join(', ')})`);
    await sql.query(
      `CREATE TABLE typed (id integer PRIMARY KEY, ${REQUIRED} integer NOT NULL, ${CASES.map((c) => `${c.col} ${c.sqlType}`).join(', ')})`,
    );
    for (let row = 0; row < ROWS; row++) await insertRow(SNAPSHOT_ID(row), row);

    file = sourceConfig(db.url, 'types', { 'table.include.list': 'public\\.typed' });
    running = await startSource(file);
    expect(running.connector.state).toBe('streaming');

    // The same rows again, now through pgoutput: one transaction each.
    for (let row = 0; row < ROWS; row++) await insertRow(STREAM_ID(row), row);

    events = await consumeDecoded(topic(), 2 * ROWS);
    for (const e of events) {
      const id = Number(e.key.id);
      (id >= 101 ? stream : snapshot).set(id, e);
    }

    const res = await fetch(`${REGISTRY}/subjects/${encodeURIComponent(`${topic()}-value`)}/versions/latest`);
    expect(res.status).toBe(200);
    valueSchema = JSON.parse(((await res.json()) as { schema: string }).schema) as Record<string, unknown>;
    named = namedTypes(valueSchema as AvroJson);
    const after = (valueSchema.fields as { name: string; type: AvroJson }[]).find((f) => f.name === 'after')!;
    const value = deref(after.type, named) as AvroJson[];
    expect(value[0]).toBe('null');
    const record = value[1] as { name: string; fields: { name: string; type: AvroJson }[] };
    expect(record.name).toBe('Value');
    afterFields = new Map(record.fields.map((f) => [f.name, { ...f, type: deref(f.type, named) }]));
  });

  afterAll(async () => {
    await running?.stop();
    await sql?.end();
    if (file) await dropSlot(db.url, file.config['slot.name']);
    await db?.drop();
  });

  it('delivers each row once: the snapshot rows as op=r, the later inserts as op=c', () => {
    expect(events).toHaveLength(2 * ROWS);
    expect([...snapshot.keys()].sort((a, b) => a - b)).toEqual([...Array(ROWS).keys()].map(SNAPSHOT_ID));
    expect([...stream.keys()].sort((a, b) => a - b)).toEqual([...Array(ROWS).keys()].map(STREAM_ID));
    for (const e of snapshot.values()) {
      expect(e.value.op).toBe('r');
      expect(e.value.before).toBeNull();
      expect(e.value.source.snapshot).not.toBe('false');
    }
    for (const e of stream.values()) {
      expect(e.value.op).toBe('c');
      expect(e.value.before).toBeNull();
      expect(e.value.source.snapshot).toBe('false');
    }
  });

  it('registers the primary key as T and every other column in `after` as ["null", T] with default null, also NOT NULL ones', () => {
    expect([...afterFields.keys()]).toEqual(['id', REQUIRED, ...CASES.map((c) => c.col)]);
    expect(afterFields.get('id')!.type).toBe('int');
    expect(afterFields.get('id')!).not.toHaveProperty('default');
    // NOT NULL is not in the WAL, so a NOT NULL column that is not part of the key is nullable too (README, Events).
    expect(afterFields.get(REQUIRED)!.type).toEqual(['null', 'int']);
    expect(afterFields.get(REQUIRED)!).toHaveProperty('default', null);
    for (const c of CASES) {
      const f = afterFields.get(c.col)!;
      expect(Array.isArray(f.type) && f.type[0], `${c.col} is a union starting with "null"`).toBe('null');
      expect((f.type as AvroJson[]).length, c.col).toBe(2);
      expect(f, `${c.col} defaults to null`).toHaveProperty('default', null);
    }
    // The old image may lack any column (only the key is logged by default): every `before` field is nullable.
    const before = deref(
      (valueSchema.fields as { name: string; type: AvroJson }[]).find((f) => f.name === 'before')!.type,
      named,
    ) as AvroJson[];
    for (const f of (before[1] as { fields: { name: string; type: AvroJson; default?: unknown }[] }).fields) {
      expect(Array.isArray(f.type) && f.type[0], `before.${f.name}`).toBe('null');
      expect(f.default, `before.${f.name}`).toBeNull();
    }
  });

  it('registers the documented Avro type, logical type and Debezium hints per column', () => {
    for (const c of CASES) {
      const t = (afterFields.get(c.col)!.type as AvroJson[])[1]!;
      if (typeof c.avro === 'string') expect(t, c.col).toBe(c.avro);
      else expect(t, c.col).toMatchObject(c.avro as object);
    }
    // Spelled out, so a change to the table above cannot quietly weaken these.
    const nonNull = (col: string) => (afterFields.get(col)!.type as AvroJson[])[1] as Record<string, unknown>;
    expect(nonNull('c_num')).toMatchObject({ logicalType: 'decimal', precision: 12, scale: 2 });
    expect(nonNull('c_num_big')).toMatchObject({ logicalType: 'decimal', precision: 38, scale: 10 });
    expect(nonNull('c_enum')['connect.parameters']).toEqual({ allowed: 'sad,ok,so so,happy 😀' });
    expect(nonNull('c_json')['connect.name']).toBe('io.debezium.data.Json');
    expect(nonNull('c_jsonb')['connect.name']).toBe('io.debezium.data.Json');
    expect(nonNull('c_tstz').logicalType).toBe('timestamp-micros');
    expect(nonNull('c_ts').logicalType).toBe('local-timestamp-micros');
    expect(nonNull('c_time').logicalType).toBe('time-micros');
    expect(nonNull('c_date').logicalType).toBe('date');
    // VariableScaleDecimal is a named type: defined once in the schema, referenced elsewhere.
    expect(named.get('io.debezium.data.VariableScaleDecimal')).toMatchObject(VARIABLE_SCALE_DECIMAL);
  });

  for (const c of CASES) {
    it(`${c.col} ${c.sqlType}: every decoded value is the documented one, in the snapshot and in the stream`, () => {
      const type = afterFields.get(c.col)!.type;
      for (let row = 0; row < ROWS; row++) {
        const expected = row > 0 && c.values[row - 1] ? c.values[row - 1]![1] : null;
        const literal = row > 0 && c.values[row - 1] ? c.values[row - 1]![0] : 'NULL';
        for (const [how, id] of [
          ['snapshot', SNAPSHOT_ID(row)],
          ['stream', STREAM_ID(row)],
        ] as const) {
          const after = (how === 'snapshot' ? snapshot : stream).get(id)!.value.after!;
          expect(comparable(type, after[c.col]), `${c.col} ${literal} (${how}, id ${id})`).toEqual(expected);
        }
      }
    });
  }

  it('the snapshot (SELECT) and the stream (pgoutput) decode to identical `after` records for the same values', () => {
    for (let row = 0; row < ROWS; row++) {
      const snap = { ...snapshot.get(SNAPSHOT_ID(row))!.value.after! };
      const streamed = { ...stream.get(STREAM_ID(row))!.value.after! };
      expect(snap.id).toBe(SNAPSHOT_ID(row));
      expect(streamed.id).toBe(STREAM_ID(row));
      delete snap.id;
      delete streamed.id;
      expect(streamed, `row ${row}`).toEqual(snap);
      // toEqual tells -0 from 0 and matches NaN; check those floats explicitly anyway.
      for (const col of ['c_real', 'c_double']) expect(Object.is(streamed[col], snap[col]), `row ${row} ${col}`).toBe(true);
    }
  });
});

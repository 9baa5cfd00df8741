import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createAvroType, encodeUnscaledNumber, type AvroSchema } from '../../src/events/avro-types.ts';
import { AvroWriter, compileWriter } from '../../src/events/avro-writer.ts';
import { keyHash, murmur2 } from '../../src/events/murmur2.ts';
import { TableCodec, type Op, type RawRow, type SourceInfo } from '../../src/events/envelope.ts';
import type { SourceNames, StreamPosition } from '../../src/events/row-event-writer.ts';
import type { CatalogColumn, CatalogTable } from '../../src/source/catalog.ts';
import { PgoutputDecoder, type RowMessage } from '../../src/source/pgoutput-decoder.ts';
import { boolBytes, dateBytes, decimalBytes, intBytes, timestampBytes } from '../../src/source/pg-text-bytes.ts';
import { parseBigInt, parseBool, parseDate, parseSmallInt, parseTimestamp } from '../../src/source/pg-text.ts';
import { parseScaledDecimal } from '../../src/source/pg-numeric.ts';
import { numericMod } from '../support/type-mapping.ts';

/**
 * The streaming path writes events by hand (avro-writer.ts, row-event-writer.ts, pg-text-bytes.ts,
 * pgoutput-decoder.ts). The reference is the snapshot path: text -> converter -> avsc. These tests hold
 * the two to the same bytes.
 */

/** A small deterministic PRNG (mulberry32), so failures reproduce. */
function rng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function written(fn: (w: AvroWriter) => void): Buffer {
  const w = new AvroWriter();
  w.begin();
  fn(w);
  return Buffer.from(w.end());
}

describe('AvroWriter and compileWriter write what avsc writes', () => {
  const same = (schema: AvroSchema, values: unknown[]) => {
    const type = createAvroType(schema);
    const write = compileWriter(schema);
    for (const v of values)
      expect(written((w) => write(w, v)).toString('hex'), JSON.stringify(schema)).toBe(type.toBuffer(v).toString('hex'));
  };

  it('long: every size of number and bigint', () => {
    const values: (number | bigint)[] = [0, -0, 1, -1, 63, 64, -64, -65, 2 ** 30 - 1, 2 ** 30, -(2 ** 30), -(2 ** 30) - 1];
    for (const p of [31, 32, 40, 50, 51, 52, 53]) values.push(2 ** p - 1, -(2 ** p - 1), 2 ** p - 2);
    values.push(Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER, 2n ** 53n, -(2n ** 53n), 2n ** 63n - 1n, -(2n ** 63n), 12345n);
    const r = rng(1);
    for (let i = 0; i < 2000; i++) values.push(Math.round((r() - 0.5) * 2 ** (1 + Math.floor(r() * 53))));
    same('long', values);
  });

  it('sequence: source.sequence written from its head and the LSN, as the string it stands for', () => {
    const lsns: (number | bigint)[] = [
      0,
      1,
      9,
      10,
      99,
      100,
      123456789,
      2 ** 32,
      2 ** 40 + 7,
      Number.MAX_SAFE_INTEGER,
      2n ** 60n,
      2n ** 64n - 1n,
    ];
    for (const head of ['[null,"', '["0","', '["24391234567","'])
      for (const n of lsns)
        expect(written((w) => w.sequence(Buffer.from(head, 'latin1'), n)).toString('hex'), `${head}${n}`).toBe(
          written((w) => w.string(`${head}${n}"]`)).toString('hex'),
        );
  });

  it('int, float, double, boolean, null', () => {
    same('int', [0, 1, -1, 2147483647, -2147483648, 1000]);
    same('float', [0, 1.5, -3.25, Math.fround(0.1), Infinity, NaN]);
    same('double', [0, 0.1, -1e300, 5e-324, Infinity, -Infinity, NaN]);
    same('boolean', [true, false]);
    same(['null', 'long'], [null, 5, 2n ** 60n]);
  });

  it('string and bytes: empty, ASCII at the one-byte-length edge, unicode, long', () => {
    const strings = [
      '',
      'a',
      'x'.repeat(63),
      'x'.repeat(64),
      'x'.repeat(300),
      'é',
      'naïve café',
      '日本語テキスト',
      '😀 emoji',
      `${'y'.repeat(62)}é`,
    ];
    same('string', strings);
    same(
      'bytes',
      strings.map((s) => Buffer.from(s)),
    );
  });

  it('records, arrays and unions as the type mapping builds them', () => {
    const vsd = {
      type: 'record',
      name: 'VariableScaleDecimal',
      namespace: 'io.debezium.data',
      fields: [
        { name: 'scale', type: 'int' },
        { name: 'value', type: 'bytes' },
      ],
    };
    same(['null', vsd], [null, { scale: 2, value: Buffer.from([1, 2]) }]);
    same({ type: 'array', items: ['null', 'string'] }, [[], ['a', null, 'é'], Array.from({ length: 100 }, (_, i) => `v${i}`)]);
    same({ type: 'array', items: ['null', { type: 'long', logicalType: 'timestamp-micros' }] }, [[1, null, 2n ** 60n]]);
  });

  it('decimal bytes equal encodeUnscaledNumber', () => {
    const r = rng(2);
    const values = [0, 1, -1, 127, 128, -128, -129, 255, 256, 32767, 32768, -32769, 999999999999999, -999999999999999];
    for (let i = 0; i < 2000; i++) values.push(Math.round((r() - 0.5) * 2 * 10 ** Math.floor(r() * 16)));
    for (const n of values) {
      const b = encodeUnscaledNumber(n);
      expect(written((w) => w.decimal(n)).toString('hex'), String(n)).toBe(written((w) => w.bytes(b)).toString('hex'));
    }
  });
});

describe('fast text paths give the full parser value or step aside', () => {
  const check = (texts: string[], fast: (b: Buffer, s: number, e: number) => number, full: (t: string) => unknown) => {
    let taken = 0;
    for (const t of texts) {
      // Inside a larger buffer, as in a pgoutput message.
      const buf = Buffer.concat([Buffer.from('<<'), Buffer.from(t), Buffer.from('>>')]);
      const v = fast(buf, 2, buf.length - 2);
      if (Number.isNaN(v)) continue;
      taken++;
      let expected: unknown;
      try {
        expected = full(t);
      } catch (err) {
        throw new Error(`fast path accepted ${JSON.stringify(t)} (${v}) which the full parser rejects: ${(err as Error).message}`);
      }
      expect(typeof expected === 'boolean' ? (expected ? 1 : 0) : expected, t).toBe(v);
    }
    return taken;
  };
  const r = rng(3);
  const pick = (n: number) => Math.floor(r() * n);
  const pad = (n: number, w: number) => String(n).padStart(w, '0');

  it('integers', () => {
    const texts = ['0', '-0', '1', '-1', '32767', '-32768', '32768', '2147483647', '-2147483648', '2147483648', '999999999999999'];
    texts.push('1000000000000000', '9007199254740993', '-9223372036854775808', '', '-', '+1', ' 1', '1 ', '1.0', '1e3', 'abc');
    for (let i = 0; i < 3000; i++) texts.push(String(Math.round((r() - 0.5) * 2 * 10 ** pick(16))));
    const int4 = (b: Buffer, s: number, e: number) => {
      const v = intBytes(b, s, e);
      return v >= -2147483648 && v <= 2147483647 ? v : NaN;
    };
    expect(check(texts, int4, (t) => parseSmallInt(t, -2147483648, 2147483647))).toBeGreaterThan(1000);
    expect(check(texts, intBytes, parseBigInt)).toBeGreaterThan(2000);
  });

  it('booleans', () => expect(check(['t', 'f', 'true', 'false', 'x', ''], boolBytes, parseBool)).toBe(2));

  it('numeric(p, s)', () => {
    const texts = ['0', '0.00', '-0.00', '1.5', '-1.50', '12.345', '1.230', '.5', '5.', '-', '', 'NaN', 'Infinity', '1e5', '00012.30'];
    texts.push('9999999999.99', '99999999999.99', '123456789012345.6', '0.000000000000001');
    for (let i = 0; i < 3000; i++) {
      const int = String(pick(10 ** pick(13)));
      const frac = pick(4);
      texts.push(`${r() < 0.3 ? '-' : ''}${int}${frac ? `.${pad(pick(10 ** frac), frac)}` : ''}`);
    }
    for (const [scale, maxInt] of [
      [2, 10],
      [0, 5],
      [3, 12],
      [6, 9],
    ] as const) {
      expect(
        check(
          texts,
          (b, s, e) => decimalBytes(b, s, e, scale, maxInt),
          (t) => parseScaledDecimal(t, scale, maxInt),
        ),
      ).toBeGreaterThan(100);
    }
  });

  it('timestamps, timestamptz and dates', () => {
    const texts = [
      '2026-01-01 00:00:00',
      '1970-01-01 00:00:00',
      '1969-12-31 23:59:59.999999',
      '2000-02-29 12:00:00.5',
      '2255-06-01 00:00:00',
    ];
    texts.push('2256-01-01 00:00:00', '9999-12-31 23:59:59', '0001-01-01 00:00:00 BC', '24:00:00', '2026-01-01 24:00:00', 'infinity');
    texts.push('2026-13-01 00:00:00', '2026-02-31 00:00:00', '2026-01-01T00:00:00', '2026-01-01 00:00:00.1234567', '12026-01-01 00:00:00');
    for (let i = 0; i < 3000; i++) {
      const frac = pick(7);
      const year = r() < 0.9 ? 1700 + pick(550) : 1 + pick(9999); // mostly the range the fast path takes, some beyond
      const text = `${pad(year, 4)}-${pad(1 + pick(12), 2)}-${pad(1 + pick(31), 2)} ${pad(pick(24), 2)}:${pad(pick(60), 2)}:${pad(pick(60), 2)}${frac ? `.${pad(pick(10 ** frac), frac)}` : ''}`;
      texts.push(text);
    }
    expect(
      check(
        texts,
        (b, s, e) => timestampBytes(b, s, e, false),
        (t) => parseTimestamp(t, false),
      ),
    ).toBeGreaterThan(2000);
    const zoned = texts.flatMap((t) => [`${t}+00`, `${t}+05:30`, `${t}-01`]);
    expect(
      check(
        zoned,
        (b, s, e) => timestampBytes(b, s, e, true),
        (t) => parseTimestamp(t, true),
      ),
    ).toBeGreaterThan(2000);
    const dates = texts.map((t) => t.slice(0, 10)).concat(['infinity', '-infinity', '0001-01-01 BC', '20260-01-01', '2026-1-01']);
    expect(check(dates, dateBytes, parseDate)).toBeGreaterThan(2000);
  });
});

// --- whole events: pgoutput message -> decoder -> RowEventWriter, against text -> TableCodec.encodeValue (avsc)

const column = (name: string, typeName: string, extra: Partial<CatalogColumn> = {}): CatalogColumn => ({
  name,
  typeOid: 0,
  typeMod: -1,
  typeName,
  typeCategory: { int2: 'N', int4: 'N', int8: 'N', numeric: 'N', float4: 'N', float8: 'N', text: 'S', varchar: 'S' }[typeName] ?? 'U',
  notNull: false,
  hasDefault: false,
  defaultExpr: null,
  toastable: false,
  ...extra,
});

const COLUMNS: CatalogColumn[] = [
  column('id', 'int8', { notNull: true }),
  column('small', 'int2'),
  column('qty', 'int4', { notNull: true }),
  column('oid_col', 'oid'),
  column('amount', 'numeric', { typeMod: numericMod(12, 2), notNull: true }),
  column('big_amount', 'numeric', { typeMod: numericMod(38, 10) }),
  column('any_num', 'numeric'),
  column('real_col', 'float4'),
  column('dbl', 'float8'),
  column('active', 'bool'),
  column('name', 'text', { notNull: true, toastable: true }),
  column('note', 'varchar', { toastable: true }),
  column('blob', 'bytea', { toastable: true }),
  column('day', 'date'),
  column('at_time', 'time'),
  column('at_timetz', 'timetz'),
  column('ts', 'timestamp'),
  column('created_at', 'timestamptz', { notNull: true }),
  column('span', 'interval'),
  column('uid', 'uuid'),
  column('doc', 'jsonb', { toastable: true }),
  column('mood', 'mood', { typeCategory: 'E', enumValues: ['sad', 'ok', 'happy'] }),
  column('tags', '_text', { typeCategory: 'A', elementTypeName: 'text', elementTypeCategory: 'S', toastable: true }),
  column('nums', '_numeric', { typeCategory: 'A', elementTypeName: 'numeric', elementTypeCategory: 'N', typeMod: numericMod(5, 2) }),
  column('región', 'text'), // not a legal Avro name: the codec renames the field
];

const TABLE: CatalogTable = {
  oid: 4242,
  schema: 'public',
  name: 'wide',
  qualified: 'public.wide',
  replicaIdentity: 'd',
  columns: COLUMNS,
  keyColumns: ['id'],
};

/** null = SQL NULL, undefined = unchanged TOAST. */
type Texts = (string | null | undefined)[];

const ROWS: Texts[] = [
  // id, small, qty, oid, amount, big_amount, any_num, real, dbl, active, name, note, blob, day, time, timetz, ts, created_at, span, uid, doc, mood, tags, nums, región
  [
    '1',
    '-32768',
    '0',
    '4294967295',
    '0.00',
    '12345678901234567890.0123456789',
    '1.50',
    '1.5',
    '0.1',
    't',
    'customer 1',
    'a note',
    '\\x0001ff',
    '2026-01-01',
    '12:34:56.789',
    '08:00:00+02',
    '2026-01-01 00:00:00',
    '2026-01-01 00:00:01+00',
    'P1Y2M3DT4H5M6.5S',
    '123e4567-e89b-12d3-a456-426614174000',
    '{"a": [1, 2]}',
    'happy',
    '{a,"b c",NULL}',
    '{1.50,NULL,-2.25}',
    'x',
  ],
  [
    '9007199254740993',
    null,
    '-2147483648',
    null,
    '-9999999999.99',
    null,
    'NaN',
    null,
    '-1e+300',
    'f',
    'naïve café 日本 😀',
    null,
    null,
    'infinity',
    null,
    null,
    '1969-12-31 23:59:59.999999',
    '0001-01-01 00:00:00+00 BC',
    null,
    null,
    null,
    'sad',
    '{}',
    '{}',
    null,
  ],
  [
    '-5',
    '7',
    '2147483647',
    '0',
    '123.4',
    '-0.0000000001',
    '-123456789012345678901234567890.5',
    'Infinity',
    'NaN',
    't',
    'y'.repeat(300),
    'é'.repeat(40),
    '\\x',
    '0044-03-15 BC',
    '24:00:00',
    '00:00:00-00:30',
    'infinity',
    '9999-12-31 23:59:59.5+00',
    'PT0S',
    null,
    '[]',
    'ok',
    null,
    null,
    '',
  ],
  [
    '42',
    '1',
    '5',
    '12',
    '1.00',
    '0',
    '0',
    '-0',
    '0',
    'f',
    '',
    '',
    '\\xdeadbeef',
    '1970-01-01',
    '00:00:00',
    '23:59:59.999999+14',
    '2262-04-11 23:47:16.854775',
    '2026-06-30 12:00:00.123456+05:30',
    '-P1D',
    '00000000-0000-0000-0000-000000000000',
    'null',
    'happy',
    '{NULL}',
    '{0.01}',
    'z',
  ],
];

/** A pgoutput row message: tag, relation oid, then ('K'|'O' tuple)? and 'N' tuple. */
function rowMessage(tag: 'I' | 'U' | 'D', before: { kind: 'K' | 'O'; texts: Texts } | null, after: Texts | null): Buffer {
  const parts: Buffer[] = [Buffer.from(tag), u32(TABLE.oid)];
  const tuple = (texts: Texts) => {
    const out: Buffer[] = [u16(texts.length)];
    for (const t of texts) {
      if (t === null) out.push(Buffer.from('n'));
      else if (t === undefined) out.push(Buffer.from('u'));
      else {
        const b = Buffer.from(t);
        out.push(Buffer.from('t'), u32(b.length), b);
      }
    }
    return Buffer.concat(out);
  };
  if (before) parts.push(Buffer.from(before.kind), tuple(before.texts));
  if (after) parts.push(Buffer.from('N'), tuple(after));
  // Something in front, so the decoder must honour the offset.
  return Buffer.concat([Buffer.from('ignored'), ...parts]);
}
function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}
function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

function rawRow(texts: Texts | null): RawRow | null {
  if (!texts) return null;
  return Object.fromEntries(COLUMNS.map((c, i) => [c.name, texts[i]]));
}

describe('RowEventWriter writes the same key and value bytes as the avsc path', () => {
  beforeEach(() => {
    vi.useFakeTimers();
    vi.setSystemTime(new Date('2026-11-24T12:00:00.123Z'));
  });
  afterEach(() => vi.useRealTimers());

  const codec = new TableCodec(TABLE, 'shop', { decimalHandlingMode: 'precise' }, () => undefined);
  codec.keySchemaId = 7;
  codec.valueSchemaId = 300;
  const names: SourceNames = { name: 'shop', db: 'orders', schema: 'public', table: 'wide' };
  const decoder = new PgoutputDecoder();

  function compare(op: Op, message: Buffer, beforeTexts: Texts | null, afterTexts: Texts | null, index: number, lsn: number | bigint) {
    const msg = decoder.decode(message, 7) as RowMessage;
    const before = op === 'u' && msg.beforeIsKey ? null : msg.before;
    const after = op === 't' ? null : msg.after;
    const position: StreamPosition = {
      names,
      tsMs: 1795537739289,
      txId: 771,
      txName: `771:${0x1_2fb4cbd8n}`,
      lsn,
      commitLsn: 0x1_2fb4cbd8n,
      lastCommitLsn: index % 2 ? 0x1_2fb4c000n : null,
      eventIndex: index,
      totalOrder: index + 1,
      collectionOrder: index + 1,
    };
    const streamed = codec.streamEvent(op, op === 't' ? null : before, after, position);
    const source: SourceInfo = {
      ...names,
      tsMs: position.tsMs,
      snapshot: 'false',
      txId: 771,
      lsn: BigInt(lsn),
      commitLsn: position.commitLsn,
      lastCommitLsn: position.lastCommitLsn,
      eventIndex: index,
    };
    const keyRow = rawRow(afterTexts ?? beforeTexts);
    const label = `${op} #${index}`;
    if (op === 't') expect(streamed.key).toBeNull();
    else expect(streamed.key!.toString('hex'), label).toBe(codec.encodeKey(keyRow!).toString('hex'));
    const value = codec.encodeValue(op, rawRow(beforeTexts), rawRow(afterTexts), source, index + 1, index + 1);
    expect(streamed.value.toString('hex'), label).toBe(value.toString('hex'));
    const decoded = codec.decodeValue(streamed.value) as {
      after: Record<string, unknown> | null;
      unchanged_toast: string[];
      source: { sequence: string };
    };
    // Debezium's Postgres connector: ["<lastCommitLsn>","<lsn>"], decimal strings.
    expect(JSON.parse(decoded.source.sequence), label).toEqual([
      position.lastCommitLsn === null ? null : String(position.lastCommitLsn),
      String(lsn),
    ]);
    return decoded;
  }

  it('inserts of every mapped type, edge values included', () => {
    ROWS.forEach((row, i) => compare('c', rowMessage('I', null, row), null, row, i, 0x1_2fb4cbd8 + i * 136));
  });

  it('updates: unchanged TOAST values are null and listed; REPLICA IDENTITY FULL fills them from the old row', () => {
    const after: Texts = [...ROWS[0]!];
    after[10] = undefined; // name
    after[20] = undefined; // doc
    const decoded = compare('u', rowMessage('U', null, after), null, after, 0, 2n ** 60n);
    expect(decoded.unchanged_toast).toEqual(['name', 'doc']);
    expect(decoded.after!.name).toBeNull();
    // FULL: the old row carries the values; the new row's 'u' columns take them, so nothing is unchanged.
    const old = ROWS[3]!;
    const msg = decoder.decode(rowMessage('U', { kind: 'O', texts: old }, after), 7) as RowMessage;
    expect(msg.before && !msg.beforeIsKey).toBe(true);
    expect(msg.after!.text(10)).toBe(old[10]);
    const filled = [...after];
    filled[10] = old[10];
    filled[20] = old[20];
    compare('u', rowMessage('U', { kind: 'O', texts: old }, after), old, filled, 1, 99);
  });

  it('deletes by key (non-key columns NULL) and by the full old row; a truncate has no key', () => {
    const key: Texts = COLUMNS.map((c, i) => (c.name === 'id' ? ROWS[0]![i] : null));
    compare('d', rowMessage('D', { kind: 'K', texts: key }, null), key, null, 0, 1);
    compare('d', rowMessage('D', { kind: 'O', texts: ROWS[1]! }, null), ROWS[1]!, null, 1, 2);
    compare('t', rowMessage('I', null, ROWS[0]!), null, null, 2, 3);
  });

  it('tells a primary-key change from an update of other columns', () => {
    const moved = [...ROWS[0]!];
    moved[0] = '2';
    const key: Texts = COLUMNS.map((c, i) => (c.name === 'id' ? ROWS[0]![i] : null));
    const m1 = decoder.decode(rowMessage('U', { kind: 'K', texts: key }, moved), 7) as RowMessage;
    expect(codec.keyChanged(m1.before!, m1.after!)).toBe(true);
    const edited = [...ROWS[0]!];
    edited[2] = '99';
    const m2 = decoder.decode(rowMessage('U', { kind: 'O', texts: ROWS[0]! }, edited), 7) as RowMessage;
    expect(codec.keyChanged(m2.before!, m2.after!)).toBe(false);
  });

  it('a value the converter rejects fails with its TypeConversionError, as in the snapshot', () => {
    const bad = [...ROWS[0]!];
    bad[2] = '2147483648'; // qty int4 out of range: the fast path steps aside, the converter names the column
    expect(() => compare('c', rowMessage('I', null, bad), null, bad, 0, 1)).toThrow(/column qty \(int4\): value "2147483648"/);
    const nan = [...ROWS[0]!];
    // amount is NOT NULL numeric(12,2) in Postgres, but only key columns are required in the schema (the WAL
    // does not say NOT NULL): precise mode sends NaN as null, the same on both paths.
    nan[4] = 'NaN';
    expect(() => compare('c', rowMessage('I', null, nan), null, nan, 0, 1)).not.toThrow();
  });

  it('a row with another column count than the codec is refused (a missed relation message)', () => {
    const short = ROWS[0]!.slice(0, 5);
    const msg = decoder.decode(rowMessage('I', null, short), 7) as RowMessage;
    expect(() => codec.streamEvent('c', null, msg.after, { names } as StreamPosition)).toThrow(
      /arrived with 5 columns but the table's schema has 25/,
    );
  });
});

describe('PgoutputDecoder', () => {
  const decoder = new PgoutputDecoder();
  const u64 = (n: bigint) => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(n);
    return b;
  };
  const cstr = (s: string) => Buffer.concat([Buffer.from(s), Buffer.from([0])]);

  it('begin, commit and relation messages', () => {
    const micros = 848_000_000_000_123n; // µs since 2000-01-01
    const begin = decoder.decode(Buffer.concat([Buffer.from('B'), u64(0x1_2fb4cbd8n), u64(micros), u32(771)]), 0);
    expect(begin).toEqual({
      tag: 'begin',
      commitLsn: 0x1_2fb4cbd8n,
      commitTimeMs: Number((micros + 946_684_800_000_000n) / 1000n),
      xid: 771,
    });
    const commit = decoder.decode(Buffer.concat([Buffer.from('C'), Buffer.from([0]), u64(5n), u64(0x1_2fb4cc10n), u64(micros)]), 0);
    expect(commit).toMatchObject({ tag: 'commit', commitLsn: 5n, endLsn: 0x1_2fb4cc10n });
    const rel = decoder.decode(
      Buffer.concat([
        Buffer.from('R'),
        u32(4242),
        cstr('public'),
        cstr('wide'),
        Buffer.from('d'),
        u16(2),
        Buffer.from([1]),
        cstr('id'),
        u32(20),
        u32(0xffffffff),
        Buffer.from([0]),
        cstr('región'),
        u32(25),
        u32(0xffffffff),
      ]),
      0,
    );
    expect(rel).toEqual({
      tag: 'relation',
      relationOid: 4242,
      schema: 'public',
      name: 'wide',
      replicaIdentity: 'default',
      columns: [
        { flags: 1, name: 'id', typeOid: 20, typeMod: -1 },
        { flags: 0, name: 'región', typeOid: 25, typeMod: -1 },
      ],
      keyColumns: ['id'],
    });
  });

  it('refuses truncated and unknown messages with a PgoutputProtocolError', () => {
    const full = rowMessage('I', null, ROWS[0]!);
    expect(() => decoder.decode(full.subarray(0, full.length - 1), 7)).toThrow(/pgoutput: tuple value ends early/);
    expect(() => decoder.decode(full.subarray(0, full.length - 4), 7)).toThrow(/pgoutput: tuple ends early/);
    expect(() => decoder.decode(Buffer.from('Z'), 0)).toThrow(/unknown message type "Z"/);
  });
});

describe('murmur2 partitioning', () => {
  it("matches Kafka's own test vectors (UtilsTest) and the Java partition rule", () => {
    const vectors: [string, number][] = [
      ['21', -973932308],
      ['foobar', -790332482],
      ['a-little-bit-long-string', -985981536],
      ['a-little-bit-longer-string', -1486304829],
      ['lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8', -58897971],
      ['abc', 479470107],
    ];
    for (const [key, hash] of vectors) {
      expect(murmur2(Buffer.from(key)), key).toBe(hash);
      expect(keyHash(Buffer.from(key)), key).toBe(hash & 0x7fffffff);
    }
    expect(keyHash(null)).toBe(0);
  });
});

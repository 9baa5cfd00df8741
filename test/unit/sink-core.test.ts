import { describe, expect, it } from 'vitest';
import { sinkConfigSchema } from '../../src/config/sink-config.ts';
import type { DeltaTable } from '../../src/lake/delta/delta-table.ts';
import type { ChangeEvent } from '../../src/sink/change-event.ts';
import { lakeColumnsOf } from '../../src/sink/lake-columns.ts';
import { hashValue, masksFor } from '../../src/sink/masking.ts';
import { resumeOffset, txnActions, uncommitted } from '../../src/sink/offsets.ts';
import { keyId, keyString, reduceToChanges } from '../../src/sink/silver-changes.ts';
import { mergeSql } from '../../src/sink/silver-merge.ts';
import { candidateFiles, compareCodePoints } from '../../src/sink/key-pruning.ts';
import { statsJson } from '../../src/lake/parquet/file-stats.ts';
import type { LakeColumn, LakeType } from '../../src/lake/lake-schema.ts';
import { lakeTableName, reconcileColumns, sameType, tableOfTopic } from '../../src/sink/table-layout.ts';

const config = sinkConfigSchema.parse({
  topics: 'orders.public.customers',
  'kafka.bootstrap.servers': '127.0.0.1:9092',
  'schema.registry.url': 'http://127.0.0.1:8081',
  'mask.hash.columns': 'public\\.customers\\.email',
  'mask.redact.columns': 'public\\.customers\\.(note|age)',
  'mask.hash.salt': 'pepper-and-salt',
});

let offset = 0n;
function ev(
  op: ChangeEvent['op'],
  lsn: number,
  idx: number,
  row: Record<string, unknown> | null,
  extra: Partial<ChangeEvent> = {},
): ChangeEvent {
  return {
    topic: 'orders.public.customers',
    partition: 0,
    offset: offset++,
    table: 'public.customers',
    op,
    before: op === 'd' ? row : null,
    after: op === 'd' || op === 't' ? null : row,
    unchangedToast: [],
    commitLsn: BigInt(lsn),
    eventIndex: idx,
    txId: 1,
    commitTsMs: 1_700_000_000_000 + lsn,
    eventTsMs: null,
    snapshot: false,
    columns: [],
    valueSchemaId: 1,
    keyColumns: ['id'],
    ...extra,
  };
}

describe('silver: reducing a batch to one change per key', () => {
  it('orders by (commit LSN, event index), whatever the arrival order', () => {
    const events = [
      ev('u', 30, 0, { id: 1, email: 'c@x' }),
      ev('c', 10, 0, { id: 1, email: 'a@x' }),
      ev('u', 20, 5, { id: 1, email: 'b@x' }),
    ];
    const { changes } = reduceToChanges(events, ['id'], []);
    expect(changes).toHaveLength(1);
    expect(changes[0]!.row.email).toBe('c@x');
    expect(changes[0]!.commitLsn).toBe(30n);
  });

  it('a delete wins over earlier changes and keeps only the key', () => {
    const { changes } = reduceToChanges([ev('c', 10, 0, { id: 7, email: 'a' }), ev('d', 11, 0, { id: 7, email: null })], ['id'], []);
    expect(changes).toEqual([expect.objectContaining({ key: [7], deleted: true, row: { id: 7 } })]);
  });

  it('a primary-key update (delete old key + create new key) moves the row', () => {
    const { changes } = reduceToChanges([ev('d', 10, 0, { id: 1 }), ev('c', 10, 1, { id: 2, email: 'm' })], ['id'], []);
    expect(changes.map((c) => [c.key[0], c.deleted])).toEqual([
      [1, true],
      [2, false],
    ]);
  });

  it('unchanged TOAST columns take the value of an earlier change in the batch, else stay marked for the merge', () => {
    const a = reduceToChanges(
      [ev('c', 1, 0, { id: 1, doc: 'big' }), ev('u', 2, 0, { id: 1, doc: null }, { unchangedToast: ['doc'] })],
      ['id'],
      [],
    );
    expect(a.changes[0]).toMatchObject({ row: { doc: 'big' }, unchanged: [] });
    const b = reduceToChanges([ev('u', 2, 0, { id: 1, doc: null, n: 5 }, { unchangedToast: ['doc'] })], ['id'], []);
    expect(b.changes[0]).toMatchObject({ row: { n: 5 }, unchanged: ['doc'] });
  });

  it('a truncate drops everything before it and is reported', () => {
    const r = reduceToChanges([ev('c', 1, 0, { id: 1 }), ev('t', 2, 0, null, { keyColumns: [] }), ev('c', 3, 0, { id: 2 })], ['id'], []);
    expect(r.truncate).toEqual({ commitLsn: 2n, eventIndex: 0 });
    expect(r.changes.map((c) => c.key[0])).toEqual([2]);
  });

  it('masks: hash is salted SHA-256, deterministic; redact blanks strings and nulls others; keys never masked', () => {
    const masks = masksFor(
      config,
      'public.customers',
      [
        { name: 'id', type: { kind: 'integer' }, nullable: false },
        { name: 'email', type: { kind: 'string' }, nullable: false },
        { name: 'note', type: { kind: 'string' }, nullable: true },
        { name: 'age', type: { kind: 'integer' }, nullable: true },
      ],
      ['id'],
    );
    expect(masks.map((m) => [m.column, m.rule])).toEqual([
      ['email', 'hash'],
      ['note', 'redact'],
      ['age', 'redact'],
    ]);
    const { changes } = reduceToChanges([ev('c', 1, 0, { id: 1, email: 'ann@example.com', note: 'vip', age: 40 })], ['id'], masks);
    expect(changes[0]!.row).toEqual({ id: 1, email: hashValue('pepper-and-salt', 'ann@example.com'), note: '****', age: null });
    expect(changes[0]!.row.email).toMatch(/^[0-9a-f]{64}$/);
    expect(hashValue('pepper-and-salt', 'ann@example.com')).not.toBe(hashValue('other-salt', 'ann@example.com'));
  });

  it('a copied TOAST value is not masked twice', () => {
    const masks = masksFor(config, 'public.customers', [{ name: 'email', type: { kind: 'string' }, nullable: false }], ['id']);
    const { changes } = reduceToChanges(
      [ev('c', 1, 0, { id: 1, email: 'a@x' }), ev('u', 2, 0, { id: 1, email: null }, { unchangedToast: ['email'] })],
      ['id'],
      masks,
    );
    expect(changes[0]!.row.email).toBe(hashValue('pepper-and-salt', 'a@x'));
  });
});

describe('silver: file pruning by key stats', () => {
  const file = (path: string, min: unknown, max: unknown) => ({
    path,
    partitionValues: {},
    size: 1,
    modificationTime: 0,
    dataChange: true,
    stats: JSON.stringify({ numRecords: 1, minValues: { id: min }, maxValues: { id: max }, nullCount: {} }),
  });
  const col = (type: LakeType): LakeColumn => ({ name: 'id', type, nullable: false });
  it('keeps only files whose [min, max] holds a changed key; no stats means candidate', () => {
    const files = [file('a', 1, 100), file('b', 101, 200), file('c', 201, 300), { ...file('d', 0, 0), stats: undefined }];
    expect(candidateFiles(files, col({ kind: 'integer' }), [150, 999]).map((f) => f.path)).toEqual(['b', 'd']);
    expect(candidateFiles(files, col({ kind: 'long' }), [150n]).map((f) => f.path)).toEqual(['b', 'd']);
    expect(candidateFiles([file('s', 'apple', 'mango')], col({ kind: 'string' }), ['banana']).map((f) => f.path)).toEqual(['s']);
    expect(candidateFiles([file('s', 'apple', 'mango')], col({ kind: 'string' }), ['zebra'])).toEqual([]);
  });
  it('does not prune on JSON numbers beyond 2^53', () => {
    expect(candidateFiles([file('big', 2 ** 60, 2 ** 61)], col({ kind: 'long' }), [5n])).toHaveLength(1);
  });
  it('reads bounds as the statistics writer wrote them, for every key type', () => {
    // Bounds made by the real writer (file-stats.ts), compared with keys in the sink's representation.
    const written = (type: LakeType, lo: unknown, hi: unknown) => {
      const c = col(type);
      const stats = statsJson(2, [{ column: c, min: lo, max: hi, nullCount: 0 }]);
      return { ...file('f', 0, 0), stats };
    };
    const hit = (type: LakeType, lo: unknown, hi: unknown, key: unknown) =>
      candidateFiles([written(type, lo, hi)], col(type), [key]).length === 1;
    // date: days since the epoch against 'YYYY-MM-DD'
    expect(hit({ kind: 'date' }, 19_000, 19_010, 19_005)).toBe(true);
    expect(hit({ kind: 'date' }, 19_000, 19_010, 19_011)).toBe(false);
    // timestamp: microseconds against millisecond ISO strings (min floored, max ceiled)
    expect(hit({ kind: 'timestamp' }, 1_000_000_500n, 2_000_000_400n, 2_000_000_400n)).toBe(true);
    expect(hit({ kind: 'timestamp' }, 1_000_000_500n, 2_000_000_400n, 1_000_000_000n)).toBe(true); // same millisecond as the min
    expect(hit({ kind: 'timestamp' }, 1_000_000_500n, 2_000_000_400n, 2_000_002_000n)).toBe(false);
    // decimal: unscaled keys against scaled JSON numbers (100.00 parses as the integer 100)
    expect(hit({ kind: 'decimal', precision: 12, scale: 2 }, 10_000n, 20_000n, 15_000n)).toBe(true);
    expect(hit({ kind: 'decimal', precision: 12, scale: 2 }, 10_000n, 20_000n, 150n)).toBe(false);
    expect(hit({ kind: 'decimal', precision: 12, scale: 2 }, 1n, 3n, 3n)).toBe(true); // 0.01 .. 0.03
    // strings: code-point order, not UTF-16 (U+1F600 sorts after U+FF21)
    expect(hit({ kind: 'string' }, '\uff21', '\uff5a', String.fromCodePoint(0x1f600))).toBe(false);
    expect(hit({ kind: 'string' }, '\uff21', String.fromCodePoint(0x1f600), '\uff30')).toBe(true);
    expect(hit({ kind: 'string' }, 'a', 'z'.repeat(40), 'z'.repeat(50))).toBe(true); // truncated max stays an upper bound
    // types without useful ranges are never pruned
    expect(hit({ kind: 'boolean' }, false, false, true)).toBe(true);
  });
  it('orders strings by code point', () => {
    const smile = String.fromCodePoint(0x1f600);
    expect(['\uff21', smile, 'a', '\ud7ff'].sort(compareCodePoints)).toEqual(['a', '\ud7ff', '\uff21', smile]);
  });
  it('merge SQL applies only newer changes and keeps unchanged TOAST columns', () => {
    const sql = mergeSql(
      {
        columns: [
          { name: 'id', type: { kind: 'long' }, nullable: false },
          { name: 'doc', type: { kind: 'string' }, nullable: true },
          { name: '_commit_lsn', type: { kind: 'long' }, nullable: false },
          { name: '_event_index', type: { kind: 'long' }, nullable: false },
          { name: '_commit_ts', type: { kind: 'timestamp' }, nullable: false },
        ],
      },
      ['id'],
      'old',
      'chg',
    );
    expect(sql).toContain(`c._commit_lsn > o._commit_lsn OR (c._commit_lsn = o._commit_lsn AND c._event_index > o._event_index)`);
    expect(sql).toContain(`list_contains(c._unchanged, 'doc')`);
    expect(sql).toContain('NOT EXISTS');
  });
});

describe('exactly once: offsets in the Delta log', () => {
  const table = (versions: Record<string, number>) => ({ txnVersion: (id: string) => versions[id] }) as unknown as DeltaTable;
  it('txn actions carry the highest offset per partition', () => {
    const t = txnActions('lake', [
      { topic: 'x', partition: 0, offset: 5n },
      { topic: 'x', partition: 0, offset: 9n },
      { topic: 'x', partition: 1, offset: 2n },
    ]);
    expect(t.map((a) => [a.appId, a.version])).toEqual([
      ['lake-x-0', 9],
      ['lake-x-1', 2],
    ]);
    // Partitions and topics alternating offset by offset (as bench/sink-lake.ts' events do): the highest of each, in order of first appearance.
    const mixed = txnActions('lake', [
      { topic: 'x', partition: 1, offset: 7n },
      { topic: 'x', partition: 0, offset: 3n },
      { topic: 'y', partition: 1, offset: 40n },
      { topic: 'x', partition: 1, offset: 6n },
      { topic: 'x', partition: 0, offset: 4n },
      { topic: 'y', partition: 1, offset: 41n },
      { topic: 'x', partition: 1, offset: 8n },
    ]);
    expect(mixed.map((a) => [a.appId, a.version])).toEqual([
      ['lake-x-1', 8],
      ['lake-x-0', 4],
      ['lake-y-1', 41],
    ]);
  });
  it('skips events at or below the committed version; resumes one past the lowest table', () => {
    offset = 0n;
    const events = [ev('c', 1, 0, { id: 1 }), ev('c', 2, 0, { id: 2 }), ev('c', 3, 0, { id: 3 })];
    const t = table({ 'lake-orders.public.customers-0': 1 });
    expect(uncommitted(t, 'lake', events).map((e) => e.offset)).toEqual([2n]);
    expect(resumeOffset([t, table({ 'lake-orders.public.customers-0': 0 })], 'lake', 'orders.public.customers', 0)).toBe(1n);
    expect(resumeOffset([t, undefined], 'lake', 'orders.public.customers', 0)).toBeUndefined();
  });
  it('skips per topic and partition when partitions interleave', () => {
    const at = (topic: string, partition: number, o: bigint) => ({ ...ev('c', 1, 0, { id: 1 }), topic, partition, offset: o });
    const events = [at('a', 0, 1n), at('a', 1, 1n), at('b', 0, 1n), at('a', 0, 3n), at('a', 1, 5n), at('b', 0, 2n), at('b', 1, 0n)];
    const t = table({ 'lake-a-0': 2, 'lake-a-1': 4, 'lake-b-0': 0 });
    expect(uncommitted(t, 'lake', events).map((e) => `${e.topic}${e.partition}@${e.offset}`)).toEqual([
      'b0@1',
      'a0@3',
      'a1@5',
      'b0@2',
      'b1@0',
    ]);
  });
});

describe('silver: key strings', () => {
  it('spell a one-column key as the general form does, and keep keys of different types apart', () => {
    const general = (key: unknown[]) => JSON.stringify(key, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v));
    for (const key of [[7], [-1.5], [7n], ['7'], ['a"b\\c\u0001é'], [NaN], [null], [true], [1, 'x'], [2n, 3n]])
      expect(keyString(key)).toBe(general(key));
    expect(new Set([keyString([7]), keyString(['7']), keyString([7n])]).size).toBe(3);
  });

  it('group a one-column integer key by its number (an int and a bigint of one value are one key), others by keyString', () => {
    expect(keyId([7n])).toBe(7);
    expect(keyId([7])).toBe(keyId([7n]));
    expect(keyId([-(2n ** 53n) + 1n])).toBe(Number.MIN_SAFE_INTEGER);
    // Beyond 2^53 a number would merge neighbouring keys: those stay strings, distinct.
    expect(keyId([2n ** 53n])).toBe(keyString([2n ** 53n]));
    expect(keyId([2n ** 53n + 1n])).not.toBe(keyId([2n ** 53n]));
    expect(new Set([keyId([7]), keyId(['7']), keyId([1.5]), keyId([7, 'x'])]).size).toBe(4);
    expect(keyId(['7'])).toBe(keyString(['7']));
  });
});

describe('lake columns from the source Avro schema', () => {
  it('maps Debezium logical types to lake types', () => {
    const schema = {
      type: 'record',
      name: 'Envelope',
      fields: [
        {
          name: 'after',
          type: [
            'null',
            {
              type: 'record',
              name: 'Value',
              fields: [
                { name: 'id', type: 'long' },
                { name: 'small', type: { type: 'int', 'connect.type': 'int16' } },
                { name: 'price', type: { type: 'bytes', logicalType: 'decimal', precision: 12, scale: 2 } },
                { name: 'at', type: ['null', { type: 'long', logicalType: 'timestamp-micros' }], default: null },
                { name: 'day', type: { type: 'int', logicalType: 'date' } },
                { name: 'tags', type: ['null', { type: 'array', items: ['null', 'string'] }] },
                { name: 'n', type: { type: 'record', name: 'VariableScaleDecimal', namespace: 'io.debezium.data', fields: [] } },
                { name: 'n2', type: 'io.debezium.data.VariableScaleDecimal' },
                { name: 'x_1', type: 'string', 'tide.column': 'x-1' },
              ],
            },
          ],
        },
      ],
    };
    const cols = lakeColumnsOf(schema);
    expect(cols.map((c) => [c.name, c.type, c.nullable])).toEqual([
      ['id', { kind: 'long' }, false],
      ['small', { kind: 'short' }, false],
      ['price', { kind: 'decimal', precision: 12, scale: 2 }, false],
      ['at', { kind: 'timestamp' }, true],
      ['day', { kind: 'date' }, false],
      ['tags', { kind: 'array', element: { kind: 'string' } }, true],
      ['n', { kind: 'string' }, false],
      ['n2', { kind: 'string' }, false],
      ['x-1', { kind: 'string' }, false],
    ]);
    expect(cols[2]!.convert(Buffer.from([0xff, 0x85]))).toBe(-123n);
    expect(cols[3]!.convert(1700000000000000)).toBe(1700000000000000n);
    expect(cols[7]!.convert({ scale: 2, value: Buffer.from([0x00, 0x96]) })).toBe('1.50');
  });
});

describe('layout and schema evolution', () => {
  it('names tables and finds the table of a topic', () => {
    expect(lakeTableName('public.orders')).toBe('orders');
    expect(lakeTableName('billing.invoices')).toBe('billing_invoices');
    expect(tableOfTopic('orders.public.order_items')).toBe('public.order_items');
  });
  it('adds new columns as nullable and reports type changes', () => {
    const r = reconcileColumns(
      [
        { name: 'id', type: { kind: 'long' }, nullable: false },
        { name: 'n', type: { kind: 'integer' }, nullable: true },
      ],
      [
        { name: 'id', type: { kind: 'long' }, nullable: false },
        { name: 'n', type: { kind: 'string' }, nullable: true },
        { name: 'extra', type: { kind: 'boolean' }, nullable: false },
      ],
    );
    expect(r.added).toEqual([{ name: 'extra', type: { kind: 'boolean' }, nullable: true }]);
    expect(r.conflicts).toEqual([{ column: 'n', table: { kind: 'integer' }, incoming: { kind: 'string' } }]);
  });
  it('tells lake types apart: kind, decimal precision and scale, array element', () => {
    const dec = (precision: number, scale: number): LakeType => ({ kind: 'decimal', precision, scale });
    const arr = (element: LakeType): LakeType => ({ kind: 'array', element });
    expect(sameType({ kind: 'long' }, { kind: 'long' })).toBe(true);
    expect(sameType({ kind: 'long' }, { kind: 'integer' })).toBe(false);
    expect(sameType(dec(10, 2), dec(10, 2))).toBe(true);
    expect(sameType(dec(10, 2), dec(10, 3))).toBe(false);
    expect(sameType(dec(10, 2), dec(12, 2))).toBe(false);
    expect(sameType(dec(10, 2), { kind: 'string' })).toBe(false);
    expect(sameType(arr(dec(5, 1)), arr(dec(5, 1)))).toBe(true);
    expect(sameType(arr(dec(5, 1)), arr(dec(5, 2)))).toBe(false);
    expect(sameType(arr({ kind: 'string' }), arr(arr({ kind: 'string' })))).toBe(false);
    expect(sameType(arr({ kind: 'string' }), { kind: 'string' })).toBe(false);
  });
  it('requires a salt when hashing', () => {
    const r = sinkConfigSchema.safeParse({
      topics: 't',
      'kafka.bootstrap.servers': 'h:1',
      'schema.registry.url': 'http://h',
      'mask.hash.columns': 'public\\.c\\.email',
    });
    expect(r.success).toBe(false);
    expect(JSON.stringify(r.error?.issues)).toContain('salt of at least 8 characters');
  });
});

import { describe, expect, it } from 'vitest';
import { createAvroType } from '../../src/events/avro-types.ts';
import { SOURCE_SCHEMA } from '../../src/events/envelope.ts';
import { envelopeReader } from '../../src/sink/envelope-projection.ts';

const row = {
  type: 'record',
  name: 'Value',
  fields: [
    { name: 'id', type: 'long' },
    { name: 'note', type: ['null', 'string'], default: null },
  ],
};
const sourceFields = SOURCE_SCHEMA.fields;
const envelope = (source: unknown[]) => ({
  type: 'record',
  name: 'Envelope',
  namespace: 't.public.orders',
  fields: [
    { name: 'before', type: ['null', row], default: null },
    { name: 'after', type: ['null', 'Value'], default: null },
    { name: 'source', type: { ...SOURCE_SCHEMA, fields: source } },
    { name: 'op', type: 'string' },
    { name: 'ts_ms', type: ['null', 'long'], default: null },
    {
      name: 'transaction',
      type: ['null', { type: 'record', name: 'block', namespace: 'event', fields: [{ name: 'id', type: 'string' }] }],
      default: null,
    },
    { name: 'unchanged_toast', type: { type: 'array', items: 'string' }, default: [] },
  ],
});
const source = {
  version: '0.1.0',
  connector: 'postgresql',
  name: 'orders',
  ts_ms: 1_700_000_000_000,
  snapshot: 'false',
  db: 'shop',
  sequence: '["1","2"]',
  schema: 'public',
  table: 'orders',
  txId: 770,
  lsn: 2n ** 60n,
  xmin: null,
  commit_lsn: 123_456_789,
  event_index: 4,
};
const value = {
  before: null,
  after: { id: 2n ** 62n, note: 'x' },
  source,
  op: 'u',
  ts_ms: 1_700_000_000_123,
  transaction: { id: '770:123456789' },
  unchanged_toast: ['note'],
};

describe('the sink reads envelopes through a projection of the writer schema', () => {
  it('decodes what the sink reads exactly as the writer schema does, and skips the rest', () => {
    const schema = envelope(sourceFields);
    const bytes = createAvroType(schema).toBuffer(value);
    const full = createAvroType(schema).fromBuffer(bytes) as typeof value;
    const reader = envelopeReader(schema);
    expect(reader.resolver).toBeDefined();
    const read = reader.type.fromBuffer(bytes, reader.resolver) as Record<string, unknown> & { source: Record<string, unknown> };
    expect(read.before).toEqual(full.before);
    expect(read.after).toEqual(full.after);
    expect(read.op).toBe('u');
    expect(read.ts_ms).toBe(full.ts_ms);
    expect(read.unchanged_toast).toEqual(['note']);
    expect(read.transaction).toBeUndefined();
    expect(Object.keys(read.source).sort()).toEqual(['commit_lsn', 'event_index', 'lsn', 'schema', 'snapshot', 'table', 'ts_ms', 'txId']);
    for (const k of Object.keys(read.source)) expect(read.source[k]).toEqual((full.source as Record<string, unknown>)[k]);
  });

  it('keeps a field the writer lacks missing (the decoder then names it), and reads odd schemas as written', () => {
    const schema = envelope(sourceFields.filter((f) => f.name !== 'commit_lsn'));
    const { commit_lsn: _gone, ...older } = source;
    void _gone;
    const bytes = createAvroType(schema).toBuffer({ ...value, source: older });
    const reader = envelopeReader(schema);
    const read = reader.type.fromBuffer(bytes, reader.resolver) as { source: Record<string, unknown> };
    expect(read.source.commit_lsn).toBeUndefined();
    expect(read.source.event_index).toBe(4);

    const notEnvelope = { type: 'record', name: 'Plain', fields: [{ name: 'source', type: 'string' }] };
    expect(envelopeReader(notEnvelope).resolver).toBeUndefined();
    expect(envelopeReader('string').resolver).toBeUndefined();
  });

  it('refuses bytes that do not match the writer schema, as the writer type does', () => {
    const schema = envelope(sourceFields);
    const reader = envelopeReader(schema);
    const bytes = createAvroType(schema).toBuffer(value);
    expect(() => reader.type.fromBuffer(bytes.subarray(0, bytes.length - 3), reader.resolver)).toThrow();
    expect(() => reader.type.fromBuffer(Buffer.concat([bytes, Buffer.from([0])]), reader.resolver)).toThrow();
  });
});

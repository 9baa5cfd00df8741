import { describe, expect, it } from 'vitest';
import { parseConnectorFile } from '../../src/config/source-config.ts';
import { sinkConfigSchema } from '../../src/config/sink-config.ts';
import { avroNames, columnsOfStruct, connectFromAvro, zonedTimestampMicros } from '../../src/sink/connect-types.ts';
import { positionOf } from '../../src/sink/debezium-input.ts';
import type { AvroSchema } from '../../src/events/avro-types.ts';

/**
 * The pure parts of `input.format: debezium` (the real connector's topics are read in
 * test/integration/sink-debezium.test.ts): Debezium's position fields → the sink's order, ZonedTimestamp → µs,
 * Avro with Connect's annotations → lake columns, and the config key.
 */
const fail = (reason: string) => new Error(reason);
const base = {
  topics: 'dbz.public.orders',
  'kafka.bootstrap.servers': '127.0.0.1:9092',
  'schema.registry.url': 'http://127.0.0.1:8081/apis/ccompat/v7',
};

describe('Debezium positions', () => {
  it('streamed changes order by (sequence[0], lsn), even when a transaction began before the previous commit', () => {
    const t1 = positionOf('u', { schema: 's', table: 't', ts_ms: 0, lsn: 678519376, sequence: '["678519000","678519376"]' }, fail);
    const t2 = positionOf('u', { schema: 's', table: 't', ts_ms: 0, lsn: 678519100, sequence: '["678519528","678519100"]' }, fail);
    expect(t1).toEqual({ commitLsn: 678519000n, eventIndex: 376 });
    expect(t2).toEqual({ commitLsn: 678519528n, eventIndex: -428 });
    expect(t2.commitLsn > t1.commitLsn).toBe(true);
  });

  it('snapshot rows sort just before the snapshot LSN; a first transaction without sequence[0] sorts at its lsn', () => {
    expect(positionOf('r', { schema: 's', table: 't', ts_ms: 0, lsn: 678519024, sequence: '[null,"678519024"]' }, fail)).toEqual({
      commitLsn: 678519023n,
      eventIndex: 0,
    });
    expect(positionOf('c', { schema: 's', table: 't', ts_ms: 0, lsn: 678519120, sequence: '[null,"678519120"]' }, fail)).toEqual({
      commitLsn: 678519120n,
      eventIndex: 0,
    });
    expect(() => positionOf('c', { schema: 's', table: 't', ts_ms: 0, lsn: 1, sequence: '42' }, fail)).toThrow(
      `source.sequence "42" is not Debezium's ["<last commit LSN>","<LSN>"]`,
    );
  });
});

describe('Debezium types', () => {
  it('ZonedTimestamp to µs exactly, any offset, infinity', () => {
    expect(zonedTimestampMicros('2024-03-01T08:00:00.123456Z')).toBe(1709280000123456n);
    expect(zonedTimestampMicros('2024-03-01T10:00:00.123456+02:00')).toBe(1709280000123456n);
    expect(zonedTimestampMicros('0001-01-01T00:00:00Z')).toBe(-62135596800000000n);
    expect(zonedTimestampMicros('infinity')).toBe(253402300799999999n);
    expect(() => zonedTimestampMicros('2024-03-01')).toThrow('not an ISO-8601 timestamp with an offset');
  });

  it("Avro with Connect's annotations maps to the lake types of Tide's own topics", () => {
    const value: AvroSchema = {
      type: 'record',
      name: 'Value',
      namespace: 'dbz.public.t',
      fields: [
        { name: 'id', type: 'int' },
        {
          name: 'a',
          type: [
            'null',
            {
              type: 'bytes',
              scale: 2,
              precision: 12,
              'connect.name': 'org.apache.kafka.connect.data.Decimal',
              logicalType: 'decimal',
              'connect.parameters': { scale: '2', 'connect.decimal.precision': '12' },
            },
          ],
        },
        { name: 'ts', type: ['null', { type: 'string', 'connect.name': 'io.debezium.time.ZonedTimestamp' }] },
        { name: 'lts', type: ['null', { type: 'long', 'connect.name': 'io.debezium.time.MicroTimestamp' }] },
        { name: 'd', type: ['null', { type: 'int', 'connect.name': 'io.debezium.time.Date' }] },
        {
          name: 'big',
          type: [
            'null',
            {
              type: 'record',
              name: 'VariableScaleDecimal',
              namespace: 'io.debezium.data',
              fields: [
                { name: 'scale', type: 'int' },
                { name: 'value', type: 'bytes' },
              ],
              'connect.name': 'io.debezium.data.VariableScaleDecimal',
            },
          ],
        },
        { name: 'tags', type: ['null', { type: 'array', items: ['null', 'string'] }] },
      ],
    };
    const envelope: AvroSchema = {
      type: 'record',
      name: 'Envelope',
      namespace: 'dbz.public.t',
      fields: [
        { name: 'before', type: ['null', value] },
        { name: 'after', type: ['null', 'Value'] },
      ],
    };
    const cols = columnsOfStruct(connectFromAvro(['null', 'Value'], avroNames(envelope)));
    expect(cols.map((c) => [c.name, c.type, c.nullable])).toEqual([
      ['id', { kind: 'integer' }, false],
      ['a', { kind: 'decimal', precision: 12, scale: 2 }, true],
      ['ts', { kind: 'timestamp' }, true],
      ['lts', { kind: 'timestamp' }, true],
      ['d', { kind: 'date' }, true],
      ['big', { kind: 'string' }, true],
      ['tags', { kind: 'array', element: { kind: 'string' } }, true],
    ]);
    expect(cols[1]!.convert(Buffer.from([0x04, 0xe2]))).toBe(1250n);
    expect(cols[5]!.convert({ scale: 3, value: Buffer.from([0x30, 0x39]) })).toBe('12.345');
  });
});

describe('input.format', () => {
  it('defaults to tide, takes debezium, refuses an unknown value naming the key', () => {
    const parse = (extra: Record<string, unknown>) =>
      parseConnectorFile({ name: 'lake', config: { ...base, ...extra } }, sinkConfigSchema, 'lake.json');
    expect(parse({}).config['input.format']).toBe('tide');
    expect(parse({ 'input.format': 'debezium' }).config['input.format']).toBe('debezium');
    expect(() => parse({ 'input.format': 'avro' })).toThrow(/input\.format/);
  });
});

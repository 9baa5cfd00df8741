import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConnectorFile } from '../../src/config/source-config.ts';
import { sinkConfigSchema } from '../../src/config/sink-config.ts';
import { eventColumnsOf, eventTableName } from '../../src/sink/event-input.ts';
import { decodeJsonEvent, fieldsFromJsonSchema, fieldsFromList } from '../../src/sink/event-json.ts';
import { dayOf, eventTimeMicros, parseIsoMicros } from '../../src/sink/event-time.ts';

const base = {
  topics: 'notifications',
  'kafka.bootstrap.servers': '127.0.0.1:9092',
  'schema.registry.url': 'http://127.0.0.1:8081/apis/ccompat/v7',
};
const parse = (config: Record<string, unknown>) =>
  parseConnectorFile({ name: 'lake', config: { ...base, ...config } }, sinkConfigSchema, 'lake.json');
const events = {
  'input.format': 'events',
  'value.converter': 'json',
  'value.converter.fields': 'id:long,t:timestamp',
  'timestamp.field': 't',
};

describe('input.format in the sink connector file', () => {
  it('defaults to tide and accepts events with its keys (Kafka Connect converter class names too)', () => {
    expect(parse({}).config['input.format']).toBe('tide');
    const c = parse({ ...events, 'value.converter': 'org.apache.kafka.connect.json.JsonConverter', 'pk.fields': 'id' }).config;
    expect([c['input.format'], c['value.converter'], c['value.converter.fields'], c['pk.fields']]).toEqual([
      'events',
      'json',
      ['id:long', 't:timestamp'],
      ['id'],
    ]);
  });

  it('refuses what does not fit, naming the key', () => {
    const error = (config: Record<string, unknown>) => {
      try {
        parse(config);
      } catch (err) {
        return (err as Error).message;
      }
      return 'accepted';
    };
    expect(error({ 'input.format': 'debezium' })).toBe('accepted');
    expect(error({ 'input.format': 'debezium', 'timestamp.field': 't' })).toMatch(
      /timestamp\.field: applies only with "input\.format": "events" \(it is "debezium"\)/,
    );
    expect(error({ 'timestamp.field': 't' })).toMatch(/timestamp\.field: applies only with "input\.format": "events"/);
    expect(error({ ...events, 'timestamp.field': undefined })).toMatch(/timestamp\.field: input\.format events needs the event-time field/);
    expect(error({ ...events, 'value.converter.fields': undefined })).toMatch(/value\.converter\.fields: JSON events need their fields/);
    expect(error({ ...events, 'value.converter': 'avro' })).toMatch(/value\.converter\.fields: applies only to JSON values/);
    expect(error({ ...events, 'silver.history.tables': 'x' })).toMatch(/silver\.history\.tables: event topics have no history/);
    expect(error({ ...events, 'bronze.enabled': false })).toMatch(/bronze\.enabled: with bronze off and no pk\.fields/);
  });
});

describe('event times', () => {
  it('reads ISO-8601 with offsets and fractions to the microsecond, and nothing else', () => {
    expect(parseIsoMicros('1970-01-01T00:00:01.000002Z')).toBe(1_000_002n);
    expect(parseIsoMicros('1970-01-01T01:00:00+01:00')).toBe(0n);
    expect(parseIsoMicros('1970-01-01 00:00:00')).toBe(0n);
    expect(parseIsoMicros('1970-01-02')).toBe(86_400_000_000n);
    for (const bad of ['yesterday', '2026-02-30T00:00:00Z', '2026-12-06T24:00:00Z', '2026-12-06T10:00:00+25:00', '1796592673028'])
      expect(parseIsoMicros(bad)).toBeUndefined();
  });

  it('takes longs as epoch milliseconds and puts negative times on the right day', () => {
    expect(eventTimeMicros({ kind: 'long' }, 1500n)).toBe(1_500_000n);
    expect(eventTimeMicros({ kind: 'double' }, 1.5)).toBeUndefined();
    expect(dayOf(-1n)).toBe(-1);
    expect(dayOf(0n)).toBe(0);
    expect(dayOf(86_400_000_000n - 1n)).toBe(0);
  });
});

describe('JSON events', () => {
  const fields = fieldsFromList(['id:long', 'name:string?', 'meta:json?', 't:timestamp', 'd:date?']);

  it('decode to lake values, with one reason per malformed value', () => {
    expect(decodeJsonEvent(Buffer.from('{"id":1,"meta":{"a":[1]},"t":1000,"d":"2026-12-06","extra":true}'), fields)).toEqual({
      id: 1n,
      name: null,
      meta: '{"a":[1]}',
      t: 1_000_000n,
      d: 20793,
    });
    const reason = (text: string) => {
      try {
        decodeJsonEvent(Buffer.from(text), fields);
        return 'decoded';
      } catch (err) {
        return (err as Error).message;
      }
    };
    expect([reason('nope'), reason('[1]'), reason('{"t":0}'), reason('{"id":1.5,"t":0}'), reason('{"id":1,"t":"soon"}')])
      .toMatchInlineSnapshot(`
      [
        "the value is not JSON: Unexpected token 'o', "nope" is not valid JSON",
        "the value is JSON but not an object",
        "the required field "id" is missing",
        "the field "id" is 1.5, not a long",
        "the field "t" is "soon", not a time (ISO-8601, or milliseconds since the epoch)",
      ]
    `);
  });

  it('take their fields from a JSON Schema file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tide-json-schema-'));
    const path = join(dir, 'notification.schema.json');
    writeFileSync(
      path,
      JSON.stringify({
        type: 'object',
        properties: {
          customer_id: { type: 'integer' },
          payload: { type: ['object', 'null'] },
          event_datetime: { type: 'string', format: 'date-time' },
        },
        required: ['customer_id', 'event_datetime'],
      }),
    );
    expect(fieldsFromJsonSchema(path).map((f) => [f.name, f.spelled, f.required])).toEqual([
      ['customer_id', 'long', true],
      ['payload', 'json', false],
      ['event_datetime', 'timestamp', true],
    ]);
    expect(() => fieldsFromList(['id:uuid'])).toThrow(/"id:uuid" is not name:type/);
  });
});

describe('Avro events', () => {
  it('map a record to columns, timestamp-millis to a timestamp', () => {
    const cols = eventColumnsOf({
      type: 'record',
      name: 'N',
      fields: [
        { name: 'id', type: 'long' },
        { name: 't', type: { type: 'long', logicalType: 'timestamp-millis' } },
      ],
    });
    expect(cols.map((c) => [c.name, c.type.kind])).toEqual([
      ['id', 'long'],
      ['t', 'timestamp'],
    ]);
    expect(cols[1]!.convert(2)).toBe(2000n);
    expect(eventTableName('Acme.Notifications-v2')).toBe('acme_notifications_v2');
  });
});

import { describe, expect, it } from 'vitest';
import { mapColumn, zonedTimestampString } from '../../src/source/type-mapping.ts';

describe("timestamptz.handling.mode=string: Debezium's ZonedTimestamp", () => {
  it('is ISO-8601 in UTC with Z, the fraction without trailing zeros', () => {
    expect(zonedTimestampString('2024-03-01 12:34:56.1234+01')).toBe('2024-03-01T11:34:56.1234Z');
    expect(zonedTimestampString('2024-03-01 12:34:56+00')).toBe('2024-03-01T12:34:56Z');
    expect(zonedTimestampString('2024-03-01 12:34:56.000001+00')).toBe('2024-03-01T12:34:56.000001Z');
    expect(zonedTimestampString('1969-12-31 23:59:59.999999+00')).toBe('1969-12-31T23:59:59.999999Z');
    expect(zonedTimestampString('1900-01-01 00:00:00.5-05:30')).toBe('1900-01-01T05:30:00.5Z');
  });

  it('maps timestamptz to a string with connect.name io.debezium.time.ZonedTimestamp; micros stays the default', () => {
    const col = { name: 'at', typeOid: 1184, typeMod: -1, typeName: 'timestamptz', typeCategory: 'D', notNull: true, hasDefault: false };
    const s = mapColumn(col, { decimalHandlingMode: 'precise', timestamptzHandlingMode: 'string' }, () => undefined);
    expect(s.avroType).toEqual({ type: 'string', 'connect.version': 1, 'connect.name': 'io.debezium.time.ZonedTimestamp' });
    expect(s.convert('2024-03-01 12:34:56.25+00')).toBe('2024-03-01T12:34:56.25Z');
    expect(mapColumn(col, { decimalHandlingMode: 'precise' }, () => undefined).avroType).toEqual({
      type: 'long',
      logicalType: 'timestamp-micros',
    });
  });
});

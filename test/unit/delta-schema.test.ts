import { describe, expect, it } from 'vitest';
import { deltaTypeName, fromSchemaString, SchemaStringError, toSchemaString } from '../../src/lake/delta/schema-string.ts';
import type { LakeSchema } from '../../src/lake/lake-schema.ts';

const everyType: LakeSchema = {
  columns: [
    { name: 's', type: { kind: 'string' }, nullable: false, metadata: { 'tide.masked': 'hash', comment: 'a "quoted" note' } },
    { name: 'l', type: { kind: 'long' }, nullable: false },
    { name: 'i', type: { kind: 'integer' }, nullable: true },
    { name: 'sh', type: { kind: 'short' }, nullable: true },
    { name: 'd', type: { kind: 'double' }, nullable: true },
    { name: 'f', type: { kind: 'float' }, nullable: true },
    { name: 'b', type: { kind: 'boolean' }, nullable: true },
    { name: 'bin', type: { kind: 'binary' }, nullable: true },
    { name: 'dt', type: { kind: 'date' }, nullable: true },
    { name: 'ts', type: { kind: 'timestamp' }, nullable: true },
    { name: 'dec', type: { kind: 'decimal', precision: 38, scale: 9 }, nullable: true },
    { name: 'dec0', type: { kind: 'decimal', precision: 1, scale: 0 }, nullable: true },
    { name: 'tags', type: { kind: 'array', element: { kind: 'string' } }, nullable: true },
    {
      name: 'nested',
      type: { kind: 'array', element: { kind: 'array', element: { kind: 'decimal', precision: 10, scale: 2 } } },
      nullable: true,
    },
  ],
};

describe('LakeSchema ↔ Delta schemaString', () => {
  it('round-trips every supported type, nullability and column metadata', () => {
    expect(fromSchemaString(toSchemaString(everyType))).toEqual(everyType);
  });

  it('writes Spark JSON: primitive names, decimal(p,s), arrays with elementType and containsNull, metadata always present', () => {
    const json = JSON.parse(
      toSchemaString({
        columns: [
          { name: 'amount', type: { kind: 'decimal', precision: 12, scale: 2 }, nullable: false },
          { name: 'tags', type: { kind: 'array', element: { kind: 'long' } }, nullable: true, metadata: { k: 'v' } },
        ],
      }),
    );
    expect(json).toEqual({
      type: 'struct',
      fields: [
        { name: 'amount', type: 'decimal(12,2)', nullable: false, metadata: {} },
        { name: 'tags', type: { type: 'array', elementType: 'long', containsNull: true }, nullable: true, metadata: { k: 'v' } },
      ],
    });
  });

  it('reads schemas other engines write: spaced decimals, containsNull false, non-string metadata', () => {
    const spark = JSON.stringify({
      type: 'struct',
      fields: [
        { name: 'a', type: 'decimal(10, 4)', nullable: true, metadata: { 'delta.identity.start': 1, note: 'x' } },
        { name: 'c', type: { type: 'array', elementType: 'integer', containsNull: false }, nullable: true, metadata: {} },
        { name: 'd', type: 'decimal', nullable: false, metadata: {} },
      ],
    });
    expect(fromSchemaString(spark)).toEqual({
      columns: [
        {
          name: 'a',
          type: { kind: 'decimal', precision: 10, scale: 4 },
          nullable: true,
          metadata: { 'delta.identity.start': '1', note: 'x' },
        },
        { name: 'c', type: { kind: 'array', element: { kind: 'integer' } }, nullable: true },
        { name: 'd', type: { kind: 'decimal', precision: 10, scale: 0 }, nullable: false },
      ],
    });
  });

  it('names the column and type it cannot represent', () => {
    const of = (type: unknown) => JSON.stringify({ type: 'struct', fields: [{ name: 'x', type, nullable: true, metadata: {} }] });
    expect(() => fromSchemaString(of('byte'))).toThrow(/column x has type byte, which Tide does not support/);
    expect(() => fromSchemaString(of('timestamp_ntz'))).toThrow(/column x has type timestamp_ntz/);
    expect(() => fromSchemaString(of({ type: 'struct', fields: [] }))).toThrow(/column x has type struct/);
    expect(() => fromSchemaString(of({ type: 'map', keyType: 'string', valueType: 'string', valueContainsNull: true }))).toThrow(
      /column x has type map/,
    );
    expect(() => fromSchemaString(of({ type: 'array', elementType: 'variant', containsNull: true }))).toThrow(
      /column x\.element has type variant/,
    );
    expect(() => fromSchemaString('{"type":"struct"')).toThrow(SchemaStringError);
    expect(() => fromSchemaString('{"type":"array","fields":[]}')).toThrow(/must be a JSON object \{"type":"struct"/);
    expect(() => fromSchemaString('{"type":"struct","fields":[{"name":"n","type":"long"}]}')).toThrow(/column n has no boolean "nullable"/);
  });

  it('refuses column names that differ only in case, and invalid decimals', () => {
    expect(() =>
      toSchemaString({
        columns: [
          { name: 'Id', type: { kind: 'long' }, nullable: false },
          { name: 'id', type: { kind: 'long' }, nullable: false },
        ],
      }),
    ).toThrow('columns Id and id differ only in case');
    expect(() => toSchemaString({ columns: [{ name: 'x', type: { kind: 'decimal', precision: 39, scale: 0 }, nullable: true }] })).toThrow(
      'decimal(39,0) is not a valid Delta decimal',
    );
    expect(() => toSchemaString({ columns: [{ name: 'x', type: { kind: 'decimal', precision: 5, scale: 6 }, nullable: true }] })).toThrow(
      SchemaStringError,
    );
  });

  it('prints Delta type names for messages', () => {
    expect(deltaTypeName({ kind: 'array', element: { kind: 'decimal', precision: 5, scale: 1 } })).toBe('array<decimal(5,1)>');
    expect(deltaTypeName({ kind: 'timestamp' })).toBe('timestamp');
  });
});

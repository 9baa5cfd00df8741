import { describe, expect, it } from 'vitest';
import type { SchemaRegistry } from '../../src/events/schema-registry.ts';
import { TableCodec, type SourceInfo } from '../../src/events/envelope.ts';
import type { CatalogColumn, CatalogTable } from '../../src/source/catalog.ts';
import { ChangeEventDecoder, NEEDS_FETCH, UndecodableMessageError } from '../../src/sink/change-event.ts';

/**
 * decodeCached (the sink's decode without a promise, and its decode ahead of the flush) must give exactly what
 * decode gives: the same event, or the same dead-letter reason, for every message once its schemas are known.
 */
const column = (name: string, typeName: string, notNull = false): CatalogColumn => ({
  name,
  typeOid: 0,
  typeMod: -1,
  typeName,
  typeCategory: typeName === 'text' ? 'S' : 'N',
  notNull,
  hasDefault: false,
  defaultExpr: null,
  toastable: typeName === 'text',
});
const TABLE: CatalogTable = {
  oid: 1,
  schema: 'public',
  name: 'orders',
  qualified: 'public.orders',
  replicaIdentity: 'd',
  columns: [column('id', 'int8', true), column('qty', 'int4'), column('note', 'text')],
  keyColumns: ['id'],
};
const codec = new TableCodec(TABLE, 'shop', { decimalHandlingMode: 'precise' }, () => undefined);
const KEY_ID = 11;
const VALUE_ID = 12;
codec.keySchemaId = KEY_ID;
codec.valueSchemaId = VALUE_ID;
const source = (i: number): SourceInfo => ({
  name: 'shop',
  db: 'orders',
  schema: 'public',
  table: 'orders',
  tsMs: 1795537739289 + i,
  snapshot: 'false',
  txId: 700 + i,
  lsn: 1000n + BigInt(i),
  commitLsn: 5000n + BigInt(i),
  eventIndex: i,
});

function registry(): { registry: SchemaRegistry; fetches: number[] } {
  const fetches: number[] = [];
  const schemas = new Map<number, object>([
    [KEY_ID, codec.keySchema],
    [VALUE_ID, codec.valueSchema],
  ]);
  return {
    fetches,
    registry: {
      schemaById: (id: number) => {
        fetches.push(id);
        const s = schemas.get(id);
        return s ? Promise.resolve(s) : Promise.reject(new Error(`no schema ${id}`));
      },
    } as unknown as SchemaRegistry,
  };
}

const key = (id: string) => codec.encodeKey({ id });
const value = (i: number, op: 'c' | 'u' | 'd', row: Record<string, string | null | undefined>) =>
  codec.encodeValue(op, op === 'c' ? null : row, op === 'd' ? null : row, source(i), i + 1, i + 1);

const messages: [string, Buffer | null, Buffer | null][] = [
  ['insert', key('1'), value(0, 'c', { id: '1', qty: '2', note: 'a' })],
  ['update with unchanged TOAST', key('1'), value(1, 'u', { id: '1', qty: '3', note: undefined })],
  ['delete', key('1'), value(2, 'd', { id: '1', qty: '3', note: null })],
  ['tombstone', key('1'), null],
  ['value not framed', key('1'), Buffer.from([1, 2, 3])],
  ['key not framed', Buffer.from([9]), value(3, 'c', { id: '2', qty: '1', note: 'b' })],
  ['body cut short', key('2'), value(4, 'c', { id: '2', qty: '1', note: 'b' }).subarray(0, 12)],
  ['key not framed and body cut short', Buffer.from([9]), value(5, 'c', { id: '3', qty: '1', note: 'c' }).subarray(0, 12)],
];

async function outcome(run: () => unknown): Promise<unknown> {
  try {
    return { event: await run() };
  } catch (err) {
    expect(err).toBeInstanceOf(UndecodableMessageError);
    return { undecodable: (err as Error).message };
  }
}

describe('ChangeEventDecoder.decodeCached', () => {
  it('asks for a fetch until the schemas are known, and fetches nothing itself', () => {
    const { registry: r, fetches } = registry();
    const d = new ChangeEventDecoder(r);
    expect(d.decodeCached('t', 0, '0', messages[0]![1], messages[0]![2])).toBe(NEEDS_FETCH);
    expect(fetches).toEqual([]);
  });

  it('gives what decode gives, event or dead-letter reason, for every message once the schemas are known', async () => {
    const { registry: r } = registry();
    const d = new ChangeEventDecoder(r);
    await d.decode('t', 0, '0', messages[0]![1], messages[0]![2]);
    for (const [i, [label, k, v]] of messages.entries()) {
      const cached = await outcome(() => d.decodeCached('t', 0, String(i), k, v));
      expect(cached, label).not.toEqual({ event: NEEDS_FETCH });
      expect(cached, label).toEqual(await outcome(() => d.decode('t', 0, String(i), k, v)));
      expect('undecodable' in (cached as object), label).toBe(/not framed|cut short/.test(label));
    }
  });
});

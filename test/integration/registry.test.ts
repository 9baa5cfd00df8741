import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import avro from 'avsc';
import { SchemaRegistry, SchemaType } from '@kafkajs/confluent-schema-registry';

/**
 * Wire compatibility of the stack's schema registry (Apicurio's Confluent API,
 * `/apis/ccompat/v7`) with the npm client Tide uses. Needs the stack up.
 */
const URL = process.env.SCHEMA_REGISTRY_URL ?? 'http://127.0.0.1:58081/apis/ccompat/v7';
const RUN = `${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
const subjects: string[] = [];
const subject = (name: string) => {
  const s = `tide-it-${RUN}-${name}-value`;
  subjects.push(s);
  return s;
};

const V1 = {
  type: 'record' as const,
  name: 'Order',
  namespace: 'tide.it',
  fields: [
    { name: 'id', type: 'long' },
    { name: 'quantity', type: 'int' },
    { name: 'customer', type: ['null', 'string'], default: null },
  ],
};
const withFields = (fields: object[]) => ({ ...V1, fields });
/** BACKWARD-compatible: a new field with a default. */
const V2_ADD_WITH_DEFAULT = withFields([...V1.fields, { name: 'currency', type: 'string', default: 'GBP' }]);
/** Incompatible: a new required field (no default) can't be read from V1 data. */
const BAD_ADD_REQUIRED = withFields([...V1.fields, { name: 'country', type: 'string' }]);
/** Incompatible: int -> string is not an Avro promotion. */
const BAD_INT_TO_STRING = withFields(V1.fields.map((f) => (f.name === 'quantity' ? { ...f, type: 'string' } : f)));

async function call(method: string, path: string, body?: unknown): Promise<{ status: number; json: unknown }> {
  const res = await fetch(`${URL}${path}`, {
    method,
    headers: { 'Content-Type': 'application/vnd.schemaregistry.v1+json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : undefined };
}
const enc = (subjectName: string) => encodeURIComponent(subjectName);
const schemaBody = (schema: object) => ({ schema: JSON.stringify(schema) });
const isCompatible = (s: string, schema: object) => call('POST', `/compatibility/subjects/${enc(s)}/versions/latest`, schemaBody(schema));

afterAll(async () => {
  // Best effort: the registry keeps its data across restarts, so don't leave test subjects behind.
  for (const s of subjects) await call('DELETE', `/subjects/${enc(s)}`).catch(() => undefined);
});

describe('schema registry wire compatibility (@kafkajs/confluent-schema-registry)', () => {
  const registry = new SchemaRegistry({ host: URL });
  const orders = subject('orders');
  let id1 = 0;

  it('registers an Avro record schema under a subject and gets a stable, global id', async () => {
    const { id } = await registry.register({ type: SchemaType.AVRO, schema: JSON.stringify(V1) }, { subject: orders });
    expect(Number.isInteger(id) && id > 0).toBe(true);
    id1 = id;

    // Registering the same schema again is idempotent: same id, no new version.
    expect((await registry.register({ type: SchemaType.AVRO, schema: JSON.stringify(V1) }, { subject: orders })).id).toBe(id1);
    expect(await call('GET', `/subjects/${enc(orders)}/versions`)).toEqual({ status: 200, json: [1] });
    expect(await registry.getLatestSchemaId(orders)).toBe(id1);

    // As in Confluent, an id names a schema, not a subject version: same schema elsewhere, same id.
    const other = subject('orders-copy');
    expect((await call('POST', `/subjects/${enc(other)}/versions`, schemaBody(V1))).json).toEqual({ id: id1 });

    // And the id resolves to the schema we sent.
    const byId = await call('GET', `/schemas/ids/${id1}`);
    expect(byId.status).toBe(200);
    expect(JSON.parse((byId.json as { schema: string }).schema)).toEqual(V1);
  });

  it('encodes in the Confluent wire format (magic 0, 4-byte big-endian id) and decodes back', async () => {
    const record = { id: 1_234_567_890_123, quantity: 3, customer: 'c-17' };
    const buf = await registry.encode(id1, record);
    expect(buf[0]).toBe(0);
    expect(buf.readUInt32BE(1)).toBe(id1);
    // The rest is plain Avro binary of the record under V1.
    expect(buf.subarray(5).equals(avro.Type.forSchema(V1).toBuffer(record))).toBe(true);

    // A fresh client has no cache, so decoding fetches the writer schema by id from the registry.
    const fresh = new SchemaRegistry({ host: URL });
    expect(await fresh.decode(buf)).toEqual(record);
    expect(await fresh.decode(await registry.encode(id1, { ...record, customer: null }))).toEqual({
      ...record,
      customer: null,
    });
  });

  it('enforces BACKWARD compatibility set with PUT /config/<subject>', async () => {
    // (Apicurio answers {"compatibilityLevel": ...} here where Confluent answers {"compatibility": ...}.)
    expect((await call('PUT', `/config/${enc(orders)}`, { compatibility: 'BACKWARD' })).status).toBe(200);
    expect((await call('GET', `/config/${enc(orders)}`)).json).toEqual({ compatibilityLevel: 'BACKWARD' });

    // The check Tide runs before registering.
    expect(await isCompatible(orders, BAD_ADD_REQUIRED)).toEqual({ status: 200, json: { is_compatible: false } });
    expect(await isCompatible(orders, BAD_INT_TO_STRING)).toEqual({ status: 200, json: { is_compatible: false } });
    expect(await isCompatible(orders, V2_ADD_WITH_DEFAULT)).toEqual({ status: 200, json: { is_compatible: true } });

    // Registering an incompatible schema is refused (409, as Confluent does), through the client and raw.
    for (const bad of [BAD_ADD_REQUIRED, BAD_INT_TO_STRING]) {
      await expect(registry.register({ type: SchemaType.AVRO, schema: JSON.stringify(bad) }, { subject: orders })).rejects.toMatchObject({
        status: 409,
      });
      expect((await call('POST', `/subjects/${enc(orders)}/versions`, schemaBody(bad))).status).toBe(409);
    }
    expect((await call('GET', `/subjects/${enc(orders)}/versions`)).json).toEqual([1]);

    // A compatible change becomes version 2 with a new id; V1 data still decodes, V2 data too.
    const { id: id2 } = await registry.register(
      { type: SchemaType.AVRO, schema: JSON.stringify(V2_ADD_WITH_DEFAULT) },
      { subject: orders },
    );
    expect(id2).not.toBe(id1);
    expect((await call('GET', `/subjects/${enc(orders)}/versions`)).json).toEqual([1, 2]);
    expect(await registry.getLatestSchemaId(orders)).toBe(id2);
    const v2 = await registry.encode(id2, { id: 1, quantity: 2, customer: null, currency: 'EUR' });
    expect(v2.readUInt32BE(1)).toBe(id2);
    expect(await new SchemaRegistry({ host: URL }).decode(v2)).toEqual({
      id: 1,
      quantity: 2,
      customer: null,
      currency: 'EUR',
    });
  });

  it('checks subjects without a level of their own BACKWARD, like Confluent’s default (stack setting)', async () => {
    const fresh = subject('no-config');
    expect((await call('POST', `/subjects/${enc(fresh)}/versions`, schemaBody(V1))).status).toBe(200);
    expect(await isCompatible(fresh, BAD_INT_TO_STRING)).toEqual({ status: 200, json: { is_compatible: false } });
    expect(await isCompatible(fresh, V2_ADD_WITH_DEFAULT)).toEqual({ status: 200, json: { is_compatible: true } });
    expect((await call('POST', `/subjects/${enc(fresh)}/versions`, schemaBody(BAD_INT_TO_STRING))).status).toBe(409);
    expect((await call('POST', `/subjects/${enc(fresh)}/versions`, schemaBody(V2_ADD_WITH_DEFAULT))).status).toBe(200);
  });
});

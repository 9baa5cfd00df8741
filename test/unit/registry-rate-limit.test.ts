import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConnectionError } from '../../src/errors.ts';
import { HttpSchemaRegistry, SchemaRegistryError } from '../../src/events/schema-registry.ts';

/**
 * How the registry client classifies answers the stack's Apicurio never gives: a 429 (Apicurio has no rate
 * limiting). A plain HTTP server answers it; the classification is pure logic over status and body.
 */
describe('schema registry answers that must not become dead letters', () => {
  let server: Server;
  let url: string;
  beforeAll(async () => {
    server = createServer((req, res) => {
      if (req.url?.startsWith('/schemas/ids/1')) {
        res.writeHead(429, { 'content-type': 'application/json', 'retry-after': '1' });
        res.end(JSON.stringify({ error_code: 42901, message: 'Rate limit exceeded' }));
        return;
      }
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error_code: 40403, message: 'Schema not found' }));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it('429 is a retriable ConnectionError (retried for errors.retry.timeout, then the sink stops)', async () => {
    const err = await new HttpSchemaRegistry(url).schemaById(1).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectionError);
    expect((err as ConnectionError).retriable).toBe(true);
    expect((err as ConnectionError).code).toBe('rate-limited');
    expect((err as Error).message.replace(url, '<url>')).toMatchInlineSnapshot(
      `"schema registry (<url>): GET /schemas/ids/1 answered HTTP 429 Too Many Requests: the registry is rate-limiting this client. Wait, or raise the registry's request quota (Confluent Cloud: the Schema Registry cluster's limits); Tide retries for errors.retry.timeout"`,
    );
  });

  it('404 with error code 40403 is a non-retriable SchemaRegistryError (the sink stops with SchemaUnavailableError)', async () => {
    const err = await new HttpSchemaRegistry(url).schemaById(7).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SchemaRegistryError);
    expect((err as SchemaRegistryError).retriable).toBe(false);
  });
});

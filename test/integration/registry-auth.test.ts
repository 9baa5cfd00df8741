import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConnectionError } from '../../src/errors.ts';
import { confluentFrame, HttpSchemaRegistry, registryFromConfig } from '../../src/events/schema-registry.ts';
import { stackCertPaths } from '../../src/stack/certs.ts';
import { stackContext } from '../../src/stack/context.ts';
import { registryRunnerJar, registryService } from '../../src/stack/registry.ts';
import { kafka } from '../support/kafka.ts';
import { sinkFile, startSink } from '../support/lake.ts';

/**
 * Registry authentication, two ways:
 *  - a second, real Apicurio Registry 3 (from the stack's cached install) with HTTP basic auth
 *    switched on through Quarkus' embedded users, on http and on https with the stack CA's localhost
 *    certificate: basic auth from USER_INFO and from the URL, 401s, the CA file;
 *  - Apicurio's bearer tokens and roles need an OIDC server (Keycloak), which cannot run here, so a
 *    small real HTTP server in front of the stack's Apicurio plays an authenticating registry such as
 *    Confluent Cloud's for those: it checks the Authorization header, answers 401/403 when it does
 *    not match, and otherwise passes the request on.
 */
const REGISTRY = process.env.SCHEMA_REGISTRY_URL!;
const KEY = 'tide-key';
const SECRET = `RegSecret-${randomBytes(6).toString('hex')}`;
const TOKEN = `token-${randomBytes(8).toString('hex')}`;
const certs = stackCertPaths(stackContext());

interface Gate {
  /** The Authorization header the gate accepts. */
  accept: string[];
  /** Authorization headers that are valid but not allowed (403). */
  forbid: string[];
  seen: (string | undefined)[];
}

function gateHandler(gate: Gate) {
  return (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const auth = req.headers.authorization;
      gate.seen.push(auth);
      const answer = (status: number, body: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(body));
      };
      if (auth && gate.forbid.includes(auth)) return answer(403, { error_code: 40301, message: 'User is denied operation' });
      if (!auth || !gate.accept.includes(auth)) return answer(401, { error_code: 401, message: 'Unauthorized' });
      fetch(`${new URL(REGISTRY).origin}${req.url}`, {
        method: req.method,
        headers: { 'content-type': req.headers['content-type'] ?? 'application/json' },
        body: chunks.length ? Buffer.concat(chunks) : undefined,
      }).then(
        async (r) => {
          res.writeHead(r.status, { 'content-type': r.headers.get('content-type') ?? 'application/json' });
          res.end(Buffer.from(await r.arrayBuffer()));
        },
        (err: unknown) => answer(502, { message: String(err) }),
      );
    });
  };
}

async function listen(server: Server): Promise<number> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as AddressInfo).port;
}

async function freePort(): Promise<number> {
  const server = createNetServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  await new Promise((r) => server.close(r));
  return port;
}

const basic = (userInfo: string) => `Basic ${Buffer.from(userInfo).toString('base64')}`;
const subject = `regauth-${Date.now().toString(36)}-value`;
const schema = { type: 'record', name: 'RegAuth', namespace: 'tide.test', fields: [{ name: 'id', type: 'long' }] };

describe('schema registry authentication (a real HTTP server in front of Apicurio)', () => {
  const gate: Gate = { accept: [basic(`${KEY}:${SECRET}`), `Bearer ${TOKEN}`], forbid: [basic('reader:only')], seen: [] };
  const http = createHttpServer(gateHandler(gate));
  const https = createHttpsServer({ cert: readFileSync(certs.serverCert), key: readFileSync(certs.serverKey) }, gateHandler(gate));
  let httpUrl: string;
  let httpsUrl: string;

  beforeAll(async () => {
    httpUrl = `http://127.0.0.1:${await listen(http)}/apis/ccompat/v7`;
    // The stack's server certificate names localhost.
    httpsUrl = `https://localhost:${await listen(https)}/apis/ccompat/v7`;
  });

  afterAll(async () => {
    await new Promise((r) => http.close(r));
    await new Promise((r) => https.close(r));
  });

  it('basic auth from schema.registry.basic.auth.user.info (USER_INFO): registers and reads, sending key:secret', async () => {
    gate.seen.length = 0;
    const registry = registryFromConfig({
      'schema.registry.url': httpUrl,
      'schema.registry.basic.auth.credentials.source': 'USER_INFO',
      'schema.registry.basic.auth.user.info': `${KEY}:${SECRET}`,
    });
    const id = await registry.register(subject, schema);
    expect(await registry.schemaById(id)).toEqual(schema);
    expect(await registry.latest(subject)).toEqual(schema);
    expect(gate.seen.length).toBeGreaterThanOrEqual(3);
    expect(new Set(gate.seen)).toEqual(new Set([basic(`${KEY}:${SECRET}`)]));
  });

  it('basic auth from the URL (credentials source URL), and a bearer token', async () => {
    gate.seen.length = 0;
    const inUrl = httpUrl.replace('http://', `http://${KEY}:${encodeURIComponent(SECRET)}@`);
    const fromUrl = registryFromConfig({ 'schema.registry.url': inUrl, 'schema.registry.basic.auth.credentials.source': 'URL' });
    expect(await fromUrl.latest(subject)).toEqual(schema);
    const bearer = registryFromConfig({ 'schema.registry.url': httpUrl, 'schema.registry.bearer.auth.token': TOKEN });
    expect(await bearer.latest(subject)).toEqual(schema);
    expect(gate.seen).toEqual([basic(`${KEY}:${SECRET}`), `Bearer ${TOKEN}`]);
  });

  it('https with schema.registry.ssl.ca.location trusting the stack CA; without it, a TLS ConnectionError', async () => {
    const trusted = registryFromConfig({
      'schema.registry.url': httpsUrl,
      'schema.registry.basic.auth.user.info': `${KEY}:${SECRET}`,
      'schema.registry.ssl.ca.location': certs.ca,
    });
    expect(await trusted.latest(subject)).toEqual(schema);
    const untrusted = registryFromConfig({ 'schema.registry.url': httpsUrl, 'schema.registry.basic.auth.user.info': `${KEY}:${SECRET}` });
    const err = (await untrusted.latest(subject).catch((e: unknown) => e)) as ConnectionError;
    expect(err).toBeInstanceOf(ConnectionError);
    expect(err).toMatchObject({ kind: 'schema registry', code: 'tls', retriable: false });
    expect(err.message).toContain('schema.registry.ssl.ca.location');
  });

  it('a wrong secret (401) and missing credentials (401) are non-retriable ConnectionErrors that never show the secret', async () => {
    const wrong = `wrong-${randomBytes(6).toString('hex')}`;
    const bad = registryFromConfig({ 'schema.registry.url': httpUrl, 'schema.registry.basic.auth.user.info': `${KEY}:${wrong}` });
    const err = (await bad.schemaById(1).catch((e: unknown) => e)) as ConnectionError;
    expect(err).toBeInstanceOf(ConnectionError);
    expect(err).toMatchObject({ kind: 'schema registry', code: 'auth', retriable: false });
    expect(err.message.replace(httpUrl, '<url>')).toMatchInlineSnapshot(
      `"schema registry (<url>): the registry refused the basic-auth credentials (HTTP 401 Unauthorized). Set schema.registry.basic.auth.credentials.source to USER_INFO and schema.registry.basic.auth.user.info to key:secret (the registry API key and secret), or schema.registry.bearer.auth.token"`,
    );
    expect(err.message).not.toContain(wrong);
    const none = (await new HttpSchemaRegistry(httpUrl).latest(subject).catch((e: unknown) => e)) as ConnectionError;
    expect(none).toMatchObject({ kind: 'schema registry', code: 'auth' });
    expect(none.message.replace(httpUrl, '<url>')).toMatchInlineSnapshot(
      `"schema registry (<url>): the registry requires authentication (HTTP 401 Unauthorized) and none is configured. Set schema.registry.basic.auth.credentials.source to USER_INFO and schema.registry.basic.auth.user.info to key:secret (the registry API key and secret), or schema.registry.bearer.auth.token"`,
    );
  });

  it('credentials the registry knows but that may not read (403) stop with a ConnectionError', async () => {
    const reader = registryFromConfig({ 'schema.registry.url': httpUrl, 'schema.registry.basic.auth.user.info': 'reader:only' });
    const err = (await reader.register(subject, schema).catch((e: unknown) => e)) as ConnectionError;
    expect(err).toMatchObject({ kind: 'schema registry', code: 'forbidden', retriable: false });
    expect(err.message.replace(httpUrl, '<url>').replace(subject, '<subject>')).toMatchInlineSnapshot(
      `"schema registry (<url>): the credentials are not allowed to POST /subjects/<subject>/versions (HTTP 403 Forbidden). Grant the API key read access to the subjects (the source also needs write access to register schemas)"`,
    );
  });

  it('a 401 stops the sink: the run fails with the ConnectionError, and nothing goes to the dead-letter topic', async () => {
    const prefix = `t_regauth_${Date.now().toString(36)}`;
    const topic = `${prefix}.public.orders`;
    const name = `regauth-${Date.now().toString(36)}`;
    const k = kafka();
    const admin = k.admin();
    await admin.connect();
    const producer = k.producer();
    await producer.connect();
    const lake = mkdtempSync(join(tmpdir(), 'tide-regauth-lake-'));
    try {
      await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });
      const id = await new HttpSchemaRegistry(REGISTRY).register(subject, schema);
      // A framed message whose schema the sink must fetch through the gate, with a wrong secret.
      await producer.send({ topic, messages: [{ value: confluentFrame(id, Buffer.from([2])) }] });
      const file = sinkFile(name, prefix, lake, {
        topics: topic,
        'schema.registry.url': httpUrl,
        'schema.registry.basic.auth.credentials.source': 'USER_INFO',
        'schema.registry.basic.auth.user.info': `${KEY}:not-the-secret`,
      });
      const sink = startSink(file);
      const err = await sink.done.then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(ConnectionError);
      expect(err).toMatchObject({ kind: 'schema registry', code: 'auth' });
      expect(sink.worker.stats.deadLetters).toBe(0);
      const dlq = await admin.fetchTopicOffsets(`${name}.dlq`).catch(() => []);
      expect(dlq.map((p) => p.high)).not.toContain('1');
    } finally {
      await producer.disconnect();
      await admin.deleteTopics({ topics: [topic, `${name}.dlq`] }).catch(() => undefined);
      await admin.disconnect();
      rmSync(lake, { recursive: true, force: true });
    }
  });

  it('a registry URL without /apis/ccompat/v7 fails with a message that suggests the path (the real Apicurio)', async () => {
    const root = REGISTRY.replace(/\/apis\/ccompat\/v7\/?$/, '');
    const err = (await new HttpSchemaRegistry(root).register(subject, schema).catch((e: unknown) => e)) as ConnectionError;
    expect(err).toBeInstanceOf(ConnectionError);
    expect(err).toMatchObject({ kind: 'schema registry', code: 'not-a-registry', retriable: false });
    expect(err.message.replaceAll(root, '<root>').replace(subject, '<subject>')).toMatchInlineSnapshot(
      `"schema registry (<root>): POST /subjects/<subject>/versions answered HTTP 404 without a Schema Registry error code: this URL does not serve Confluent's Schema Registry API. Check schema.registry.url: for Apicurio Registry it ends in /apis/ccompat/v7 (e.g. <root>/apis/ccompat/v7); for Confluent's registry it is the registry's base URL"`,
    );
    // The right URL's own 404s (an unknown schema id) are the registry's answer, not a wrong path.
    await expect(new HttpSchemaRegistry(REGISTRY).schemaById(2_000_000_000)).rejects.toThrow(/no such schema/);
  });
});

describe('Apicurio Registry with HTTP basic auth (Quarkus embedded users), on http and https', () => {
  const ctx = stackContext();
  let java: ChildProcess | undefined;
  let httpUrl: string;
  let httpsUrl: string;
  const log: string[] = [];

  beforeAll(async () => {
    await registryService.install(ctx);
    const [httpPort, httpsPort] = [await freePort(), await freePort()];
    httpUrl = `http://127.0.0.1:${httpPort}/apis/ccompat/v7`;
    httpsUrl = `https://localhost:${httpsPort}/apis/ccompat/v7`;
    // In-memory storage (Apicurio's default); every path needs an authenticated user; one user, KEY / SECRET.
    const props = {
      'quarkus.http.host': '127.0.0.1',
      'quarkus.http.port': String(httpPort),
      'quarkus.http.ssl-port': String(httpsPort),
      'quarkus.http.ssl.certificate.files': certs.serverCert,
      'quarkus.http.ssl.certificate.key-files': certs.serverKey,
      'quarkus.oidc.tenant-enabled': 'false',
      'apicurio.events.ksink': '',
      'quarkus.http.auth.basic': 'true',
      'quarkus.security.users.embedded.enabled': 'true',
      'quarkus.security.users.embedded.plain-text': 'true',
      [`quarkus.security.users.embedded.users.${KEY}`]: SECRET,
      'quarkus.http.auth.permission.all.paths': '/*',
      'quarkus.http.auth.permission.all.policy': 'authenticated',
    };
    java = spawn(
      process.env.JAVA_HOME ? join(process.env.JAVA_HOME, 'bin', 'java') : 'java',
      ['-Xms64m', '-Xmx384m', '-XX:+UseSerialGC', ...Object.entries(props).map(([k, v]) => `-D${k}=${v}`), '-jar', registryRunnerJar(ctx)],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    java.stdout!.on('data', (d: Buffer) => log.push(d.toString()));
    java.stderr!.on('data', (d: Buffer) => log.push(d.toString()));
    const deadline = Date.now() + 170_000;
    for (;;) {
      const status = await fetch(`${httpUrl}/subjects`, { headers: { authorization: basic(`${KEY}:${SECRET}`) } }).then(
        (r) => r.status,
        () => 0,
      );
      if (status === 200) break;
      if (java.exitCode !== null || Date.now() > deadline)
        throw new Error(`the authenticated Apicurio did not start:\n${log.join('').slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 500));
    }
  }, 180_000);

  afterAll(async () => {
    java?.kill('SIGTERM');
    if (java && java.exitCode === null) await new Promise((r) => java!.once('exit', r));
  });

  it('USER_INFO basic auth registers and reads; the URL form reads; a request without credentials is refused (401)', async () => {
    const registry = registryFromConfig({
      'schema.registry.url': httpUrl,
      'schema.registry.basic.auth.credentials.source': 'USER_INFO',
      'schema.registry.basic.auth.user.info': `${KEY}:${SECRET}`,
    });
    const id = await registry.register(subject, schema);
    expect(await registry.schemaById(id)).toEqual(schema);
    const inUrl = httpUrl.replace('http://', `http://${KEY}:${encodeURIComponent(SECRET)}@`);
    expect(
      await registryFromConfig({ 'schema.registry.url': inUrl, 'schema.registry.basic.auth.credentials.source': 'URL' }).latest(subject),
    ).toEqual(schema);
    expect((await fetch(`${httpUrl}/subjects`)).status).toBe(401);
    const none = (await new HttpSchemaRegistry(httpUrl).latest(subject).catch((e: unknown) => e)) as ConnectionError;
    expect(none).toMatchObject({ kind: 'schema registry', code: 'auth', retriable: false });
  });

  it('a wrong secret is a non-retriable ConnectionError that does not show the secret', async () => {
    const wrong = `wrong-${randomBytes(6).toString('hex')}`;
    const bad = registryFromConfig({ 'schema.registry.url': httpUrl, 'schema.registry.basic.auth.user.info': `${KEY}:${wrong}` });
    const err = (await bad.latest(subject).catch((e: unknown) => e)) as ConnectionError;
    expect(err).toMatchObject({ kind: 'schema registry', code: 'auth', retriable: false });
    expect(err.message).toContain('the registry refused the basic-auth credentials (HTTP 401 Unauthorized)');
    expect(err.message).not.toContain(wrong);
  });

  it('https: trusted through schema.registry.ssl.ca.location; without it, a TLS ConnectionError', async () => {
    const trusted = registryFromConfig({
      'schema.registry.url': httpsUrl,
      'schema.registry.basic.auth.user.info': `${KEY}:${SECRET}`,
      'schema.registry.ssl.ca.location': certs.ca,
    });
    expect(await trusted.latest(subject)).toEqual(schema);
    const untrusted = registryFromConfig({ 'schema.registry.url': httpsUrl, 'schema.registry.basic.auth.user.info': `${KEY}:${SECRET}` });
    expect(await untrusted.latest(subject).catch((e: unknown) => e)).toMatchObject({ kind: 'schema registry', code: 'tls' });
  });
});

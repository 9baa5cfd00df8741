import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KafkaSecurityConfig } from '../../src/config/connection-keys.ts';
import { ConnectionError } from '../../src/errors.ts';
import { parseJaasConfig } from '../../src/events/jaas-config.ts';
import { kafkaConnection, type KafkaConnectionConfig } from '../../src/events/kafka-connection.ts';
import { explainKafkaError } from '../../src/events/kafka-errors.ts';
import { ensureStackCerts, type StackCerts } from '../../src/stack/certs.ts';

const PLAIN_MODULE = 'org.apache.kafka.common.security.plain.PlainLoginModule';
const SCRAM_MODULE = 'org.apache.kafka.common.security.scram.ScramLoginModule';

describe('JAAS config parser', () => {
  it('reads what Event Hubs hands out: $ConnectionString and a password full of ; and =', () => {
    const password = 'Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=abc+def/ghi=';
    expect(parseJaasConfig(`${PLAIN_MODULE} required username="$ConnectionString" password="${password}";`)).toEqual({
      module: PLAIN_MODULE,
      family: 'PLAIN',
      username: '$ConnectionString',
      password,
    });
  });

  it("reads Confluent Cloud's single quotes, SCRAM, bare words, escapes and spread-out whitespace", () => {
    expect(parseJaasConfig(`${PLAIN_MODULE} required username='ABCKEY' password='s3cr/et+';`)).toMatchObject({
      username: 'ABCKEY',
      password: 's3cr/et+',
    });
    expect(parseJaasConfig(`  ${SCRAM_MODULE}\n  required\n  username=tide\n  password="a \\"quoted\\" one" ;  `)).toEqual({
      module: SCRAM_MODULE,
      family: 'SCRAM',
      username: 'tide',
      password: 'a "quoted" one',
    });
  });

  it('says what is wrong without quoting a value', () => {
    const bad = (text: string) => {
      try {
        parseJaasConfig(text);
      } catch (err) {
        expect((err as Error).message).not.toContain('hunter22');
        return (err as Error).message;
      }
      throw new Error('parsed');
    };
    expect(bad(`${PLAIN_MODULE} required username="u" password="hunter22"`)).toMatchInlineSnapshot(`"must end with ";""`);
    expect(bad(`${PLAIN_MODULE} required username="u" password="hunter22;`)).toMatchInlineSnapshot(
      `"a value opened with " at character 88 is never closed"`,
    );
    expect(bad(`org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required password="hunter22";`)).toMatchInlineSnapshot(
      `"names the login module org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule, which Tide does not support: use org.apache.kafka.common.security.plain.PlainLoginModule or org.apache.kafka.common.security.scram.ScramLoginModule"`,
    );
    expect(bad(`${PLAIN_MODULE} username="u" password="hunter22";`)).toMatchInlineSnapshot(
      `"needs a control flag after the login module (usually "required")"`,
    );
    expect(bad(`${PLAIN_MODULE} required password="hunter22";`)).toMatchInlineSnapshot(`"has no username="…" option"`);
    expect(bad(`${PLAIN_MODULE} required username="u";`)).toMatchInlineSnapshot(`"has no password="…" option"`);
    expect(bad(`${PLAIN_MODULE} required username="u" password="hunter22"; ${PLAIN_MODULE} required;`)).toMatch(/more than one/);
  });
});

describe('Kafka keys → client options', () => {
  let dir: string;
  let certs: StackCerts;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'tide-kafka-conn-'));
    certs = ensureStackCerts({ stackDir: dir }); // openssl and keytool: seconds on a loaded machine
  }, 120_000);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const base: KafkaSecurityConfig = { 'kafka.security.protocol': 'PLAINTEXT', 'kafka.ssl.endpoint.identification.algorithm': 'https' };
  const conn = (c: Partial<KafkaConnectionConfig>) =>
    kafkaConnection(
      { 'kafka.bootstrap.servers': ['broker-1.example.com:9093', 'broker-2.example.com:9093'], ...base, ...c },
      { source: 'c.json' },
    );

  it('PLAINTEXT: no TLS, no SASL, the same brokers for both clients', () => {
    const k = conn({});
    expect(k.kafkajs('tide-x', { retry: { retries: 1 } })).toEqual({
      clientId: 'tide-x',
      brokers: ['broker-1.example.com:9093', 'broker-2.example.com:9093'],
      connectionTimeout: 10_000,
      authenticationTimeout: 10_000,
      retry: { retries: 1 },
    });
    expect(k.platformatic()).toEqual({
      bootstrapBrokers: ['broker-1.example.com:9093', 'broker-2.example.com:9093'],
      connectTimeout: 10_000,
    });
  });

  it('SASL_SSL with SCRAM: kafkajs gets its lower-case mechanism, platformatic the Kafka name and SNI', () => {
    const k = conn({
      'kafka.security.protocol': 'SASL_SSL',
      'kafka.sasl.mechanism': 'SCRAM-SHA-512',
      'kafka.sasl.username': 'tide',
      'kafka.sasl.password': 'pw',
      'kafka.ssl.ca.location': certs.ca,
    });
    const kj = k.kafkajs('c');
    expect(kj.sasl).toEqual({ mechanism: 'scram-sha-512', username: 'tide', password: 'pw' });
    expect((kj.ssl as { ca: string }).ca).toContain('BEGIN CERTIFICATE');
    const pl = k.platformatic();
    expect(pl.sasl).toEqual({ mechanism: 'SCRAM-SHA-512', username: 'tide', password: 'pw' });
    expect(pl.tls).toBe(kj.ssl);
    expect(pl.tlsServerName).toBe(true);
    expect(k.describe()).toEqual({ bootstrap: k.target, protocol: 'SASL_SSL', mechanism: 'SCRAM-SHA-512', user: 'tide' });
    // SNI is never an IP address (RFC 6066)
    expect(
      kafkaConnection({ ...base, 'kafka.security.protocol': 'SSL', 'kafka.bootstrap.servers': ['127.0.0.1:9093'] }).platformatic()
        .tlsServerName,
    ).toBe(false);
  });

  it('takes the login from kafka.sasl.jaas.config, and refuses a module that does not fit the mechanism', () => {
    const jaas = `${PLAIN_MODULE} required username="$ConnectionString" password="Endpoint=sb://x/;SharedAccessKey=k";`;
    const k = conn({ 'kafka.security.protocol': 'SASL_SSL', 'kafka.sasl.mechanism': 'PLAIN', 'kafka.sasl.jaas.config': jaas });
    expect(k.sasl).toEqual({ mechanism: 'PLAIN', username: '$ConnectionString', password: 'Endpoint=sb://x/;SharedAccessKey=k' });
    expect(() =>
      conn({ 'kafka.security.protocol': 'SASL_SSL', 'kafka.sasl.mechanism': 'SCRAM-SHA-256', 'kafka.sasl.jaas.config': jaas }),
    ).toThrowErrorMatchingInlineSnapshot(
      `[ConfigError: c.json: kafka.sasl.jaas.config: uses org.apache.kafka.common.security.plain.PlainLoginModule, which is for PLAIN, but kafka.sasl.mechanism is SCRAM-SHA-256: make them agree]`,
    );
    expect(() =>
      conn({
        'kafka.security.protocol': 'SASL_SSL',
        'kafka.sasl.mechanism': 'PLAIN',
        'kafka.sasl.jaas.config': jaas,
        'kafka.sasl.username': 'u',
      }),
    ).toThrow(/kafka.sasl.jaas.config: is set together with kafka.sasl.username/);
    expect(() =>
      conn({
        'kafka.security.protocol': 'SASL_SSL',
        'kafka.sasl.mechanism': 'PLAIN',
        'kafka.sasl.jaas.config': `${PLAIN_MODULE} required username="u"`,
      }),
    ).toThrowErrorMatchingInlineSnapshot(`[ConfigError: c.json: kafka.sasl.jaas.config: must end with ";"]`);
  });

  it('mutual TLS: certificate and key (also an encrypted key with its password); errors name the key and the file', () => {
    const k = conn({
      'kafka.security.protocol': 'SSL',
      'kafka.ssl.certificate.location': certs.clientCert,
      'kafka.ssl.key.location': certs.clientKey,
    });
    expect(k.tls?.cert).toContain('BEGIN CERTIFICATE');
    expect(k.tls?.key).toContain('PRIVATE KEY');
    expect(k.clientCertificate?.path).toBe(certs.clientCert);
    expect(k.describe()).toMatchObject({ clientCertificate: certs.clientCert });

    const missing = join(dir, 'nope.pem');
    expect(() => conn({ 'kafka.security.protocol': 'SSL', 'kafka.ssl.ca.location': missing })).toThrow(
      `c.json: kafka.ssl.ca.location: the CA file ${missing} does not exist`,
    );
    expect(() => conn({ 'kafka.security.protocol': 'SSL', 'kafka.ssl.ca.location': certs.clientKey })).toThrow(
      `kafka.ssl.ca.location: the CA file ${certs.clientKey} holds no PEM certificate`,
    );
    expect(() =>
      conn({
        'kafka.security.protocol': 'SSL',
        'kafka.ssl.certificate.location': certs.clientCert,
        'kafka.ssl.key.location': certs.untrustedClientKey,
      }),
    ).toThrow(
      `kafka.ssl.key.location: the client key file ${certs.untrustedClientKey} does not belong to the certificate ${certs.clientCert}`,
    );

    // An encrypted key: needs kafka.ssl.key.password, and a wrong one is named (never shown).
    const encrypted = join(dir, 'client-enc.key');
    execFileSync('openssl', ['pkcs8', '-topk8', '-in', certs.clientKey, '-out', encrypted, '-passout', 'pass:key-pass-123']);
    const enc = {
      'kafka.security.protocol': 'SSL' as const,
      'kafka.ssl.certificate.location': certs.clientCert,
      'kafka.ssl.key.location': encrypted,
    };
    expect(() => conn(enc)).toThrow(`kafka.ssl.key.password: is required: the client key file ${encrypted} is encrypted`);
    expect(() => conn({ ...enc, 'kafka.ssl.key.password': 'wrong-pass-456' })).toThrow(
      `kafka.ssl.key.password: does not decrypt the client key file ${encrypted}`,
    );
    expect(conn({ ...enc, 'kafka.ssl.key.password': 'key-pass-123' }).tls?.passphrase).toBe('key-pass-123');
    writeFileSync(join(dir, 'garbage.key'), 'not a key');
    expect(() => conn({ ...enc, 'kafka.ssl.key.location': join(dir, 'garbage.key') })).toThrow(/holds no PEM private key/);
  });

  it('empty endpoint identification keeps the chain check and drops only the host check', () => {
    const k = conn({
      'kafka.security.protocol': 'SSL',
      'kafka.ssl.ca.location': certs.ca,
      'kafka.ssl.endpoint.identification.algorithm': '',
    });
    expect(k.tls?.checkServerIdentity?.('127.0.0.1', {} as never)).toBeUndefined();
    expect(k.tls?.rejectUnauthorized).toBeUndefined(); // Node's default: true
    expect(conn({ 'kafka.security.protocol': 'SSL' }).tls?.checkServerIdentity).toBeUndefined();
  });

  it('turns client errors into ConnectionErrors that name the connection, problem and fix', () => {
    const k = conn({
      'kafka.security.protocol': 'SASL_SSL',
      'kafka.sasl.mechanism': 'SCRAM-SHA-512',
      'kafka.sasl.username': 'tide',
      'kafka.sasl.password': 'x',
    });
    const auth = Object.assign(new Error('SASL SCRAM SHA512 authentication failed: Authentication failed'), {
      name: 'KafkaJSSASLAuthenticationError',
    });
    const e = explainKafkaError(k, auth);
    expect(e).toBeInstanceOf(ConnectionError);
    expect(e.retriable).toBe(false);
    expect(e.code).toBe('auth');
    expect(e.message).toMatchInlineSnapshot(
      `"kafka (broker-1.example.com:9093,broker-2.example.com:9093): the broker refused the SASL SCRAM-SHA-512 login of user "tide". Check kafka.sasl.username and kafka.sasl.password (or the username and password in kafka.sasl.jaas.config), and that the user has SCRAM-SHA-512 credentials on the cluster (SCRAM-SHA-256 and SCRAM-SHA-512 credentials are separate)"`,
    );
    const tls = (code: string) => Object.assign(new Error(`Connection error: ${code}`), { name: 'KafkaJSConnectionError', code });
    const wrapped = (code: string) =>
      Object.assign(new Error('retries exceeded'), { name: 'KafkaJSNumberOfRetriesExceeded', cause: tls(code) });
    expect(explainKafkaError(k, wrapped('SELF_SIGNED_CERT_IN_CHAIN')).message).toMatch(
      /not signed by a CA Tide trusts .*kafka.ssl.ca.location is not set/,
    );
    expect(explainKafkaError(k, tls('ERR_TLS_CERT_ALTNAME_INVALID')).message).toMatch(
      /does not name the host.*kafka.ssl.endpoint.identification.algorithm/,
    );
    expect(explainKafkaError(k, tls('ERR_SSL_SSLV3_ALERT_CERTIFICATE_UNKNOWN')).message).toMatch(/requires a client certificate/);
    expect(explainKafkaError(k, tls('ERR_SSL_WRONG_VERSION_NUMBER')).message).toMatch(/does not answer TLS/);
    // kafkajs' words when the listener does not enable the mechanism (saslAuthenticator/index.js)
    const mechanism = Object.assign(new Error('SASL SCRAM-SHA-512 mechanism is not supported by the server'), {
      name: 'KafkaJSSASLAuthenticationError',
    });
    expect(explainKafkaError(k, mechanism).message).toMatch(
      /does not offer SASL mechanism SCRAM-SHA-512 on this listener\. Set kafka.sasl.mechanism/,
    );
    expect(explainKafkaError(k, mechanism).retriable).toBe(false);
    const down = explainKafkaError(k, tls('ECONNREFUSED'));
    expect([down.retriable, down.code]).toEqual([true, 'unreachable']);
  });
});

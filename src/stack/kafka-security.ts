import { pbkdf2Sync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { getDefaultAutoSelectFamily } from 'node:net';
import { Connection, alterUserScramCredentialsV0, ScramMechanisms } from '@platformatic/kafka';
import { Kafka, logLevel, type KafkaConfig } from 'kafkajs';
import { StackServiceError } from '../errors.ts';
import { STORE_PASSWORD, stackCertPaths } from './certs.ts';
import { portOpen } from './process.ts';
import type { StackContext } from './service.ts';

/**
 * The local broker's secured listeners, next to its plaintext one (which the stack's own admin and most
 * tests use):
 * - SASL_SSL on ports.kafkaSaslSsl: SCRAM-SHA-512, SCRAM-SHA-256 and PLAIN, with the stack's throwaway
 *   certificate (names only `localhost`). PLAIN has a user `$ConnectionString` whose password is shaped
 *   like an Azure Event Hubs connection string: that is how Event Hubs clients log in.
 * - SSL on ports.kafkaMtls with `ssl.client.auth=required`: only clients with a certificate signed by the
 *   stack CA get in (mutual TLS, as Amazon MSK's TLS authentication).
 * Both bind 127.0.0.1 and are advertised as `localhost:<port>`, the name the certificate holds. Where
 * `localhost` resolves to ::1 first, Node (≥ 20) falls back to 127.0.0.1 by itself (autoSelectFamily).
 *
 * The users and passwords are local and throwaway, like the certificates.
 */
export const KAFKA_STACK_USERS = {
  /** SCRAM user, with both SCRAM-SHA-512 and SCRAM-SHA-256 credentials. */
  scram: { username: 'tide', password: 'tide-scram-secret' },
  plain: { username: 'tide-plain', password: 'tide-plain-secret' },
  eventHubs: {
    username: '$ConnectionString',
    password: 'Endpoint=sb://localhost/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=tide-stack-event-hubs-key',
  },
} as const;

export const SECURE_LISTENERS = ['SASL_SSL', 'MTLS'] as const;

const saslSslBrokers = (ctx: StackContext) => `localhost:${ctx.ports.kafkaSaslSsl}`;
const mtlsBrokers = (ctx: StackContext) => `localhost:${ctx.ports.kafkaMtls}`;

/** JAAS option values in double quotes, escaped as Kafka's JaasConfig parser (a StreamTokenizer) reads them. */
const quoted = (value: string) => `"${value.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;

/** The server.properties lines for the secured listeners (listeners= and the map are merged by kafka.ts). */
export function secureListenerProperties(ctx: StackContext): {
  listeners: string[];
  advertised: string[];
  protocolMap: string[];
  body: string;
} {
  const certs = stackCertPaths(ctx);
  const { plain, eventHubs } = KAFKA_STACK_USERS;
  return {
    listeners: [`SASL_SSL://127.0.0.1:${ctx.ports.kafkaSaslSsl}`, `MTLS://127.0.0.1:${ctx.ports.kafkaMtls}`],
    advertised: [`SASL_SSL://${saslSslBrokers(ctx)}`, `MTLS://${mtlsBrokers(ctx)}`],
    protocolMap: ['SASL_SSL:SASL_SSL', 'MTLS:SSL'],
    body: `# Secured listeners (src/stack/kafka-security.ts): the stack CA's server certificate, SAN DNS:localhost.
ssl.keystore.type=PKCS12
ssl.keystore.location=${certs.serverP12}
ssl.keystore.password=${STORE_PASSWORD}
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256,PLAIN
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_${plain.username}=${quoted(plain.password)} user_${eventHubs.username}=${quoted(eventHubs.password)};
listener.name.mtls.ssl.client.auth=required
listener.name.mtls.ssl.truststore.type=PKCS12
listener.name.mtls.ssl.truststore.location=${certs.truststoreP12}
listener.name.mtls.ssl.truststore.password=${STORE_PASSWORD}
`,
  };
}

/**
 * SCRAM credentials live in the cluster's metadata, not in server.properties. `kafka-storage format
 * --add-scram` only works on a fresh data directory, so they are upserted through the AlterUserScramCredentials
 * API after every start instead: the same path for a new stack and for one formatted before these listeners
 * existed. The API takes the salted password (RFC 5802's Hi(), i.e. PBKDF2), which Kafka's own
 * ConfigCommand computes client-side the same way; neither kafkajs nor @platformatic/kafka's Admin wraps it.
 */
export async function ensureScramUsers(ctx: StackContext, logFile: string): Promise<void> {
  const { username, password } = KAFKA_STACK_USERS.scram;
  const iterations = 4096;
  const upsertions = (
    [
      [ScramMechanisms.SCRAM_SHA_512, 'sha512', 64],
      [ScramMechanisms.SCRAM_SHA_256, 'sha256', 32],
    ] as const
  ).map(([mechanism, hash, length]) => {
    const salt = randomBytes(32);
    return { name: username, mechanism, iterations, salt, saltedPassword: pbkdf2Sync(password, salt, iterations, length, hash) };
  });
  const conn = new Connection('tide-stack-scram', { connectTimeout: 5000, requestTimeout: 15_000 });
  try {
    await conn.connect('127.0.0.1', ctx.ports.kafka);
    // One request per mechanism: the broker refuses two changes to one user in one request (DUPLICATE_RESOURCE).
    for (const upsertion of upsertions) await alterUserScramCredentialsV0.api.async(conn, [], [upsertion]);
  } catch (err) {
    const results = (err as { response?: { results?: { errorMessage: string | null }[] } }).response?.results ?? [];
    const why =
      results
        .map((r) => r.errorMessage)
        .filter(Boolean)
        .join('; ') || (err as Error).message;
    throw new StackServiceError('kafka', logFile, `adding SCRAM user ${username} failed: ${why}`, { cause: err });
  } finally {
    await conn.close().catch(() => undefined);
  }
}

/** One SCRAM-SHA-512 login over SASL_SSL (the CA, the certificate's name, the user): the secured listener really works. */
export function secureListenerAnswers(ctx: StackContext, timeoutMs: number): Promise<boolean> {
  const certs = stackCertPaths(ctx);
  return answers(ctx.ports.kafkaSaslSsl, saslSslBrokers(ctx), timeoutMs, {
    ssl: { ca: readFileSync(certs.ca, 'utf8') },
    sasl: { mechanism: 'scram-sha-512', ...KAFKA_STACK_USERS.scram },
  });
}

/** One TLS connection with the stack's client certificate to the listener that requires one. */
export function mtlsListenerAnswers(ctx: StackContext, timeoutMs: number): Promise<boolean> {
  const certs = stackCertPaths(ctx);
  const pem = (path: string) => readFileSync(path, 'utf8');
  return answers(ctx.ports.kafkaMtls, mtlsBrokers(ctx), timeoutMs, {
    ssl: { ca: pem(certs.ca), cert: pem(certs.clientCert), key: pem(certs.clientKey) },
  });
}

async function answers(port: number, broker: string, timeoutMs: number, security: Pick<KafkaConfig, 'ssl' | 'sasl'>): Promise<boolean> {
  if (!(await portOpen(port, '127.0.0.1', Math.min(1000, timeoutMs)))) return false;
  const admin = new Kafka({
    clientId: 'tide-stack-probe',
    brokers: [broker],
    ...security,
    logLevel: logLevel.NOTHING,
    connectionTimeout: timeoutMs,
    authenticationTimeout: timeoutMs,
    requestTimeout: timeoutMs,
    retry: { retries: 0 },
  }).admin();
  try {
    await admin.connect();
    await admin.describeCluster();
    return true;
  } catch {
    return false;
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

/** The secured listeners for `stack status`: each checked with a real login or client certificate. */
export async function secureListenerStatus(ctx: StackContext): Promise<{ name: string; address: string; up: boolean; detail: string }[]> {
  const [sasl, mtls] = await Promise.all([
    // Through a promise chain, so a synchronous throw (e.g. a stack dir without certificates) reads as down too.
    Promise.resolve()
      .then(() => secureListenerAnswers(ctx, 3000))
      .catch(() => false),
    Promise.resolve()
      .then(() => mtlsListenerAnswers(ctx, 3000))
      .catch(() => false),
  ]);
  return [
    { name: 'SASL_SSL', address: saslSslBrokers(ctx), up: sasl, detail: 'SCRAM-SHA-512, SCRAM-SHA-256, PLAIN' },
    { name: 'mTLS', address: mtlsBrokers(ctx), up: mtls, detail: 'SSL, client certificate required' },
  ];
}

/** What `.stack/env` gets for the secured listeners. */
export function secureKafkaEnv(ctx: StackContext): Record<string, string> {
  const certs = stackCertPaths(ctx);
  return {
    KAFKA_SASL_SSL_BROKERS: saslSslBrokers(ctx),
    KAFKA_MTLS_BROKERS: mtlsBrokers(ctx),
    KAFKA_SCRAM_USERNAME: KAFKA_STACK_USERS.scram.username,
    KAFKA_SCRAM_PASSWORD: KAFKA_STACK_USERS.scram.password,
    KAFKA_PLAIN_USERNAME: KAFKA_STACK_USERS.plain.username,
    KAFKA_PLAIN_PASSWORD: KAFKA_STACK_USERS.plain.password,
    KAFKA_EVENT_HUBS_CONNECTION_STRING: KAFKA_STACK_USERS.eventHubs.password,
    TIDE_STACK_CA: certs.ca,
    TIDE_STACK_CLIENT_CERT: certs.clientCert,
    TIDE_STACK_CLIENT_KEY: certs.clientKey,
  };
}

/** Where a Node whose `localhost` may resolve to ::1 first still reaches the 127.0.0.1 listeners. */
export function localhostFallbackNote(): string | undefined {
  return getDefaultAutoSelectFamily()
    ? undefined
    : 'Node runs with autoSelectFamily off: if localhost resolves to ::1 first, clients of the secured Kafka listeners (localhost) cannot fall back to 127.0.0.1';
}

import { Kafka, logLevel } from 'kafkajs';
import { ConnectionError, TideError } from '../errors.ts';
import { log as rootLog, type Logger } from '../log.ts';
import type { KafkaConnection } from './kafka-connection.ts';

/**
 * Kafka client failures (kafkajs' and @platformatic/kafka's errors, and the Node TLS errors under them)
 * as ConnectionErrors that name the connection, the problem and the fix. Credentials and certificates
 * that the broker refuses are not retriable: waiting does not fix a wrong password or CA, so no retry
 * loop waits on them.
 */

/** Node's codes for a broker certificate chain it cannot verify (OpenSSL's X509_V_ERR_* names). */
const UNTRUSTED_CHAIN = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_GET_ISSUER_CERT',
  'CERT_UNTRUSTED',
  'CERT_SIGNATURE_FAILURE',
  'CERT_REJECTED',
]);
/** TLS alerts a broker sends when it refuses the client's certificate (or its absence). */
const CLIENT_CERT_ALERT =
  /^ERR_SSL_(?:SSLV3|TLSV1|TLSV13)_ALERT_(CERTIFICATE_UNKNOWN|UNKNOWN_CA|BAD_CERTIFICATE|CERTIFICATE_EXPIRED|CERTIFICATE_REQUIRED|CERTIFICATE_REVOKED|UNSUPPORTED_CERTIFICATE|ACCESS_DENIED|DECRYPT_ERROR)$/;
const NOT_TLS = new Set([
  'ERR_SSL_WRONG_VERSION_NUMBER',
  'ERR_SSL_PACKET_LENGTH_TOO_LONG',
  'ERR_SSL_UNKNOWN_PROTOCOL',
  'ERR_SSL_RECORD_LAYER_FAILURE',
]);
const UNREACHABLE = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'ECONNRESET']);

interface Found {
  codes: string[];
  names: string[];
  messages: string[];
}

/** Everything along the error's cause chain (kafkajs nests `cause`/`originalError`, platformatic `errors`). */
function collect(err: unknown, found: Found = { codes: [], names: [], messages: [] }, depth = 0): Found {
  if (!err || typeof err !== 'object' || depth > 8) return found;
  const e = err as {
    code?: unknown;
    name?: unknown;
    message?: unknown;
    type?: unknown;
    cause?: unknown;
    originalError?: unknown;
    errors?: unknown;
  };
  if (typeof e.code === 'string') found.codes.push(e.code);
  if (typeof e.type === 'string') found.codes.push(e.type);
  if (typeof e.name === 'string') found.names.push(e.name);
  if (typeof e.message === 'string') found.messages.push(e.message);
  collect(e.cause, found, depth + 1);
  collect(e.originalError, found, depth + 1);
  if (Array.isArray(e.errors)) for (const x of e.errors.slice(0, 4)) collect(x, found, depth + 1);
  return found;
}

/** The ConnectionError for a failure of a client of `conn`; `doing` says what was being done ("creating topics"). */
export function explainKafkaError(conn: KafkaConnection, err: unknown, doing = 'connecting'): ConnectionError {
  if (err instanceof ConnectionError) return err;
  const { codes, names, messages } = collect(err);
  const all = messages.join(' | ');
  const fail = (problem: string, fix: string, code: string, retriable = false) =>
    new ConnectionError('kafka', conn.target, problem, fix, { cause: err, retriable, code });
  const sasl = conn.sasl;
  const caKey = conn.tls?.ca ? 'the CA in kafka.ssl.ca.location' : "Node's built-in public CAs (kafka.ssl.ca.location is not set)";

  if (
    sasl &&
    (/mechanism is not supported|UNSUPPORTED_SASL_MECHANISM|unsupported sasl mechanism/i.test(all) ||
      codes.includes('UNSUPPORTED_SASL_MECHANISM'))
  )
    return fail(
      `the broker does not offer SASL mechanism ${sasl.mechanism} on this listener`,
      "Set kafka.sasl.mechanism to one the broker enables (its listener's sasl.enabled.mechanisms), or ask the broker's operator to enable it",
      'auth',
    );
  if (
    sasl &&
    (names.includes('KafkaJSSASLAuthenticationError') ||
      codes.includes('PLT_KFK_AUTHENTICATION') ||
      codes.includes('SASL_AUTHENTICATION_FAILED'))
  )
    return fail(
      `the broker refused the SASL ${sasl.mechanism} login of user "${sasl.username}"`,
      `Check kafka.sasl.username and kafka.sasl.password (or the username and password in kafka.sasl.jaas.config)${
        sasl.mechanism.startsWith('SCRAM')
          ? `, and that the user has ${sasl.mechanism} credentials on the cluster (SCRAM-SHA-256 and SCRAM-SHA-512 credentials are separate)`
          : ''
      }`,
      'auth',
    );

  const code = codes.find(
    (c) => UNTRUSTED_CHAIN.has(c) || CLIENT_CERT_ALERT.test(c) || NOT_TLS.has(c) || c.startsWith('ERR_TLS_') || c.startsWith('CERT_'),
  );
  if (code && UNTRUSTED_CHAIN.has(code))
    return fail(
      `the broker's certificate is not signed by a CA Tide trusts (${code}; Tide trusts ${caKey})`,
      "Set kafka.ssl.ca.location to a PEM file holding the CA that signed the broker certificate (the service's documentation names it)",
      'tls',
    );
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID')
    return fail(
      `the broker's certificate does not name the host Tide connected to (${messages.find((m) => /altnames/.test(m)) ?? code})`,
      'List the brokers in kafka.bootstrap.servers by a name their certificate holds (e.g. the DNS name, not an IP address); only as a last resort set kafka.ssl.endpoint.identification.algorithm to "" to turn host checks off',
      'tls',
    );
  if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID')
    return fail(
      `the broker's certificate is ${code === 'CERT_HAS_EXPIRED' ? 'expired' : 'not valid yet'}`,
      "The broker needs a current certificate (ask its operator); check this machine's clock too",
      'tls',
    );
  if (code && CLIENT_CERT_ALERT.test(code)) {
    const alert = CLIENT_CERT_ALERT.exec(code)![1]!.toLowerCase();
    return conn.clientCertificate
      ? fail(
          `the broker refused Tide's client certificate ${conn.clientCertificate.path} (TLS alert ${alert})`,
          'Use a client certificate (kafka.ssl.certificate.location and kafka.ssl.key.location) that is signed by a CA the broker trusts (its ssl.truststore) and has not expired',
          'tls',
        )
      : fail(
          `the broker refused the TLS handshake (alert ${alert}): it requires a client certificate (mutual TLS)`,
          'Set kafka.ssl.certificate.location and kafka.ssl.key.location to a client certificate the broker trusts',
          'tls',
        );
  }
  if ((code && NOT_TLS.has(code)) || /verify the broker supports TLS/.test(all))
    return fail(
      `the server at this address does not answer TLS (kafka.security.protocol is ${conn.protocol})`,
      "Check the port in kafka.bootstrap.servers is the broker's TLS listener, or set kafka.security.protocol to match the listener",
      'tls',
    );
  if (code)
    return fail(
      `the TLS connection failed (${code})`,
      'Check kafka.ssl.ca.location, kafka.ssl.certificate.location and kafka.ssl.key.location',
      'tls',
    );

  if (codes.includes('INVALID_SESSION_TIMEOUT'))
    return fail(
      `the broker refused the consumer's session timeout while ${doing}: it is outside the broker's group.min.session.timeout.ms … group.max.session.timeout.ms`,
      "Set session.timeout.ms in the sink's connector file within the broker's range (Kafka's default minimum is 6000)",
      'config',
    );
  const down = codes.find((c) => UNREACHABLE.has(c));
  if (down || /Connection timeout|timed out|ECONNREFUSED/i.test(all))
    return fail(
      `no broker answered while ${doing} (${down ?? 'timeout'})`,
      'Check kafka.bootstrap.servers and that the brokers are running and reachable from this machine',
      'unreachable',
      true,
    );
  const retriable = (err as { retriable?: boolean }).retriable ?? true;
  return fail(`${doing} failed: ${messages[0] ?? String(err)}`, 'See the cause; the broker log may say more', 'kafka', retriable);
}

/**
 * Pre-flight: one kafkajs connection (no retries) to a bootstrap broker, with TLS and SASL exactly as
 * every client will use them, so a wrong password, CA, host name or client certificate ends the start
 * in a second or two with a ConnectionError, before the clients' own retries (which treat TLS failures
 * as network errors and would retry them for minutes) and before anything is written or confirmed.
 * A broker that does not answer is not judged here: that is the clients' and the retry policy's concern.
 */
export async function verifyKafkaConnection(conn: KafkaConnection, opts: { clientId: string; log?: Logger }): Promise<void> {
  const log = opts.log ?? rootLog;
  const cc = conn.clientCertificate;
  if (cc) {
    const now = Date.now();
    const from = Date.parse(cc.cert.validFrom);
    const to = Date.parse(cc.cert.validTo);
    if (now > to || now < from)
      throw new ConnectionError(
        'kafka',
        conn.target,
        now > to
          ? `the client certificate ${cc.path} (kafka.ssl.certificate.location) expired on ${new Date(to).toISOString()}`
          : `the client certificate ${cc.path} (kafka.ssl.certificate.location) is valid only from ${new Date(from).toISOString()}`,
        "Renew the client certificate (and its key in kafka.ssl.key.location); check this machine's clock too",
        { retriable: false, code: 'tls' },
      );
  }
  const admin = new Kafka(conn.kafkajs(`${opts.clientId}-check`, { logLevel: logLevel.NOTHING, retry: { retries: 0 } })).admin();
  try {
    await admin.connect();
    await admin.describeCluster();
    log.debug({ kafka: conn.describe() }, 'Kafka connection checked');
  } catch (err) {
    const e = explainKafkaError(conn, err, 'connecting');
    if (!e.retriable) throw e;
    log.debug({ kafka: conn.target, err: e.message }, 'Kafka connection check inconclusive; the clients retry');
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

/** Kafka's own limit (org.apache.kafka.common.internals.Topic: MAX_NAME_LENGTH = 249, legal chars [a-zA-Z0-9._-]). */
export const MAX_TOPIC_NAME_LENGTH = 249;
const LEGAL_TOPIC = /^[a-zA-Z0-9._-]+$/;

/** Why Kafka would refuse `topic` as a name, or undefined when it is valid. */
export function topicNameProblem(topic: string): string | undefined {
  if (topic.length > MAX_TOPIC_NAME_LENGTH) return `is ${topic.length} characters long; Kafka allows at most ${MAX_TOPIC_NAME_LENGTH}`;
  if (topic === '' || topic === '.' || topic === '..') return 'is not a valid Kafka topic name';
  if (!LEGAL_TOPIC.test(topic)) return 'has characters Kafka does not allow in a topic name (only letters, digits, ".", "_" and "-")';
  return undefined;
}

/** A topic Tide needs cannot be created (a name Kafka refuses, a policy, a lack of rights). Not retriable. */
export class TopicCreationError extends TideError {
  constructor(
    readonly topic: string,
    problem: string,
    fix: string,
    options: { cause?: unknown } = {},
  ) {
    super(`kafka topic ${topic.length > 80 ? `${topic.slice(0, 80)}…` : topic}: ${problem}. ${fix}`, { ...options, retriable: false });
    this.name = 'TopicCreationError';
  }
}

/** The error for a topic name Kafka would refuse, before asking Kafka. */
export function invalidTopicName(topic: string, problem: string): TopicCreationError {
  return new TopicCreationError(
    topic,
    problem,
    'Topic names are <topic.prefix>.<schema>.<table>: shorten topic.prefix (or rename the table, or exclude it with table.exclude.list)',
  );
}

/** The errors of one kafkajs createTopics call that failed for some topics, each naming its topic. */
export function topicCreationError(err: unknown): TideError | undefined {
  if (err instanceof TopicCreationError) return err;
  const errors =
    (err as { errors?: unknown[] } | undefined)?.errors ?? (err as { cause?: { errors?: unknown[] } } | undefined)?.cause?.errors;
  const failed = Array.isArray(errors)
    ? errors.filter((e): e is { topic: string; type?: string; message: string } => typeof (e as { topic?: unknown })?.topic === 'string')
    : [];
  const first = failed[0];
  if (!first) return undefined;
  const fix =
    first.type === 'TOPIC_AUTHORIZATION_FAILED' || first.type === 'CLUSTER_AUTHORIZATION_FAILED'
      ? "grant Tide's Kafka user the right to create topics (CREATE on the cluster or the topics), or create the topics yourself with the partitions source plan lists"
      : first.type === 'INVALID_REPLICATION_FACTOR'
        ? 'set topic.replication.factor to at most the number of brokers'
        : first.type === 'POLICY_VIOLATION'
          ? "the cluster's topic policy refused it: create the topic yourself, or change topic.partitions / topic.replication.factor to what the policy allows"
          : 'fix the topic settings (topic.prefix, topic.partitions, topic.replication.factor) or create the topic yourself';
  const others =
    failed.length > 1
      ? ` (and ${failed.length - 1} more: ${failed
          .slice(1, 4)
          .map((e) => e.topic)
          .join(', ')})`
      : '';
  return new TopicCreationError(first.topic, `Kafka refused to create it: ${first.message}${others}`, fix, { cause: err });
}

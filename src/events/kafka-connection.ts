import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import type { ConnectionOptions as TlsOptions } from 'node:tls';
import type { SASLOptions as PlatformaticSaslOptions } from '@platformatic/kafka';
import type { KafkaConfig, SASLOptions as KafkajsSaslOptions } from 'kafkajs';
import type { KafkaSaslMechanism, KafkaSecurityConfig } from '../config/connection-keys.ts';
import { ConfigError } from '../errors.ts';
import { log as rootLog, registerSecret, type Logger } from '../log.ts';
import { JaasSyntaxError, parseJaasConfig } from './jaas-config.ts';

/**
 * The one place where a connector file's Kafka keys (`kafka.bootstrap.servers`, `kafka.security.protocol`,
 * `kafka.sasl.*`, `kafka.ssl.*`) become the options of the Kafka client libraries Tide uses: kafkajs
 * (admin clients, the sink's consumer, the dead-letter producer, the lag probe) and @platformatic/kafka
 * (the source's producer). Every client is built from `kafkaConnection(config)`, so a key means the same
 * to all of them. TLS and SASL themselves are the libraries' (Node's `tls`, their SCRAM and PLAIN code).
 */
export type KafkaConnectionConfig = KafkaSecurityConfig & { 'kafka.bootstrap.servers': string[] };

export interface KafkaSasl {
  mechanism: KafkaSaslMechanism;
  username: string;
  password: string;
}

export interface PlatformaticConnectionOptions {
  bootstrapBrokers: string[];
  tls?: TlsOptions;
  /** Send SNI (the host name): managed services route on it. Only for host names, never IP addresses. */
  tlsServerName?: boolean;
  sasl?: PlatformaticSaslOptions;
  connectTimeout: number;
}

export interface KafkaConnection {
  readonly brokers: string[];
  /** Where the connection points, for messages: the bootstrap servers, never a credential. */
  readonly target: string;
  readonly protocol: KafkaSecurityConfig['kafka.security.protocol'];
  /** Node TLS options (undefined for PLAINTEXT and SASL_PLAINTEXT). */
  readonly tls: TlsOptions | undefined;
  readonly sasl: KafkaSasl | undefined;
  /** The client certificate's file and parsed certificate (mutual TLS), for the pre-flight expiry check. */
  readonly clientCertificate: { path: string; cert: X509Certificate } | undefined;
  /** Options for `new Kafka(…)` (kafkajs); `extra` adds client-specific ones (retry, logLevel, timeouts). */
  kafkajs(clientId: string, extra?: Omit<KafkaConfig, 'brokers' | 'ssl' | 'sasl' | 'clientId'>): KafkaConfig;
  /** Connection options for @platformatic/kafka's clients (Producer, Consumer, Admin). */
  platformatic(): PlatformaticConnectionOptions;
  /** A short description for logs: protocol, mechanism, user (never the password). */
  describe(): Record<string, unknown>;
}

/** Connect (TCP + TLS handshake) and SASL timeouts: TLS on a loaded 2-core machine takes far longer than kafkajs' 1 s default. */
export const KAFKA_CONNECT_TIMEOUT_MS = 10_000;
export const KAFKA_AUTH_TIMEOUT_MS = 10_000;

const KAFKAJS_MECHANISM = { PLAIN: 'plain', 'SCRAM-SHA-256': 'scram-sha-256', 'SCRAM-SHA-512': 'scram-sha-512' } as const;

/** Host names (not IP addresses) get SNI; `host:port`, `[v6]:port`. */
function hostOf(broker: string): string {
  const m = /^\[(.*)\](?::\d+)?$/.exec(broker);
  if (m) return m[1]!;
  const i = broker.lastIndexOf(':');
  return i > 0 ? broker.slice(0, i) : broker;
}

function readFile(key: string, path: string, source: string | undefined, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT'
        ? 'does not exist'
        : code === 'EACCES'
          ? 'is not readable by this user'
          : code === 'EISDIR'
            ? 'is a directory'
            : `cannot be read (${(err as Error).message})`;
    throw new ConfigError(key, `${what} file ${path} ${why}`, source);
  }
}

function readCertificates(key: string, path: string, source: string | undefined, what: string): { pem: string; first: X509Certificate } {
  const pem = readFile(key, path, source, what);
  if (!pem.includes('-----BEGIN CERTIFICATE-----'))
    throw new ConfigError(key, `${what} file ${path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`, source);
  try {
    return { pem, first: new X509Certificate(pem) };
  } catch (err) {
    throw new ConfigError(key, `${what} file ${path} is not a valid PEM certificate: ${(err as Error).message}`, source);
  }
}

function readPrivateKey(config: KafkaConnectionConfig, source: string | undefined): { pem: string; key: KeyObject } {
  const path = config['kafka.ssl.key.location']!;
  const pem = readFile('kafka.ssl.key.location', path, source, 'the client key');
  if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(pem))
    throw new ConfigError(
      'kafka.ssl.key.location',
      `the client key file ${path} holds no PEM private key (-----BEGIN … PRIVATE KEY-----)`,
      source,
    );
  const passphrase = config['kafka.ssl.key.password'];
  const encrypted = /ENCRYPTED/.test(pem);
  if (encrypted && passphrase === undefined)
    throw new ConfigError('kafka.ssl.key.password', `is required: the client key file ${path} is encrypted`, source);
  try {
    return { pem, key: createPrivateKey({ key: pem, format: 'pem', ...(passphrase !== undefined ? { passphrase } : {}) }) };
  } catch {
    // Node's message may quote key material; say what is wrong instead.
    throw encrypted
      ? new ConfigError('kafka.ssl.key.password', `does not decrypt the client key file ${path}`, source)
      : new ConfigError('kafka.ssl.key.location', `the client key file ${path} is not a readable PEM private key`, source);
  }
}

/** The SASL login from `kafka.sasl.username`/`password` or the Java `kafka.sasl.jaas.config`. */
export function saslLogin(config: KafkaConnectionConfig, source?: string): KafkaSasl | undefined {
  if (!config['kafka.security.protocol'].startsWith('SASL_')) return undefined;
  const mechanism = config['kafka.sasl.mechanism'];
  if (!mechanism) throw new ConfigError('kafka.sasl.mechanism', 'is required with a SASL_ protocol', source);
  const jaas = config['kafka.sasl.jaas.config'];
  if (jaas !== undefined) {
    if (config['kafka.sasl.username'] !== undefined || config['kafka.sasl.password'] !== undefined)
      throw new ConfigError(
        'kafka.sasl.jaas.config',
        'is set together with kafka.sasl.username/kafka.sasl.password: keep one of the two forms',
        source,
      );
    let login;
    try {
      login = parseJaasConfig(jaas);
    } catch (err) {
      if (err instanceof JaasSyntaxError) throw new ConfigError('kafka.sasl.jaas.config', err.message, source);
      throw err;
    }
    registerSecret(login.password);
    const family = mechanism === 'PLAIN' ? 'PLAIN' : 'SCRAM';
    if (login.family !== family)
      throw new ConfigError(
        'kafka.sasl.jaas.config',
        `uses ${login.module}, which is for ${login.family === 'PLAIN' ? 'PLAIN' : 'SCRAM-SHA-256/512'}, but kafka.sasl.mechanism is ${mechanism}: make them agree`,
        source,
      );
    return { mechanism, username: login.username, password: login.password };
  }
  const username = config['kafka.sasl.username'];
  if (username === undefined)
    throw new ConfigError('kafka.sasl.username', 'is required with a SASL_ protocol (or set kafka.sasl.jaas.config)', source);
  const password = config['kafka.sasl.password'];
  if (password === undefined) throw new ConfigError('kafka.sasl.password', `is required with kafka.sasl.username`, source);
  registerSecret(password);
  return { mechanism, username, password };
}

const warnedHostCheckOff = new Set<string>();

/**
 * Resolve the Kafka keys once: reads the PEM files (errors name the key and the file), parses the JAAS
 * config, and checks a client key matches its certificate. Throws ConfigError on a bad key.
 */
export function kafkaConnection(config: KafkaConnectionConfig, opts: { source?: string; log?: Logger } = {}): KafkaConnection {
  const { source } = opts;
  const log = opts.log ?? rootLog;
  const brokers = config['kafka.bootstrap.servers'];
  const target = brokers.join(',');
  const protocol = config['kafka.security.protocol'];
  const sasl = saslLogin(config, source);
  let tls: TlsOptions | undefined;
  let clientCertificate: KafkaConnection['clientCertificate'];
  if (protocol === 'SSL' || protocol === 'SASL_SSL') {
    tls = {};
    const caPath = config['kafka.ssl.ca.location'];
    if (caPath) tls.ca = readCertificates('kafka.ssl.ca.location', caPath, source, 'the CA').pem;
    const certPath = config['kafka.ssl.certificate.location'];
    if (certPath) {
      const { pem, first } = readCertificates('kafka.ssl.certificate.location', certPath, source, 'the client certificate');
      const key = readPrivateKey(config, source);
      if (!first.checkPrivateKey(key.key))
        throw new ConfigError(
          'kafka.ssl.key.location',
          `the client key file ${config['kafka.ssl.key.location']} does not belong to the certificate ${certPath}`,
          source,
        );
      tls.cert = pem;
      // Node decrypts with `passphrase`; handing it the decrypted KeyObject's PEM would also do, this keeps one path.
      tls.key = key.pem;
      if (config['kafka.ssl.key.password'] !== undefined) {
        registerSecret(config['kafka.ssl.key.password']);
        tls.passphrase = config['kafka.ssl.key.password'];
      }
      clientCertificate = { path: certPath, cert: first };
    }
    if (config['kafka.ssl.endpoint.identification.algorithm'] === '') {
      // Node checks the host name in tls.checkServerIdentity; skipping it keeps the chain check.
      tls.checkServerIdentity = () => undefined;
      if (!warnedHostCheckOff.has(target)) {
        warnedHostCheckOff.add(target);
        log.warn(
          { kafka: target },
          'kafka.ssl.endpoint.identification.algorithm is empty: Tide does not check that the broker certificate names the host it connects to, so any server with a certificate from a trusted CA could pose as the broker. Set it to https (the default) once the broker certificate names its host.',
        );
      }
    }
  }
  const timeouts = { connectionTimeout: KAFKA_CONNECT_TIMEOUT_MS, authenticationTimeout: KAFKA_AUTH_TIMEOUT_MS };
  return {
    brokers,
    target,
    protocol,
    tls,
    sasl,
    clientCertificate,
    kafkajs(clientId, extra = {}) {
      return {
        ...timeouts,
        ...extra,
        clientId,
        brokers,
        ...(tls ? { ssl: tls } : {}),
        ...(sasl
          ? {
              sasl: {
                mechanism: KAFKAJS_MECHANISM[sasl.mechanism],
                username: sasl.username,
                password: sasl.password,
              } as KafkajsSaslOptions,
            }
          : {}),
      };
    },
    platformatic() {
      return {
        bootstrapBrokers: brokers,
        connectTimeout: KAFKA_CONNECT_TIMEOUT_MS,
        ...(tls ? { tls, tlsServerName: brokers.every((b) => isIP(hostOf(b)) === 0) } : {}),
        ...(sasl ? { sasl: { mechanism: sasl.mechanism, username: sasl.username, password: sasl.password } } : {}),
      };
    },
    describe() {
      return {
        bootstrap: target,
        protocol,
        ...(sasl ? { mechanism: sasl.mechanism, user: sasl.username } : {}),
        ...(clientCertificate ? { clientCertificate: clientCertificate.path } : {}),
      };
    },
  };
}

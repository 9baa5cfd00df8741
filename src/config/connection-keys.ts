import { z } from 'zod';
import { int } from './config-types.ts';

/**
 * Connection keys shared by the source and sink connector files, named as Kafka, Debezium and
 * Confluent's clients name them, so a user can copy what a managed service's portal hands out.
 * What each key does to a client is decided in one place per connection:
 * Kafka `src/events/kafka-connection.ts`, the registry `src/events/schema-registry.ts`.
 */

export const KAFKA_SECURITY_PROTOCOLS = ['PLAINTEXT', 'SSL', 'SASL_PLAINTEXT', 'SASL_SSL'] as const;
export const KAFKA_SASL_MECHANISMS = ['PLAIN', 'SCRAM-SHA-256', 'SCRAM-SHA-512'] as const;

export const kafkaSecurityShape = {
  'kafka.security.protocol': z.enum(KAFKA_SECURITY_PROTOCOLS).default('PLAINTEXT'),
  'kafka.sasl.mechanism': z.enum(KAFKA_SASL_MECHANISMS).optional(),
  'kafka.sasl.username': z.string().min(1).optional(),
  'kafka.sasl.password': z.string().optional(),
  /** The Java form portals hand out: `org.apache.kafka.common.security.plain.PlainLoginModule required username="…" password="…";`. */
  'kafka.sasl.jaas.config': z.string().min(1).optional(),
  /** PEM file of the CA(s) to trust instead of Node's built-in roots. */
  'kafka.ssl.ca.location': z.string().min(1).optional(),
  /** PEM client certificate and key, for mutual TLS. */
  'kafka.ssl.certificate.location': z.string().min(1).optional(),
  'kafka.ssl.key.location': z.string().min(1).optional(),
  'kafka.ssl.key.password': z.string().optional(),
  /** `https` checks the broker's host name against its certificate; empty turns the check off (logged as a warning). */
  'kafka.ssl.endpoint.identification.algorithm': z.enum(['https', '']).default('https'),
};

/** The Kafka security keys after parsing (defaults applied). */
export type KafkaSecurityConfig = z.output<z.ZodObject<typeof kafkaSecurityShape>>;
export type KafkaSaslMechanism = (typeof KAFKA_SASL_MECHANISMS)[number];

export const registryAuthShape = {
  /** `USER_INFO` takes `schema.registry.basic.auth.user.info`; `URL` takes `user:password@` in the URL. */
  'schema.registry.basic.auth.credentials.source': z.enum(['USER_INFO', 'URL']).optional(),
  /** `key:secret`, e.g. a Confluent Cloud Schema Registry API key and secret. */
  'schema.registry.basic.auth.user.info': z
    .string()
    .regex(/^[^:]+:.+$/, 'must be key:secret (the API key, a colon, then the secret)')
    .optional(),
  'schema.registry.bearer.auth.token': z.string().min(1).optional(),
  /** PEM file of the CA(s) to trust for an https registry. */
  'schema.registry.ssl.ca.location': z.string().min(1).optional(),
};

export const retryShape = {
  /**
   * How long a transient connection failure (a restarting database or broker, a registry that does not
   * answer, a topic the sink waits for) is retried before the connector stops, as Kafka Connect's
   * `errors.retry.timeout`: -1 retries for ever, 0 stops at the first failure.
   */
  'errors.retry.timeout': int(-1).default(300_000),
  /** The longest wait between two tries (the backoff doubles up to it). */
  'errors.retry.delay.max.ms': int(1).default(10_000),
};

type Issue = { code: 'custom'; path: string[]; message: string };
type Ctx = { addIssue(issue: Issue): void };

/** Cross-key checks for the Kafka security keys. */
export function checkKafkaSecurity(c: Record<string, unknown>, ctx: Ctx): void {
  const protocol = c['kafka.security.protocol'] as string;
  const sasl = protocol.startsWith('SASL_');
  const hasSaslKeys =
    c['kafka.sasl.mechanism'] !== undefined || c['kafka.sasl.username'] !== undefined || c['kafka.sasl.jaas.config'] !== undefined;
  if (sasl) {
    if (c['kafka.sasl.mechanism'] === undefined)
      ctx.addIssue({
        code: 'custom',
        path: ['kafka.sasl.mechanism'],
        message: `is required with kafka.security.protocol ${protocol}: one of ${KAFKA_SASL_MECHANISMS.join(', ')}`,
      });
    if (c['kafka.sasl.username'] === undefined && c['kafka.sasl.jaas.config'] === undefined)
      ctx.addIssue({
        code: 'custom',
        path: ['kafka.sasl.username'],
        message: `kafka.security.protocol ${protocol} needs credentials: set kafka.sasl.username and kafka.sasl.password, or kafka.sasl.jaas.config`,
      });
  } else if (hasSaslKeys) {
    ctx.addIssue({
      code: 'custom',
      path: ['kafka.security.protocol'],
      message: `is ${protocol}, so the kafka.sasl.* keys would be ignored: set it to SASL_SSL (or SASL_PLAINTEXT)`,
    });
  }
  const tlsKeys = ['kafka.ssl.ca.location', 'kafka.ssl.certificate.location', 'kafka.ssl.key.location'].filter((k) => c[k] !== undefined);
  if (!protocol.endsWith('SSL') && tlsKeys.length)
    ctx.addIssue({
      code: 'custom',
      path: ['kafka.security.protocol'],
      message: `is ${protocol}, so ${tlsKeys.join(', ')} would be ignored: set it to SSL or SASL_SSL`,
    });
  if ((c['kafka.ssl.certificate.location'] === undefined) !== (c['kafka.ssl.key.location'] === undefined))
    ctx.addIssue({
      code: 'custom',
      path: ['kafka.ssl.key.location'],
      message: 'mutual TLS needs both kafka.ssl.certificate.location and kafka.ssl.key.location',
    });
}

/** Cross-key checks for the registry's credentials. */
export function checkRegistryAuth(c: Record<string, unknown>, ctx: Ctx): void {
  const source = c['schema.registry.basic.auth.credentials.source'];
  const userInfo = c['schema.registry.basic.auth.user.info'];
  if (source === 'USER_INFO' && userInfo === undefined)
    ctx.addIssue({
      code: 'custom',
      path: ['schema.registry.basic.auth.user.info'],
      message: 'is required when schema.registry.basic.auth.credentials.source is USER_INFO (key:secret)',
    });
  if (userInfo !== undefined && c['schema.registry.bearer.auth.token'] !== undefined)
    ctx.addIssue({
      code: 'custom',
      path: ['schema.registry.bearer.auth.token'],
      message: 'set either basic auth (schema.registry.basic.auth.user.info) or a bearer token, not both',
    });
}

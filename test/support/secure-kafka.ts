import { stackCertPaths } from '../../src/stack/certs.ts';
import { stackContext } from '../../src/stack/context.ts';

/**
 * Connector keys for the local broker's secured listeners (src/stack/kafka-security.ts), from `.stack/env`
 * (the integration global setup exports it). Each returns the `kafka.*` keys only; spread them over a
 * source or sink file's keys.
 */
function env(name: string): string {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run \`npm run stack:up\` (it writes the secured Kafka listeners into .stack/env)`);
  return v;
}

export const stackCerts = () => stackCertPaths(stackContext());

/** SASL_SSL with SCRAM (SHA-512 unless told), trusting the stack CA. */
export function scramKeys(mechanism: 'SCRAM-SHA-512' | 'SCRAM-SHA-256' = 'SCRAM-SHA-512'): Record<string, string> {
  return {
    'kafka.bootstrap.servers': env('KAFKA_SASL_SSL_BROKERS'),
    'kafka.security.protocol': 'SASL_SSL',
    'kafka.sasl.mechanism': mechanism,
    'kafka.sasl.username': env('KAFKA_SCRAM_USERNAME'),
    'kafka.sasl.password': env('KAFKA_SCRAM_PASSWORD'),
    'kafka.ssl.ca.location': env('TIDE_STACK_CA'),
  };
}

/** SASL_SSL PLAIN as Azure Event Hubs clients log in: user `$ConnectionString`, in the Java JAAS form a portal hands out. */
export function eventHubsKeys(): Record<string, string> {
  const connectionString = env('KAFKA_EVENT_HUBS_CONNECTION_STRING');
  return {
    'kafka.bootstrap.servers': env('KAFKA_SASL_SSL_BROKERS'),
    'kafka.security.protocol': 'SASL_SSL',
    'kafka.sasl.mechanism': 'PLAIN',
    'kafka.sasl.jaas.config': `org.apache.kafka.common.security.plain.PlainLoginModule required username="$ConnectionString" password="${connectionString}";`,
    'kafka.ssl.ca.location': env('TIDE_STACK_CA'),
  };
}

/** SSL with a client certificate (mutual TLS) on the listener that requires one. */
export function mtlsKeys(cert = env('TIDE_STACK_CLIENT_CERT'), key = env('TIDE_STACK_CLIENT_KEY')): Record<string, string> {
  return {
    'kafka.bootstrap.servers': env('KAFKA_MTLS_BROKERS'),
    'kafka.security.protocol': 'SSL',
    'kafka.ssl.ca.location': env('TIDE_STACK_CA'),
    'kafka.ssl.certificate.location': cert,
    'kafka.ssl.key.location': key,
  };
}

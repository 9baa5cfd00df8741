/**
 * The native local stack: real PostgreSQL, Kafka and a Confluent-API schema
 * registry, run as plain processes because these machines have no Docker
 * engine. Each service implements this narrow interface; `stack.ts` drives
 * them in order.
 */
export interface StackPorts {
  postgres: number;
  kafka: number;
  kafkaController: number;
  registry: number;
  /** Azurite's blob endpoint. */
  azurite: number;
  /** Kafka's SASL_SSL listener (SCRAM-SHA-512 and PLAIN users), next to the plaintext one. */
  kafkaSaslSsl: number;
  /** Kafka's SSL listener that requires a client certificate (mutual TLS). */
  kafkaMtls: number;
  /** The S3-compatible object store for the lake on S3. */
  s3: number;
}

export interface StackContext {
  /** Project root (where package.json lives). */
  root: string;
  /** Runtime state: data dirs, logs, pid files. Default `<root>/.stack`. */
  stackDir: string;
  /** Download cache, kept between runs so a second `stack up` starts in seconds. Default `<root>/.cache`. */
  cacheDir: string;
  ports: StackPorts;
  /** Progress messages for humans (stderr). */
  say(message: string): void;
}

export interface StackService {
  readonly name: 'postgres' | 'kafka' | 'registry' | 'azurite' | 's3';
  /** Download or install what the service needs. Idempotent and cached. */
  install(ctx: StackContext): Promise<void>;
  /** Start the service detached from this process. Must not be called when already up. */
  start(ctx: StackContext): Promise<void>;
  /** Resolve once the service answers real requests; reject with StackServiceError on timeout. */
  waitReady(ctx: StackContext, timeoutMs: number): Promise<void>;
  /** Idempotent setup that also runs when the service was already up, e.g. databases added by a newer Tide. */
  ensure?(ctx: StackContext): Promise<void>;
  /** Whether the service answers right now (a real protocol check, not just a pid). */
  isUp(ctx: StackContext): Promise<boolean>;
  /** Stop the service and wait for it to exit. Idempotent. */
  stop(ctx: StackContext): Promise<void>;
  /** Path of the service's log file, named in errors. */
  logPath(ctx: StackContext): string;
  /** Further listeners (e.g. Kafka's secured ones) for `stack status`, each checked for real. */
  listeners?(ctx: StackContext): Promise<{ name: string; address: string; up: boolean; detail: string }[]>;
  /** Connection settings this service contributes to `.stack/env`. */
  env(ctx: StackContext): Record<string, string>;
}

/**
 * Every error Tide raises on purpose lives here. Each sets `name`, says what
 * is wrong and what to do, names the object at fault, and says whether a
 * retry can help (`retriable`).
 */
export class TideError extends Error {
  readonly retriable: boolean;
  /** The CLI's exit code when this error ends a command (default 1). */
  readonly exitCode: number;
  constructor(message: string, options: { cause?: unknown; retriable?: boolean; exitCode?: number } = {}) {
    super(message, { cause: options.cause });
    this.name = 'TideError';
    this.retriable = options.retriable ?? false;
    this.exitCode = options.exitCode ?? 1;
  }
}

/** A local stack service failed to install, start or become ready. */
export class StackServiceError extends TideError {
  constructor(
    readonly service: string,
    readonly logPath: string,
    message: string,
    options: { cause?: unknown } = {},
  ) {
    super(`${service}: ${message}\n  log: ${logPath}`, options);
    this.name = 'StackServiceError';
  }
}

/** A configuration key is missing or has a bad value. */
export class ConfigError extends TideError {
  constructor(
    readonly key: string,
    message: string,
    readonly source?: string,
  ) {
    super(`${source ? `${source}: ` : ''}${key ? `${key}: ` : ''}${message}`);
    this.name = 'ConfigError';
  }
}

/** A column value's text could not be turned into its Avro value. */
export class TypeConversionError extends TideError {
  constructor(
    readonly column: string,
    readonly type: string,
    readonly value: string,
    reason: string,
    options: { cause?: unknown } = {},
  ) {
    const shown = value.length > 200 ? `${value.slice(0, 200)}… (${value.length} characters)` : value;
    super(`column ${column} (${type}): value ${JSON.stringify(shown)} ${reason}`, options);
    this.name = 'TypeConversionError';
  }
}

/**
 * One of Tide's connections (Postgres, Postgres replication, Kafka, the schema registry, the lake's
 * object store) failed. The message always has three parts: which connection (with its address, never
 * its credentials), what went wrong, and what to do. `retriable` says whether waiting can help (a
 * restarting server, a broker leadership change) or not (a wrong password, a wrong CA, a missing right):
 * retry loops (`errors.retry.timeout.ms`) retry only the former, and end at once on the latter.
 */
export type ConnectionKind = 'postgres' | 'postgres replication' | 'kafka' | 'schema registry' | 'lake';

export class ConnectionError extends TideError {
  constructor(
    /** Which connection, e.g. `kafka`, `postgres`. */
    readonly kind: ConnectionKind,
    /** Where it points, e.g. `127.0.0.1:59092` or `s3://bucket/prefix`: never a password. */
    readonly target: string,
    /** What went wrong, in the user's words, e.g. `the password for user tide was refused`. */
    readonly problem: string,
    /** What to do about it, e.g. `check database.password`. */
    readonly fix: string,
    options: { cause?: unknown; retriable?: boolean; exitCode?: number; code?: string } = {},
  ) {
    super(`${kind} (${target}): ${problem}. ${fix}`, options);
    this.name = 'ConnectionError';
    this.code = options.code;
  }
  /** A stable short code for the kind of failure (e.g. `auth`, `tls`, `unreachable`, `timeout`), for tests and metrics. */
  readonly code: string | undefined;
}

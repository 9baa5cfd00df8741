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

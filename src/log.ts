import pino from 'pino';

/**
 * Structured JSON logs on stderr (stdout stays free for command output).
 * Scope a logger with `log.child({ connector })`. Level: TIDE_LOG_LEVEL (default info).
 */
export const log = pino(
  {
    level: process.env.TIDE_LOG_LEVEL ?? 'info',
    base: { app: 'tide' },
    // Secrets must never reach a log line, whatever object is logged.
    redact: {
      paths: ['*.password', '*.*.password', 'password', '*["database.password"]', 'config["database.password"]'],
      censor: '[redacted]',
    },
  },
  pino.destination({ fd: 2, sync: false }),
);

export type Logger = pino.Logger;

import pino from 'pino';

/**
 * Structured JSON logs on stderr (stdout stays free for command output), one line per event.
 * Scope a logger with `log.child({ connector })`. Level: TIDE_LOG_LEVEL (default info).
 *
 * Secrets never reach a log line, whatever is logged (issue 5, "Logs"), in two layers:
 * 1. pino's `redact` censors known secret-bearing keys of logged objects (fast, path-based).
 * 2. Every finished line goes through `scrubSecrets` (pino's `hooks.streamWrite`), which replaces
 *    the values registered with `registerSecret` / `registerConfigSecrets` (and the secrets found in
 *    the environment at start-up) and well-known credential shapes: a URL's `user:password@`,
 *    Azure `AccountKey=` / `SharedAccessSignature=` / `sig=`, libpq `password=`. This also covers
 *    free text such as error messages and causes, which path-based redaction cannot see.
 * (pino: https://getpino.io/#/docs/redaction and the `hooks.streamWrite` option in https://getpino.io/#/docs/api.)
 * Values shorter than MIN_SECRET_LENGTH are not scrubbed by value (they would censor ordinary
 * words, e.g. the local stack's password "tide"); the key- and shape-based rules still apply.
 */
export const MIN_SECRET_LENGTH = 8;
export const REDACTED = '[redacted]';

const SECRET_KEY = /password|passwd|secret|salt|token|credential|(^|[._-])key$|accountkey|connection[._-]?string|sasl\.jaas/i;
const SECRET_ENV = /PASSWORD|PASSWD|SECRET|SALT|TOKEN|CREDENTIAL|_KEY$|CONNECTION_STRING/;

const SHAPES: [RegExp, string][] = [
  // scheme://user:password@host (RFC 3986 userinfo; browsers and fetch refuse it, but configs carry it)
  [/\b([a-z][a-z0-9+.-]*:\/\/[^/\s:@"'\\]*:)[^@/\s"'\\]+@/gi, `$1${REDACTED}@`],
  // Azure Storage connection strings and SAS tokens
  [/\b(AccountKey|SharedAccessSignature|SharedAccessKey)=[^;"'\s\\]+/gi, `$1=${REDACTED}`],
  [/([?&]sig=)[^&"'\s\\]+/gi, `$1${REDACTED}`],
  // libpq keyword/value connection strings
  [/\b(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s"';\\]+)/gi, `$1${REDACTED}`],
];

const secrets = new Set<string>();
let byValue: RegExp | undefined;

/** From now on, `value` (and its JSON-escaped and URL-encoded forms) is replaced in every log line and by `scrubSecrets`. */
export function registerSecret(value: string | undefined | null): void {
  if (typeof value !== 'string' || value.length < MIN_SECRET_LENGTH) return;
  const forms = [value, JSON.stringify(value).slice(1, -1), encodeURIComponent(value)];
  let added = false;
  for (const f of forms)
    if (!secrets.has(f)) {
      secrets.add(f);
      added = true;
    }
  if (!added) return;
  // Longest first, so a secret that contains another is replaced whole.
  const alternatives = [...secrets].sort((a, b) => b.length - a.length).map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
  byValue = new RegExp(alternatives.join('|'), 'g');
}

/** Register every secret a connector config holds: values of secret-named keys, and passwords in URLs. */
export function registerConfigSecrets(config: Record<string, unknown>): void {
  for (const [key, value] of Object.entries(config)) {
    if (typeof value !== 'string') continue;
    if (SECRET_KEY.test(key)) registerSecret(value);
    // schema.registry.basic.auth.user.info is `key:secret`: the secret alone must not show either.
    if (/user\.info$/i.test(key)) {
      registerSecret(value);
      registerSecret(value.slice(value.indexOf(':') + 1));
    }
    for (const m of value.matchAll(/[a-z][a-z0-9+.-]*:\/\/[^/\s:@]*:([^@/\s]+)@/gi)) {
      registerSecret(m[1]);
      registerSecret(safeDecode(m[1]!));
    }
    for (const m of value.matchAll(/\b(?:AccountKey|SharedAccessSignature)=([^;\s]+)/gi)) registerSecret(m[1]);
  }
}

/** `text` with every registered secret and every known credential shape replaced by [redacted]. */
export function scrubSecrets(text: string): string {
  let out = byValue ? text.replace(byValue, REDACTED) : text;
  for (const [re, to] of SHAPES) out = out.replace(re, to);
  return out;
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s; // not percent-encoded: the raw form is registered already
  }
}

/**
 * The environment's secrets (PGPASSWORD, AZURE_STORAGE_KEY, AZURE_STORAGE_CONNECTION_STRING, TIDE_MASK_SALT, …),
 * which `${env:…}` references resolve to. Runs at start-up; call it again after loading more variables (.stack/env).
 */
export function registerEnvironmentSecrets(env: NodeJS.ProcessEnv): void {
  const picked: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(env)) if (SECRET_ENV.test(name)) picked[`${name}.key`] = value;
  registerConfigSecrets(picked);
}

registerEnvironmentSecrets(process.env);

/** A logger with Tide's settings writing to `destination` (the process logger writes to stderr). */
export function createLogger(destination: pino.DestinationStream, level = process.env.TIDE_LOG_LEVEL ?? 'info'): pino.Logger {
  return pino(
    {
      level,
      base: { app: 'tide' },
      redact: {
        paths: [
          'password',
          '*.password',
          '*.*.password',
          'config["database.password"]',
          '*["database.password"]',
          'config["mask.hash.salt"]',
          '*["mask.hash.salt"]',
          '*.salt',
          '*.connectionString',
          '*.accountKey',
          '*.sasToken',
          '*.headers.authorization',
          '*.*.headers.authorization',
        ],
        censor: REDACTED,
      },
      hooks: { streamWrite: scrubSecrets },
    },
    destination,
  );
}

export const log = createLogger(pino.destination({ fd: 2, sync: false }));

export type Logger = pino.Logger;

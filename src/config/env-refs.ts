import { readFileSync } from 'node:fs';
import { ConfigError } from '../errors.ts';

const REF = /\$\{(env|file):([^}:]+|\/[^}]*?)(?::-([^}]*))?\}/g;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Replace config provider references in every string value, in Kafka Connect's `${provider:key}` shape:
 *
 * - `${env:NAME}` or `${env:NAME:-default}`: an environment variable;
 * - `${file:/path}`: the whole file, trimmed, as Docker and Kubernetes mount secrets
 *   (`/run/secrets/…`, `/var/run/secrets/…`).
 *
 * A missing variable without a default, or an unreadable file, is an error naming the key and the
 * variable or path, never the value.
 */
export function resolveEnvRefs(config: Record<string, unknown>, env: NodeJS.ProcessEnv, source: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(config)) {
    if (typeof value !== 'string') {
      out[key] = value;
      continue;
    }
    out[key] = value.replace(REF, (_m, provider: string, name: string, fallback: string | undefined) => {
      if (provider === 'file') return readSecretFile(key, name, source);
      if (!ENV_NAME.test(name))
        throw new ConfigError(key, `\${env:${name}} is not a valid environment variable name (letters, digits and _)`, source);
      const v = env[name];
      if (v !== undefined) return v;
      if (fallback !== undefined) return fallback;
      throw new ConfigError(
        key,
        `refers to environment variable ${name}, which is not set. Export ${name} or put the value in the file.`,
        source,
      );
    });
  }
  return out;
}

function readSecretFile(key: string, path: string, source: string): string {
  if (!path.startsWith('/'))
    throw new ConfigError(key, `\${file:${path}} must name an absolute path, e.g. \${file:/run/secrets/kafka-password}`, source);
  try {
    return readFileSync(path, 'utf8').trim();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT' ? 'does not exist' : code === 'EACCES' ? 'is not readable by this user' : `cannot be read (${code ?? 'error'})`;
    throw new ConfigError(key, `refers to the file ${path}, which ${why}. Mount the secret there or fix the path.`, source);
  }
}

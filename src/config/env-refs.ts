import { ConfigError } from '../errors.ts';

const ENV_REF = /\$\{env:([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

/**
 * Replace `${env:NAME}` (or `${env:NAME:-default}`) in every string value.
 * Kafka Connect's config providers use the same `${provider:key}` shape.
 * A missing variable without a default is an error naming the key and the variable.
 */
export function resolveEnvRefs(config: Record<string, unknown>, env: NodeJS.ProcessEnv, source: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(config)) {
    if (typeof value !== 'string') {
      out[key] = value;
      continue;
    }
    out[key] = value.replace(ENV_REF, (_m, name: string, fallback: string | undefined) => {
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

import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../errors.ts';
import type { StackContext, StackPorts } from './service.ts';

/**
 * The project root: the folder holding Tide's package.json, the nearest one above this module (src/stack/
 * under tsx, dist/<digest>/src/stack/ in the precompiled CLI, see bin/cli-build.js).
 */
export const PROJECT_ROOT = findRoot(dirname(fileURLToPath(import.meta.url)));

function findRoot(from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    if (dirname(dir) === dir) return resolve(from, '..', '..');
  }
}

/** Non-default loopback ports, so the stack never collides with a system service. Override with env vars. */
export const DEFAULT_PORTS: StackPorts = {
  postgres: 55432,
  kafka: 59092,
  kafkaController: 59093,
  registry: 58081,
  azurite: 50000,
  kafkaSaslSsl: 59094,
  kafkaMtls: 59095,
  s3: 59000,
};
/** The variable that moves each port (named in errors). */
export const PORT_ENV: Record<keyof StackPorts, string> = {
  postgres: 'TIDE_PG_PORT',
  kafka: 'TIDE_KAFKA_PORT',
  kafkaController: 'TIDE_KAFKA_CONTROLLER_PORT',
  registry: 'TIDE_REGISTRY_PORT',
  azurite: 'TIDE_AZURITE_PORT',
  kafkaSaslSsl: 'TIDE_KAFKA_SASL_SSL_PORT',
  kafkaMtls: 'TIDE_KAFKA_MTLS_PORT',
  s3: 'TIDE_S3_PORT',
};

function portFromEnv(key: keyof StackPorts, env: NodeJS.ProcessEnv): number {
  const name = PORT_ENV[key];
  const raw = env[name];
  if (raw === undefined || raw === '') return DEFAULT_PORTS[key];
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new ConfigError(name, `must be a TCP port number (1-65535), got "${raw}"`);
  }
  return port;
}

export function stackContext(
  env: NodeJS.ProcessEnv = process.env,
  say: (m: string) => void = (m) => void process.stderr.write(`${m}\n`),
): StackContext {
  const root = PROJECT_ROOT;
  return {
    root,
    stackDir: resolve(env.TIDE_STACK_DIR ?? join(root, '.stack')),
    cacheDir: resolve(env.TIDE_CACHE_DIR ?? join(root, '.cache')),
    ports: {
      postgres: portFromEnv('postgres', env),
      kafka: portFromEnv('kafka', env),
      kafkaController: portFromEnv('kafkaController', env),
      registry: portFromEnv('registry', env),
      azurite: portFromEnv('azurite', env),
      kafkaSaslSsl: portFromEnv('kafkaSaslSsl', env),
      kafkaMtls: portFromEnv('kafkaMtls', env),
      s3: portFromEnv('s3', env),
    },
    say,
  };
}

/** `.stack/env`: the one place the CLI and tests read connection settings from. */
export function stackEnvPath(ctx: Pick<StackContext, 'stackDir'>): string {
  return join(ctx.stackDir, 'env');
}

/** Parse `.stack/env` (KEY=value lines). Returns {} when the stack was never started. */
export function readStackEnv(path = stackEnvPath(stackContext())): Record<string, string> {
  if (!existsSync(path)) return {};
  const out: Record<string, string> = {};
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (m?.[1] !== undefined && m[2] !== undefined) out[m[1]] = m[2];
  }
  return out;
}

/** Connection settings: the process environment wins over `.stack/env`. */
export function connectionSetting(name: 'DATABASE_URL' | 'KAFKA_BROKERS' | 'SCHEMA_REGISTRY_URL'): string {
  const value = process.env[name] ?? readStackEnv()[name];
  if (!value) {
    throw new ConfigError(name, 'is not set. Start the local stack with `npm run stack:up` (it writes .stack/env), or export it.');
  }
  return value;
}

/** Copy `.stack/env` into process.env (variables already set win), so connector files can say ${env:PGPASSWORD}. */
export function loadStackEnvIntoProcess(): void {
  for (const [k, v] of Object.entries(readStackEnv(stackEnvPath(stackContext())))) process.env[k] ??= v;
}

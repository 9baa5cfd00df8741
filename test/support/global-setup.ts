import { spawnSync } from 'node:child_process';
import type { TestProject } from 'vitest/node';
import { readStackEnv, stackContext } from '../../src/stack/context.ts';
import { stackStatus } from '../../src/stack/stack.ts';

/**
 * Integration tests run against the real local stack. Check every service
 * answers before any test starts, then export the connection settings from
 * .stack/env into the environment the test files see.
 */
export default async function setup(project: TestProject): Promise<void> {
  const ctx = stackContext();
  const down = (await stackStatus(ctx)).filter((s) => !s.up);
  if (down.length > 0) {
    throw new Error(
      `integration tests need the local stack, but ${down.map((s) => s.name).join(', ')} ${down.length === 1 ? 'is' : 'are'} down. ` +
        'Run `npm run stack:up` first (logs: ' +
        down.map((s) => s.log).join(', ') +
        ').',
    );
  }
  // The independent Delta reader (delta-rs from PyPI, in .cache/venv): installed here too, so `npm test`
  // after the quickstart's first command works on a fresh clone. Idempotent; returns at once when present.
  const venv = spawnSync('bash', ['scripts/setup-python.sh'], { encoding: 'utf8' });
  if (venv.status !== 0)
    console.warn(
      `scripts/setup-python.sh failed (${venv.stderr.trim() || `exit ${venv.status}`}); tests that read Delta tables with delta-rs will fail until it works`,
    );
  const env = readStackEnv();
  for (const [k, v] of Object.entries(env)) process.env[k] ??= v;
  project.provide('stackEnv', env);
}

declare module 'vitest' {
  export interface ProvidedContext {
    stackEnv: Record<string, string>;
  }
}

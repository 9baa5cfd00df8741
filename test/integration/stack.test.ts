import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { StackServiceError } from '../../src/errors.ts';
import { stackContext } from '../../src/stack/context.ts';
import { kafkaService } from '../../src/stack/kafka.ts';
import { readPid } from '../../src/stack/process.ts';

const run = promisify(execFile);

/**
 * A second, throwaway broker in its own state folder and ports, so killing it
 * does not disturb the shared stack the other tests use. Jars come from the shared cache.
 */
describe('stack commands', () => {
  const stackDir = mkdtempSync(join(tmpdir(), 'tide-stack-'));
  const env = {
    ...process.env,
    TIDE_STACK_DIR: stackDir,
    TIDE_PG_PORT: '56432',
    TIDE_KAFKA_PORT: '56092',
    TIDE_KAFKA_CONTROLLER_PORT: '56093',
    TIDE_REGISTRY_PORT: '56081',
    TIDE_KAFKA_SASL_SSL_PORT: '56094',
    TIDE_KAFKA_MTLS_PORT: '56095',
  };
  const ctx = stackContext(env, () => undefined);

  afterAll(async () => {
    await kafkaService.stop(ctx);
    rmSync(stackDir, { recursive: true, force: true });
  });

  it('status says Kafka is down after the broker is killed', async () => {
    await kafkaService.install(ctx);
    await kafkaService.start(ctx);
    await kafkaService.waitReady(ctx, 90_000);
    expect(await kafkaService.isUp(ctx)).toBe(true);

    const up = await run('node', ['bin/tide.js', 'stack', 'status', '--json'], { env }).catch((e: { stdout: string }) => e);
    expect(JSON.parse(up.stdout).find((s: { name: string }) => s.name === 'kafka').up).toBe(true);

    process.kill(readPid(join(stackDir, 'kafka', 'kafka.pid'))!, 'SIGKILL');
    const down = await run('node', ['bin/tide.js', 'stack', 'status'], { env }).then(
      () => {
        throw new Error('stack status should exit 1 when a service is down');
      },
      (e: { code: number; stdout: string }) => e,
    );
    expect(down.code).toBe(1);
    expect(down.stdout).toMatch(/^kafka\s+DOWN\s+127\.0\.0\.1:56092/m);
  });

  it('a service that cannot start fails with its name and the path of its log', async () => {
    // The shared Postgres already holds this port, so the broker cannot bind it.
    const clash = stackContext({ ...env, TIDE_KAFKA_PORT: String(stackContext().ports.postgres) }, () => undefined);
    await kafkaService.stop(clash);
    await kafkaService.start(clash);
    const err = await kafkaService.waitReady(clash, 60_000).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StackServiceError);
    expect((err as StackServiceError).service).toBe('kafka');
    expect((err as Error).message).toContain(join(stackDir, 'kafka', 'kafka.log'));
    await kafkaService.stop(clash);
  });
});

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { StackServiceError } from '../../src/errors.ts';
import { stackContext } from '../../src/stack/context.ts';
import { readPid } from '../../src/stack/process.ts';
import { S3_BUCKET, s3Service } from '../../src/stack/s3.ts';
import { stackStatus } from '../../src/stack/stack.ts';

/** A second, throwaway versitygw in its own state folder and port (binary from the shared cache), so the shared one is never disturbed. */
describe('s3 (versitygw) stack service', () => {
  const stackDir = mkdtempSync(join(tmpdir(), 'tide-s3-service-'));
  const ctx = stackContext({ ...process.env, TIDE_STACK_DIR: stackDir, TIDE_S3_PORT: '56030' }, () => undefined);

  afterAll(async () => {
    await s3Service.stop(ctx);
    rmSync(stackDir, { recursive: true, force: true });
  });

  it('starts, answers a signed ListBuckets, creates the bucket, shows up in status, and is down after a kill', async () => {
    await s3Service.install(ctx);
    expect(await s3Service.isUp(ctx)).toBe(false);
    await s3Service.start(ctx);
    await s3Service.waitReady(ctx, 30_000);
    expect(await s3Service.isUp(ctx)).toBe(true);
    expect((await stackStatus(ctx)).find((s) => s.name === 's3')).toMatchObject({ up: true, port: 56030 });
    expect(s3Service.env(ctx)).toMatchObject({ TIDE_S3_ENDPOINT: 'http://127.0.0.1:56030', TIDE_S3_BUCKET: S3_BUCKET });
    // Under TIDE_S3_* only: AWS_* in .stack/env would send production s3:// lakes to this server.
    expect(Object.keys(s3Service.env(ctx)).filter((k) => k.startsWith('AWS_'))).toEqual([]);

    process.kill(readPid(join(stackDir, 's3', 's3.pid'))!, 'SIGKILL');
    await expect.poll(() => s3Service.isUp(ctx), { timeout: 5000 }).toBe(false);
    await s3Service.stop(ctx);
    await s3Service.stop(ctx); // idempotent
  });

  it('a taken port fails with the service name, the port variable and the log path', async () => {
    // The shared versitygw holds its port.
    const clash = stackContext({ ...process.env, TIDE_STACK_DIR: stackDir }, () => undefined);
    const err = await s3Service.start(clash).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StackServiceError);
    expect((err as StackServiceError).service).toBe('s3');
    expect((err as Error).message).toContain('TIDE_S3_PORT');
    expect((err as Error).message).toContain(join(stackDir, 's3', 's3.log'));
  });
});

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { StackServiceError } from '../../src/errors.ts';
import { azuriteService } from '../../src/stack/azurite.ts';
import { stackContext } from '../../src/stack/context.ts';
import { readPid } from '../../src/stack/process.ts';
import { stackStatus } from '../../src/stack/stack.ts';

/** A second, throwaway azurite in its own state folder and port, so the shared one is never disturbed. */
describe('azurite stack service', () => {
  const stackDir = mkdtempSync(join(tmpdir(), 'tide-azurite-'));
  const ctx = stackContext({ ...process.env, TIDE_STACK_DIR: stackDir, TIDE_AZURITE_PORT: '56000' }, () => undefined);

  afterAll(async () => {
    await azuriteService.stop(ctx);
    rmSync(stackDir, { recursive: true, force: true });
  });

  it('starts, answers List Containers, shows up in status, and is down after a kill', async () => {
    await azuriteService.install(ctx);
    expect(await azuriteService.isUp(ctx)).toBe(false);
    await azuriteService.start(ctx);
    await azuriteService.waitReady(ctx, 30_000);
    expect(await azuriteService.isUp(ctx)).toBe(true);
    expect((await stackStatus(ctx)).find((s) => s.name === 'azurite')).toMatchObject({ up: true, port: 56000 });
    expect(azuriteService.env(ctx).AZURE_STORAGE_CONNECTION_STRING).toContain('BlobEndpoint=http://127.0.0.1:56000/devstoreaccount1');

    process.kill(readPid(join(stackDir, 'azurite', 'azurite.pid'))!, 'SIGKILL');
    await expect.poll(() => azuriteService.isUp(ctx), { timeout: 5000 }).toBe(false);
    await azuriteService.stop(ctx);
    await azuriteService.stop(ctx); // idempotent
  });

  it('a taken port fails with the service name, the port variable and the log path', async () => {
    // The shared azurite holds the default port.
    const clash = stackContext({ ...process.env, TIDE_STACK_DIR: stackDir }, () => undefined);
    const err = await azuriteService.start(clash).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StackServiceError);
    expect((err as StackServiceError).service).toBe('azurite');
    expect((err as Error).message).toContain('TIDE_AZURITE_PORT');
    expect((err as Error).message).toContain(join(stackDir, 'azurite', 'azurite.log'));
  });
});

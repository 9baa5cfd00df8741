import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { BlobServiceClient } from '@azure/storage-blob';
import { StackServiceError } from '../errors.ts';
import type { StackContext, StackService } from './service.ts';
import { isPidAlive, portOpen, readPid, spawnDetached, stopPid, tailFile } from './process.ts';

/**
 * Azure Blob Storage for the lake's Azure tests: Microsoft's own emulator, azurite
 * (a devDependency, so `npm ci` installs it), blob service only, state in
 * `.stack/azurite`.
 *
 * Flags, with why:
 *  - `--skipApiVersionCheck`: @azure/storage-blob sends a newer `x-ms-version` than
 *    azurite 3.35 knows and azurite would refuse every request.
 *  - `--disableTelemetry`: azurite reports usage to Microsoft by default; nothing on
 *    the stack should reach the internet (and it cannot here).
 *  - `--debug <file>` only with TIDE_AZURITE_DEBUG=1: several KB per request with headers
 *    and the error azurite answered (the place to look when a conditional put behaves
 *    unexpectedly), which fills the disk in a long demo, so it is off by default.
 * Not `--loose`: the SDK sends no header azurite rejects, and strict mode tells us if
 * Tide ever starts relying on one the real service would ignore.
 */
export const AZURITE_ACCOUNT = 'devstoreaccount1';
/**
 * The emulator's well-known, public account key (documented by Microsoft for azurite and
 * the old storage emulator). Not a secret; only ever valid against a local emulator.
 */
export const AZURITE_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

const dir = (ctx: StackContext) => join(ctx.stackDir, 'azurite');
const pidFile = (ctx: StackContext) => join(dir(ctx), 'azurite.pid');
const debugLog = (ctx: StackContext) => join(dir(ctx), 'azurite-debug.log');
const binary = (ctx: StackContext) => join(ctx.root, 'node_modules', '.bin', 'azurite-blob');

/** The connection string for the local emulator (path-style endpoint: http://127.0.0.1:<port>/devstoreaccount1). */
export function azuriteConnectionString(ctx: Pick<StackContext, 'ports'>): string {
  return [
    'DefaultEndpointsProtocol=http',
    `AccountName=${AZURITE_ACCOUNT}`,
    `AccountKey=${AZURITE_KEY}`,
    `BlobEndpoint=http://127.0.0.1:${ctx.ports.azurite}/${AZURITE_ACCOUNT}`,
  ].join(';');
}

/** One List Containers call, no retries, bounded by `timeoutMs`: the readiness check. */
async function listContainersOk(ctx: StackContext, timeoutMs: number): Promise<boolean> {
  if (!(await portOpen(ctx.ports.azurite, '127.0.0.1', Math.min(1000, timeoutMs)))) return false;
  const client = BlobServiceClient.fromConnectionString(azuriteConnectionString(ctx), {
    retryOptions: { maxTries: 1, tryTimeoutInMs: timeoutMs },
  });
  try {
    await client.listContainers().byPage({ maxPageSize: 1 }).next();
    return true;
  } catch {
    return false;
  }
}

export const azuriteService: StackService = {
  name: 'azurite',

  logPath: (ctx) => join(dir(ctx), 'azurite.log'),

  async install(ctx) {
    if (!existsSync(binary(ctx))) {
      throw new StackServiceError(
        'azurite',
        this.logPath(ctx),
        `${binary(ctx)} is missing; azurite is a devDependency: run npm ci (without --omit=dev)`,
      );
    }
  },

  async start(ctx) {
    if (await portOpen(ctx.ports.azurite)) {
      throw new StackServiceError(
        'azurite',
        this.logPath(ctx),
        `port ${ctx.ports.azurite} is already taken; stop what holds it or set TIDE_AZURITE_PORT`,
      );
    }
    mkdirSync(dir(ctx), { recursive: true });
    spawnDetached({
      command: binary(ctx),
      args: [
        '--blobHost',
        '127.0.0.1',
        '--blobPort',
        String(ctx.ports.azurite),
        '--location',
        dir(ctx),
        ...(process.env.TIDE_AZURITE_DEBUG === '1' ? ['--debug', debugLog(ctx)] : []),
        '--skipApiVersionCheck',
        '--disableTelemetry',
      ],
      cwd: dir(ctx),
      logFile: this.logPath(ctx),
      pidFile: pidFile(ctx),
    });
  },

  async waitReady(ctx, timeoutMs) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (await listContainersOk(ctx, 2000)) return;
      const pid = readPid(pidFile(ctx));
      if (pid === undefined || !isPidAlive(pid)) {
        throw new StackServiceError(
          'azurite',
          this.logPath(ctx),
          `azurite exited during start-up:\n${tailFile(this.logPath(ctx))}\n  debug log: ${debugLog(ctx)}`,
        );
      }
      if (Date.now() >= deadline) {
        throw new StackServiceError(
          'azurite',
          this.logPath(ctx),
          `List Containers on 127.0.0.1:${ctx.ports.azurite} did not succeed within ${timeoutMs} ms:\n` +
            `${tailFile(this.logPath(ctx))}\n  debug log: ${debugLog(ctx)}`,
        );
      }
      await sleep(250);
    }
  },

  isUp: (ctx) => listContainersOk(ctx, 1500),

  stop: (ctx) => stopPid(pidFile(ctx)),

  env: (ctx) => ({ AZURE_STORAGE_CONNECTION_STRING: azuriteConnectionString(ctx) }),
};

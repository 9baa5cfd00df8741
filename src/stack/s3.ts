import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { CreateBucketCommand, ListBucketsCommand, S3Client } from '@aws-sdk/client-s3';
import { StackServiceError } from '../errors.ts';
import type { StackContext, StackService } from './service.ts';
import { isPidAlive, portOpen, readPid, spawnDetached, stopPid, tailFile } from './process.ts';

/**
 * An S3-compatible object store for the lake on S3: versitygw (Versity S3 Gateway, Apache-2.0),
 * built from the Go module proxy with `go install` into the cache, serving a directory of
 * `.stack/s3` through its POSIX backend.
 *
 * Why versitygw (measured here, see the README's "The lake on Amazon S3"): Delta commits need
 * `If-None-Match: *` on PutObject to let exactly one of several concurrent writers create a key.
 * versitygw checks that precondition under a per-object publish lock, and 100 rounds of 20
 * concurrent conditional puts of one key each had exactly one winner. moto's server (PyPI) let
 * two writers win in 1 round of 100, and Adobe S3Mock 4.12 (Maven Central) in 61 of 100; neither
 * checks request signatures by default, so a wrong secret key would go unnoticed. versitygw checks
 * SigV4 signatures like S3, so the wrong-key test is real, and it starts in well under a second.
 * MinIO (also `go install`) passed the same checks, but took four times as long to build, is twice
 * the size and needed 5.5 s to start.
 *
 * Credentials: one root account with a fixed, public key pair (like azurite's well-known key: not
 * a secret, valid only against this local server), passed in the environment, not argv.
 */
export const VERSITYGW_VERSION = 'v1.8.0';
const MODULE = 'github.com/versity/versitygw/cmd/versitygw';
export const S3_ACCESS_KEY_ID = 'tide-local';
/** Public, like azurite's account key: only ever valid against the local stack's versitygw. */
export const S3_SECRET_ACCESS_KEY = 'tide-local-not-a-secret';
export const S3_REGION = 'us-east-1';
/** The bucket `stack up` creates for the tests and the demo. */
export const S3_BUCKET = 'tide-lake';
const MARKER = '.tide-installed';

const run = promisify(execFile);
const installDir = (ctx: StackContext) => join(ctx.cacheDir, 's3', `versitygw-${VERSITYGW_VERSION}`);
const binary = (ctx: StackContext) => join(installDir(ctx), 'versitygw');
const dir = (ctx: StackContext) => join(ctx.stackDir, 's3');
const dataDir = (ctx: StackContext) => join(dir(ctx), 'data');
const sidecarDir = (ctx: StackContext) => join(dir(ctx), 'meta');
const pidFile = (ctx: StackContext) => join(dir(ctx), 's3.pid');
export const s3Endpoint = (ctx: Pick<StackContext, 'ports'>) => `http://127.0.0.1:${ctx.ports.s3}`;

function localClient(ctx: StackContext, timeoutMs: number): S3Client {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  return new S3Client({
    endpoint: s3Endpoint(ctx),
    region: S3_REGION,
    forcePathStyle: true,
    credentials: { accessKeyId: S3_ACCESS_KEY_ID, secretAccessKey: S3_SECRET_ACCESS_KEY },
    maxAttempts: 1,
    requestHandler: { connectionTimeout: timeoutMs, requestTimeout: timeoutMs },
  });
}

/** A signed ListBuckets: the server is up and accepts the stack's credentials. */
async function listBucketsOk(ctx: StackContext, timeoutMs: number): Promise<boolean> {
  if (!(await portOpen(ctx.ports.s3, '127.0.0.1', Math.min(1000, timeoutMs)))) return false;
  const client = localClient(ctx, timeoutMs);
  try {
    await client.send(new ListBucketsCommand({}));
    return true;
  } catch {
    return false;
  } finally {
    client.destroy();
  }
}

export const s3Service: StackService = {
  name: 's3',

  logPath: (ctx) => join(dir(ctx), 's3.log'),

  async install(ctx) {
    const target = installDir(ctx);
    if (existsSync(join(target, MARKER))) return;
    const fail = (message: string, cause?: unknown) => new StackServiceError('s3', this.logPath(ctx), message, { cause });
    try {
      await run('go', ['version']);
    } catch (err) {
      throw fail(
        'versitygw is built with Go (1.24+): install it (https://go.dev/dl, or apt-get install golang-go) and put go on PATH',
        err,
      );
    }
    ctx.say(`s3: building versitygw ${VERSITYGW_VERSION} with go install from the Go module proxy (once; a few minutes) ...`);
    const partial = `${target}.partial-${process.pid}`;
    rmSync(partial, { recursive: true, force: true });
    mkdirSync(partial, { recursive: true });
    const started = Date.now();
    try {
      await run('go', ['install', '-trimpath', `${MODULE}@${VERSITYGW_VERSION}`], {
        env: {
          ...process.env,
          GOBIN: partial,
          // Module downloads stay in the cache too (read-write, so the cache can be deleted).
          GOMODCACHE: join(ctx.cacheDir, 's3', 'gomod'),
          GOFLAGS: '-modcacherw',
          CGO_ENABLED: '0',
        },
        maxBuffer: 16 * 1024 * 1024,
      });
      if (!existsSync(join(partial, 'versitygw'))) throw new Error('go install finished without a versitygw binary');
      writeFileSync(join(partial, MARKER), `${MODULE}@${VERSITYGW_VERSION}\n`);
      rmSync(target, { recursive: true, force: true });
      renameSync(partial, target);
    } catch (err) {
      rmSync(partial, { recursive: true, force: true });
      const stderr = (err as { stderr?: string }).stderr?.trim();
      throw fail(`go install ${MODULE}@${VERSITYGW_VERSION} failed: ${stderr || (err as Error).message}`, err);
    }
    ctx.say(`s3: versitygw built in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  },

  async start(ctx) {
    if (!existsSync(binary(ctx)))
      throw new StackServiceError('s3', this.logPath(ctx), `not installed in ${installDir(ctx)}; run install first`);
    if (await portOpen(ctx.ports.s3)) {
      throw new StackServiceError('s3', this.logPath(ctx), `port ${ctx.ports.s3} is already taken; stop what holds it or set TIDE_S3_PORT`);
    }
    mkdirSync(dataDir(ctx), { recursive: true });
    mkdirSync(sidecarDir(ctx), { recursive: true });
    spawnDetached({
      command: binary(ctx),
      // --sidecar keeps object metadata (ETags, x-amz-meta-*) in files instead of extended
      // attributes, which not every filesystem (overlayfs in containers, tmpfs) supports.
      args: ['--port', `127.0.0.1:${ctx.ports.s3}`, 'posix', '--sidecar', sidecarDir(ctx), dataDir(ctx)],
      cwd: dir(ctx),
      logFile: this.logPath(ctx),
      pidFile: pidFile(ctx),
      env: { ROOT_ACCESS_KEY_ID: S3_ACCESS_KEY_ID, ROOT_SECRET_ACCESS_KEY: S3_SECRET_ACCESS_KEY, VGW_REGION: S3_REGION },
    });
  },

  async waitReady(ctx, timeoutMs) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (await listBucketsOk(ctx, 2000)) break;
      const pid = readPid(pidFile(ctx));
      if (pid === undefined || !isPidAlive(pid))
        throw new StackServiceError('s3', this.logPath(ctx), `versitygw exited during start-up:\n${tailFile(this.logPath(ctx))}`);
      if (Date.now() >= deadline)
        throw new StackServiceError(
          's3',
          this.logPath(ctx),
          `ListBuckets on ${s3Endpoint(ctx)} did not succeed within ${timeoutMs} ms:\n${tailFile(this.logPath(ctx))}`,
        );
      await sleep(100);
    }
    const client = localClient(ctx, 10_000);
    try {
      await client.send(new CreateBucketCommand({ Bucket: S3_BUCKET }));
    } catch (err) {
      if ((err as Error).name !== 'BucketAlreadyOwnedByYou' && (err as Error).name !== 'BucketAlreadyExists')
        throw new StackServiceError('s3', this.logPath(ctx), `could not create the bucket ${S3_BUCKET}: ${(err as Error).message}`, {
          cause: err,
        });
    } finally {
      client.destroy();
    }
  },

  isUp: (ctx) => listBucketsOk(ctx, 1500),

  stop: (ctx) => stopPid(pidFile(ctx)),

  /**
   * Under TIDE_S3_* names, never AWS_*: the CLI copies .stack/env into its environment, and AWS_*
   * there would send every s3:// lake, production ones too, to this local server with its keys.
   */
  env: (ctx) => ({
    TIDE_S3_ENDPOINT: s3Endpoint(ctx),
    TIDE_S3_REGION: S3_REGION,
    TIDE_S3_BUCKET: S3_BUCKET,
    TIDE_S3_ACCESS_KEY_ID: S3_ACCESS_KEY_ID,
    TIDE_S3_SECRET_ACCESS_KEY: S3_SECRET_ACCESS_KEY,
  }),
};

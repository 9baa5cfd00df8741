import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { S3Client } from '@aws-sdk/client-s3';
import pino from 'pino';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { ConnectionError } from '../../src/errors.ts';
import { openStore } from '../../src/lake/storage/open-store.ts';
import { S3Store } from '../../src/lake/storage/s3-store.ts';
import { objectStoreContract } from '../support/object-store-contract.ts';
import { deletePrefix, listKeys, localS3, s3OpenOptions } from '../support/s3.ts';

/**
 * S3Store against the local stack's real S3-compatible server (versitygw): the ObjectStore contract
 * every store meets, plus what is S3's own: multipart uploads, a conditional put whose response was
 * lost, the refusal to commit where conditional puts are not enforced, and the connection failures
 * (wrong secret key, missing bucket, unreachable endpoint) as ConnectionErrors naming the store.
 */
const s3 = localS3(inject('stackEnv'));
const runId = `${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
const cacheDir = mkdtempSync(join(tmpdir(), 'tide-s3-cache-'));
const lake = (name: string) => `s3://${s3.bucket}/${name}-${runId}`;
const open = (name: string, extra: Parameters<typeof s3OpenOptions>[1] = {}) =>
  openStore(lake(name), { s3: s3OpenOptions(s3, { store: { cacheDir }, ...extra }) });
/** The SDK client inside a store, for a test that changes what it sends. */
const clientOf = (store: unknown) => (store as { client: S3Client }).client;

afterAll(async () => {
  rmSync(cacheDir, { recursive: true, force: true });
});

objectStoreContract('S3Store (versitygw)', {
  open: () => open('contract'),
  cleanup: () => deletePrefix(s3, `contract-${runId}/`),
});

describe('S3Store on versitygw', () => {
  it('names itself s3://<bucket>/<prefix>; s3a:// opens the same place', async () => {
    const a = await open('named');
    expect(a.uri).toBe(lake('named'));
    const b = await openStore(lake('named').replace('s3://', 's3a://'), { s3: s3OpenOptions(s3) });
    expect(b.uri).toBe(lake('named').replace('s3://', 's3a://'));
    await a.put('x.json', Buffer.from('x'));
    expect((await b.get('x.json'))?.toString()).toBe('x');
    await Promise.all([a.close(), b.close()]);
    await deletePrefix(s3, `named-${runId}/`);
  });

  it('opening to write leaves no probe object behind; the probe runs once', async () => {
    const lines: string[] = [];
    const log = pino({ level: 'debug' }, { write: (line: string) => void lines.push(line) });
    const store = (await open('probe', { store: { cacheDir, log } })) as S3Store;
    expect(await listKeys(s3, `probe-${runId}/`)).toEqual([]);
    expect(await store.putIfAbsent('_delta_log/00000000000000000000.json', Buffer.from('{}'))).toBe(true);
    const probes = lines.filter((l) => l.includes('enforces If-None-Match'));
    expect(probes).toHaveLength(1);
    expect(await listKeys(s3, `probe-${runId}/`)).toEqual([`probe-${runId}/_delta_log/00000000000000000000.json`]);
    await store.close();
    await deletePrefix(s3, `probe-${runId}/`);
  });

  it('putFile sends a file larger than the part size as a multipart upload', async () => {
    const store = await open('multipart', { store: { cacheDir, partSize: 5 * 1024 * 1024 } });
    const requests: string[] = [];
    clientOf(store).middlewareStack.add(
      (next, context) => async (args) => {
        requests.push(context.commandName ?? '?');
        return next(args);
      },
      { step: 'initialize', name: 'recordCommands' },
    );
    const dir = mkdtempSync(join(tmpdir(), 'tide-multipart-'));
    const bytes = randomBytes(12 * 1024 * 1024 + 123);
    writeFileSync(join(dir, 'f.parquet'), bytes);
    await store.putFile('f.parquet', join(dir, 'f.parquet'));
    expect(requests.filter((r) => r === 'UploadPartCommand')).toHaveLength(3);
    expect(requests).toContain('CreateMultipartUploadCommand');
    expect(requests).toContain('CompleteMultipartUploadCommand');
    expect((await store.get('f.parquet'))?.equals(bytes)).toBe(true);
    // A small file is one PutObject.
    requests.length = 0;
    writeFileSync(join(dir, 'small.parquet'), 'small');
    await store.putFile('small.parquet', join(dir, 'small.parquet'));
    expect(requests).toEqual(['PutObjectCommand']);
    await store.close();
    rmSync(dir, { recursive: true, force: true });
    await deletePrefix(s3, `multipart-${runId}/`);
  });

  it('putIfAbsent whose response was lost after the write still reports that it created the object', async () => {
    const store = await open('lost');
    const seen: number[] = [];
    let lose = true;
    // Below the SDK's retry step: the server applied the PUT, then the answer is "lost" and the SDK retries.
    clientOf(store).middlewareStack.add(
      (next) => async (args) => {
        const result = await next(args).catch((e: unknown) => {
          seen.push((e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode ?? 0);
          throw e;
        });
        // This step runs below the deserializer: the raw HTTP response, whatever its status.
        seen.push((result.response as { statusCode?: number }).statusCode ?? 0);
        const req = args.request as { method?: string; headers?: Record<string, string> };
        if (lose && req.method === 'PUT' && req.headers?.['if-none-match'] === '*') {
          lose = false;
          throw Object.assign(new Error('socket hang up (injected after the server applied the PUT)'), {
            code: 'ECONNRESET',
            $metadata: {},
          });
        }
        return result;
      },
      { step: 'deserialize', name: 'loseFirstConditionalPut' },
    );
    expect(await store.putIfAbsent('_delta_log/00000000000000000000.json', Buffer.from('mine'))).toBe(true);
    expect(lose).toBe(false);
    // The retry met our own object (412), and the write id in its metadata said it was ours.
    expect(seen).toContain(412);
    expect(await store.putIfAbsent('_delta_log/00000000000000000000.json', Buffer.from('other'))).toBe(false);
    expect((await store.get('_delta_log/00000000000000000000.json'))?.toString()).toBe('mine');
    await store.close();
    await deletePrefix(s3, `lost-${runId}/`);
  });

  it('a store that ignores If-None-Match: * is refused before anything is written, naming the store and why', async () => {
    // The client drops the header before signing, so the real server sees plain PutObjects: exactly
    // what a store that ignores the header (s3rver, some gateways) does with Tide's conditional puts.
    const store = new S3Store({
      client: (await import('../../src/lake/storage/s3-store.ts')).s3Client({
        endpoint: s3.endpoint,
        region: s3.region,
        forcePathStyle: true,
        credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
      }),
      bucket: s3.bucket,
      prefix: `ignores-${runId}`,
    });
    clientOf(store).middlewareStack.add(
      (next) => async (args) => {
        const req = args.request as { headers?: Record<string, string> };
        for (const name of Object.keys(req.headers ?? {})) if (name.toLowerCase() === 'if-none-match') delete req.headers![name];
        return next(args);
      },
      { step: 'build', name: 'dropIfNoneMatch' },
    );
    const err = (await store
      .putIfAbsent('_delta_log/00000000000000000000.json', Buffer.from('{}'))
      .catch((e: unknown) => e)) as ConnectionError;
    expect(err).toBeInstanceOf(ConnectionError);
    expect(err.kind).toBe('lake');
    expect(err.code).toBe('no-conditional-put');
    expect(err.retriable).toBe(false);
    expect(err.message.replaceAll(runId, '<run>')).toMatchInlineSnapshot(
      `"lake (s3://tide-lake/ignores-<run>): the store does not enforce If-None-Match: * on PutObject (S3's conditional write; a second conditional put of the same key succeeded), so two writers could both create the same Delta commit and one would be lost. Tide does not commit to such a store, and never falls back to an unsafe rename. Use Amazon S3 or a store that enforces conditional writes (MinIO, versitygw, Cloudflare R2), or put the lake on local disk or Azure Blob Storage"`,
    );
    // Nothing was committed, and the probe object is gone.
    expect(await listKeys(s3, `ignores-${runId}/`)).toEqual([]);
    await store.close();
  });

  it('a wrong secret key fails at open with a ConnectionError naming the store, not the key', async () => {
    const wrong = `wrong-${randomBytes(8).toString('hex')}`;
    const err = (await openStore(lake('auth'), {
      s3: s3OpenOptions(s3, { credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: wrong } }),
    }).catch((e: unknown) => e)) as ConnectionError;
    expect(err).toBeInstanceOf(ConnectionError);
    expect(err).toMatchObject({ kind: 'lake', target: lake('auth'), code: 'auth', retriable: false });
    expect(err.message.replaceAll(runId, '<run>')).toMatchInlineSnapshot(
      `"lake (s3://tide-lake/auth-<run>): the request signature was refused (SignatureDoesNotMatch): the secret access key does not belong to the access key id. Check the secret key (AWS_SECRET_ACCESS_KEY or the profile's aws_secret_access_key). Tide takes credentials from the AWS SDK default chain: AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN), AWS_PROFILE, web identity (IRSA) or the instance role"`,
    );
    expect(err.message).not.toContain(wrong);
  });

  it('a bucket that does not exist fails at open, naming the bucket', async () => {
    const err = (await openStore(`s3://no-such-bucket-${runId}/lake`, { s3: s3OpenOptions(s3) }).catch(
      (e: unknown) => e,
    )) as ConnectionError;
    expect(err).toBeInstanceOf(ConnectionError);
    expect(err).toMatchObject({ kind: 'lake', code: 'no-bucket', retriable: false });
    expect(err.message.replaceAll(runId, '<run>')).toMatchInlineSnapshot(
      `"lake (s3://no-such-bucket-<run>/lake): the bucket no-such-bucket-<run> does not exist. Create it (e.g. aws s3 mb s3://no-such-bucket-<run>) or correct lake.uri; Tide does not create buckets"`,
    );
  });

  it('an unreachable endpoint fails with a retriable ConnectionError that says what to check', async () => {
    const err = (await openStore(lake('down'), { s3: s3OpenOptions(s3, { endpoint: 'http://127.0.0.1:9', maxAttempts: 1 }) }).catch(
      (e: unknown) => e,
    )) as ConnectionError;
    expect(err).toBeInstanceOf(ConnectionError);
    expect(err).toMatchObject({ kind: 'lake', code: 'unreachable', retriable: true });
    expect(err.message).toContain('s3.endpoint');
  });

  it('refuses paths with "." or ".." segments and calls after close', async () => {
    const store = await open('paths');
    await expect(store.put('a/../b.json', Buffer.from('x'))).rejects.toThrow(/without empty, '\.' or '\.\.' segments/);
    await store.close();
    await expect(store.get('a.json')).rejects.toThrow('the store is closed');
  });
});

import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  BaseRequestPolicy,
  BlobServiceClient,
  ContainerClient,
  newPipeline,
  RestError,
  StorageSharedKeyCredential,
  type HttpOperationResponse,
  type RequestPolicy,
  type RequestPolicyOptions,
  type WebResource,
} from '@azure/storage-blob';
import pino from 'pino';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { AzureStore, AzureStoreError } from '../../src/lake/storage/azure-store.ts';
import { openStore } from '../../src/lake/storage/open-store.ts';
import { AZURITE_ACCOUNT, AZURITE_KEY } from '../../src/stack/azurite.ts';
import { objectStoreContract } from '../support/object-store-contract.ts';

const connectionString = inject('stackEnv').AZURE_STORAGE_CONNECTION_STRING!;
const blobEndpoint = /BlobEndpoint=([^;]+)/.exec(connectionString)![1]!;
const service = BlobServiceClient.fromConnectionString(connectionString);
/** Isolation by name: every container and prefix this file writes carries the run id. */
const runId = `${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
const CONTAINER = 'tide-contract';
const cacheDir = mkdtempSync(join(tmpdir(), 'tide-blob-cache-'));

afterAll(() => rmSync(cacheDir, { recursive: true, force: true }));

async function deleteAll(store: { list(p: string): Promise<{ path: string }[]>; delete(p: string): Promise<void> }) {
  for (const o of await store.list('')) await store.delete(o.path);
}

objectStoreContract('AzureStore on azurite', {
  open: () => openStore(`az://${CONTAINER}/contract-${runId}`, { connectionString, azure: { cacheDir } }),
  cleanup: deleteAll,
});

const localDir = mkdtempSync(join(tmpdir(), 'tide-local-store-'));
objectStoreContract('LocalStore', {
  open: () => openStore(localDir),
  cleanup: async () => rmSync(localDir, { recursive: true, force: true }),
});

/**
 * A policy between the SDK's retry policy and the wire: it records each request and can
 * throw away the response of the first blob PUT after the service has applied it, the way
 * a connection reset after the write looks to the client. The SDK places a factory after
 * its retry policy only when the factory's class is named `InjectorPolicyFactory` (the hook
 * its own tests use; `processDownlevelPipeline` in @azure/storage-blob's Pipeline.ts).
 */
class RecordingPolicy extends BaseRequestPolicy {
  constructor(
    next: RequestPolicy,
    options: RequestPolicyOptions,
    private readonly state: { loseFirstPut: boolean; requests: string[] },
  ) {
    super(next, options);
  }

  override async sendRequest(request: WebResource): Promise<HttpOperationResponse> {
    const response = await this._nextPolicy.sendRequest(request);
    const isBlobPut = request.method === 'PUT' && !request.url.includes('restype=container');
    this.state.requests.push(`${request.method} ${response.status}`);
    if (isBlobPut && this.state.loseFirstPut) {
      this.state.loseFirstPut = false;
      throw new RestError('socket hang up (injected after the service applied the PUT)', { code: 'ECONNRESET' });
    }
    return response;
  }
}

function recordingStore(prefix: string, state: { loseFirstPut: boolean; requests: string[] }): AzureStore {
  class InjectorPolicyFactory {
    create(next: RequestPolicy, options: RequestPolicyOptions) {
      return new RecordingPolicy(next, options, state);
    }
  }
  const pipeline = newPipeline(new StorageSharedKeyCredential(AZURITE_ACCOUNT, AZURITE_KEY), { retryOptions: { retryDelayInMs: 10 } });
  pipeline.factories.push(new InjectorPolicyFactory());
  return new AzureStore({ container: new ContainerClient(`${blobEndpoint}/${CONTAINER}`, pipeline), prefix, cacheDir });
}

describe('AzureStore on azurite', () => {
  it('names itself az://<container>@<account>/<prefix>, and the az:// form with the account opens the same place', async () => {
    const a = await openStore(`az://${CONTAINER}/named-${runId}/`, { connectionString });
    expect(a.uri).toBe(`az://${CONTAINER}@${AZURITE_ACCOUNT}/named-${runId}`);
    const b = await openStore(a.uri, { env: { AZURE_STORAGE_CONNECTION_STRING: connectionString } });
    await a.put('x.json', Buffer.from('x'));
    expect((await b.get('x.json'))?.toString()).toBe('x');
    await a.delete('x.json');
    await Promise.all([a.close(), b.close()]);
  });

  it('creates a missing container on first use and says so in a log line', async () => {
    const name = `tide-new-${runId}`;
    const lines: string[] = [];
    const log = pino({ level: 'debug' }, { write: (line: string) => void lines.push(line) });
    expect(await service.getContainerClient(name).exists()).toBe(false);
    const store = await openStore(`az://${name}/p`, { connectionString, azure: { log } });
    expect(await store.get('nothing.json')).toBeUndefined();
    expect(await service.getContainerClient(name).exists()).toBe(true);
    const created = lines.map((l) => JSON.parse(l) as { msg: string; container: string }).filter((l) => /created/.test(l.msg));
    expect(created).toEqual([expect.objectContaining({ container: name, msg: 'created the missing container' })]);
    await store.close();
    await service.getContainerClient(name).delete();
  });

  it('putFile sends a file larger than the block size as parallel blocks', async () => {
    const store = await openStore(`az://${CONTAINER}/blocks-${runId}`, { connectionString, azure: { blockSize: 1024 * 1024 } });
    const dir = mkdtempSync(join(tmpdir(), 'tide-blocks-'));
    const bytes = randomBytes(5 * 1024 * 1024 + 123);
    writeFileSync(join(dir, 'f.parquet'), bytes);
    await store.putFile('f.parquet', join(dir, 'f.parquet'));
    const blocks = await service.getContainerClient(CONTAINER).getBlockBlobClient(`blocks-${runId}/f.parquet`).getBlockList('committed');
    expect(blocks.committedBlocks?.length).toBe(6);
    expect((await store.get('f.parquet'))?.equals(bytes)).toBe(true);
    await deleteAll(store);
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('putIfAbsent whose response was lost after the write still reports that it created the blob', async () => {
    const state = { loseFirstPut: true, requests: [] as string[] };
    const store = recordingStore(`lost-${runId}`, state);
    expect(await store.putIfAbsent('_delta_log/00000000000000000000.json', Buffer.from('mine'))).toBe(true);
    // The SDK retried the PUT and met our own blob (409); the write id in its metadata told us it was ours.
    expect(state.requests.filter((r) => r.startsWith('PUT 2') || r.startsWith('PUT 409')).slice(-2)).toEqual(['PUT 201', 'PUT 409']);
    expect(state.loseFirstPut).toBe(false);
    expect(await store.putIfAbsent('_delta_log/00000000000000000000.json', Buffer.from('other'))).toBe(false);
    expect((await store.get('_delta_log/00000000000000000000.json'))?.toString()).toBe('mine');
    await deleteAll(store);
    await store.close();
  });

  it('localFile downloads once per ETag; a second call only checks the ETag', async () => {
    const state = { loseFirstPut: false, requests: [] as string[] };
    const store = recordingStore(`cache-${runId}`, state);
    await store.put('part-0.parquet', randomBytes(64 * 1024));
    state.requests.length = 0;
    const first = await store.localFile('part-0.parquet');
    expect(state.requests).toEqual(['HEAD 200', 'GET 200']);
    state.requests.length = 0;
    expect(await store.localFile('part-0.parquet')).toBe(first);
    expect(state.requests).toEqual(['HEAD 200']);
    expect(first.endsWith('.parquet')).toBe(true);
    await deleteAll(store);
    await store.close();
  });

  it('a wrong account key fails with AzureStoreError naming the object, the Azure code and what to check', async () => {
    const store = await openStore(`az://${CONTAINER}@${AZURITE_ACCOUNT}/auth-${runId}`, {
      accountKey: Buffer.from('not the key').toString('base64'),
      blobEndpoint,
    });
    const err = (await store.get('a.json').catch((e: unknown) => e)) as AzureStoreError;
    expect(err).toBeInstanceOf(AzureStoreError);
    expect(err.statusCode).toBe(403);
    expect(err.code).toBe('AuthorizationFailure');
    expect(err.retriable).toBe(false);
    expect(err.message).toContain(`az://${CONTAINER}@${AZURITE_ACCOUNT}/auth-${runId}`);
    expect(err.message).toContain('AZURE_STORAGE_ACCOUNT + AZURE_STORAGE_KEY');
    await store.close();
  });

  it('an unreachable endpoint fails with a retriable AzureStoreError that names the endpoint', async () => {
    const store = await openStore(`az://${CONTAINER}@${AZURITE_ACCOUNT}/down`, {
      accountKey: AZURITE_KEY,
      blobEndpoint: `http://127.0.0.1:9/${AZURITE_ACCOUNT}`,
      azure: { pipelineOptions: { retryOptions: { maxTries: 1 } } },
    });
    const err = (await store.stat('a.json').catch((e: unknown) => e)) as AzureStoreError;
    expect(err).toBeInstanceOf(AzureStoreError);
    expect(err.retriable).toBe(true);
    expect(err.message).toContain('cannot reach http://127.0.0.1:9/');
    await store.close();
  });

  it('refuses paths with "." or ".." segments and calls after close', async () => {
    const store = await openStore(`az://${CONTAINER}/paths-${runId}`, { connectionString });
    await expect(store.put('a/../b.json', Buffer.from('x'))).rejects.toThrow(/without empty, '\.' or '\.\.' segments/);
    await expect(store.get('/abs.json')).rejects.toBeInstanceOf(AzureStoreError);
    await store.close();
    await expect(store.get('a.json')).rejects.toThrow('the store is closed');
  });
});

import { randomUUID, createHash } from 'node:crypto';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { extname, join } from 'node:path';
import { buffer } from 'node:stream/consumers';
import {
  AnonymousCredential,
  BlobServiceClient,
  RestError,
  StorageSharedKeyCredential,
  type BlockBlobClient,
  type ContainerClient,
  type StoragePipelineOptions,
} from '@azure/storage-blob';
import { TideError } from '../../errors.ts';
import { log as rootLog, type Logger } from '../../log.ts';
import { ObjectStoreError, type ObjectInfo, type ObjectStore } from './object-store.ts';

/**
 * The lake on Azure Blob Storage (and ADLS Gen2, whose accounts answer the same Blob API),
 * through Microsoft's SDK `@azure/storage-blob`. Object paths map 1:1 to blob names under
 * an optional prefix inside one container; the flat blob namespace needs no directories.
 *
 * The one operation Delta needs beyond get/put is put-if-absent: Delta's PROTOCOL.md
 * ("Delta Log Entries") requires that a commit `_delta_log/<version>.json` be created by
 * exactly one writer, and its storage requirements ask for mutual exclusion on that create.
 * Azure gives it with a conditional Put Blob: `If-None-Match: *` makes the write fail
 * with 409 BlobAlreadyExists when the blob exists ("Specifying conditional headers for
 * Blob service operations", learn.microsoft.com/rest/api/storageservices). That check and
 * the write are one atomic server-side step, so of N concurrent writers exactly one wins.
 */

/** A storage call failed. Names the store, the object and the Azure error code, and says what to do. */
export class AzureStoreError extends ObjectStoreError {
  override readonly name = 'AzureStoreError';
}

/** How to reach the account. DefaultAzureCredential/managed identity: build a ContainerClient yourself and pass it to AzureStore. */
export type AzureAuth =
  | { kind: 'connection-string'; connectionString: string }
  | { kind: 'account-key'; blobEndpoint: string; account: string; accountKey: string }
  | { kind: 'sas'; blobEndpoint: string; sasToken: string };

/** A ContainerClient for `container`, authenticated as `auth`. Creates nothing on the service. */
export function azureContainerClient(auth: AzureAuth, container: string, pipelineOptions: StoragePipelineOptions = {}): ContainerClient {
  switch (auth.kind) {
    case 'connection-string':
      return BlobServiceClient.fromConnectionString(auth.connectionString, pipelineOptions).getContainerClient(container);
    case 'account-key':
      return new BlobServiceClient(
        auth.blobEndpoint,
        new StorageSharedKeyCredential(auth.account, auth.accountKey),
        pipelineOptions,
      ).getContainerClient(container);
    case 'sas': {
      const sas = auth.sasToken.replace(/^\?/, '');
      return new BlobServiceClient(
        `${auth.blobEndpoint.replace(/\/$/, '')}?${sas}`,
        new AnonymousCredential(),
        pipelineOptions,
      ).getContainerClient(container);
    }
  }
}

export interface AzureStoreOptions {
  /** The container, already authenticated (see `azureContainerClient`, or `openStore` for URIs). Created on first use if missing. */
  container: ContainerClient;
  /** Folder inside the container, e.g. `lake`; '' or absent for the container root. */
  prefix?: string;
  /** Where `localFile` keeps downloads, named by blob and ETag. Default `<tmpdir>/tide-blob-cache`. Never evicted by Tide. */
  cacheDir?: string;
  /** `putFile` uploads files above this size as parallel blocks of this size. Default 8 MiB. */
  blockSize?: number;
  /** Parallel block uploads per `putFile`. Default 4. */
  concurrency?: number;
  log?: Logger;
}

const DEFAULT_BLOCK_SIZE = 8 * 1024 * 1024;
/** Blob metadata naming the putIfAbsent call that wrote a blob (see putIfAbsent). */
const WRITE_ID_KEY = 'tidewriteid';

export class AzureStore implements ObjectStore {
  readonly uri: string;
  private readonly container: ContainerClient;
  private readonly root: string;
  private readonly cacheDir: string;
  private readonly blockSize: number;
  private readonly concurrency: number;
  private readonly log: Logger;
  private containerReady: Promise<void> | undefined;
  private readonly pending = new Set<Promise<unknown>>();
  private closed = false;

  constructor(opts: AzureStoreOptions) {
    this.container = opts.container;
    const prefix = (opts.prefix ?? '').replace(/^\/+|\/+$/g, '');
    this.root = prefix ? `${prefix}/` : '';
    this.uri = `az://${this.container.containerName}@${this.container.accountName}${prefix ? `/${prefix}` : ''}`;
    this.cacheDir = opts.cacheDir ?? join(tmpdir(), 'tide-blob-cache');
    this.blockSize = opts.blockSize ?? DEFAULT_BLOCK_SIZE;
    this.concurrency = opts.concurrency ?? 4;
    this.log = (opts.log ?? rootLog).child({ store: this.uri });
  }

  get(path: string): Promise<Buffer | undefined> {
    return this.run('get', path, async (blob) => {
      try {
        const res = await blob.download();
        if (!res.readableStreamBody) throw new Error('the download has no Node.js stream body');
        return await buffer(res.readableStreamBody);
      } catch (err) {
        if (isNotFound(err)) return undefined;
        throw err;
      }
    });
  }

  put(path: string, data: Buffer | Uint8Array): Promise<void> {
    return this.run('put', path, async (blob) => {
      await blob.uploadData(data, { blockSize: this.blockSize, concurrency: this.concurrency });
    });
  }

  /**
   * Put Blob with `If-None-Match: *` (one request, never split into blocks). 409
   * BlobAlreadyExists (or 412 ConditionNotMet) means another writer was first: false.
   *
   * The SDK retries a request whose response was lost (timeout, reset). If our first
   * attempt did land, the retry meets our own blob and gets 409, and a plain "false"
   * would make the Delta writer think it lost a commit it actually made, then commit the
   * same data again under the next version. So each call tags its blob with a random
   * write id in the metadata, and on a conflict we read the blob's metadata back: our id
   * means this call created it.
   */
  putIfAbsent(path: string, data: Buffer | Uint8Array): Promise<boolean> {
    return this.run('putIfAbsent', path, async (blob) => {
      const writeId = randomUUID();
      try {
        await blob.upload(data, data.byteLength, { conditions: { ifNoneMatch: '*' }, metadata: { [WRITE_ID_KEY]: writeId } });
        return true;
      } catch (err) {
        if (!isAlreadyExists(err)) throw err;
      }
      const existing = await blob.getProperties().catch((err: unknown) => {
        if (isNotFound(err)) return undefined; // deleted since: it was not ours either
        throw err;
      });
      return existing?.metadata?.[WRITE_ID_KEY] === writeId;
    });
  }

  putFile(path: string, localFile: string): Promise<void> {
    return this.run('putFile', path, async (blob) => {
      // Up to blockSize: one Put Blob. Above: Put Block ×N in parallel, then Put Block List.
      await blob.uploadFile(localFile, { blockSize: this.blockSize, maxSingleShotSize: this.blockSize, concurrency: this.concurrency });
    });
  }

  /**
   * Download to `<cacheDir>/<hash of blob URL and ETag><ext>` unless that file is there
   * already. Delta data files are immutable, so a cached copy stays valid; a blob that is
   * overwritten gets a new ETag and so a new cache file. The download is conditional on
   * the ETag we named the file after (If-Match), and lands under a temporary name that is
   * renamed into place, so a reader never sees a partial or mismatched file.
   */
  localFile(path: string): Promise<string> {
    return this.run('localFile', path, async (blob) => {
      for (let attempt = 1; ; attempt++) {
        const props = await blob.getProperties().catch((err: unknown) => {
          if (isNotFound(err)) throw new AzureStoreError(this.uri, path, 'localFile', 'no such object', { cause: err, statusCode: 404 });
          throw err;
        });
        const etag = props.etag ?? '';
        const hash = createHash('sha256').update(`${blob.url}\n${etag}`).digest('hex').slice(0, 40);
        const file = join(this.cacheDir, `${hash}${extname(path)}`);
        if (existsSync(file)) return file;
        mkdirSync(this.cacheDir, { recursive: true });
        const partial = `${file}.${randomUUID()}.part`;
        try {
          await blob.downloadToFile(partial, 0, undefined, { conditions: { ifMatch: etag } });
          renameSync(partial, file);
          return file;
        } catch (err) {
          rmSync(partial, { force: true });
          // Overwritten between the HEAD and the GET: look again (bounded).
          if (statusOf(err) === 412 && attempt < 3) continue;
          throw err;
        }
      }
    });
  }

  list(prefix: string): Promise<ObjectInfo[]> {
    return this.run('list', prefix, async () => {
      const out: ObjectInfo[] = [];
      for await (const item of this.container.listBlobsFlat({ prefix: this.root + prefix })) {
        out.push({
          path: item.name.slice(this.root.length),
          size: item.properties.contentLength ?? 0,
          modified: item.properties.lastModified.getTime(),
        });
      }
      // The service lists in name order already; sort anyway so the contract does not rest on it.
      return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    });
  }

  stat(path: string): Promise<ObjectInfo | undefined> {
    return this.run('stat', path, async (blob) => {
      try {
        const props = await blob.getProperties();
        return { path, size: props.contentLength ?? 0, modified: props.lastModified?.getTime() ?? 0 };
      } catch (err) {
        if (isNotFound(err)) return undefined;
        throw err;
      }
    });
  }

  delete(path: string): Promise<void> {
    return this.run('delete', path, async (blob) => {
      await blob.deleteIfExists({ deleteSnapshots: 'include' });
    });
  }

  /** Refuses new calls and waits for those in flight. The SDK holds no other resources (its HTTP agent's idle sockets do not keep Node alive). */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.allSettled([...this.pending]);
  }

  /** Every operation goes through here: closed check, path check, container on first use, typed errors, in-flight tracking. */
  private run<T>(operation: string, path: string, fn: (blob: BlockBlobClient) => Promise<T>): Promise<T> {
    const task = (async () => {
      if (this.closed) throw new AzureStoreError(this.uri, path, operation, 'the store is closed; open a new one');
      const name = this.blobName(operation, path);
      await this.ensureContainer();
      return await fn(this.container.getBlockBlobClient(name));
    })().catch((err: unknown) => {
      throw this.wrap(operation, path, err);
    });
    this.pending.add(task);
    const done = () => this.pending.delete(task);
    task.then(done, done);
    return task;
  }

  /** Blob name for an object path. `list` takes any prefix; other calls need a proper relative path. */
  private blobName(operation: string, path: string): string {
    if (operation === 'list') {
      if (path.startsWith('/'))
        throw new AzureStoreError(this.uri, path, operation, 'a list prefix is relative to the store root; drop the leading /');
      return this.root + path;
    }
    const segments = path.split('/');
    // The SDK percent-encodes each segment, but a URL parser still folds "." and ".." segments, which would write elsewhere.
    if (segments.some((s) => s === '' || s === '.' || s === '..')) {
      throw new AzureStoreError(
        this.uri,
        path,
        operation,
        "an object path is '/'-separated and relative to the store root, without empty, '.' or '..' segments",
      );
    }
    return this.root + path;
  }

  private ensureContainer(): Promise<void> {
    this.containerReady ??= (async () => {
      try {
        const res = await this.container.createIfNotExists();
        if (res.succeeded) this.log.info({ container: this.container.containerName }, 'created the missing container');
      } catch (err) {
        // A container-scoped SAS may not create containers; its container exists by definition,
        // and any real access problem surfaces on the operation itself.
        if (statusOf(err) !== 403) throw err;
        this.log.debug({ container: this.container.containerName }, 'not allowed to create the container; assuming it exists');
      }
    })().catch((err: unknown) => {
      this.containerReady = undefined; // let the next call try again
      throw err;
    });
    return this.containerReady;
  }

  private wrap(operation: string, path: string, err: unknown): TideError {
    if (err instanceof TideError) return err;
    if (!(err instanceof RestError)) {
      const message = err instanceof Error ? err.message : String(err);
      return new AzureStoreError(this.uri, path, operation, message, { cause: err });
    }
    const status = err.statusCode;
    const code = ((err.details as { errorCode?: string } | undefined)?.errorCode ?? err.code) || undefined;
    const what = `${code ?? 'error'}${status ? ` (HTTP ${status})` : ''}: ${firstLine(err.message)}`;
    let hint: string;
    let retriable = false;
    if (status === 401 || status === 403) {
      hint =
        'check the credentials: AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT + AZURE_STORAGE_KEY, ' +
        'or a SAS token with read, add, create, write, delete and list permissions';
    } else if (status === undefined) {
      hint = `cannot reach ${this.container.url.split('?')[0]}; check the endpoint and network (for the local azurite: npm run stack:up)`;
      retriable = true;
    } else if (status >= 500 || status === 408 || status === 429) {
      hint = 'the service is busy or failing; retry later';
      retriable = true;
    } else {
      hint = 'see the Azure error code above';
    }
    return new AzureStoreError(this.uri, path, operation, `${what}\n  ${hint}`, { cause: err, retriable, statusCode: status, code });
  }
}

function statusOf(err: unknown): number | undefined {
  return err instanceof RestError ? err.statusCode : undefined;
}

function isNotFound(err: unknown): boolean {
  return statusOf(err) === 404;
}

/** Put Blob with If-None-Match: * on an existing blob: 409 BlobAlreadyExists (Azure, azurite), 412 ConditionNotMet (the generic answer). */
function isAlreadyExists(err: unknown): boolean {
  if (!(err instanceof RestError)) return false;
  const code = (err.details as { errorCode?: string } | undefined)?.errorCode ?? err.code;
  return (err.statusCode === 409 && code === 'BlobAlreadyExists') || (err.statusCode === 412 && code === 'ConditionNotMet');
}

function firstLine(message: string): string {
  return message.split('\n')[0] ?? message;
}

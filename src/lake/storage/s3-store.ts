import { createHash, randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { extname, join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { TideError } from '../../errors.ts';
import { log as rootLog, type Logger } from '../../log.ts';
import type { ObjectInfo, ObjectStore } from './object-store.ts';
import { ConditionalWritesUnsupported, s3Failure, statusOf, errorCode } from './s3-errors.ts';

/**
 * The lake on Amazon S3 and S3-compatible stores (MinIO, versitygw, R2, Ceph), through the AWS
 * SDK (`@aws-sdk/client-s3`, which signs every request; `@aws-sdk/lib-storage` for multipart
 * uploads). Object paths map 1:1 to keys under an optional prefix inside one bucket.
 *
 * Delta needs put-if-absent for its commits (PROTOCOL.md, "Delta Log Entries": exactly one writer
 * creates `_delta_log/<version>.json`). S3 gives it with a conditional write: PutObject with
 * `If-None-Match: *` fails with 412 Precondition Failed when the key exists, atomically on the
 * server (docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html, since 2024-08).
 * A store that ignores the header would let two writers both "create" one commit, so before the
 * first commit Tide checks that the store enforces it (`checkConditionalWrites`) and refuses to
 * commit otherwise; it never falls back to an unsafe copy or rename.
 */

/** Milliseconds between attempts at a conditional put that S3 answered 409 ConditionalRequestConflict (another write in flight). */
const CONFLICT_RETRY_MS = [50, 100, 200, 400, 800, 1600];
/** Object metadata naming the putIfAbsent call that wrote an object (see putIfAbsent). `x-amz-meta-tide-write-id` on the wire. */
const WRITE_ID_KEY = 'tide-write-id';
/** S3's smallest multipart part (5 MiB); lib-storage refuses anything smaller. */
const MIN_PART_SIZE = 5 * 1024 * 1024;
const DEFAULT_PART_SIZE = 8 * 1024 * 1024;

export interface S3StoreOptions {
  client: S3Client;
  bucket: string;
  /** Folder inside the bucket, e.g. `lake`; '' for the bucket root. */
  prefix?: string;
  /** What `uri` prints: `s3://bucket/prefix` by default (an `s3a://` URI keeps its scheme). */
  scheme?: 's3' | 's3a';
  /** Where `localFile` keeps downloads, named by key and ETag. Default `<tmpdir>/tide-s3-cache`. Never evicted by Tide. */
  cacheDir?: string;
  /** `putFile` uploads files above this size as a multipart upload of parts this size (at least 5 MiB). Default 8 MiB. */
  partSize?: number;
  /** Parallel part uploads per `putFile`. Default 4. */
  queueSize?: number;
  log?: Logger;
}

export class S3Store implements ObjectStore {
  readonly uri: string;
  readonly bucket: string;
  private readonly client: S3Client;
  private readonly root: string;
  private readonly cacheDir: string;
  private readonly partSize: number;
  private readonly queueSize: number;
  private readonly log: Logger;
  private readonly pending = new Set<Promise<unknown>>();
  private conditionalWrites: Promise<void> | undefined;
  private closed = false;

  constructor(opts: S3StoreOptions) {
    this.client = opts.client;
    this.bucket = opts.bucket;
    const prefix = (opts.prefix ?? '').replace(/^\/+|\/+$/g, '');
    this.root = prefix ? `${prefix}/` : '';
    this.uri = `${opts.scheme ?? 's3'}://${this.bucket}${prefix ? `/${prefix}` : ''}`;
    this.cacheDir = opts.cacheDir ?? join(tmpdir(), 'tide-s3-cache');
    this.partSize = Math.max(MIN_PART_SIZE, opts.partSize ?? DEFAULT_PART_SIZE);
    this.queueSize = opts.queueSize ?? 4;
    this.log = (opts.log ?? rootLog).child({ store: this.uri });
  }

  get(path: string): Promise<Buffer | undefined> {
    return this.run('get', path, async (Key) => {
      try {
        const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key }));
        return Buffer.from(await res.Body!.transformToByteArray());
      } catch (err) {
        if (isMissingKey(err)) return undefined;
        throw err;
      }
    });
  }

  put(path: string, data: Buffer | Uint8Array): Promise<void> {
    return this.run('put', path, async (Key) => {
      await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key, Body: data }));
    });
  }

  /**
   * PutObject with `If-None-Match: *`: 412 means another writer was first (false).
   *
   * Two cases need more than that one request:
   *  - S3 answers 409 ConditionalRequestConflict while another conditional write of the same
   *    key is in flight; the answer is then unknown, so the put is tried again after a pause.
   *  - The SDK retries a request whose response was lost (timeout, reset). If our first attempt
   *    did land, the retry meets our own object and gets 412; a plain "false" would make the
   *    Delta writer think it lost a commit it made, and commit the same data again under the
   *    next version. So each call tags its object with a random write id in the metadata, and
   *    on a 412 reads the metadata back: our id means this call created it.
   * Before the first conditional put, the store's support for it is checked (once).
   */
  putIfAbsent(path: string, data: Buffer | Uint8Array): Promise<boolean> {
    return this.run('putIfAbsent', path, async (Key) => {
      await this.checkConditionalWrites();
      return this.conditionalPut(Key, data);
    });
  }

  /** Files up to the part size go up in one PutObject; larger ones as a multipart upload (lib-storage: parallel parts, aborted on failure). */
  putFile(path: string, localFile: string): Promise<void> {
    return this.run('putFile', path, async (Key) => {
      const upload = new Upload({
        client: this.client,
        params: { Bucket: this.bucket, Key, Body: createReadStream(localFile) },
        partSize: this.partSize,
        queueSize: this.queueSize,
        leavePartsOnError: false,
      });
      await upload.done();
    });
  }

  /**
   * Download to `<cacheDir>/<hash of bucket, key and ETag><ext>` unless that file is there
   * already. Delta data files are immutable, so a cached copy stays valid; an object that is
   * overwritten gets a new ETag and so a new cache file. The GET is conditional on the ETag we
   * named the file after (If-Match), and lands under a temporary name renamed into place, so a
   * reader never sees a partial or mismatched file.
   */
  localFile(path: string): Promise<string> {
    return this.run('localFile', path, async (Key) => {
      for (let attempt = 1; ; attempt++) {
        let etag: string;
        try {
          etag = (await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key }))).ETag ?? '';
        } catch (err) {
          if (isMissingKey(err)) throw new TideError(`localFile ${this.uri}/${path}: no such object`, { cause: err });
          throw err;
        }
        const hash = createHash('sha256').update(`${this.bucket}\n${Key}\n${etag}`).digest('hex').slice(0, 40);
        const file = join(this.cacheDir, `${hash}${extname(path)}`);
        if (existsSync(file)) return file;
        mkdirSync(this.cacheDir, { recursive: true });
        const partial = `${file}.${randomUUID()}.part`;
        try {
          const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key, IfMatch: etag || undefined }));
          await pipeline(res.Body as Readable, createWriteStream(partial));
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
    return this.run('list', prefix, async (keyPrefix) => {
      const out: ObjectInfo[] = [];
      let token: string | undefined;
      do {
        const page = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: keyPrefix, ContinuationToken: token }));
        for (const o of page.Contents ?? []) {
          if (o.Key === undefined) continue;
          out.push({ path: o.Key.slice(this.root.length), size: o.Size ?? 0, modified: o.LastModified?.getTime() ?? 0 });
        }
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token);
      // S3 lists in UTF-8 byte order already; sort anyway so the contract does not rest on a compatible store doing so.
      return out.sort((a, b) => Buffer.compare(Buffer.from(a.path), Buffer.from(b.path)));
    });
  }

  stat(path: string): Promise<ObjectInfo | undefined> {
    return this.run('stat', path, async (Key) => {
      try {
        const head = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key }));
        return { path, size: head.ContentLength ?? 0, modified: head.LastModified?.getTime() ?? 0 };
      } catch (err) {
        if (isMissingKey(err)) return undefined;
        throw err;
      }
    });
  }

  delete(path: string): Promise<void> {
    // DeleteObject of a missing key succeeds (204) on S3.
    return this.run('delete', path, async (Key) => {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key }));
    });
  }

  /**
   * One cheap listing under the prefix: answers whether the bucket exists and the credentials
   * are good, before anything reads or writes (a wrong key or a missing bucket then fails at
   * start, naming the bucket, instead of at the first commit).
   */
  async checkAccess(): Promise<void> {
    await this.run('list', '', async (Prefix) => {
      await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix, MaxKeys: 1 }));
    });
  }

  /**
   * Whether the store really enforces `If-None-Match: *` on PutObject: a probe object put
   * conditionally twice must be refused the second time (412). A store that accepts the second
   * put (or answers 501 NotImplemented) cannot keep two writers from both creating one Delta
   * commit, and Tide refuses to commit there. Runs once per store, before the first commit
   * (also from `openStore` for a store opened to write); the probe object is deleted after.
   */
  checkConditionalWrites(): Promise<void> {
    this.conditionalWrites ??= (async () => {
      const Key = `${this.root}_tide_probe/conditional-put-${randomUUID()}`;
      const body = Buffer.from('Tide checks that this store enforces If-None-Match: * on PutObject; safe to delete.\n');
      let second: boolean;
      try {
        if (!(await this.conditionalPut(Key, body))) throw new Error(`a conditional put of the new key ${Key} was refused`);
        second = await this.conditionalPut(Key, body, false);
      } catch (err) {
        const status = statusOf(err);
        if (status === 501 || errorCode(err) === 'NotImplemented') throw noConditionalWrites(this.uri, 'it answered 501 Not Implemented');
        throw err;
      } finally {
        await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key })).catch((err: unknown) => {
          this.log.warn({ err, key: Key }, 'could not delete the conditional-put probe object');
        });
      }
      if (second) throw noConditionalWrites(this.uri, 'a second conditional put of the same key succeeded');
      this.log.debug('the store enforces If-None-Match: * on PutObject');
    })().catch((err: unknown) => {
      this.conditionalWrites = undefined; // a transient failure is checked again next time
      throw err;
    });
    return this.conditionalWrites;
  }

  /** Refuses new calls, waits for those in flight, then frees the SDK's sockets. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.allSettled([...this.pending]);
    this.client.destroy();
  }

  /** The conditional PutObject (see putIfAbsent). `recognise: false` skips the write-id read-back (the probe wants the raw answer). */
  private async conditionalPut(Key: string, data: Buffer | Uint8Array, recognise = true): Promise<boolean> {
    const writeId = randomUUID();
    for (let attempt = 0; ; attempt++) {
      try {
        await this.client.send(
          new PutObjectCommand({ Bucket: this.bucket, Key, Body: data, IfNoneMatch: '*', Metadata: { [WRITE_ID_KEY]: writeId } }),
        );
        return true;
      } catch (err) {
        const status = statusOf(err);
        if (status === 409 && attempt < CONFLICT_RETRY_MS.length) {
          await new Promise((r) => setTimeout(r, CONFLICT_RETRY_MS[attempt]));
          continue;
        }
        if (status !== 412) throw err;
      }
      if (!recognise) return false;
      try {
        const head = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key }));
        return head.Metadata?.[WRITE_ID_KEY] === writeId;
      } catch (err) {
        if (isMissingKey(err)) return false; // deleted since: it was not ours either
        throw err;
      }
    }
  }

  /** Every operation goes through here: closed check, key from path, typed errors, in-flight tracking. */
  private run<T>(operation: string, path: string, fn: (key: string) => Promise<T>): Promise<T> {
    const task = (async () => {
      if (this.closed) throw new TideError(`${operation} ${this.uri}/${path}: the store is closed; open a new one`);
      return await fn(this.key(operation, path));
    })().catch((err: unknown) => {
      throw s3Failure(this.uri, this.bucket, operation, path, err);
    });
    this.pending.add(task);
    const done = () => this.pending.delete(task);
    task.then(done, done);
    return task;
  }

  /** Key for an object path. `list` takes any prefix; other calls need a proper relative path. */
  private key(operation: string, path: string): string {
    if (operation === 'list') {
      if (path.startsWith('/')) throw new TideError(`list ${this.uri}: a list prefix is relative to the store root; drop the leading /`);
      return this.root + path;
    }
    // S3 keys may hold anything, but "." and ".." segments are folded by URL normalisation in some clients and proxies.
    if (path.split('/').some((s) => s === '' || s === '.' || s === '..'))
      throw new TideError(
        `${operation} ${this.uri}/${path}: an object path is '/'-separated and relative to the store root, without empty, '.' or '..' segments`,
      );
    return this.root + path;
  }
}

/** The client for a store: region, endpoint and path style from the caller; credentials from the SDK's default chain unless given. */
export function s3Client(config: S3ClientConfig): S3Client {
  // The SDK warns once per process that releases after 2027-01 need Node 22; package-lock pins this
  // release, which supports Node 20 (Tide's engines), so the warning would be noise on every command.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  return new S3Client({
    // A bucket in another region than the one configured answers 301; follow it instead of failing.
    followRegionRedirects: true,
    // Bounded connects, so an unreachable endpoint fails in seconds (the SDK's default waits for the OS).
    requestHandler: { connectionTimeout: 5_000, requestTimeout: 120_000 },
    ...config,
  });
}

function noConditionalWrites(uri: string, what: string): TideError {
  return s3Failure(uri, '', 'checkConditionalWrites', '', new ConditionalWritesUnsupported(what));
}

function isMissingKey(err: unknown): boolean {
  return err instanceof S3ServiceException && (err.name === 'NoSuchKey' || err.name === 'NotFound') && errorCode(err) !== 'NoSuchBucket';
}

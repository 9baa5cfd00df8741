/**
 * Where lake tables live: the local filesystem (default) or Azure Blob Storage / ADLS.
 * Paths are '/'-separated and relative to the store's root (e.g. `silver/orders/_delta_log/00000000000000000000.json`).
 *
 * The one operation Delta needs beyond plain get/put is `putIfAbsent`: a commit file must be
 * created only if no other writer created it first (exclusive create on a filesystem, a
 * conditional put with `If-None-Match: *` on blob storage).
 */
import { TideError } from '../../errors.ts';

/**
 * A remote store's call failed for a reason other than the connection (S3StoreError, AzureStoreError).
 * Names the store, the object, the operation and the service's error code, so a caller can handle
 * either store's failure alike (e.g. `err instanceof ObjectStoreError && err.statusCode === 404`).
 */
export class ObjectStoreError extends TideError {
  constructor(
    readonly uri: string,
    readonly path: string,
    readonly operation: string,
    message: string,
    options: { cause?: unknown; retriable?: boolean; statusCode?: number; code?: string } = {},
  ) {
    super(`${operation} ${path ? `${uri}/${path}` : uri}: ${message}`, options);
    this.name = 'ObjectStoreError';
    this.statusCode = options.statusCode;
    this.code = options.code;
  }
  readonly statusCode: number | undefined;
  /** The service's error code: S3's `NoSuchKey`, `SlowDown`…, Azure's `BlobNotFound`, `AuthenticationFailed`… */
  readonly code: string | undefined;
}

export interface ObjectInfo {
  /** Relative to the store root. */
  path: string;
  size: number;
  /** Milliseconds since the epoch. */
  modified: number;
}

export interface ObjectStore {
  /** e.g. `file:///work/main/.lake` or `az://tide@devstoreaccount1/lake`; for messages and commitInfo. */
  readonly uri: string;
  /** The object's bytes, or undefined when it does not exist. */
  get(path: string): Promise<Buffer | undefined>;
  /** Create or replace. */
  put(path: string, data: Buffer | Uint8Array): Promise<void>;
  /** Create only if absent: true when this call created it, false when it already existed (never overwrites). */
  putIfAbsent(path: string, data: Buffer | Uint8Array): Promise<boolean>;
  /** Upload a local file (e.g. a Parquet file DuckDB just wrote) to `path`. */
  putFile(path: string, localFile: string): Promise<void>;
  /** A local file with the object's bytes, for DuckDB to read: the file itself for a local store, a cached download otherwise. */
  localFile(path: string): Promise<string>;
  /** Objects whose path starts with `prefix`, in lexicographic path order. */
  list(prefix: string): Promise<ObjectInfo[]>;
  stat(path: string): Promise<ObjectInfo | undefined>;
  /** Delete; deleting a missing object is not an error. */
  delete(path: string): Promise<void>;
  close(): Promise<void>;
}

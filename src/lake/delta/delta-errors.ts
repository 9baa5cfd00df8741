import { TideError } from '../../errors.ts';

/**
 * The Delta transaction log's errors. Each names the table (its path inside the store, e.g.
 * `silver/orders`) and, where it applies, the log file or version at fault.
 */

/** The log cannot be read: a commit that does not parse, a gap in the versions, a missing checkpoint. */
export class DeltaLogError extends TideError {
  constructor(
    readonly table: string,
    message: string,
    options: { cause?: unknown; retriable?: boolean } = {},
  ) {
    super(`Delta table ${table}: ${message}`, options);
    this.name = 'DeltaLogError';
  }
}

/**
 * The table's protocol (reader/writer version or table features) is one Tide does not implement,
 * so reading or writing it could lose or corrupt data.
 */
export class DeltaProtocolError extends TideError {
  constructor(
    readonly table: string,
    readonly found: { minReaderVersion: number; minWriterVersion: number; readerFeatures?: string[]; writerFeatures?: string[] },
    message: string,
  ) {
    const features = [
      found.readerFeatures?.length ? `reader features [${found.readerFeatures.join(', ')}]` : '',
      found.writerFeatures?.length ? `writer features [${found.writerFeatures.join(', ')}]` : '',
    ].filter(Boolean);
    super(
      `Delta table ${table}: ${message} (table protocol: reader version ${found.minReaderVersion}, writer version ${found.minWriterVersion}` +
        `${features.length ? `, ${features.join(', ')}` : ''})`,
    );
    this.name = 'DeltaProtocolError';
  }
}

/**
 * Another writer committed a version that makes this commit unsafe (it removed the same file, set
 * the same txn appId, or changed the metadata or protocol). Not retried by the table: the caller
 * must re-read the table (`refresh()`) and redo its work against the new state.
 */
export class DeltaConflictError extends TideError {
  constructor(
    readonly table: string,
    /** The version this commit tried to write and that another writer won. */
    readonly version: number,
    readonly reason: string,
  ) {
    super(
      `Delta table ${table}: commit lost version ${version} to a concurrent writer and cannot be retried: ${reason}. Refresh the table and redo the change.`,
      {
        retriable: true,
      },
    );
    this.name = 'DeltaConflictError';
  }
}

/**
 * A commit succeeded but writing the checkpoint after it failed. The table is correct (readers
 * replay the JSON commits instead); the next due checkpoint writes a fresh one.
 */
export class DeltaCheckpointError extends DeltaLogError {
  constructor(
    table: string,
    readonly committedVersion: number,
    cause: unknown,
  ) {
    super(
      table,
      `version ${committedVersion} was committed, but writing its checkpoint failed: ${cause instanceof Error ? cause.message : String(cause)}. ` +
        'The table is intact; check the store (space, permissions) before the next checkpoint is due.',
      { cause },
    );
    this.name = 'DeltaCheckpointError';
  }
}

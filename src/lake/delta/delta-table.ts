import { randomUUID } from 'node:crypto';
import type { LakeSchema } from '../lake-schema.ts';
import type { ObjectStore } from '../storage/object-store.ts';
import type { Action, AddAction, CommitInfoAction, MetaDataAction, ProtocolAction, TxnAction } from './actions.ts';
import { serializeCommit } from './actions.ts';
import { readLastCheckpoint, writeCheckpoint, type LastCheckpoint } from './checkpoint.ts';
import { findConflict, isBlindAppend, validateCommit } from './commit-rules.ts';
import { DeltaCheckpointError, DeltaConflictError, DeltaLogError } from './delta-errors.ts';
import { type LoadOptions, loadSnapshot, readCommit } from './log-reader.ts';
import { commitPath, joinPath } from './log-paths.ts';
import { TIDE_PROTOCOL, assertNoInvariants, assertReadable, assertWritable } from './protocol-check.ts';
import { fromSchemaString, SchemaStringError, toSchemaString } from './schema-string.ts';
import { Snapshot, type Tombstone } from './snapshot.ts';
import { TablePropertyError, checkpointInterval } from './table-properties.ts';

export const ENGINE_INFO = 'Tide/0.1.0';
/** How many versions a commit tries before giving up when other writers keep winning. */
export const MAX_COMMIT_ATTEMPTS = 20;

export interface CreateTableOptions {
  name: string;
  schema: LakeSchema;
  partitionColumns?: string[];
  description?: string;
  configuration?: Record<string, string>;
  /** Default reader 1 / writer 2 (TIDE_PROTOCOL); e.g. `withDeletionVectors(TIDE_PROTOCOL)`. */
  protocol?: ProtocolAction;
}

/**
 * A Delta table in an ObjectStore: its snapshot (from log replay) and commits to its log
 * (PROTOCOL.md, "Requirements for Writers"). Commits are serialised within one instance; other
 * instances and processes are handled by optimistic concurrency: a commit file is created only if
 * absent (`putIfAbsent`), and a commit that loses its version is retried at the next one when the
 * winner's actions allow it (commit-rules.ts).
 */
export class DeltaTable {
  private snapshot: Snapshot;
  private parsedSchema: { for: MetaDataAction; schema: LakeSchema } | undefined;
  /** Commits and refreshes run one at a time: each starts from the snapshot the previous one left. */
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    readonly store: ObjectStore,
    readonly root: string,
    snapshot: Snapshot,
  ) {
    this.snapshot = snapshot;
  }

  /** How errors name the table: its URI. */
  get label(): string {
    return tableLabel(this.store, this.root);
  }

  /** The table at `root`, or undefined when `root` has no Delta log. Refuses tables Tide cannot read (DeltaProtocolError). */
  static async open(store: ObjectStore, root: string, options: LoadOptions = {}): Promise<DeltaTable | undefined> {
    const normalized = joinPath(root);
    const snapshot = await loadSnapshot(store, normalized, tableLabel(store, normalized), options);
    return snapshot && new DeltaTable(store, normalized, snapshot);
  }

  /**
   * Create the table with commit 0 (protocol reader 1 / writer 2, and metaData). When the table
   * exists already, or another writer creates it first, that table is returned as it is (its schema
   * may differ from `init.schema`: the caller evolves it).
   */
  static async create(store: ObjectStore, root: string, init: CreateTableOptions): Promise<DeltaTable> {
    const normalized = joinPath(root);
    const label = tableLabel(store, normalized);
    const existing = await DeltaTable.open(store, normalized);
    if (existing) return existing;
    const partitionColumns = init.partitionColumns ?? [];
    const configuration = { ...(init.configuration ?? {}) };
    checkCreate(label, init.schema, partitionColumns, configuration);
    const now = Date.now();
    const metaData: MetaDataAction = {
      id: randomUUID(),
      name: init.name,
      ...(init.description !== undefined ? { description: init.description } : {}),
      format: { provider: 'parquet', options: {} },
      schemaString: schemaStringOf(label, init.schema),
      partitionColumns,
      createdTime: now,
      configuration,
    };
    const protocol: ProtocolAction = { ...(init.protocol ?? TIDE_PROTOCOL) };
    assertWritable(label, protocol);
    const commitInfo: CommitInfoAction = {
      timestamp: now,
      operation: 'CREATE TABLE',
      operationParameters: {
        isManaged: 'false',
        description: init.description ?? null,
        partitionBy: JSON.stringify(partitionColumns),
        properties: JSON.stringify(configuration),
      },
      engineInfo: ENGINE_INFO,
      isBlindAppend: true,
    };
    const actions: Action[] = [{ commitInfo }, { protocol }, { metaData }];
    if (await store.putIfAbsent(commitPath(normalized, 0), Buffer.from(serializeCommit(actions)))) {
      const snapshot = new Snapshot();
      snapshot.applyCommit(0, actions);
      return new DeltaTable(store, normalized, snapshot);
    }
    const theirs = await DeltaTable.open(store, normalized);
    if (!theirs)
      throw new DeltaLogError(label, 'version 0 exists but the table cannot be opened; check the store for a partial _delta_log');
    return theirs;
  }

  get version(): number {
    return this.snapshot.version;
  }

  get protocol(): ProtocolAction {
    return this.snapshot.protocol!;
  }

  get metadata(): MetaDataAction {
    return this.snapshot.metadata!;
  }

  get partitionColumns(): string[] {
    return [...this.metadata.partitionColumns];
  }

  /** The table's columns, from metaData.schemaString. Throws DeltaLogError for a type Tide does not support. */
  get schema(): LakeSchema {
    const metadata = this.metadata;
    if (this.parsedSchema?.for !== metadata) {
      try {
        this.parsedSchema = { for: metadata, schema: fromSchemaString(metadata.schemaString) };
      } catch (e) {
        if (e instanceof SchemaStringError)
          throw new DeltaLogError(this.label, `schema at version ${this.version}: ${e.message}`, { cause: e });
        throw e;
      }
    }
    return structuredClone(this.parsedSchema.schema);
  }

  /** The active files, paths relative to the root as the log spells them (percent-encoded; see `decodeDataPath`). */
  files(): AddAction[] {
    return this.snapshot.files();
  }

  /** Remove tombstones kept in the snapshot, for VACUUM's retention check. */
  tombstones(): Tombstone[] {
    return this.snapshot.tombstones();
  }

  txnVersion(appId: string): number | undefined {
    return this.snapshot.txnVersion(appId);
  }

  /** Every appId's latest txn. */
  txns(): TxnAction[] {
    return this.snapshot.txnActions();
  }

  /**
   * Read the commits newer than `version`. All of them are read and checked before the first is
   * applied, in place: a refresh that throws leaves the snapshot as it was, without copying it first
   * (a copy of a table with many tombstones cost more than reading one new commit).
   */
  refresh(): Promise<void> {
    return this.exclusive(async () => {
      const commits: Action[][] = [];
      for (;;) {
        const actions = await readCommit(this.store, this.root, this.label, this.snapshot.version + commits.length + 1);
        if (!actions) break;
        commits.push(actions);
      }
      if (!commits.length) {
        // No next commit. If the log was cleaned up past this version (PROTOCOL.md "Metadata
        // Cleanup") while this instance was idle, a newer checkpoint shows it: reload from there.
        const last = await readLastCheckpoint(this.store, this.root);
        if (last && last.version > this.snapshot.version) {
          const fresh = await loadSnapshot(this.store, this.root, this.label);
          if (fresh) this.snapshot = fresh;
        }
        return;
      }
      // The snapshot has a protocol and metaData already (checkComplete at open); a new protocol must be readable.
      const protocol = commits.flat().findLast((a): a is { protocol: ProtocolAction } => 'protocol' in a)?.protocol;
      if (protocol) assertReadable(this.label, protocol);
      for (const actions of commits) this.snapshot.applyCommit(this.snapshot.version + 1, actions);
    });
  }

  /**
   * Commit `actions` as the next version: adds commitInfo, creates the commit file only if it does
   * not exist, and when another writer took that version, reads the winner and retries at the next
   * one if the winner's actions allow it (DeltaConflictError otherwise). Updates the snapshot and
   * writes a checkpoint when the new version is a multiple of `delta.checkpointInterval`.
   * Returns the new version.
   */
  commit(actions: Action[], op: { operation: string; parameters?: Record<string, unknown> }): Promise<number> {
    return this.exclusive(() =>
      this.commitNow(
        actions.map((a) => normalize(this.withVector(a))),
        op,
      ),
    );
  }

  /**
   * A remove built from an active add names that logical file, (path, deletion vector): a remove
   * without `deletionVector` of a file that has one gets it (PROTOCOL.md "Action Reconciliation").
   */
  private withVector(action: Action): Action {
    if (!('remove' in action) || action.remove.deletionVector) return action;
    const dv = this.snapshot.activeFile(action.remove.path)?.deletionVector;
    return dv ? { remove: { ...action.remove, deletionVector: dv } } : action;
  }

  private async commitNow(actions: Action[], op: { operation: string; parameters?: Record<string, unknown> }): Promise<number> {
    const label = this.label;
    assertWritable(label, this.protocol);
    validateCommit(label, this.snapshot, actions);
    const newMetadata = actions.find((a): a is { metaData: MetaDataAction } => 'metaData' in a)?.metaData;
    if (!newMetadata) assertNoInvariants(label, this.protocol, this.schema);
    const interval = intervalOf(label, (newMetadata ?? this.metadata).configuration);
    const readVersion = this.snapshot.version;
    const blind = isBlindAppend(actions);
    let version = readVersion + 1;
    for (let attempt = 1; attempt <= MAX_COMMIT_ATTEMPTS; attempt++) {
      version = this.snapshot.version + 1;
      const commitInfo: CommitInfoAction = {
        timestamp: Date.now(),
        operation: op.operation,
        operationParameters: op.parameters ?? {},
        readVersion,
        isolationLevel: 'WriteSerializable',
        isBlindAppend: blind,
        engineInfo: ENGINE_INFO,
      };
      // commitInfo first, as delta-rs and Spark write it (and "In-Commit Timestamps" requires).
      const all: Action[] = [{ commitInfo }, ...actions];
      if (await this.store.putIfAbsent(commitPath(this.root, version), Buffer.from(serializeCommit(all)))) {
        this.snapshot.applyCommit(version, all);
        if (version % interval === 0) await this.checkpointAfterCommit(version);
        return version;
      }
      const winner = await readCommit(this.store, this.root, label, version);
      if (!winner)
        throw new DeltaLogError(
          label,
          `commit ${commitPath(this.root, version)} exists (the store refused to create it) but cannot be read`,
        );
      this.snapshot.applyCommit(version, winner);
      const reason = findConflict(winner, actions);
      if (reason) throw new DeltaConflictError(label, version, reason);
    }
    throw new DeltaConflictError(label, version, `other writers committed first ${MAX_COMMIT_ATTEMPTS} times in a row`);
  }

  private async checkpointAfterCommit(version: number): Promise<void> {
    try {
      await writeCheckpoint(this.store, this.root, this.snapshot);
    } catch (e) {
      throw new DeltaCheckpointError(this.label, version, e);
    }
  }

  /** Write a checkpoint of the current version now (normally done by `commit` every `delta.checkpointInterval` versions). */
  checkpoint(): Promise<LastCheckpoint> {
    return this.exclusive(() => writeCheckpoint(this.store, this.root, this.snapshot));
  }

  /** A metaData action that replaces the schema and keeps id, partition columns, configuration and the rest. */
  evolveSchema(schema: LakeSchema): MetaDataAction {
    const names = new Set(schema.columns.map((c) => c.name));
    const lost = this.partitionColumns.filter((c) => !names.has(c));
    if (lost.length)
      throw new DeltaLogError(this.label, `the new schema drops partition columns ${lost.join(', ')}; partitioning cannot change in place`);
    return { ...this.metadata, schemaString: schemaStringOf(this.label, schema) };
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }
}

function tableLabel(store: ObjectStore, root: string): string {
  return root ? `${store.uri.replace(/\/+$/, '')}/${root}` : store.uri;
}

function schemaStringOf(label: string, schema: LakeSchema): string {
  try {
    return toSchemaString(schema);
  } catch (e) {
    if (e instanceof SchemaStringError) throw new DeltaLogError(label, `invalid schema: ${e.message}`, { cause: e });
    throw e;
  }
}

function intervalOf(label: string, configuration: Record<string, string>): number {
  try {
    return checkpointInterval(configuration);
  } catch (e) {
    if (e instanceof TablePropertyError) throw new DeltaLogError(label, e.message, { cause: e });
    throw e;
  }
}

function checkCreate(label: string, schema: LakeSchema, partitionColumns: string[], configuration: Record<string, string>): void {
  for (const p of partitionColumns) {
    const column = schema.columns.find((c) => c.name === p);
    if (!column) throw new DeltaLogError(label, `partition column ${p} is not in the schema`);
    if (column.type.kind === 'array')
      throw new DeltaLogError(label, `partition column ${p} is an array; Delta partitions by primitive columns only`);
  }
  if (new Set(partitionColumns).size !== partitionColumns.length)
    throw new DeltaLogError(label, `partition columns repeat: ${partitionColumns.join(', ')}`);
  if (schema.columns.length <= partitionColumns.length)
    throw new DeltaLogError(label, 'the table needs at least one column that is not a partition column');
  intervalOf(label, configuration);
}

/** Fill `extendedFileMetadata` on removes that carry partitionValues and size, as PROTOCOL.md defines the flag. */
function normalize(action: Action): Action {
  if (
    'remove' in action &&
    action.remove.extendedFileMetadata === undefined &&
    action.remove.partitionValues !== undefined &&
    action.remove.size !== undefined
  ) {
    return { remove: { ...action.remove, extendedFileMetadata: true } };
  }
  return action;
}

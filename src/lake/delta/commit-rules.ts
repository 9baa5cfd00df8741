import type { Action, MetaDataAction, ProtocolAction } from './actions.ts';
import { DeltaConflictError, DeltaLogError, DeltaProtocolError } from './delta-errors.ts';
import { dvUniqueId } from './deletion-vector.ts';
import { decodeDataPath } from './log-paths.ts';
import { appendOnly, assertNoInvariants, assertWritable, declaresDeletionVectors } from './protocol-check.ts';
import { fromSchemaString, SchemaStringError } from './schema-string.ts';
import type { Snapshot } from './snapshot.ts';

/**
 * What makes a commit valid, and when a commit that lost its version to another writer may be
 * retried at the next one. Pure functions over actions and a snapshot.
 */

/**
 * PROTOCOL.md "Delta Log Entries" (writer requirements): one commit must not hold two actions
 * that reconcile with each other (two adds or two removes of a path, more than one metaData or
 * protocol, two txns with one appId); adding and removing one logical file, (path, deletion vector),
 * in one commit is also refused, while removing a file with its old vector and adding it with a new
 * one is how a deletion vector is updated ("Deletion Vectors"). A new deletion vector needs the
 * `deletionVectors` table feature and `delta.enableDeletionVectors=true`. Every add carries exactly the
 * table's partition columns ("Consistency Between Table Metadata and Data Files"). Removes must
 * name active files. Append-only tables accept no data-changing removes ("Append-only Tables").
 */
export function validateCommit(table: string, snapshot: Snapshot, actions: Action[]): void {
  const protocol = snapshot.protocol!;
  let metadata = snapshot.metadata!;
  let newProtocol: ProtocolAction | undefined;
  const adds = new Map<string, string | undefined>();
  const removes = new Map<string, string | undefined>();
  const appIds = new Set<string>();
  let metaDatas = 0;
  for (const a of actions) {
    if ('commitInfo' in a)
      throw new DeltaLogError(table, 'commit() writes the commitInfo action itself; pass the operation in its second argument instead');
    if ('metaData' in a) {
      if (++metaDatas > 1) throw new DeltaLogError(table, 'a commit may hold at most one metaData action');
      metadata = a.metaData;
    }
    if ('protocol' in a) {
      if (newProtocol) throw new DeltaLogError(table, 'a commit may hold at most one protocol action');
      newProtocol = a.protocol;
      assertWritable(table, newProtocol);
    }
    if ('txn' in a) {
      if (appIds.has(a.txn.appId))
        throw new DeltaLogError(table, `a commit may hold one txn action per appId, ${a.txn.appId} appears twice`);
      appIds.add(a.txn.appId);
    }
    if ('add' in a) {
      const key = decodeDataPath(a.add.path);
      if (adds.has(key)) throw new DeltaLogError(table, `file ${a.add.path} is added twice in one commit`);
      adds.set(key, dvUniqueId(a.add.deletionVector));
    }
    if ('remove' in a) {
      const key = decodeDataPath(a.remove.path);
      if (removes.has(key)) throw new DeltaLogError(table, `file ${a.remove.path} is removed twice in one commit`);
      removes.set(key, dvUniqueId(a.remove.deletionVector));
      const active = snapshot.activeFile(a.remove.path);
      if (!active)
        throw new DeltaConflictError(
          table,
          snapshot.version + 1,
          `file ${a.remove.path} is not in the table at version ${snapshot.version} (another commit removed it)`,
        );
      if (dvUniqueId(active.deletionVector) !== dvUniqueId(a.remove.deletionVector))
        throw new DeltaConflictError(
          table,
          snapshot.version + 1,
          `file ${a.remove.path} has another deletion vector at version ${snapshot.version} than the one this commit removes (another commit deleted rows in it)`,
        );
    }
  }
  for (const [key, dv] of adds)
    if (removes.has(key) && removes.get(key) === dv) throw new DeltaLogError(table, `file ${key} is both added and removed in one commit`);

  const effectiveProtocol = newProtocol ?? protocol;
  if (metaDatas) checkMetadata(table, effectiveProtocol, metadata);
  for (const a of actions) {
    if ('add' in a) checkPartitionValues(table, metadata, a.add.path, a.add.partitionValues);
    if (
      'add' in a &&
      a.add.deletionVector &&
      dvUniqueId(a.add.deletionVector) !== dvUniqueId(snapshot.activeFile(a.add.path)?.deletionVector)
    )
      checkDeletionVectorsEnabled(table, effectiveProtocol, metadata, a.add.path);
    if ('remove' in a && a.remove.dataChange && appendOnly(effectiveProtocol, metadata))
      throw new DeltaProtocolError(
        table,
        effectiveProtocol,
        `refusing to commit: the table is append-only (delta.appendOnly=true) and this commit removes data (file ${a.remove.path}, dataChange=true)`,
      );
  }
}

/** A commit may write a new deletion vector only when the table declares the feature and enables it (PROTOCOL.md "Deletion Vectors"). */
function checkDeletionVectorsEnabled(table: string, protocol: ProtocolAction, metadata: MetaDataAction, path: string): void {
  const declared = declaresDeletionVectors(protocol);
  if (!declared)
    throw new DeltaProtocolError(
      table,
      protocol,
      `refusing to commit a deletion vector for ${path}: the table does not declare the table feature deletionVectors (reader version 3 and writer version 7 with deletionVectors in readerFeatures and writerFeatures). Enable deletion vectors for this table (sink key delta.enableDeletionVectors) so that Tide upgrades its protocol, or let Tide rewrite files (copy-on-write)`,
    );
  if (metadata.configuration['delta.enableDeletionVectors']?.trim().toLowerCase() !== 'true')
    throw new DeltaProtocolError(
      table,
      protocol,
      `refusing to commit a deletion vector for ${path}: the table property delta.enableDeletionVectors is not true, and writers must only write new deletion vectors when it is`,
    );
}

function checkMetadata(table: string, protocol: ProtocolAction, metadata: MetaDataAction): void {
  let schema;
  try {
    schema = fromSchemaString(metadata.schemaString);
  } catch (e) {
    if (e instanceof SchemaStringError)
      throw new DeltaLogError(table, `the new metaData has an invalid schema: ${e.message}`, { cause: e });
    throw e;
  }
  const names = new Set(schema.columns.map((c) => c.name));
  const missing = metadata.partitionColumns.filter((c) => !names.has(c));
  if (missing.length) throw new DeltaLogError(table, `partition columns ${missing.join(', ')} are not in the schema`);
  if (metadata.format.provider !== 'parquet')
    throw new DeltaLogError(table, `format.provider must be "parquet", got ${JSON.stringify(metadata.format.provider)}`);
  assertNoInvariants(table, protocol, schema);
}

function checkPartitionValues(table: string, metadata: MetaDataAction, path: string, values: Record<string, string | null>): void {
  const expected = metadata.partitionColumns;
  const missing = expected.filter((c) => !(c in values));
  const extra = Object.keys(values).filter((k) => !expected.includes(k));
  if (missing.length || extra.length) {
    throw new DeltaLogError(
      table,
      `add ${path}: partitionValues must hold exactly the partition columns [${expected.join(', ')}]` +
        `${missing.length ? `; missing ${missing.join(', ')}` : ''}${extra.length ? `; not partition columns: ${extra.join(', ')}` : ''}`,
    );
  }
}

/**
 * Whether this commit (`ours`) can be retried at the next version after another writer committed
 * `winner` at the version it wanted; returns why not, or undefined when a retry is safe.
 *
 * Delta's optimistic concurrency (PROTOCOL.md "Overview": writers "optimistically write out new
 * data files" then commit; the reference implementation's conflict checker under WriteSerializable
 * isolation) lets a commit go through after concurrent commits that only appended files or only
 * rearranged other files (dataChange=false). It is not safe when the winner:
 *  - changed the protocol or the metadata: this commit's files were written for the old schema
 *    and partitioning;
 *  - removed a file this commit also removes: the rows in it were already rewritten or deleted;
 *  - set a txn appId this commit also sets: two writers are committing progress for the same
 *    application (the same Kafka partition), so one of them is duplicating work;
 *  - added a file this commit also adds (same path: data files must be unique).
 *
 * A winner that removed other files with dataChange=true (a merge of other keys) is not a
 * conflict: Tide routes each primary key to one Kafka partition and so to one writer; merges by
 * two writers touch disjoint keys, and collide only when they rewrite the same file (rule 2).
 */
export function findConflict(winner: Action[], ours: Action[]): string | undefined {
  const ourRemoves = new Set<string>();
  const ourAdds = new Set<string>();
  const ourApps = new Set<string>();
  for (const a of ours) {
    if ('remove' in a) ourRemoves.add(decodeDataPath(a.remove.path));
    if ('add' in a) ourAdds.add(decodeDataPath(a.add.path));
    if ('txn' in a) ourApps.add(a.txn.appId);
  }
  for (const a of winner) {
    if ('protocol' in a) return 'the concurrent commit changed the table protocol';
    if ('metaData' in a) return 'the concurrent commit changed the table metadata (schema, partitioning or properties)';
    if ('remove' in a && ourRemoves.has(decodeDataPath(a.remove.path)))
      return `the concurrent commit already removed file ${a.remove.path}, which this commit removes`;
    if ('txn' in a && ourApps.has(a.txn.appId))
      return `the concurrent commit set txn ${a.txn.appId} (version ${a.txn.version}), which this commit also sets: two writers are committing progress for the same application`;
    if ('add' in a && ourAdds.has(decodeDataPath(a.add.path)))
      return `the concurrent commit added file ${a.add.path}, which this commit also adds`;
  }
  return undefined;
}

/** Delta's isBlindAppend: the commit only adds files (no removes, no metadata or protocol change). */
export function isBlindAppend(actions: Action[]): boolean {
  return actions.every((a) => 'add' in a || 'txn' in a || 'commitInfo' in a);
}

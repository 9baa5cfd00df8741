import { mkdtemp, open, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ObjectStore } from '../storage/object-store.ts';
import { type Action, ActionParseError, parseAction } from './actions.ts';
import { withCheckpointDuckDB } from './checkpoint-duckdb.ts';
import { DeltaLogError } from './delta-errors.ts';
import { checkpointPartPath, checkpointPath, lastCheckpointPath } from './log-paths.ts';
import type { Snapshot } from './snapshot.ts';
import { tombstoneRetentionMs, writeStatsAsJson } from './table-properties.ts';

/**
 * Parquet checkpoints (PROTOCOL.md "Checkpoints", "Checkpoint Schema", "Last Checkpoint File
 * Schema"). Tide writes classic single-part V1 checkpoints, `NNN.checkpoint.parquet`: one row per
 * reconciled action, each action in its own struct column (`txn`, `add`, `remove`, `metaData`,
 * `protocol`), the others null. DuckDB writes the Parquet: the actions go to a newline-delimited
 * JSON file that `read_json` reads with the checkpoint schema given explicitly (so maps become
 * Parquet MAPs, not structs), then COPY … TO … (FORMAT parquet).
 */

const STRING_MAP = 'MAP(VARCHAR, VARCHAR)';
/** "Deletion Vector Descriptor Schema": offset and sizeInBytes are Int, cardinality Long. */
const DELETION_VECTOR = 'STRUCT(storageType VARCHAR, pathOrInlineDv VARCHAR, "offset" INTEGER, sizeInBytes INTEGER, cardinality BIGINT)';
/** The checkpoint's columns and their DuckDB types, from PROTOCOL.md "Checkpoint Schema". */
const CHECKPOINT_COLUMNS: Record<string, string> = {
  txn: 'STRUCT(appId VARCHAR, version BIGINT, lastUpdated BIGINT)',
  add: `STRUCT(path VARCHAR, partitionValues ${STRING_MAP}, size BIGINT, modificationTime BIGINT, dataChange BOOLEAN, stats VARCHAR, tags ${STRING_MAP}, deletionVector ${DELETION_VECTOR})`,
  // "the remove struct does not contain the stats and tags fields"
  remove: `STRUCT(path VARCHAR, deletionTimestamp BIGINT, dataChange BOOLEAN, extendedFileMetadata BOOLEAN, partitionValues ${STRING_MAP}, size BIGINT, deletionVector ${DELETION_VECTOR})`,
  metaData:
    `STRUCT(id VARCHAR, name VARCHAR, description VARCHAR, format STRUCT(provider VARCHAR, options ${STRING_MAP}), schemaString VARCHAR, ` +
    `partitionColumns VARCHAR[], createdTime BIGINT, configuration ${STRING_MAP})`,
  // readerFeatures/writerFeatures "must be null" below reader 3 / writer 7, and are lists at those versions.
  protocol: 'STRUCT(minReaderVersion INTEGER, minWriterVersion INTEGER, readerFeatures VARCHAR[], writerFeatures VARCHAR[])',
};

export interface LastCheckpoint {
  version: number;
  /** Number of actions (rows) in the checkpoint. */
  size: number;
  parts?: number;
  sizeInBytes?: number;
  numOfAddFiles?: number;
}

const sqlString = (s: string) => `'${s.replace(/'/g, "''")}'`;

/**
 * Each action's checkpoint row, kept per action object. A table's snapshot keeps its `add` and `remove`
 * objects from commit to commit, and a checkpoint every `delta.checkpoint.interval` commits serialised every
 * one of them again: with deletion vectors a merge removes and re-adds every file it touches, so silver's
 * tombstones (kept for `delta.deletedFileRetentionDuration`, a week by default) grew by hundreds a flush, and
 * the pipeline's CPU profile showed a 1–1.5 s `checkpointRow` stretch on the sink's main thread per checkpoint
 * late in a 15-minute run. Now only the actions new since the last checkpoint are serialised.
 */
const rowCache = {
  add: new WeakMap<object, string>(),
  addWithoutStats: new WeakMap<object, string>(),
  remove: new WeakMap<object, string>(),
};

function cached(cache: WeakMap<object, string>, key: object, make: () => string): string {
  let line = cache.get(key);
  if (line === undefined) {
    line = make();
    cache.set(key, line);
  }
  return line;
}

/** One checkpoint row as JSON for read_json: the action under its column name, with only the checkpoint schema's fields. */
function checkpointRow(action: Action, keepStats: boolean): string {
  if ('remove' in action)
    return cached(rowCache.remove, action.remove, () => {
      const { path, deletionTimestamp, dataChange, extendedFileMetadata, partitionValues, size, deletionVector } = action.remove;
      return JSON.stringify({
        remove: { path, deletionTimestamp, dataChange, extendedFileMetadata, partitionValues, size, deletionVector },
      });
    });
  if ('add' in action)
    return keepStats
      ? cached(rowCache.add, action.add, () => JSON.stringify({ add: action.add }))
      : cached(rowCache.addWithoutStats, action.add, () => JSON.stringify({ add: { ...action.add, stats: undefined } }));
  return JSON.stringify(action);
}

/** Write the rows to `file` a block at a time: one string of every row was tens of MB with a week of tombstones. */
async function writeRows(file: string, actions: Action[], keepStats: boolean): Promise<void> {
  const handle = await open(file, 'w');
  try {
    for (let i = 0; i < actions.length; i += ROWS_PER_WRITE) {
      let block = '';
      for (const a of actions.slice(i, i + ROWS_PER_WRITE)) block += `${checkpointRow(a, keepStats)}\n`;
      await handle.write(block);
    }
  } finally {
    await handle.close();
  }
}

const ROWS_PER_WRITE = 4096;

/**
 * Write the checkpoint for the snapshot's version, then `_last_checkpoint` (unless that already
 * names a newer checkpoint). "Checkpoints for a given version must only be created after the
 * associated delta file has been successfully written": callers pass a committed snapshot.
 */
export async function writeCheckpoint(store: ObjectStore, root: string, snapshot: Snapshot, now = Date.now()): Promise<LastCheckpoint> {
  const configuration = snapshot.metadata?.configuration ?? {};
  const actions = snapshot.checkpointActions(now, tombstoneRetentionMs(configuration));
  const keepStats = writeStatsAsJson(configuration);
  const dir = await mkdtemp(join(tmpdir(), 'tide-checkpoint-'));
  try {
    const jsonFile = join(dir, 'actions.json');
    const parquetFile = join(dir, 'checkpoint.parquet');
    await writeRows(jsonFile, actions, keepStats);
    const columns = Object.entries(CHECKPOINT_COLUMNS)
      .map(([name, type]) => `${name}: ${sqlString(type)}`)
      .join(', ');
    await withCheckpointDuckDB((run) =>
      run(
        `COPY (SELECT ${Object.keys(CHECKPOINT_COLUMNS).join(', ')} FROM read_json(${sqlString(jsonFile)}, format = 'newline_delimited', columns = {${columns}})) ` +
          `TO ${sqlString(parquetFile)} (FORMAT parquet, COMPRESSION zstd)`,
      ),
    );
    const sizeInBytes = (await stat(parquetFile)).size;
    await store.putFile(checkpointPath(root, snapshot.version), parquetFile);
    const last: LastCheckpoint = {
      version: snapshot.version,
      size: actions.length,
      sizeInBytes,
      numOfAddFiles: actions.filter((a) => 'add' in a).length,
    };
    // Never move _last_checkpoint backwards: a slower writer may finish an older checkpoint later.
    const current = await readLastCheckpoint(store, root);
    if (!current || current.version < last.version) await store.put(lastCheckpointPath(root), Buffer.from(JSON.stringify(last)));
    return last;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** `_last_checkpoint`, or undefined when absent or unreadable (it is only a hint: readers fall back to listing the log). */
export async function readLastCheckpoint(store: ObjectStore, root: string): Promise<LastCheckpoint | undefined> {
  const data = await store.get(lastCheckpointPath(root));
  if (!data) return undefined;
  try {
    const json = JSON.parse(data.toString('utf8')) as Partial<LastCheckpoint>;
    if (!Number.isInteger(json.version) || (json.version as number) < 0) return undefined;
    return json as LastCheckpoint;
  } catch {
    return undefined;
  }
}

/**
 * The actions of the checkpoint at `version` (all `parts` of a multi-part one). Columns the file
 * lacks count as null ("Any missing column should be treated as null"); fields Tide does not model
 * (stats_parsed, partitionValues_parsed, …) are dropped; deletionVector is kept.
 */
export async function readCheckpoint(store: ObjectStore, root: string, table: string, version: number, parts?: number): Promise<Action[]> {
  const paths =
    parts && parts > 1
      ? Array.from({ length: parts }, (_, i) => checkpointPartPath(root, version, i + 1, parts))
      : [checkpointPath(root, version)];
  const files: string[] = [];
  for (const p of paths) files.push(await store.localFile(p));
  const list = `[${files.map(sqlString).join(', ')}]`;
  try {
    return await withCheckpointDuckDB(async (run) => {
      const present = new Set(
        (await run(`DESCRIBE SELECT * FROM read_parquet(${list}, union_by_name = true)`)).map((r) => String(r.column_name)),
      );
      const columns = Object.keys(CHECKPOINT_COLUMNS).filter((c) => present.has(c));
      if (!columns.length) throw new Error('it has none of the action columns txn, add, remove, metaData, protocol');
      // One JSON object per row holding its action columns (null for the others): one JSON.parse per row.
      const rows = await run(
        `SELECT to_json(struct_pack(${columns.map((c) => `${c} := ${c}`).join(', ')})) AS j FROM read_parquet(${list}, union_by_name = true)`,
      );
      const actions: Action[] = [];
      for (let i = 0; i < rows.length; i++) {
        const row = JSON.parse(String(rows[i]!.j)) as Record<string, unknown>;
        for (const c of columns) {
          const value = row[c];
          if (value === null || value === undefined) continue;
          const action = parseAction({ [c]: value }, i + 1);
          if (action) actions.push(action);
        }
      }
      return actions;
    });
  } catch (e) {
    const where = paths.join(', ');
    const why = e instanceof ActionParseError ? `row ${e.line}: ${e.detail}` : (e as Error).message;
    throw new DeltaLogError(table, `checkpoint ${where} cannot be read: ${why}`, { cause: e });
  }
}

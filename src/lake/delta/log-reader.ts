import type { ObjectStore } from '../storage/object-store.ts';
import { type Action, ActionParseError, parseCommitText } from './actions.ts';
import { readCheckpoint, readLastCheckpoint } from './checkpoint.ts';
import { DeltaLogError } from './delta-errors.ts';
import { checkpointPartPath, checkpointPath, commitPath, logDir, parseLogFileName } from './log-paths.ts';
import { assertReadable } from './protocol-check.ts';
import { Snapshot } from './snapshot.ts';

/**
 * Log replay (PROTOCOL.md "Delta Table Specification", "Last Checkpoint File", "Action
 * Reconciliation"): start from the newest usable checkpoint, then apply the JSON commits after it,
 * in version order, until the next version does not exist.
 */

export interface LoadOptions {
  /** Load this version (time travel) instead of the latest. */
  version?: number;
  /** Replay every JSON commit from version 0, ignoring checkpoints (for tests and repairs). */
  ignoreCheckpoints?: boolean;
}

/** The actions of commit `version`, or undefined when that commit does not exist. */
export async function readCommit(store: ObjectStore, root: string, table: string, version: number): Promise<Action[] | undefined> {
  const path = commitPath(root, version);
  const data = await store.get(path);
  if (!data) return undefined;
  try {
    return parseCommitText(data.toString('utf8'));
  } catch (e) {
    const why = e instanceof ActionParseError ? `line ${e.line}: ${e.detail}` : (e as Error).message;
    throw new DeltaLogError(
      table,
      `commit ${path} cannot be parsed (${why}). Commit files are written whole, so this one was changed by hand or by a broken writer; ` +
        'restore it from a backup, or read the table at an earlier version',
      { cause: e },
    );
  }
}

interface CheckpointRef {
  version: number;
  parts?: number;
}

/** Commits and complete checkpoints found by listing `_delta_log/` ("readers must ignore multi-part checkpoints with missing parts"). */
async function listLog(store: ObjectStore, root: string): Promise<{ commits: number[]; checkpoints: CheckpointRef[] }> {
  const commits: number[] = [];
  const partsSeen = new Map<string, Set<number>>();
  const checkpoints: CheckpointRef[] = [];
  const dir = logDir(root);
  for (const o of await store.list(dir)) {
    const name = o.path.slice(dir.length);
    if (name.includes('/')) continue;
    const f = parseLogFileName(name);
    if (f.kind === 'commit') commits.push(f.version);
    else if (f.kind === 'checkpoint' && f.parts === undefined) checkpoints.push({ version: f.version });
    else if (f.kind === 'checkpoint') {
      const key = `${f.version}/${f.parts}`;
      const seen = partsSeen.get(key) ?? new Set<number>();
      seen.add(f.part!);
      partsSeen.set(key, seen);
      if (seen.size === f.parts) checkpoints.push({ version: f.version, parts: f.parts });
    }
  }
  commits.sort((a, b) => a - b);
  checkpoints.sort((a, b) => a.version - b.version);
  return { commits, checkpoints };
}

/**
 * The snapshot of the table at `root` (latest, or `options.version`), or undefined when there is
 * no table there (no commit and no checkpoint in `_delta_log/`). Refuses tables Tide cannot read.
 */
export async function loadSnapshot(
  store: ObjectStore,
  root: string,
  table: string,
  options: LoadOptions = {},
): Promise<Snapshot | undefined> {
  const target = options.version;
  if (target !== undefined && (!Number.isInteger(target) || target < 0))
    throw new DeltaLogError(table, `version ${target} is not a table version (a non-negative integer)`);
  let start: CheckpointRef | undefined;
  let listed: Awaited<ReturnType<typeof listLog>> | undefined;
  if (!options.ignoreCheckpoints) {
    const last = await readLastCheckpoint(store, root);
    if (last && (target === undefined || last.version <= target) && (await store.stat(checkpointFile(root, last)))) {
      start = { version: last.version, ...(last.parts && last.parts > 1 ? { parts: last.parts } : {}) };
    } else {
      listed = await listLog(store, root);
      start = listed.checkpoints.filter((c) => target === undefined || c.version <= target).at(-1);
    }
  }

  let snapshot: Snapshot;
  if (start) {
    snapshot = Snapshot.fromCheckpoint(start.version, await readCheckpoint(store, root, table, start.version, start.parts));
  } else {
    snapshot = new Snapshot();
    const first = await readCommit(store, root, table, 0);
    if (!first) {
      listed ??= await listLog(store, root);
      if (!listed.commits.length && !listed.checkpoints.length) return undefined;
      throw new DeltaLogError(
        table,
        `the log has no version 0${options.ignoreCheckpoints ? '' : ' and no usable checkpoint'} (earliest commit: ${listed.commits[0] ?? 'none'}); ` +
          'it was cleaned up past its checkpoints, so it cannot be replayed',
      );
    }
    snapshot.applyCommit(0, first);
  }
  await replayCommits(store, root, table, snapshot, target);
  if (target !== undefined && snapshot.version !== target)
    throw new DeltaLogError(table, `version ${target} does not exist (latest is ${snapshot.version})`);
  checkComplete(table, snapshot);
  return snapshot;
}

/** Apply the commits after `snapshot.version` (up to `until`, when given) in place. */
export async function replayCommits(store: ObjectStore, root: string, table: string, snapshot: Snapshot, until?: number): Promise<void> {
  while (until === undefined || snapshot.version < until) {
    const actions = await readCommit(store, root, table, snapshot.version + 1);
    if (!actions) return;
    snapshot.applyCommit(snapshot.version + 1, actions);
  }
}

/** Every snapshot has one protocol and one metaData ("Action Reconciliation"); Tide must be able to read the protocol. */
export function checkComplete(table: string, snapshot: Snapshot): void {
  if (!snapshot.protocol || !snapshot.metadata)
    throw new DeltaLogError(
      table,
      `version ${snapshot.version} has no ${snapshot.protocol ? 'metaData' : 'protocol'} action; the log is incomplete`,
    );
  assertReadable(table, snapshot.protocol);
}

function checkpointFile(root: string, ref: { version: number; parts?: number }): string {
  return ref.parts && ref.parts > 1 ? checkpointPartPath(root, ref.version, 1, ref.parts) : checkpointPath(root, ref.version);
}

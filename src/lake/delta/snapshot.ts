import type { Action, AddAction, CommitInfoAction, MetaDataAction, ProtocolAction, RemoveAction, TxnAction } from './actions.ts';
import { dvUniqueId } from './deletion-vector.ts';
import { decodeDataPath } from './log-paths.ts';

/** A remove's key (PROTOCOL.md "Action Reconciliation"): (path, deletionVector.uniqueId). */
const removeKey = (path: string, dv: Parameters<typeof dvUniqueId>[0]): string => `${decodeDataPath(path)}\u0000${dvUniqueId(dv) ?? ''}`;

/** A remove tombstone with its deletion time (0 when the action had none: it counts as long expired). */
export type Tombstone = RemoveAction & { deletionTimestamp: number };

/**
 * A table's state at one version, built by replaying actions in version order as PROTOCOL.md
 * "Action Reconciliation" says:
 *  - the latest protocol and metaData win;
 *  - for txn, the latest version seen for an appId wins;
 *  - logical files are keyed by (path, deletionVector.uniqueId): the newest add of a path is the
 *    table's file (at most one per path), and removes are tombstones kept for VACUUM, one per
 *    (path, vector), so a file re-added with a new deletion vector in the same commit that removes
 *    it with the old one stays active, and the old vector's tombstone stays too.
 *
 * Paths are compared after percent-decoding ("The path is a URI […] which needs to be decoded to
 * get the data file path"), so `a%20b.parquet` and `a b.parquet` name the same file, while
 * `files()` returns each add's path exactly as the log spells it.
 *
 * Pure: no I/O, so unit tests replay logs in memory.
 */
export class Snapshot {
  version = -1;
  protocol: ProtocolAction | undefined;
  metadata: MetaDataAction | undefined;
  /** The commitInfo of the newest commit replayed from JSON (checkpoints do not keep commitInfo). */
  lastCommitInfo: CommitInfoAction | undefined;
  private readonly adds = new Map<string, AddAction>();
  private readonly removes = new Map<string, RemoveAction>();
  private readonly txns = new Map<string, TxnAction>();

  /** Apply the actions of commit `version`, which must follow the current version. */
  applyCommit(version: number, actions: Action[]): void {
    if (version !== this.version + 1)
      throw new Error(`commit ${version} cannot follow version ${this.version}: the log must be replayed in order without gaps`);
    this.applyActions(actions);
    this.version = version;
  }

  /** Start from a checkpoint: the reconciled state at `version`. */
  static fromCheckpoint(version: number, actions: Action[]): Snapshot {
    const s = new Snapshot();
    s.applyActions(actions);
    s.version = version;
    s.lastCommitInfo = undefined;
    return s;
  }

  private applyActions(actions: Action[]): void {
    for (const a of actions) {
      if ('add' in a) {
        const key = decodeDataPath(a.add.path);
        this.removes.delete(removeKey(a.add.path, a.add.deletionVector));
        // Delete first so a re-added file moves to the end, as in a fresh replay of the same log.
        this.adds.delete(key);
        this.adds.set(key, a.add);
      } else if ('remove' in a) {
        const key = decodeDataPath(a.remove.path);
        // The remove names one logical file: it ends the active add only when that add has the same vector.
        if (dvUniqueId(this.adds.get(key)?.deletionVector) === dvUniqueId(a.remove.deletionVector)) this.adds.delete(key);
        this.removes.set(removeKey(a.remove.path, a.remove.deletionVector), a.remove);
      } else if ('txn' in a) {
        this.txns.set(a.txn.appId, a.txn);
      } else if ('metaData' in a) {
        this.metadata = a.metaData;
      } else if ('protocol' in a) {
        this.protocol = a.protocol;
      } else {
        this.lastCommitInfo = a.commitInfo;
      }
    }
  }

  /** The active files (add actions), in the order they were added. */
  files(): AddAction[] {
    return [...this.adds.values()];
  }

  /** Whether the file at this action path (encoded or not) is active. */
  hasFile(path: string): boolean {
    return this.adds.has(decodeDataPath(path));
  }

  /** The active add of this path (encoded or not), if any. */
  activeFile(path: string): AddAction | undefined {
    return this.adds.get(decodeDataPath(path));
  }

  tombstones(): Tombstone[] {
    return [...this.removes.values()].map((r) => ({ ...r, deletionTimestamp: r.deletionTimestamp ?? 0 }));
  }

  txnVersion(appId: string): number | undefined {
    return this.txns.get(appId)?.version;
  }

  txnActions(): TxnAction[] {
    return [...this.txns.values()];
  }

  /**
   * The reconciled actions a checkpoint holds (PROTOCOL.md "Checkpoints"): protocol, metaData,
   * txns, active adds, and the tombstones not yet expired at `now` (removed within `retentionMs`).
   */
  checkpointActions(now: number, retentionMs: number): Action[] {
    const out: Action[] = [];
    if (this.protocol) out.push({ protocol: this.protocol });
    if (this.metadata) out.push({ metaData: this.metadata });
    for (const txn of this.txns.values()) out.push({ txn });
    for (const add of this.adds.values()) out.push({ add });
    for (const remove of this.removes.values()) if ((remove.deletionTimestamp ?? 0) > now - retentionMs) out.push({ remove });
    return out;
  }

  clone(): Snapshot {
    const s = new Snapshot();
    s.version = this.version;
    s.protocol = this.protocol;
    s.metadata = this.metadata;
    s.lastCommitInfo = this.lastCommitInfo;
    for (const [k, v] of this.adds) s.adds.set(k, v);
    for (const [k, v] of this.removes) s.removes.set(k, v);
    for (const [k, v] of this.txns) s.txns.set(k, v);
    return s;
  }
}

import { DeltaTable } from '../lake/delta/delta-table.ts';
import { commitPath } from '../lake/delta/log-paths.ts';
import type { ObjectStore } from '../lake/storage/object-store.ts';

/**
 * The lake tables gold reads, kept open between build passes. Opening a table reads its newest
 * checkpoint and the commits after it; gold did that for every table a report reads on every pass,
 * which was most of the sink's log-replay time in the pipeline's CPU profile (README "Sink and lake").
 * A kept table is `refresh()`ed instead: only the commits since the last pass are read.
 *
 * A kept table is checked against the store first: the commit file of the version it is at must be
 * the one it read (same size and modification time). Commit files are written once and never
 * rewritten, and log cleanup never deletes the newest one, so when it is gone or different the table
 * was dropped or created again (by another process), and it is opened afresh: otherwise a recreated
 * table's commits would be replayed onto the old table's files. That is one `stat` per table per pass.
 */
export class LakeTables {
  private readonly open = new Map<string, { table: DeltaTable; commit: string }>();

  constructor(private readonly store: ObjectStore) {}

  /** The table at `root` at its newest version, or undefined when it does not exist. */
  async get(root: string): Promise<DeltaTable | undefined> {
    const kept = this.open.get(root);
    if (kept) {
      try {
        if ((await this.commitOf(kept.table)) === kept.commit) {
          const before = kept.table.version;
          await kept.table.refresh();
          if (kept.table.version !== before) kept.commit = await this.commitOf(kept.table);
          return kept.table;
        }
      } catch {
        // A refresh that fails (the log changed under it) is retried below from a fresh open, which throws for real.
      }
      this.open.delete(root);
    }
    const table = await DeltaTable.open(this.store, root);
    if (table) this.open.set(root, { table, commit: await this.commitOf(table) });
    return table;
  }

  /** Forget the kept tables (the next `get` opens them again). */
  clear(): void {
    this.open.clear();
  }

  /** The fingerprint of the commit file of the table's version ('' when it is not there). */
  private async commitOf(table: DeltaTable): Promise<string> {
    const info = await this.store.stat(commitPath(table.root, table.version));
    return info ? `${info.size}/${info.modified}` : '';
  }
}

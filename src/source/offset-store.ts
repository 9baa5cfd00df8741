import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

/**
 * What the source must remember beyond the slot's confirmed LSN: how far the
 * initial snapshot got, so an interrupted snapshot resumes from its last
 * finished chunk. A JSON file, written atomically (temp file + rename), like
 * Kafka Connect standalone's `offset.storage.file.filename`.
 */
export interface SnapshotProgress {
  status: 'running' | 'done';
  /** The slot's consistent point: snapshot events carry the LSN just before it as their commit LSN. */
  consistentLsn: string;
  /** Next index for snapshot events (they are numbered across the whole snapshot). */
  nextIndex: number;
  /**
   * Written before a chunk is published: indexes below it may be in Kafka already. A snapshot resumed after a
   * crash numbers on from here, so no (commit_lsn, event_index) is ever given to two different rows.
   */
  reservedIndex?: number;
  tables: Record<string, { done: boolean; lastKey?: (string | null)[]; rows: number }>;
}

export interface SourceOffsets {
  slot: string;
  snapshot?: SnapshotProgress;
}

export class OffsetStore {
  constructor(readonly path: string) {}

  read(): SourceOffsets | undefined {
    if (!existsSync(this.path)) return undefined;
    return JSON.parse(readFileSync(this.path, 'utf8')) as SourceOffsets;
  }

  write(offsets: SourceOffsets): void {
    mkdirSync(dirname(this.path), { recursive: true });
    const tmp = `${this.path}.tmp`;
    writeFileSync(tmp, JSON.stringify(offsets, null, 2));
    renameSync(tmp, this.path);
  }
}

import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { SnapshotRequest } from './signals.ts';

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
  tables: Record<
    string,
    {
      done: boolean;
      lastKey?: (string | null)[];
      rows: number;
      /** The topic held records before the table's snapshot began: its end gets markers (events/snapshot-end.ts). */
      markEnd?: boolean;
    }
  >;
}

/** An incremental snapshot that has begun: how far it got (saved after each chunk Kafka acknowledged). */
export interface IncrementalTable extends SnapshotRequest {
  startedAt: string;
  /** Key of the last row read; the next chunk reads after it. */
  lastKey?: (string | null)[];
  /** Rows published so far. */
  rows: number;
  chunks: number;
  /** Position (LSN) of the first chunk's low watermark: every key of the table that still exists has a change or a snapshot row at or after it. */
  openedAt?: string;
}

/** Incremental snapshots (snapshot-window.ts, incremental-snapshot.ts): the one running, those waiting, those done. */
export interface IncrementalProgress {
  current?: IncrementalTable;
  queue: SnapshotRequest[];
  /** `commitLsn/messageLsn` of the newest signal acted on: one replayed after a restart is not acted on twice. */
  signalPosition?: string;
  /** The last few that finished, newest last (for `tide source status`). */
  finished: { table: string; where?: string; rows: number; finishedAt: string; openedAt?: string }[];
}

export interface SourceOffsets {
  slot: string;
  snapshot?: SnapshotProgress;
  incremental?: IncrementalProgress;
  /** The tables captured when the source last started or found a new table: a table not in it has joined the capture. */
  captured?: string[];
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

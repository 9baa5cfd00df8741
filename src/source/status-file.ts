import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { IncrementalStatus } from './incremental-snapshot.ts';
import type { SourceState } from './source-state.ts';

/** What a running connector reports about itself, once a second, for `tide source status`. */
export interface SourceStatus {
  name: string;
  pid: number;
  state: SourceState;
  slot: string;
  confirmedLsn: string;
  receivedLsn: string;
  eventsTotal: number;
  eventsPerSecond: number;
  pendingEvents: number;
  snapshot?: { table: string; rows: number; totalRows: number; rowsPerSecond: number; etaSeconds: number | null } | undefined;
  /** The incremental snapshot running (or the first one waiting), see incremental-snapshot.ts. */
  incrementalSnapshot?: IncrementalStatus | undefined;
  error?: string | undefined;
  /** Set while the source re-establishes a lost connection to Postgres (the state stays streaming). */
  reconnecting?: boolean | undefined;
  updatedAt: string;
}

export function writeStatus(path: string, status: SourceStatus): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(`${path}.tmp`, JSON.stringify(status, null, 2));
  renameSync(`${path}.tmp`, path);
}

export function readStatus(path: string): SourceStatus | undefined {
  return existsSync(path) ? (JSON.parse(readFileSync(path, 'utf8')) as SourceStatus) : undefined;
}

/** Events per second, over the last second or more: `of(total)` is called with the running total. */
export class EventRate {
  private at = performance.now();
  private total = 0;
  private perSecond = 0;

  of(total: number): number {
    const now = performance.now();
    if (now - this.at >= 1000) {
      this.perSecond = ((total - this.total) * 1000) / (now - this.at);
      this.at = now;
      this.total = total;
    }
    return Math.round(this.perSecond);
  }
}

import type { SinkConfig } from '../config/sink-config.ts';
import type { ParquetEngine } from '../lake/parquet/parquet-engine.ts';
import type { ObjectStore } from '../lake/storage/object-store.ts';
import type { Logger } from '../log.ts';
import type { DeadLetter } from './schema-evolution.ts';
import type { SinkObserver } from './sink-observer.ts';

export type { DeadLetter } from './schema-evolution.ts';

/** What a table sink (table-sink.ts) works with, from its worker, and what one batch's apply reports. */
export interface SinkContext {
  name: string;
  config: SinkConfig;
  engine: ParquetEngine;
  store: ObjectStore;
  log: Logger;
  /** Sends dead letters; called before the commit that moves the table past their offsets. */
  sendDeadLetters(letters: DeadLetter[]): Promise<void>;
  /** Told about merge durations (metrics). */
  observer: SinkObserver;
}

export interface ApplyResult {
  deadLetters: DeadLetter[];
  /** How many of deadLetters were sent already (table-sink.ts sends each batch's new ones before its commit). */
  deadLettersSent?: number;
  bronzeRows: number;
  silverChanges: number;
  bronzeVersion?: number;
  silverVersion?: number;
  rewrittenFiles: number;
}

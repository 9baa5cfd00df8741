import type { SourceConfig } from '../config/source-config.ts';
import type { TopicSpec } from '../events/kafka-producer.ts';
import type { CatalogTable } from './catalog.ts';
import { tableFilter } from './catalog.ts';
import type { SourceOffsets } from './offset-store.ts';

/**
 * Everything the source would change, computed as data from the config and
 * the database's current state. `tide source plan` prints it; `tide source
 * start` runs the same statements.
 */
export interface PlannedStatement {
  sql: string;
  why: string;
  /** Runs on a replication connection (CREATE_REPLICATION_SLOT), not a normal one. */
  replication?: boolean;
}

export interface SourcePlan {
  captured: CatalogTable[];
  missingPrimaryKey: string[];
  statements: PlannedStatement[];
  topics: TopicSpec[];
  subjects: string[];
  /** Tables under the default replica identity whose TOAST-able columns may arrive as "unchanged". */
  toastAffected: { table: string; columns: string[]; fix: string }[];
  snapshot: boolean;
  /** Tables that get an incremental snapshot at the next start, and why (see incremental-snapshot.ts). */
  incremental: { table: string; why: string }[];
  /** Captured tables that were not captured at the last start: each gets an incremental snapshot. */
  joined: string[];
}

export interface DatabaseState {
  tables: CatalogTable[];
  publication: { exists: boolean; allTables: boolean; tables: string[] };
  slotExists: boolean;
  offsets: SourceOffsets | undefined;
}

export const quoteIdent = (name: string) => `"${name.replace(/"/g, '""')}"`;
const qualified = (t: Pick<CatalogTable, 'schema' | 'name'>) => `${quoteIdent(t.schema)}.${quoteIdent(t.name)}`;

export function transactionTopic(config: SourceConfig): string {
  return `${config['topic.prefix']}.transaction`;
}

export function needsSnapshot(config: SourceConfig, state: Pick<DatabaseState, 'slotExists' | 'offsets'>): boolean {
  const mode = config['snapshot.mode'];
  if (mode === 'never') return false;
  const unfinished = state.offsets?.snapshot?.status === 'running';
  if (mode === 'when_needed') return !state.slotExists || !state.offsets || unfinished;
  return !state.slotExists || unfinished;
}

export function buildPlan(config: SourceConfig, state: DatabaseState): SourcePlan {
  const include = tableFilter(config['table.include.list'], config['table.exclude.list']);
  const captured = state.tables.filter((t) => include(t.qualified));
  const statements: PlannedStatement[] = [];
  const pub = quoteIdent(config['publication.name']);
  const mode = config['publication.autocreate.mode'];
  const wanted = captured.map((t) => t.qualified).sort();

  if (mode === 'all_tables' && !state.publication.exists) {
    statements.push({ sql: `CREATE PUBLICATION ${pub} FOR ALL TABLES`, why: 'publication.autocreate.mode=all_tables' });
  } else if (mode === 'filtered' && captured.length > 0) {
    const list = captured.map(qualified).join(', ');
    if (!state.publication.exists) {
      statements.push({
        sql: `CREATE PUBLICATION ${pub} FOR TABLE ${list}`,
        why: 'the publication names the captured tables (filtered mode)',
      });
    } else if (state.publication.allTables || JSON.stringify([...state.publication.tables].sort()) !== JSON.stringify(wanted)) {
      statements.push({
        sql: `ALTER PUBLICATION ${pub} SET TABLE ${list}`,
        why: 'the captured tables changed since the publication was made',
      });
    }
  }

  const snapshot = needsSnapshot(config, state);
  const joined = joinedTables(config, state, wanted);
  const progress = state.offsets?.incremental;
  const incremental = [
    ...(progress?.current
      ? [{ table: progress.current.table, why: `resumes after ${progress.current.rows} rows (${progress.current.reason})` }]
      : []),
    ...(progress?.queue ?? []).map((q) => ({ table: q.table, why: `queued (${q.reason})` })),
    ...joined.map((table) => ({ table, why: 'joined table.include.list since the last start' })),
  ];
  if (!state.slotExists) {
    statements.push({
      sql: `CREATE_REPLICATION_SLOT ${quoteIdent(config['slot.name'])} LOGICAL pgoutput${snapshot ? ' EXPORT_SNAPSHOT' : ' NOEXPORT_SNAPSHOT'}`,
      why: snapshot
        ? 'a new slot; its exported snapshot is what the initial snapshot reads, so snapshot and stream meet exactly'
        : 'a new slot',
      replication: true,
    });
  }

  const toastAffected = captured
    .filter((t) => t.replicaIdentity !== 'f')
    .map((t) => ({
      table: t.qualified,
      columns: t.columns.filter((c) => c.toastable && !t.keyColumns.includes(c.name)).map((c) => c.name),
      fix: `ALTER TABLE ${qualified(t)} REPLICA IDENTITY FULL`,
    }))
    .filter((t) => t.columns.length > 0);

  const topics: TopicSpec[] = captured.map((t) => ({
    topic: `${config['topic.prefix']}.${t.schema}.${t.name}`,
    partitions: config['topic.partitions'],
    replicationFactor: config['topic.replication.factor'],
  }));
  topics.push({ topic: transactionTopic(config), partitions: 1, replicationFactor: config['topic.replication.factor'] });

  return {
    captured,
    missingPrimaryKey: captured.filter((t) => t.keyColumns.length === 0).map((t) => t.qualified),
    statements,
    topics,
    subjects: topics.flatMap((t) => [`${t.topic}-key`, `${t.topic}-value`]),
    toastAffected,
    snapshot,
    incremental,
    joined,
  };
}

/**
 * The captured tables that were not captured when the source last ran (offsets.captured): their existing rows
 * never reached Kafka, so each gets an incremental snapshot. None on a first start (the initial snapshot reads
 * every table), while an initial snapshot is unfinished (it reads the new ones too), under snapshot.mode=never,
 * or when the offsets predate the list.
 */
export function joinedTables(config: SourceConfig, state: Pick<DatabaseState, 'slotExists' | 'offsets'>, captured: string[]): string[] {
  const before = state.offsets?.captured;
  if (!before || !state.slotExists || config['snapshot.mode'] === 'never' || needsSnapshot(config, state)) return [];
  const known = new Set(before);
  return captured.filter((q) => !known.has(q));
}

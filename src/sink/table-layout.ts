import type { LakeColumn, LakeType } from '../lake/lake-schema.ts';

/**
 * Where each layer's tables live in the lake and what their columns are.
 *
 *   bronze/<table>           every change event, append-only, partitioned by _commit_date
 *   silver/<table>           current state per primary key
 *   silver/<table>_history   SCD type 2 (when switched on for the table)
 *   gold/<report>            reporting tables
 *
 * `<table>` is the Postgres table name, prefixed with its schema when that is not `public`.
 */
export function lakeTableName(qualifiedTable: string): string {
  const [schema, table] = splitQualified(qualifiedTable);
  return schema === 'public' ? table : `${schema}_${table}`;
}

export function splitQualified(qualifiedTable: string): [string, string] {
  const dot = qualifiedTable.indexOf('.');
  return dot < 0 ? ['public', qualifiedTable] : [qualifiedTable.slice(0, dot), qualifiedTable.slice(dot + 1)];
}

/** The source table a topic carries: Tide's topics are `<prefix>.<schema>.<table>`. */
export function tableOfTopic(topic: string): string | undefined {
  // Asked once per message of every flush; a sink reads a handful of topics, so the answers are kept.
  if (tablesOfTopics.has(topic)) return tablesOfTopics.get(topic);
  const parts = topic.split('.');
  const table = parts.length < 3 ? undefined : `${parts[parts.length - 2]}.${parts[parts.length - 1]}`;
  if (tablesOfTopics.size < 10_000) tablesOfTopics.set(topic, table);
  return table;
}
const tablesOfTopics = new Map<string, string | undefined>();

export const bronzePath = (t: string): string => `bronze/${lakeTableName(t)}`;
export const silverPath = (t: string): string => `silver/${lakeTableName(t)}`;
export const historyPath = (t: string): string => `silver/${lakeTableName(t)}_history`;
export const goldPath = (report: string): string => `gold/${report}`;

const long: LakeType = { kind: 'long' };
const ts: LakeType = { kind: 'timestamp' };
const str: LakeType = { kind: 'string' };

/** Bronze: the row's columns (all nullable: a delete carries only what the old image holds) and the event's position and times. */
export const BRONZE_META: LakeColumn[] = [
  { name: '_op', type: str, nullable: false },
  { name: '_commit_lsn', type: long, nullable: false },
  { name: '_event_index', type: long, nullable: false },
  { name: '_tx_id', type: long, nullable: true },
  { name: '_commit_ts', type: ts, nullable: false },
  { name: '_source_ts', type: ts, nullable: true },
  { name: '_ingested_at', type: ts, nullable: false },
  { name: '_kafka_partition', type: { kind: 'integer' }, nullable: false },
  { name: '_kafka_offset', type: long, nullable: false },
  { name: '_commit_date', type: { kind: 'date' }, nullable: false },
];
export const BRONZE_PARTITION = '_commit_date';

/** Silver: the row's columns and the position of the change that produced the current version. */
export const SILVER_META: LakeColumn[] = [
  { name: '_commit_lsn', type: long, nullable: false },
  { name: '_event_index', type: long, nullable: false },
  { name: '_commit_ts', type: ts, nullable: false },
];

/** History (SCD type 2): one row per version of a key; the current one has _valid_to NULL and _is_current true. */
export const HISTORY_META: LakeColumn[] = [
  { name: '_valid_from', type: ts, nullable: false },
  { name: '_valid_to', type: ts, nullable: true },
  { name: '_is_current', type: { kind: 'boolean' }, nullable: false },
  { name: '_commit_lsn', type: long, nullable: false },
  { name: '_event_index', type: long, nullable: false },
];

export const isMetaColumn = (name: string): boolean =>
  name.startsWith('_') && [...BRONZE_META, ...SILVER_META, ...HISTORY_META].some((c) => c.name === name);

/**
 * Whether two lake types are the same type. Called for every column of every event of a flush (schema
 * evolution checks each event against the table), so it compares fields instead of serialising both
 * sides: JSON.stringify here was 9 % of the sink's CPU at 12,000 changes/s (bench/pipeline-sustained.ts).
 */
export function sameType(a: LakeType, b: LakeType): boolean {
  if (a === b) return true;
  if (a.kind !== b.kind) return false;
  if (a.kind === 'decimal') return a.precision === (b as typeof a).precision && a.scale === (b as typeof a).scale;
  if (a.kind === 'array') return sameType(a.element, (b as typeof a).element);
  return true;
}

export function typeText(t: LakeType): string {
  if (t.kind === 'decimal') return `decimal(${t.precision},${t.scale})`;
  if (t.kind === 'array') return `array<${typeText(t.element)}>`;
  return t.kind;
}

export interface Reconciled {
  /** Existing columns in their order, then the added ones. */
  columns: LakeColumn[];
  added: LakeColumn[];
  /** Columns whose incoming type differs from the table's: events carrying them cannot be written. */
  conflicts: { column: string; table: LakeType; incoming: LakeType }[];
}

/**
 * Schema evolution: an incoming column the table lacks is added as nullable (a Delta metaData update);
 * a column missing from the incoming schema (dropped upstream) stays and reads as NULL; a changed type is a conflict.
 */
export function reconcileColumns(existing: LakeColumn[], incoming: LakeColumn[]): Reconciled {
  const byName = new Map(existing.map((c) => [c.name, c]));
  const added: LakeColumn[] = [];
  const conflicts: Reconciled['conflicts'] = [];
  for (const c of incoming) {
    const have = byName.get(c.name);
    if (!have) added.push({ name: c.name, type: c.type, nullable: true, ...(c.metadata ? { metadata: c.metadata } : {}) });
    else if (!sameType(have.type, c.type)) conflicts.push({ column: c.name, table: have.type, incoming: c.type });
  }
  return { columns: [...existing, ...added], added, conflicts };
}

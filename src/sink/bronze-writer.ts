import type { Action, TxnAction } from '../lake/delta/actions.ts';
import type { DeltaTable } from '../lake/delta/delta-table.ts';
import type { LakeColumn, LakeSchema } from '../lake/lake-schema.ts';
import type { ParquetEngine } from '../lake/parquet/parquet-engine.ts';
import type { ChangeEvent } from './change-event.ts';
import { faultPoint } from './fault.ts';
import { BRONZE_META, BRONZE_PARTITION } from './table-layout.ts';

const DAY_MS = 86_400_000;

export function bronzeRowColumns(schema: LakeSchema): LakeColumn[] {
  const meta = new Set(BRONZE_META.map((c) => c.name));
  return schema.columns.filter((c) => !meta.has(c.name));
}

/** Bronze columns for a new table: the source's columns (all nullable), then the metadata. */
export function bronzeColumns(rowColumns: LakeColumn[]): LakeColumn[] {
  return [...rowColumns.map((c) => ({ name: c.name, type: c.type, nullable: true })), ...BRONZE_META];
}

/**
 * Stage `events` as bronze rows (the row image: after; before for a delete; nothing for a truncate;
 * then the event's metadata, in `ordered` column order: row columns, then BRONZE_META) straight from the events, column by column: no row array and no BigInt per value.
 * Returns the staged table's name (drop it with `engine.drop`).
 */
export async function stageBronze(
  engine: ParquetEngine,
  ordered: LakeSchema,
  rowColumns: LakeColumn[],
  events: ChangeEvent[],
  ingestedAtMicros: bigint,
): Promise<string> {
  const images = events.map((e) => (e.op === 'd' ? e.before : e.op === 't' ? null : e.after));
  const rowCells = rowColumns.map(
    ({ name }) =>
      (r: number) =>
        images[r]?.[name] ?? null,
  );
  const meta: Record<string, (r: number) => unknown> = {
    _op: (r) => events[r]!.op,
    _commit_lsn: (r) => events[r]!.commitLsn,
    _event_index: (r) => events[r]!.eventIndex,
    _tx_id: (r) => events[r]!.txId,
    // Milliseconds × 1000 stays a safe integer until the year 2255; the stager writes it as int64 without a BigInt.
    _commit_ts: (r) => events[r]!.commitTsMs * 1000,
    _source_ts: (r) => (events[r]!.eventTsMs === null ? null : events[r]!.eventTsMs! * 1000),
    _ingested_at: () => ingestedAtMicros,
    _kafka_partition: (r) => events[r]!.partition,
    _kafka_offset: (r) => events[r]!.offset,
    _commit_date: (r) => Math.floor(events[r]!.commitTsMs / DAY_MS),
  };
  const metaCells = BRONZE_META.map((c) => meta[c.name]!);
  return engine.stageColumns(ordered, events.length, [...rowCells, ...metaCells]);
}

/**
 * Append events to a bronze table in one Delta commit (data files + txn offsets, and the
 * schema update first when `evolved` is given: then `schema` is the evolved one). Returns the new version.
 */
export async function appendBronze(
  engine: ParquetEngine,
  table: DeltaTable,
  schema: LakeSchema,
  events: ChangeEvent[],
  txns: TxnAction[],
  evolved?: Action,
): Promise<number> {
  const rowColumns = bronzeRowColumns(schema);
  const now = BigInt(Date.now()) * 1000n;
  // Order columns as the table's schema does: row columns first, then BRONZE_META (stageBronze's order).
  const ordered = [...rowColumns, ...BRONZE_META.map((m) => schema.columns.find((c) => c.name === m.name)!)];
  const staged = await stageBronze(engine, { columns: ordered }, rowColumns, events, now);
  try {
    const files = await engine.writeStaged(staged, events.length, {
      store: table.store,
      root: table.root,
      schema,
      partitionColumns: [BRONZE_PARTITION],
    });
    const actions: Action[] = [...(evolved ? [evolved] : []), ...files.map((add) => ({ add })), ...txns.map((txn) => ({ txn }))];
    faultPoint('before-commit');
    return await table.commit(actions, {
      operation: 'WRITE',
      parameters: { mode: 'Append', partitionBy: JSON.stringify([BRONZE_PARTITION]) },
    });
  } finally {
    await engine.drop(staged);
  }
}

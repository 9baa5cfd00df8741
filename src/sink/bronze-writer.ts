import type { Action, TxnAction } from '../lake/delta/actions.ts';
import type { DeltaTable } from '../lake/delta/delta-table.ts';
import type { LakeColumn, LakeSchema } from '../lake/lake-schema.ts';
import type { ParquetEngine } from '../lake/parquet/parquet-engine.ts';
import type { Cell } from '../lake/parquet/column-chunk.ts';
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
 * Bronze rows read straight off `events`, column by column, in `ordered` column order (row columns,
 * then BRONZE_META): the row image (after; before for a delete; nothing for a truncate), then the
 * event's metadata. `cells[c](r)` is column c of row r; no row array and no BigInt per value.
 */
export function bronzeCells(rowColumns: LakeColumn[], events: ChangeEvent[], ingestedAtMicros: bigint): Cell[] {
  const images = events.map((e) => (e.op === 'd' ? e.before : e.op === 't' ? null : e.after));
  const rowCells = rowColumns.map(
    ({ name }) =>
      (r: number) =>
        images[r]?.[name] ?? null,
  );
  const meta: Record<string, Cell> = {
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
  return [...rowCells, ...BRONZE_META.map((c) => meta[c.name]!)];
}

/** Stage `events` as bronze rows (`bronzeCells`) in a temp table; returns its name (drop it with `engine.drop`). */
export async function stageBronze(
  engine: ParquetEngine,
  ordered: LakeSchema,
  rowColumns: LakeColumn[],
  events: ChangeEvent[],
  ingestedAtMicros: bigint,
): Promise<string> {
  return engine.stageColumns(ordered, events.length, bronzeCells(rowColumns, events, ingestedAtMicros));
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
  // One commit date (the usual batch): DuckDB COPYs the rows to Parquet straight from the events,
  // no staged table; several dates are staged and split by partition (ParquetEngine.writeColumns).
  const files = await engine.writeColumns({ columns: ordered }, events.length, bronzeCells(rowColumns, events, now), {
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
}

import type { Action, TxnAction } from '../lake/delta/actions.ts';
import type { DeltaTable } from '../lake/delta/delta-table.ts';
import type { LakeColumn, LakeSchema } from '../lake/lake-schema.ts';
import type { ParquetEngine } from '../lake/parquet/parquet-engine.ts';
import type { ChangeEvent } from './change-event.ts';
import { faultPoint } from './fault.ts';
import { BRONZE_META, BRONZE_PARTITION } from './table-layout.ts';

const DAY_MS = 86_400_000;

/** The bronze row of one event: the row image (after; before for a delete; nothing for a truncate) and the event's metadata. */
export function bronzeRow(e: ChangeEvent, rowColumns: LakeColumn[], ingestedAtMicros: bigint): unknown[] {
  const image = e.op === 'd' ? e.before : e.op === 't' ? null : e.after;
  const row: unknown[] = rowColumns.map((c) => image?.[c.name] ?? null);
  row.push(
    e.op,
    e.commitLsn,
    BigInt(e.eventIndex),
    e.txId === null ? null : BigInt(e.txId),
    BigInt(e.commitTsMs) * 1000n,
    e.eventTsMs === null ? null : BigInt(e.eventTsMs) * 1000n,
    ingestedAtMicros,
    e.partition,
    e.offset,
    Math.floor(e.commitTsMs / DAY_MS),
  );
  return row;
}

export function bronzeRowColumns(schema: LakeSchema): LakeColumn[] {
  const meta = new Set(BRONZE_META.map((c) => c.name));
  return schema.columns.filter((c) => !meta.has(c.name));
}

/** Bronze columns for a new table: the source's columns (all nullable), then the metadata. */
export function bronzeColumns(rowColumns: LakeColumn[]): LakeColumn[] {
  return [...rowColumns.map((c) => ({ name: c.name, type: c.type, nullable: true })), ...BRONZE_META];
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
  // Order columns as the table's schema does: row columns first, then BRONZE_META (bronzeRow's order).
  const ordered = [...rowColumns, ...BRONZE_META.map((m) => schema.columns.find((c) => c.name === m.name)!)];
  const staged = await engine.stage(
    { columns: ordered },
    events.map((e) => bronzeRow(e, rowColumns, now)),
  );
  try {
    const files = await engine.writeFiles(`SELECT * FROM ${staged}`, {
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

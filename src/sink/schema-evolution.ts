import type { Action } from '../lake/delta/actions.ts';
import type { DeltaTable } from '../lake/delta/delta-table.ts';
import type { LakeColumn, LakeSchema } from '../lake/lake-schema.ts';
import type { ParquetEngine } from '../lake/parquet/parquet-engine.ts';
import type { Logger } from '../log.ts';
import type { ChangeEvent } from './change-event.ts';
import { applyRenames, carryRenamedValues, pendingRenames, recordedRenames } from './column-renames.ts';
import { maskedColumn, type ColumnMask } from './masking.ts';
import { reconcileColumns, sameType, SILVER_META, typeText } from './table-layout.ts';

/**
 * Schema evolution of the sink's tables (table-sink.ts): the columns a batch brings, new nullable
 * columns added, renamed columns carried, and events whose column types changed sent to dead letters.
 */

/** An event the sink cannot write, and why (it goes to the dead-letter topic). */
export interface DeadLetter {
  event: ChangeEvent;
  reason: string;
}

/** Schema evolution for one table: the schema to write with, the metaData action if it changed, and the events that fit. */
export function evolveSchema(
  qualified: string,
  log: Logger,
  table: DeltaTable,
  current: LakeColumn[],
  incoming: LakeColumn[],
  events: ChangeEvent[],
  result: { deadLetters: DeadLetter[] },
  full: (rowColumns: LakeColumn[]) => LakeColumn[],
  asWritten: (column: LakeColumn) => LakeColumn = (c) => c,
): { schema: LakeSchema; evolved?: Action; good: ChangeEvent[] } {
  const r = reconcileColumns(current, incoming);
  // Each event is checked against the type its columns are written with: the table's, or for a new
  // column the type the batch's first schema gave it. An event whose type differs (the column's type
  // changed upstream, before this batch or inside it) cannot be written without changing its values
  // (a numeric's scale) or failing (int4 → int8 beyond int32): it goes to the dead-letter topic.
  const written = new Map(r.columns.map((c) => [c.name, c.type]));
  // Why an event's columns cannot be written, or undefined. The events of one value schema share one column
  // list (change-event.ts), so this is worked out once per list, not per event and column: that per-event
  // loop was 2 % of the sink's main thread in the pipeline's CPU profile.
  const verdicts = new Map<LakeColumn[], string | undefined>();
  const verdict = (columns: LakeColumn[]): string | undefined => {
    for (const column of columns) {
      const incomingType = asWritten(column).type;
      const writtenType = written.get(column.name);
      if (!writtenType || sameType(writtenType, incomingType)) continue;
      const inTable = current.some((c) => c.name === column.name);
      return inTable
        ? `column ${column.name} of ${qualified} arrives as ${typeText(incomingType)} but the lake table ${table.root} has ${typeText(writtenType)}; Delta cannot change a column's type in place. Backfill into a new table (rename the old one) or revert the type change upstream.`
        : `column ${column.name} of ${qualified} arrives as ${typeText(incomingType)} but is new in ${table.root}, where an earlier change of the same flush created it as ${typeText(writtenType)}; Delta cannot change a column's type in place. Backfill into a new table or revert the type change upstream.`;
    }
    return undefined;
  };
  const good = events.filter((e) => {
    let reason = verdicts.get(e.columns);
    if (reason === undefined && !verdicts.has(e.columns)) verdicts.set(e.columns, (reason = verdict(e.columns)));
    if (reason === undefined) return true;
    if (!result.deadLetters.some((d) => d.event === e)) result.deadLetters.push({ event: e, reason });
    return false;
  });
  if (!r.added.length) return { schema: table.schema, good };
  const schema = { columns: withMetaLast(table.schema.columns, full(r.columns)) };
  log.info({ table: table.root, added: r.added.map((c) => c.name) }, 'schema evolution: adding nullable columns');
  return { schema, evolved: { metaData: table.evolveSchema(schema) }, good };
}

/** Renamed columns (column-renames.ts): move the old column's values to the new name, then carry them in older events. */
export async function renameColumns(
  engine: ParquetEngine,
  log: Logger,
  table: DeltaTable,
  events: ChangeEvent[],
  meta: LakeColumn[],
): Promise<void> {
  const metaNames = new Set(meta.map((c) => c.name));
  const current = table.schema.columns.filter((c) => !metaNames.has(c.name));
  const renames = pendingRenames(events, current);
  if (renames.length) {
    const added = renames.map(({ from, to }) => ({ name: to, type: current.find((c) => c.name === from)!.type, nullable: true }));
    await applyRenames(engine, table, { columns: [...table.schema.columns, ...added] }, renames);
    log.info({ table: table.root, renames }, 'schema evolution: renamed columns carry their values under the new name');
  }
  carryRenamedValues(events, recordedRenames(table.schema.columns));
}

/** Keep the table's existing column order and append new columns at the end (Delta readers match by name). */
export function withMetaLast(existing: LakeColumn[], wanted: LakeColumn[]): LakeColumn[] {
  const have = new Set(existing.map((c) => c.name));
  return [...existing, ...wanted.filter((c) => !have.has(c.name))];
}

export function silverColumns(rowColumns: LakeColumn[], masks: ColumnMask[], keyColumns: string[]): LakeColumn[] {
  return [...rowColumns.map((c) => ({ ...maskedColumn(c, masks), nullable: keyColumns.includes(c.name) ? false : true })), ...SILVER_META];
}

/** The union of the columns the batch's events carry, in first-seen order. */
export function incomingColumns(events: ChangeEvent[]): LakeColumn[] {
  const seen = new Map<string, LakeColumn>();
  const schemas = new Set<unknown>();
  for (const e of events) {
    if (schemas.has(e.columns)) continue;
    schemas.add(e.columns);
    for (const c of e.columns) if (!seen.has(c.name)) seen.set(c.name, { name: c.name, type: c.type, nullable: c.nullable });
  }
  return [...seen.values()];
}

import type { Action } from '../lake/delta/actions.ts';
import type { DeltaTable } from '../lake/delta/delta-table.ts';
import type { LakeColumn, LakeSchema } from '../lake/lake-schema.ts';
import type { ParquetEngine } from '../lake/parquet/parquet-engine.ts';
import type { ChangeEvent } from './change-event.ts';

/**
 * Renamed columns in silver and the history (issue 11, item 9). The source marks a renamed column's Avro
 * field with its earlier names (`aliases`, and `tide.renamed_from` with the Postgres names; see
 * events/field-aliases.ts). When a batch brings such a column and the lake table has one of its earlier
 * names but not the new one, the table gets the new column with the old column's values, in one commit
 * that rewrites every data file (`SELECT …, "old" AS "new"`) and records the rename in the new column's
 * metadata (`tide.renamedFrom`). The old column stays, like a dropped one, holding what it held.
 *
 * Why a rewrite and not Delta column mapping: column mapping (`delta.columnMapping.mode = name`) renames in
 * the log alone, but needs reader version 2 / writer version 5, which Tide's tables (reader 1 / writer 2)
 * and some readers do not speak; and a rename must still show the values under the new name in readers
 * that ignore the mapping. A rewrite costs one pass over the table once per rename, which copy-on-write
 * merges already do to every file they touch.
 *
 * Events written with a schema from before the rename (a replay, or another partition lagging behind) carry
 * only the old name: `carryRenamedValues` copies their value to the new name, so they update it too.
 */
export const RENAMED_FROM = 'tide.renamedFrom';

export interface Rename {
  from: string;
  to: string;
}

/** The renames the batch brings for this table: a column the table lacks, one of whose earlier names it has. */
export function pendingRenames(events: ChangeEvent[], current: LakeColumn[]): Rename[] {
  const have = new Set(current.map((c) => c.name));
  const out = new Map<string, string>();
  const seen = new Set<unknown>();
  for (const e of events) {
    if (seen.has(e.columns)) continue;
    seen.add(e.columns);
    for (const c of e.columns) {
      if (have.has(c.name) || out.has(c.name)) continue;
      const from = c.renamedFrom?.find((n) => have.has(n));
      if (from) out.set(c.name, from);
    }
  }
  return [...out].map(([to, from]) => ({ from, to }));
}

/** The renames a table recorded (its columns' `tide.renamedFrom`). */
export function recordedRenames(columns: LakeColumn[]): Rename[] {
  return columns.filter((c) => c.metadata?.[RENAMED_FROM]).map((c) => ({ from: c.metadata![RENAMED_FROM]!, to: c.name }));
}

/** Give events written before a rename the new name's value (and its unchanged-TOAST mark). Idempotent. */
export function carryRenamedValues(events: ChangeEvent[], renames: Rename[]): void {
  if (!renames.length) return;
  for (const e of events) {
    for (const { from, to } of renames) {
      for (const image of [e.after, e.before]) if (image && !(to in image) && from in image) image[to] = image[from];
      if (e.after && e.unchangedToast.includes(from) && !e.unchangedToast.includes(to)) e.unchangedToast.push(to);
    }
  }
}

const q = (name: string): string => `"${name.replace(/"/g, '""')}"`;

/**
 * One commit: the new columns (placed where `schema` puts them, with their rename recorded) and every data
 * file rewritten with the old column's values under the new name. Returns the table's new version.
 */
export async function applyRenames(engine: ParquetEngine, table: DeltaTable, schema: LakeSchema, renames: Rename[]): Promise<number> {
  const byTarget = new Map(renames.map((r) => [r.to, r.from]));
  const columns = schema.columns.map((c) =>
    byTarget.has(c.name) ? { ...c, nullable: true, metadata: { ...c.metadata, [RENAMED_FROM]: byTarget.get(c.name)! } } : c,
  );
  const next: LakeSchema = { columns };
  const actions: Action[] = [{ metaData: table.evolveSchema(next) }];
  const files = table.files();
  if (files.length) {
    const select = columns.map((c) => (byTarget.has(c.name) ? `${q(byTarget.get(c.name)!)} AS ${q(c.name)}` : q(c.name))).join(', ');
    await engine.createView('rename_input', table.store, table.root, files, table.schema, table.partitionColumns);
    const adds = await engine.writeFiles(`SELECT ${select} FROM rename_input`, {
      store: table.store,
      root: table.root,
      schema: next,
      partitionColumns: table.partitionColumns,
    });
    const now = Date.now();
    for (const f of files)
      actions.push({
        remove: { path: f.path, deletionTimestamp: now, dataChange: true, partitionValues: f.partitionValues, size: f.size },
      });
    actions.push(...adds.map((add) => ({ add })));
  }
  return table.commit(actions, {
    operation: 'RENAME COLUMN',
    parameters: { renames: renames.map((r) => `${r.from} -> ${r.to}`).join(', ') },
  });
}

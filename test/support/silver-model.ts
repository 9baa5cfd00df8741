import type { LakeSchema } from '../../src/lake/lake-schema.ts';
import type { KeyChange } from '../../src/sink/silver-changes.ts';
import { SILVER_META } from '../../src/sink/table-layout.ts';

/** The silver table the model describes: key `id`, columns `name` and `note`, and silver's metadata. */
export const MODEL_SCHEMA: LakeSchema = {
  columns: [
    { name: 'id', type: { kind: 'long' }, nullable: false },
    { name: 'name', type: { kind: 'string' }, nullable: true },
    { name: 'note', type: { kind: 'string' }, nullable: true },
    ...SILVER_META,
  ],
};

/**
 * A source's truth for the silver merge tests that hand key changes to the merges directly (a table keyed by
 * `id` with columns `name` and `note`): id → [name, note], and the changes that make it so, at rising LSNs.
 */
export function silverModel(startLsn = 1000) {
  const model = new Map<number, [string, string]>();
  let lsn = startLsn;
  /** An upsert of `id`; without `note` the change leaves it out as unchanged TOAST (the model keeps the old one). */
  const upsert = (id: number, name: string, note: string | undefined, commitLsn = ++lsn): KeyChange => {
    if (note !== undefined) model.set(id, [name, note]);
    else model.set(id, [name, model.get(id)![1]]);
    return {
      key: [BigInt(id)],
      deleted: false,
      row: note === undefined ? { id: BigInt(id), name } : { id: BigInt(id), name, note },
      unchanged: note === undefined ? ['note'] : [],
      commitLsn: BigInt(commitLsn),
      eventIndex: 0,
      commitTsMs: 1_700_000_000_000 + commitLsn,
    };
  };
  const remove = (id: number): KeyChange => {
    model.delete(id);
    return {
      key: [BigInt(id)],
      deleted: true,
      row: { id: BigInt(id) },
      unchanged: [],
      commitLsn: BigInt(++lsn),
      eventIndex: 0,
      commitTsMs: 1_700_000_000_000 + lsn,
    };
  };
  /** The model's rows [id, name, note] by id. */
  const expected = () => [...model.entries()].map(([id, [name, note]]) => [id, name, note]).sort((a, b) => Number(a[0]) - Number(b[0]));
  return { model, upsert, remove, expected, lastLsn: () => lsn };
}

/** A reader's rows (delta-rs, Spark) as [id, name, note] by id, to compare with `expected()`. */
export const asRows = (v: { columns: string[]; rows: unknown[][] }): unknown[][] => {
  const [id, name, note] = ['id', 'name', 'note'].map((c) => v.columns.indexOf(c));
  return v.rows.map((r) => [Number(r[id!]), r[name!], r[note!]]).sort((a, b) => Number(a[0]) - Number(b[0]));
};

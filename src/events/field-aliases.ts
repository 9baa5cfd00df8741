/**
 * Renamed columns, told apart from a dropped and an added one by comparing a table's new value schema with
 * the one before it: the previous version in this process, or else the registry's latest (what consumers have).
 *
 * `ALTER TABLE … RENAME COLUMN` keeps the column's attnum, so in pgoutput's Relation message (columns in
 * attnum order) the column keeps its position and type and only its name changes. The message carries no
 * attnum, so the rule is positional: a field at the same position, with the same Avro type, whose old name is
 * gone and whose new name is new, is a rename. Its Avro field then gets `aliases` (the old names, newest
 * first, as Avro schema resolution reads them) and `tide.renamed_from` (the Postgres names, for the sink).
 *
 * Limits (documented in the README): positions are compared only when no column disappeared (a DROP shifts
 * the columns after it), so a rename together with a DROP COLUMN before the next row change of the table is
 * seen as drop + add; and dropping the last column and adding one of the same type, with no row change of
 * the table in between, is indistinguishable in the WAL from a rename, and is taken as one.
 */
type Field = { name: string; type: unknown; 'tide.column'?: string; 'tide.renamed_from'?: string[] };

/** The fields of the envelope's `after` record. */
function afterFields(envelope: object | undefined): Field[] {
  const fields = (envelope as { fields?: { name: string; type: unknown }[] } | undefined)?.fields ?? [];
  const after = fields.find((f) => f.name === 'after')?.type;
  const record = Array.isArray(after) ? (after.find((t) => typeof t === 'object') as { fields?: Field[] } | undefined) : undefined;
  return record?.fields ?? [];
}

const columnOf = (f: Field): string => f['tide.column'] ?? f.name;
const sameType = (a: Field, b: Field): boolean => JSON.stringify(a.type) === JSON.stringify(b.type);

/** Column → its earlier names (newest first), for the columns of `next` that are renamed ones of `previous`'s. */
export function renamedColumns(previous: object | undefined, next: object): Map<string, string[]> {
  const before = afterFields(previous);
  const after = afterFields(next);
  const now = new Set(after.map(columnOf));
  const then = new Set(before.map(columnOf));
  const out = new Map<string, string[]>();
  after.forEach((f, i) => {
    const column = columnOf(f);
    const same = before.find((p) => columnOf(p) === column);
    let from: string[] = [];
    if (same) {
      if (sameType(same, f)) from = same['tide.renamed_from'] ?? [];
    } else if (after.length >= before.length && i < before.length) {
      const p = before[i]!;
      const old = columnOf(p);
      // Replaying older WAL after a restart: the registry already knows `old` as a later name of this column.
      const backwards = (p['tide.renamed_from'] ?? []).includes(column);
      if (!now.has(old) && !then.has(column) && sameType(p, f) && !backwards) from = [old, ...(p['tide.renamed_from'] ?? [])];
    }
    from = [...new Set(from)].filter((n) => !now.has(n));
    if (from.length) out.set(column, from);
  });
  return out;
}

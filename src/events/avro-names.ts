import { TideError } from '../errors.ts';
/**
 * Avro names must match [A-Za-z_][A-Za-z0-9_]*. Postgres allows far more, so
 * names are adjusted deterministically, the way Debezium's
 * `field.name.adjustment.mode=avro` does:
 *   - every character outside [A-Za-z0-9_] becomes `_`;
 *   - a name starting with a digit gets a leading `_`;
 *   - an empty name becomes `_`.
 * Two columns that adjust to the same name are an error (see uniqueAvroNames),
 * never a silent overwrite.
 */
export function avroName(name: string): string {
  let out = name.replace(/[^A-Za-z0-9_]/g, '_');
  if (out === '') out = '_';
  if (/^[0-9]/.test(out)) out = `_${out}`;
  return out;
}

/** Map each column to its Avro name, failing when two collide. */
export function uniqueAvroNames(table: string, columns: readonly string[]): Map<string, string> {
  const byAvro = new Map<string, string>();
  const out = new Map<string, string>();
  for (const column of columns) {
    const adjusted = avroName(column);
    const other = byAvro.get(adjusted);
    if (other !== undefined) {
      throw new TideError(
        `table ${table}: columns "${other}" and "${column}" both become the Avro name "${adjusted}". Rename one, or exclude one with column.exclude.list.`,
      );
    }
    byAvro.set(adjusted, column);
    out.set(column, adjusted);
  }
  return out;
}

/** An Avro namespace from dotted parts (each part adjusted). */
export function avroNamespace(...parts: string[]): string {
  return parts.map(avroName).join('.');
}

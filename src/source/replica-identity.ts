import type pg from 'pg';
import { TideError } from '../errors.ts';
import type { CatalogTable } from './catalog.ts';
import type { RelationMessage } from './pgoutput-decoder.ts';

/**
 * A primary-key change must reach consumers as a delete of the old key and a create of the new one. Postgres
 * logs the old row's replica identity columns, and only when one of them changed (pgoutput's old-key tuple).
 * Under the default identity (the primary key) and FULL that always includes the old primary key. Under
 * `REPLICA IDENTITY USING INDEX` on an index that leaves out a primary-key column, an update that changes
 * only that column carries no old values at all: the change is indistinguishable from a plain update of the
 * new key, and consumers would keep the old key's row for ever (Debezium then emits a plain update too).
 * Tide refuses such a table at start (`tide source plan` lists it) and stops when a relation message
 * announces such an identity while streaming, before any row under it is published.
 */
export interface IdentityGap {
  table: string;
  index: string;
  /** Primary-key columns the identity index leaves out. */
  missing: string[];
}

const IDENTITY_INDEX_SQL = `
SELECT c.oid::int AS oid, i.indexrelid::regclass::text AS index,
       array(SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum = ANY(i.indkey::int2[])) AS columns
  FROM pg_class c JOIN pg_index i ON i.indrelid = c.oid AND i.indisreplident
 WHERE c.relreplident = 'i' AND c.oid = ANY($1::int[])`;

/** The captured tables whose replica identity index leaves out primary-key columns. */
export async function findIdentityGaps(client: pg.ClientBase, tables: CatalogTable[]): Promise<IdentityGap[]> {
  const withIndex = tables.filter((t) => t.replicaIdentity === 'i' && t.keyColumns.length > 0);
  if (withIndex.length === 0) return [];
  const { rows } = await client.query<{ oid: number; index: string; columns: string[] }>(IDENTITY_INDEX_SQL, [withIndex.map((t) => t.oid)]);
  const gaps: IdentityGap[] = [];
  for (const r of rows) {
    const t = withIndex.find((x) => x.oid === r.oid)!;
    const missing = t.keyColumns.filter((k) => !r.columns.includes(k));
    if (missing.length) gaps.push({ table: t.qualified, index: r.index, missing });
  }
  return gaps;
}

const fixFor = (table: string) => {
  const [schema, name] = table.split('.') as [string, string];
  return `ALTER TABLE "${schema.replace(/"/g, '""')}"."${name.replace(/"/g, '""')}" REPLICA IDENTITY DEFAULT;  (or FULL, or USING INDEX an index that contains the primary key)`;
};

/** The prerequisite (prerequisites.ts' PrerequisiteCheck) that `tide source plan` prints and `tide source start` requires. */
export function identityCheck(gaps: IdentityGap[]): { name: string; ok: boolean; detail: string; fix: string; blocking: boolean } {
  return {
    name: 'replica identity includes the primary key',
    ok: gaps.length === 0,
    detail: gaps.length
      ? gaps
          .map(
            (g) =>
              `${g.table}: REPLICA IDENTITY USING INDEX ${g.index} leaves out primary-key column ${g.missing.join(', ')}, so Postgres does not log the old key when only it changes and a primary-key update could not become a delete plus a create`,
          )
          .join('; ')
      : 'every captured table logs its old primary key',
    fix: gaps.map((g) => fixFor(g.table)).join(' '),
    blocking: true,
  };
}

export class IdentityWithoutKeyError extends TideError {
  constructor(
    readonly table: string,
    missing: string[],
  ) {
    super(
      `table ${table}: its replica identity changed to an index that leaves out primary-key column ${missing.join(', ')}. ` +
        'Postgres then logs no old key when only that column changes, so a primary-key update would reach consumers as a plain update ' +
        'and the old key would stay in every copy. Nothing after this point was published or confirmed. ' +
        `Fix: ${fixFor(table)}, then restart the connector.`,
    );
    this.name = 'IdentityWithoutKeyError';
  }
}

/** A relation message announcing an identity index that leaves out part of `keyColumns`: the error to stop with. */
export function relationIdentityGap(msg: RelationMessage, keyColumns: string[]): IdentityWithoutKeyError | undefined {
  if (msg.replicaIdentity !== 'index') return undefined;
  const missing = keyColumns.filter((k) => !msg.keyColumns.includes(k));
  return missing.length ? new IdentityWithoutKeyError(`${msg.schema}.${msg.name}`, missing) : undefined;
}

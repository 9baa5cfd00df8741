import type pg from 'pg';
import { MissingPrimaryKeyError, readTables, type CatalogColumn, type CatalogTable } from './catalog.ts';
import type { RelationMessage } from './pgoutput-decoder.ts';

/**
 * The table a pgoutput Relation message describes, built from the message: it is the truth for the WAL
 * that follows it, while the catalog describes only *now*, and a connector that is behind (stopped, or
 * slow) reads WAL written before later DDL.
 *
 * From the message: the table's name, its replica identity, and per column (in attnum order, dropped and
 * generated columns left out) the name, the type OID, the typmod and the replica-identity flag.
 *
 * Not in the message, and how Tide gets it without reading the current catalog as if it described old WAL:
 * - NOT NULL: not needed. Every column but the primary key is nullable in the Avro schema (see envelope.ts),
 *   in snapshot and stream alike, so `ADD COLUMN`, rows with NULLs, then `SET NOT NULL` (or `DROP NOT NULL`)
 *   cannot break a connector at any WAL position.
 * - The primary key: under the default replica identity the flagged columns are the primary key. Under
 *   FULL (every column flagged), USING INDEX (the index's columns) and NOTHING (none), the WAL does not say;
 *   Tide keeps the key it knew for the table (from its last relation message or its catalog at start-up),
 *   and only for a table it never saw falls back to the catalog's primary key.
 * - Type details (name, category, array element, enum labels, a domain's base type): looked up by type OID.
 *   A type OID names one type for ever; only enum labels can be added later, which only widens the schema.
 *   A type dropped since is sent as text.
 * - attndims (declared array dimensions): a column attribute, read by name and type OID when the column
 *   still exists; otherwise an array is taken as one-dimensional.
 * - Defaults: not carried (the schema has none from Postgres, see envelope.ts).
 */
export interface TypeInfo {
  typeName: string;
  typeCategory: string;
  elementTypeName?: string;
  elementTypeCategory?: string;
  enumValues?: string[];
  /** A domain's typmod (pg_type.typtypmod): the column's when the column has none. */
  domainTypeMod: number;
  /** typlen = -1: a variable-length type, which may be TOASTed. */
  varlena: boolean;
}

const TYPES_SQL = `
SELECT t.oid::int AS oid, coalesce(bt.typname, t.typname) AS type_name, coalesce(bt.typcategory, t.typcategory) AS type_category,
       coalesce(ebt.typname, et.typname) AS element_type_name, coalesce(ebt.typcategory, et.typcategory) AS element_type_category,
       CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE -1 END AS domain_type_mod, t.typlen = -1 AS varlena,
       (SELECT array_agg(e.enumlabel::text ORDER BY e.enumsortorder) FROM pg_enum e
         WHERE e.enumtypid = CASE WHEN t.typcategory = 'A' THEN coalesce(ebt.oid, t.typelem) ELSE coalesce(bt.oid, t.oid) END) AS enum_values
  FROM pg_type t
  LEFT JOIN pg_type bt ON t.typtype = 'd' AND bt.oid = t.typbasetype
  LEFT JOIN pg_type et ON t.typcategory = 'A' AND et.oid = t.typelem
  LEFT JOIN pg_type ebt ON et.typtype = 'd' AND ebt.oid = et.typbasetype
 WHERE t.oid = ANY($1::oid[])`;

interface TypeRow {
  oid: number;
  type_name: string;
  type_category: string;
  element_type_name: string | null;
  element_type_category: string | null;
  domain_type_mod: number;
  varlena: boolean;
  enum_values: string[] | null;
}

export async function readTypes(client: pg.ClientBase, oids: number[]): Promise<Map<number, TypeInfo>> {
  const { rows } = await client.query<TypeRow>(TYPES_SQL, [[...new Set(oids)]]);
  return new Map(
    rows.map((r) => [
      r.oid,
      {
        typeName: r.type_name,
        typeCategory: r.type_category,
        ...(r.element_type_name ? { elementTypeName: r.element_type_name, elementTypeCategory: r.element_type_category ?? undefined } : {}),
        ...(r.enum_values ? { enumValues: r.enum_values } : {}),
        domainTypeMod: r.domain_type_mod,
        varlena: r.varlena,
      },
    ]),
  );
}

/** What the catalog can add about a relation: type details, attndims, and (for a table seen the first time) its primary key. */
export interface RelationLookups {
  types: Map<number, TypeInfo>;
  /** The table as the catalog has it now, when it still exists. */
  now: CatalogTable | undefined;
  /** pg_attribute.attndims by column name, for columns that still exist with the same type OID. */
  dimensions: Map<string, number>;
}

export async function lookupRelation(client: pg.ClientBase, msg: RelationMessage): Promise<RelationLookups> {
  const types = await readTypes(
    client,
    msg.columns.map((c) => c.typeOid),
  );
  const [now] = await readTables(client, msg.relationOid);
  const { rows } = await client.query<{ name: string; type_oid: number; dims: number }>(
    `SELECT attname AS name, atttypid::int AS type_oid, attndims AS dims FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped`,
    [msg.relationOid],
  );
  const dimensions = new Map<string, number>();
  for (const r of rows)
    if (r.dims > 0 && msg.columns.some((c) => c.name === r.name && c.typeOid === r.type_oid)) dimensions.set(r.name, r.dims);
  return { types, now, dimensions };
}

/** The primary key for the WAL after `msg`: see the module comment. Keeps a known key's column order (it is the key record's). */
export function keyColumnsOf(msg: RelationMessage, known: CatalogTable | undefined, now: CatalogTable | undefined): string[] {
  const names = new Set(msg.columns.map((c) => c.name));
  const sameSet = (a: string[], b: string[]) => a.length === b.length && a.every((k) => b.includes(k));
  const usable = (k: string[] | undefined): k is string[] => !!k && k.length > 0 && k.every((c) => names.has(c));
  if (msg.replicaIdentity === 'default' && msg.keyColumns.length > 0) {
    for (const k of [known?.keyColumns, now?.keyColumns]) if (usable(k) && sameSet(k, msg.keyColumns)) return k;
    return msg.keyColumns;
  }
  for (const k of [known?.keyColumns, now?.keyColumns]) if (usable(k)) return k;
  return [];
}

/** The table after `msg`. `known`: the table as Tide last knew it (its codec's), if it did. */
export function tableFromRelation(msg: RelationMessage, known: CatalogTable | undefined, lookups: RelationLookups): CatalogTable {
  const schema = msg.schema === '' ? 'pg_catalog' : msg.schema;
  const keyColumns = keyColumnsOf(msg, known, lookups.now);
  const qualified = `${schema}.${msg.name}`;
  if (keyColumns.length === 0) throw new MissingPrimaryKeyError([qualified]);
  const columns = msg.columns.map((c): CatalogColumn => {
    const t = lookups.types.get(c.typeOid);
    const dims = lookups.dimensions.get(c.name);
    return {
      name: c.name,
      typeOid: c.typeOid,
      typeMod: c.typeMod === -1 && t ? t.domainTypeMod : c.typeMod,
      // A type dropped since (with the table, say): unknown here, so its text is sent as is (a string).
      typeName: t?.typeName ?? 'unknown',
      typeCategory: t?.typeCategory ?? 'X',
      ...(t?.elementTypeName ? { elementTypeName: t.elementTypeName, elementTypeCategory: t.elementTypeCategory } : {}),
      ...(t?.enumValues ? { enumValues: t.enumValues } : {}),
      ...(dims ? { arrayDimensions: dims } : {}),
      notNull: keyColumns.includes(c.name),
      hasDefault: false,
      defaultExpr: null,
      toastable: t?.varlena ?? true,
    };
  });
  return { oid: msg.relationOid, schema, name: msg.name, qualified, replicaIdentity: IDENTITY[msg.replicaIdentity], columns, keyColumns };
}

const IDENTITY = { default: 'd', full: 'f', index: 'i', nothing: 'n' } as const;

/** Whether two descriptions of a table give the same codec: names, types, typmods, key and replica identity. */
export function sameRelation(a: CatalogTable, b: CatalogTable): boolean {
  const shape = (t: CatalogTable) =>
    JSON.stringify([
      t.schema,
      t.name,
      t.replicaIdentity,
      t.keyColumns,
      t.columns.map((c) => [c.name, c.typeOid, c.typeMod, c.arrayDimensions ?? 0, c.enumValues ?? null]),
    ]);
  return shape(a) === shape(b);
}

/** What changed between two descriptions of a table, for the log. */
export function describeRelationChange(before: CatalogTable | undefined, after: CatalogTable): Record<string, unknown> {
  if (!before) return { columns: after.columns.map((c) => c.name), key: after.keyColumns, replicaIdentity: after.replicaIdentity };
  const had = new Map(before.columns.map((c) => [c.name, c]));
  const has = new Set(after.columns.map((c) => c.name));
  const out: Record<string, unknown> = {};
  const added = after.columns.filter((c) => !had.has(c.name)).map((c) => c.name);
  const removed = before.columns.filter((c) => !has.has(c.name)).map((c) => c.name);
  const retyped = after.columns
    .filter((c) => had.has(c.name) && (had.get(c.name)!.typeOid !== c.typeOid || had.get(c.name)!.typeMod !== c.typeMod))
    .map((c) => c.name);
  if (added.length) out.added = added;
  if (removed.length) out.removed = removed;
  if (retyped.length) out.retyped = retyped;
  if (before.keyColumns.join() !== after.keyColumns.join()) out.key = { from: before.keyColumns, to: after.keyColumns };
  if (before.replicaIdentity !== after.replicaIdentity) out.replicaIdentity = { from: before.replicaIdentity, to: after.replicaIdentity };
  return out;
}

import type pg from 'pg';
import { TideError } from '../errors.ts';

/** What Tide needs to know about a captured table, read from pg_catalog. Domains are resolved to their base types. */
export interface CatalogColumn {
  name: string;
  typeOid: number;
  typeMod: number;
  typeName: string;
  typeCategory: string;
  elementTypeName?: string;
  elementTypeCategory?: string;
  enumValues?: string[];
  /** Declared array dimensions (pg_attribute.attndims); 0 or absent for non-arrays. */
  arrayDimensions?: number;
  notNull: boolean;
  hasDefault: boolean;
  /** The default expression as Postgres prints it, e.g. `'placed'::order_status` or `now()`. */
  defaultExpr: string | null;
  /** Variable-length with storage extended/external (pg_attribute.attstorage): may arrive as "unchanged TOAST" under the default replica identity. */
  toastable: boolean;
}

export interface CatalogTable {
  oid: number;
  schema: string;
  name: string;
  /** `schema.table`, the name the include/exclude lists match. */
  qualified: string;
  /** d = default (primary key), f = full, i = index, n = nothing */
  replicaIdentity: 'd' | 'f' | 'i' | 'n';
  columns: CatalogColumn[];
  /** Primary-key columns in key order. Empty when the table has none. */
  keyColumns: string[];
}

const TABLES_SQL = `
SELECT c.oid::int AS oid, n.nspname AS schema, c.relname AS name, c.relreplident AS replica_identity,
       a.attname AS column, a.atttypid::int AS type_oid, CASE WHEN t.typtype = 'd' AND a.atttypmod = -1 THEN t.typtypmod ELSE a.atttypmod END AS type_mod, a.attndims AS array_dimensions, a.attnotnull AS not_null,
       a.atthasdef AS has_default, pg_get_expr(d.adbin, d.adrelid) AS default_expr,
       coalesce(bt.typname, t.typname) AS type_name, coalesce(bt.typcategory, t.typcategory) AS type_category,
       coalesce(ebt.typname, et.typname) AS element_type_name, coalesce(ebt.typcategory, et.typcategory) AS element_type_category,
       (t.typlen = -1 AND a.attstorage IN ('x', 'e')) AS toastable,
       (SELECT array_agg(e.enumlabel::text ORDER BY e.enumsortorder) FROM pg_enum e
         WHERE e.enumtypid = CASE WHEN t.typcategory = 'A' THEN coalesce(ebt.oid, t.typelem) ELSE coalesce(bt.oid, t.oid) END) AS enum_values,
       array_position(i.indkey::int2[], a.attnum) AS key_position
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
  JOIN pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_type bt ON t.typtype = 'd' AND bt.oid = t.typbasetype
  LEFT JOIN pg_type et ON t.typcategory = 'A' AND et.oid = t.typelem
  LEFT JOIN pg_type ebt ON et.typtype = 'd' AND ebt.oid = et.typbasetype
  LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
  LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
 WHERE c.relkind IN ('r', 'p')
   AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
   AND ($1::int IS NULL OR c.oid = $1::int)
 ORDER BY n.nspname, c.relname, a.attnum`;

interface Row {
  oid: number;
  schema: string;
  name: string;
  replica_identity: CatalogTable['replicaIdentity'];
  column: string;
  type_oid: number;
  type_mod: number;
  array_dimensions: number;
  not_null: boolean;
  has_default: boolean;
  default_expr: string | null;
  type_name: string;
  type_category: string;
  element_type_name: string | null;
  element_type_category: string | null;
  toastable: boolean;
  enum_values: string[] | null;
  key_position: number | null;
}

/**
 * Every user table (or only the one with `oid`), with columns and primary key.
 *
 * Stored generated columns (`GENERATED ALWAYS AS (…) STORED`, pg_attribute.attgenerated = 's') are left out,
 * everywhere: pgoutput before Postgres 18 never sends them (and 18 only with publish_generated_columns), and
 * the sink cannot compute them, so a snapshot that carried them and a stream that does not would leave NULL
 * in every row changed after the snapshot. Consumers compute them from the columns they are generated from.
 */
export async function readTables(client: pg.ClientBase, oid?: number): Promise<CatalogTable[]> {
  const { rows } = await client.query<Row>(TABLES_SQL, [oid ?? null]);
  const tables = new Map<number, CatalogTable & { keyPositions: [number, string][] }>();
  for (const r of rows) {
    let t = tables.get(r.oid);
    if (!t) {
      t = {
        oid: r.oid,
        schema: r.schema,
        name: r.name,
        qualified: `${r.schema}.${r.name}`,
        replicaIdentity: r.replica_identity,
        columns: [],
        keyColumns: [],
        keyPositions: [],
      };
      tables.set(r.oid, t);
    }
    t.columns.push({
      name: r.column,
      typeOid: r.type_oid,
      typeMod: r.type_mod,
      ...(r.array_dimensions > 0 ? { arrayDimensions: r.array_dimensions } : {}),
      typeName: r.type_name,
      typeCategory: r.type_category,
      ...(r.element_type_name ? { elementTypeName: r.element_type_name, elementTypeCategory: r.element_type_category ?? undefined } : {}),
      ...(r.enum_values ? { enumValues: r.enum_values } : {}),
      notNull: r.not_null,
      hasDefault: r.has_default,
      defaultExpr: r.default_expr,
      toastable: r.toastable,
    });
    if (r.key_position !== null) t.keyPositions.push([r.key_position, r.column]);
  }
  return [...tables.values()].map(({ keyPositions, ...t }) => ({
    ...t,
    keyColumns: keyPositions.sort((a, b) => a[0] - b[0]).map(([, c]) => c),
  }));
}

/** Anchored regex lists, as Debezium's table.include.list / table.exclude.list. */
export function tableFilter(include: string[] | undefined, exclude: string[] | undefined): (qualified: string) => boolean {
  const inc = include?.map((p) => new RegExp(`^(?:${p})$`));
  const exc = exclude?.map((p) => new RegExp(`^(?:${p})$`));
  return (q) => (!inc || inc.some((r) => r.test(q))) && !(exc ?? []).some((r) => r.test(q));
}

export class WalLevelError extends TideError {
  constructor(where: string, level: string) {
    super(
      `${where} runs with wal_level=${level}; logical replication needs wal_level=logical. ` +
        `Run ALTER SYSTEM SET wal_level = logical; (or set it in postgresql.conf) and restart Postgres.`,
    );
    this.name = 'WalLevelError';
  }
}

export class MissingPrimaryKeyError extends TideError {
  constructor(readonly tables: string[]) {
    super(
      `${tables.length === 1 ? 'table' : 'tables'} ${tables.join(', ')} ${tables.length === 1 ? 'has' : 'have'} no primary key. ` +
        'Tide keys each event by the primary key, so changes to a row stay in order on one partition. ' +
        `Add one (ALTER TABLE ${tables[0]} ADD PRIMARY KEY (...)), or leave the table out with table.exclude.list.`,
    );
    this.name = 'MissingPrimaryKeyError';
  }
}

export async function checkWalLevel(client: pg.ClientBase, where: string): Promise<void> {
  const { rows } = await client.query<{ wal_level: string }>('SHOW wal_level');
  if (rows[0]?.wal_level !== 'logical') throw new WalLevelError(where, rows[0]?.wal_level ?? 'unknown');
}

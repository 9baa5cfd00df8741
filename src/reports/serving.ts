import { createReadStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { ConnectionError, TideError } from '../errors.ts';
import type { LakeColumn, LakeType } from '../lake/lake-schema.ts';
import type { Logger } from '../log.ts';
import { quoteIdentifier as q, quoteLiteral } from './gold-reports.ts';

/**
 * The serving database (issue 13, "A serving database for BI tools"): every gold table published as an
 * ordinary PostgreSQL table, so Metabase, Power BI or Superset can query the reports without opening Delta
 * files and without ever touching the transactional database.
 *
 * A table is replaced atomically: its rows are loaded with COPY into a staging table, then one transaction
 * drops the old table and renames the staging table into its place. A reader never sees a half-built table:
 * its query either ran before the swap (old rows) or waits for the swap's lock and then reads the new table
 * (Postgres re-resolves a table name after waiting for a lock on it: RangeVarGetRelidExtended).
 */
export interface ServingOptions {
  /** postgresql://… of the serving database (serving.uri); TLS through its sslmode/sslrootcert parameters. */
  uri: string;
  /** The schema the tables go to (serving.schema). */
  schema: string;
  log: Logger;
}

/** What a reader learns from a published table's comment. */
export interface PublishedTable {
  name: string;
  columns: LakeColumn[];
  /** A CSV file (DuckDB's COPY … (FORMAT csv)) with the rows, columns in order; see servingSelect. */
  csvPath: string;
  /** The gold report and build, for the table's comment. */
  report: string;
  description: string;
  lakeVersion: number;
  builtAt: Date;
}

/** The serving database's Postgres type of a lake column: decimals stay numeric, timestamps timestamptz. */
export function servingType(t: LakeType): string {
  switch (t.kind) {
    case 'decimal':
      return `numeric(${t.precision},${t.scale})`;
    case 'timestamp':
      return 'timestamptz';
    case 'date':
      return 'date';
    case 'long':
      return 'bigint';
    case 'integer':
      return 'integer';
    case 'short':
      return 'smallint';
    case 'double':
      return 'double precision';
    case 'float':
      return 'real';
    case 'boolean':
      return 'boolean';
    case 'binary':
      return 'bytea';
    case 'string':
      return 'text';
    case 'array':
      // JSON keeps the list's shape, and every BI tool reads it.
      return 'jsonb';
  }
}

/** DuckDB expression that renders `column` as the text COPY (FORMAT csv) parses into servingType. */
export function servingSelectExpression(column: LakeColumn): string {
  const c = q(column.name);
  switch (column.type.kind) {
    case 'binary':
      return `CASE WHEN ${c} IS NULL THEN NULL ELSE '\\x' || hex(${c}) END`;
    case 'array':
      return `to_json(${c})::VARCHAR`;
    default:
      return c;
  }
}

export class ServingError extends TideError {
  constructor(message: string, options: { cause?: unknown; retriable?: boolean } = {}) {
    super(`serving database: ${message}`, options);
    this.name = 'ServingError';
  }
}

/** host:port/database of a postgresql:// URL, never the user's password. */
export function servingTarget(uri: string): string {
  try {
    const u = new URL(uri);
    return `${u.hostname}:${u.port || '5432'}${u.pathname}`;
  } catch {
    return '(unparsable serving.uri)';
  }
}

export class ServingDatabase {
  private client: pg.Client | undefined;
  private readonly target: string;

  constructor(private readonly opts: ServingOptions) {
    this.target = servingTarget(opts.uri);
  }

  private async connection(): Promise<pg.Client> {
    if (this.client) return this.client;
    const client = new pg.Client({ connectionString: this.opts.uri, application_name: 'tide-serving' });
    // A broken connection is dropped and opened again at the next publish (the sink goes on meanwhile).
    client.on('error', (err) => {
      this.opts.log.warn({ target: this.target, err: err.message }, 'serving database connection lost; reconnecting at the next publish');
      if (this.client === client) this.client = undefined;
    });
    try {
      await client.connect();
    } catch (err) {
      await client.end().catch(() => undefined);
      throw new ConnectionError(
        'postgres',
        this.target,
        `cannot connect to the serving database: ${(err as Error).message}`,
        'check serving.uri (host, port, database, user, password, sslmode) and that the server accepts connections from here',
        { cause: err, retriable: true, code: (err as { code?: string }).code },
      );
    }
    this.client = client;
    return client;
  }

  /**
   * Refuse to serve reports from a database Tide captures: the whole point is that BI queries stay off the
   * transactional database. It is recognised by what Tide's source leaves there: a publication that
   * publishes one of the captured tables (`capturedTables`, `schema.table`), or a logical replication slot
   * on this very database. Also refuses `sameAs` when given (the source's connection, e.g. in `tide demo`):
   * the same server (system identifier) and database name.
   */
  async refuseCapturedDatabase(capturedTables: string[], sameAs?: { uri: string }): Promise<void> {
    const c = await this.connection();
    const { rows } = await c.query<{ db: string; pubtable: string | null; slot: string | null }>(
      `SELECT current_database() AS db,
              (SELECT p.schemaname || '.' || p.tablename || ' (publication ' || p.pubname || ')' FROM pg_publication_tables p
                WHERE p.schemaname || '.' || p.tablename = ANY($1::text[]) LIMIT 1) AS pubtable,
              (SELECT s.slot_name::text FROM pg_replication_slots s WHERE s.database = current_database() AND s.slot_type = 'logical' LIMIT 1) AS slot`,
      [capturedTables],
    );
    const here = rows[0]!;
    const why = here.pubtable
      ? `it publishes the captured table ${here.pubtable} for logical replication`
      : here.slot
        ? `it has the logical replication slot "${here.slot}"`
        : sameAs && (await sameDatabase(c, sameAs.uri))
          ? `it is the source connector's database (same server and database name)`
          : undefined;
    if (why)
      throw new ServingError(
        `serving.uri points at ${this.target}, a database Tide captures: ${why}. Reports must stay off the transactional database: point serving.uri at a separate reporting database (on another server in production; the local stack has one: postgresql://…/reporting)`,
      );
  }

  /** Replace `t.name` in the serving schema with the rows of `t.csvPath`, atomically. */
  async publish(t: PublishedTable): Promise<void> {
    const c = await this.connection();
    const schema = q(this.opts.schema);
    const staging = `${t.name}__tide_staging`;
    const columns = t.columns.map((col) => `${q(col.name)} ${servingType(col.type)}`).join(', ');
    const comment = `Tide gold report ${t.report}: ${t.description} Built ${t.builtAt.toISOString()} from Delta table gold/${t.report} version ${t.lakeVersion}.`;
    try {
      await c.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
      await c.query(`DROP TABLE IF EXISTS ${schema}.${q(staging)}`);
      await c.query(`CREATE TABLE ${schema}.${q(staging)} (${columns})`);
      await pipeline(
        createReadStream(t.csvPath),
        c.query(copyFrom(`COPY ${schema}.${q(staging)} FROM STDIN WITH (FORMAT csv)`)) as unknown as NodeJS.WritableStream,
      );
      await c.query('BEGIN');
      try {
        await c.query(`DROP TABLE IF EXISTS ${schema}.${q(t.name)}`);
        await c.query(`ALTER TABLE ${schema}.${q(staging)} RENAME TO ${q(t.name)}`);
        await c.query(`COMMENT ON TABLE ${schema}.${q(t.name)} IS ${quoteLiteral(comment)}`);
        await c.query('COMMIT');
      } catch (err) {
        await c.query('ROLLBACK').catch(() => undefined);
        throw err;
      }
    } catch (err) {
      if (err instanceof TideError) throw err;
      const code = (err as { code?: string }).code;
      const fix =
        code === '42501'
          ? `grant the serving user CREATE on the database and the schema "${this.opts.schema}" (or own it)`
          : 'check the serving database is up and the serving user may create tables; the next gold build publishes again';
      throw new ServingError(`could not publish ${this.opts.schema}.${t.name} on ${this.target}: ${(err as Error).message}. ${fix}`, {
        cause: err,
        retriable: true,
      });
    }
  }

  async close(): Promise<void> {
    const c = this.client;
    this.client = undefined;
    await c?.end().catch(() => undefined);
  }
}

/** Both connections reach the same server (system identifier) and the same database name. */
async function sameDatabase(serving: pg.Client, sourceUri: string): Promise<boolean> {
  const source = new pg.Client({ connectionString: sourceUri, application_name: 'tide-serving-check' });
  try {
    await source.connect();
    const identity = `SELECT current_database() AS db, (SELECT system_identifier::text FROM pg_control_system()) AS id`;
    const [a, b] = await Promise.all([serving.query(identity), source.query(identity)]);
    return a.rows[0].db === b.rows[0].db && a.rows[0].id === b.rows[0].id;
  } catch {
    // The source is not reachable from here or the user may not read pg_control_system: the publication check stands.
    return false;
  } finally {
    await source.end().catch(() => undefined);
  }
}

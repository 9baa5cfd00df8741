import type pg from 'pg';
import { untilAborted } from '../abortable.ts';
import type { TableCodec } from '../events/envelope.ts';
import { readTables, type CatalogTable } from './catalog.ts';
import { quoteIdent } from './plan.ts';
import { sameRelation } from './relation-table.ts';

/**
 * The schema of incremental snapshot chunks. A chunk is a read of the table as it is now, so its rows are
 * encoded with the table as the catalog describes it at the read, not with the stream's codec: the stream's
 * codecs come from pgoutput's Relation messages (relation-table.ts) and describe the WAL, which may be older
 * than the catalog, and a table with no change since the stream began has none yet. The two meet at the
 * chunk's high watermark: its rows sit there in the stream, where the catalog read is the truth.
 *
 * The catalog and the rows agree because the chunk's transaction takes the table's ACCESS SHARE lock (the
 * lock its SELECT takes anyway) before its snapshot and reads the catalog under it: DDL needs ACCESS
 * EXCLUSIVE, so none can commit between the two reads.
 */
export class ChunkSchema {
  private codec: TableCodec | undefined;

  constructor(
    /** A codec for the table as the catalog has it now, its schemas registered (may throw SchemaPausedError). */
    private readonly codecFor: (table: CatalogTable) => Promise<TableCodec>,
  ) {}

  /** The codec of the chunks being read. */
  get current(): TableCodec | undefined {
    return this.codec;
  }

  /**
   * The codec for `qualified` (`schema.table`) as the catalog has it now; undefined when there is no such
   * table. Rebuilt and registered only when the table changed since the last chunk; a stop (`signal`) does
   * not wait for the registry.
   */
  async now(client: pg.ClientBase, qualified: string, signal: AbortSignal): Promise<TableCodec | undefined> {
    const table = await tableNamed(client, qualified);
    if (!table) return undefined;
    if (!this.codec || !sameRelation(this.codec.table, table)) this.codec = await untilAborted(this.codecFor(table), signal);
    return this.codec;
  }
}

/**
 * In a chunk's transaction, first thing after BEGIN (before its snapshot): take the table's ACCESS SHARE lock
 * and tell whether the catalog still describes `codec`'s table. false: DDL came since the codec was built;
 * the chunk must be read again with a new one.
 */
export async function lockUnchanged(client: pg.ClientBase, codec: TableCodec): Promise<boolean> {
  const t = codec.table;
  await client.query(`LOCK TABLE ${quoteIdent(t.schema)}.${quoteIdent(t.name)} IN ACCESS SHARE MODE`);
  const [now] = await readTables(client, t.oid);
  return !!now && sameRelation(now, t);
}

/** The table `schema.table` as the catalog has it now (undefined: there is none). */
async function tableNamed(client: pg.ClientBase, qualified: string): Promise<CatalogTable | undefined> {
  const dot = qualified.indexOf('.');
  const { rows } = await client.query<{ oid: number }>(
    `SELECT c.oid::int AS oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2`,
    [qualified.slice(0, dot), qualified.slice(dot + 1)],
  );
  if (!rows[0]) return undefined;
  return (await readTables(client, rows[0].oid))[0];
}

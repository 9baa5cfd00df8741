import type pg from 'pg';
import type { ConnectorFile, SourceConfig } from '../config/source-config.ts';
import { ConfigError, type TideError } from '../errors.ts';
import { readTables } from './catalog.ts';
import type { DatabaseState } from './plan.ts';

/**
 * What the source finds in the database at start-up: its tables, the publication, whether its slot exists
 * (and is usable), and the saved offsets: the input of `buildPlan`. Refuses a slot of another plugin or
 * database, a lost slot, and a missing publication under publication.autocreate.mode=disabled.
 */
export async function readDatabaseState(
  sql: pg.Client,
  file: ConnectorFile<SourceConfig>,
  offsets: DatabaseState['offsets'],
  lostSlot: () => Promise<TideError | undefined>,
): Promise<DatabaseState> {
  const config = file.config;
  const tables = await readTables(sql);
  const pub = await sql.query<{ puballtables: boolean }>(`SELECT puballtables FROM pg_publication WHERE pubname = $1`, [
    config['publication.name'],
  ]);
  const pubTables = await sql.query<{ q: string }>(
    `SELECT schemaname || '.' || tablename AS q FROM pg_publication_tables WHERE pubname = $1`,
    [config['publication.name']],
  );
  const slot = await sql.query<{ plugin: string; database: string }>(
    `SELECT plugin, database FROM pg_replication_slots WHERE slot_name = $1`,
    [config['slot.name']],
  );
  const s = slot.rows[0];
  if (s) {
    const lost = await lostSlot();
    if (lost) throw lost;
  }
  if (s && (s.plugin !== 'pgoutput' || s.database !== config['database.dbname'])) {
    throw new ConfigError(
      'slot.name',
      `slot "${config['slot.name']}" exists for plugin ${s.plugin} on database ${s.database}; Tide needs pgoutput on ${config['database.dbname']}. Choose another slot.name.`,
      file.source,
    );
  }
  if (!pub.rowCount && config['publication.autocreate.mode'] === 'disabled') {
    throw new ConfigError(
      'publication.name',
      `publication "${config['publication.name']}" does not exist and publication.autocreate.mode=disabled. Create it, or set the mode to filtered.`,
      file.source,
    );
  }
  return {
    tables,
    publication: {
      exists: (pub.rowCount ?? 0) > 0,
      allTables: pub.rows[0]?.puballtables ?? false,
      tables: pubTables.rows.map((r) => r.q),
    },
    slotExists: !!s,
    offsets,
  };
}

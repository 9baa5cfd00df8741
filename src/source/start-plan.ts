import type pg from 'pg';
import type { ConnectorFile, SourceConfig } from '../config/source-config.ts';
import { ConfigError, type TideError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { checkWalLevel, MissingPrimaryKeyError } from './catalog.ts';
import { readDatabaseState } from './database-state.ts';
import type { OffsetStore } from './offset-store.ts';
import { buildPlan, type DatabaseState, type SourcePlan } from './plan.ts';
import { checkPrerequisites, requirePrerequisites, toastedNow } from './prerequisites.ts';

/**
 * The source's start-up checks, before anything is published: wal_level, what the database holds (tables,
 * publication, slot, saved offsets), the plan built from it, the plan's prerequisites, and the plan's SQL
 * (publication DDL, replica identities) run on `sql`. The replication slot is created later
 * (slot-snapshot.ts), on a replication connection.
 */
export async function prepareStart(
  sql: pg.Client,
  file: ConnectorFile<SourceConfig>,
  store: OffsetStore,
  opts: { where: string; lostSlot: () => Promise<TideError | undefined>; log: Logger },
): Promise<{ offsets: DatabaseState['offsets']; state: DatabaseState; plan: SourcePlan }> {
  const c = file.config;
  await checkWalLevel(sql, opts.where);
  const offsets = store.read();
  const state = await readDatabaseState(sql, file, offsets, opts.lostSlot);
  const plan = buildPlan(c, state);
  if (plan.captured.length === 0) {
    throw new ConfigError(
      'table.include.list',
      `matches no table in ${c['database.dbname']}. Check the patterns (anchored regexes on schema.table).`,
      file.source,
    );
  }
  if (plan.missingPrimaryKey.length > 0) throw new MissingPrimaryKeyError(plan.missingPrimaryKey);
  requirePrerequisites(await checkPrerequisites(sql, c, plan, state), opts.where);
  // `tide source plan` lists every table with TOAST-able columns; here only those whose values are stored out of line now.
  for (const t of await toastedNow(sql, plan)) {
    opts.log.warn(
      { table: t.table, columns: t.columns, fix: t.fix },
      'this table holds out-of-line (TOAST) values: updates that do not touch these columns carry no value for them (see unchanged_toast)',
    );
  }
  for (const s of plan.statements.filter((s) => !s.replication)) {
    opts.log.info({ sql: s.sql }, s.why);
    await sql.query(s.sql);
  }
  return { offsets, state, plan };
}

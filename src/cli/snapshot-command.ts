import type { Command } from 'commander';
import { loadSourceConfig } from '../config/source-config.ts';
import { TideError } from '../errors.ts';
import { registerConfigSecrets } from '../log.ts';
import { readTables, tableFilter } from '../source/catalog.ts';
import { connectPg } from '../source/pg-connection.ts';
import { translatePgError } from '../source/pg-errors.ts';
import { pgWhere } from '../source/pg-connection.ts';
import { quoteIdent } from '../source/plan.ts';
import { emitSignal, snapshotSignal } from '../source/signals.ts';

/**
 * `tide source snapshot <connector.json> --table schema.table… [--where predicate]`: ask the source for an
 * incremental snapshot of one or more tables (read one after the other, in the order given). It checks the request (a captured table with a primary key, a predicate
 * Postgres accepts, an existing slot) and sends it as a signal through the slot (signals.ts), so the running
 * source acts on it at once, and a stopped one at its next start.
 */
export function registerSnapshotCommand(source: Command): void {
  source
    .command('snapshot <connector.json>')
    .description('read a table again in primary-key chunks while streaming goes on (an incremental snapshot)')
    .requiredOption('--table <schema.table...>', 'the captured table(s) to read, one after the other')
    .option(
      '--where <predicate>',
      'read only the rows that satisfy this SQL predicate (every table given), e.g. "created_at > now() - interval \'7 days\'"',
    )
    .action(async (path: string, opts: { table: string[]; where?: string }) => {
      const { config } = loadSourceConfig(path);
      registerConfigSecrets(config);
      const client = await connectPg(config);
      try {
        const catalog = await readTables(client);
        const tables = [];
        for (const wanted of opts.table) {
          const [schema, name, ...rest] = wanted.split('.');
          if (!schema || !name || rest.length) throw new TideError(`--table ${wanted}: give the table as schema.table, e.g. public.orders`);
          const table = catalog.find((t) => t.schema === schema && t.name === name);
          if (!table) throw new TideError(`--table ${wanted}: no such table in ${config['database.dbname']}`);
          if (!tableFilter(config['table.include.list'], config['table.exclude.list'])(table.qualified))
            throw new TideError(
              `--table ${wanted}: the connector in ${path} does not capture it (table.include.list / table.exclude.list)`,
            );
          if (table.keyColumns.length === 0)
            throw new TideError(
              `--table ${wanted}: has no primary key; an incremental snapshot reads in primary-key chunks. Add one first.`,
            );
          if (opts.where) {
            await client
              .query(`EXPLAIN SELECT 1 FROM ${quoteIdent(schema)}.${quoteIdent(name)} WHERE (${opts.where})`)
              .catch((err: unknown) => {
                throw new TideError(`--where ${JSON.stringify(opts.where)}: Postgres refuses it for ${wanted}: ${(err as Error).message}`);
              });
          }
          tables.push(table.qualified);
        }
        const slot = await client.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [config['slot.name']]);
        if (!slot.rowCount)
          throw new TideError(
            `slot "${config['slot.name']}" does not exist yet: start the connector first (tide source start ${path}); its initial snapshot reads the table`,
          );
        const lsn = await emitSignal(client, snapshotSignal(config['slot.name'], tables, opts.where));
        console.log(
          `incremental snapshot of ${tables.join(', ')}${opts.where ? ` where ${opts.where}` : ''} requested (signal at LSN ${lsn}).\n` +
            `The source starts it when it reads that position (at once if it runs, else at its next start); follow it with: tide source status ${path}`,
        );
      } catch (err) {
        throw err instanceof TideError ? err : translatePgError(err, pgWhere(config));
      } finally {
        await client.end();
      }
    });
}

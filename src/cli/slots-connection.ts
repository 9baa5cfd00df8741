import type { Command } from 'commander';
import pg from 'pg';
import { loadSourceConfig } from '../config/source-config.ts';
import { ConfigError, TideError } from '../errors.ts';
import {
  activityFilePath,
  attachTideConnectors,
  deriveInactiveSince,
  findTideSlots,
  readServerSlots,
  type ServerSlots,
  type TideSlot,
} from '../ops/slots.ts';
import { connectPg } from '../source/pg-connection.ts';
import { translatePgError } from '../source/pg-errors.ts';
import { connectionSetting } from '../stack/context.ts';

/** How the slot commands reach the server and find Tide's slots: the options they share and the reads they make. */

export interface ConnectionOptions {
  url?: string;
  connector?: string[];
  stateDir: string;
  connectorsDir: string;
}

/** --url / --connector / --state-dir / --connectors-dir, the same on every slot command. */
export function withConnection(cmd: Command): Command {
  return cmd
    .option('--url <postgres url>', 'the server to look at (default: DATABASE_URL from the environment or .stack/env)')
    .option(
      '--connector <source.json>',
      'connect as this source connector does, and mark its slot as Tide (repeatable)',
      (v: string, prev: string[] | undefined) => [...(prev ?? []), v],
    )
    .option('--state-dir <dir>', 'where running sources write their status files, and where slot-activity.json is kept', '.tide')
    .option('--connectors-dir <dir>', 'source connector files whose slots are Tide slots', 'connectors');
}

/** Where the server is, for messages: host and port (slots are server-wide), never the password. */
export function serverLabel(c: { host?: string | undefined; port?: number | undefined }): string {
  return `postgres at ${c.host ?? 'localhost'}:${c.port ?? 5432}`;
}

/** How to connect for --connector (its first file: with its TLS settings), --url or DATABASE_URL, and its label. */
export function slotClient(opts: Pick<ConnectionOptions, 'url' | 'connector'>): { connect: () => Promise<pg.Client>; server: string } {
  if (opts.url && opts.connector?.length) throw new ConfigError('--url', 'give either --url or --connector, not both');
  if (opts.connector?.length) {
    const c = loadSourceConfig(opts.connector[0]!).config;
    return {
      connect: () => connectPg(c, { applicationName: 'tide-slots' }),
      server: serverLabel({ host: c['database.hostname'], port: c['database.port'] }),
    };
  }
  const url = opts.url ?? connectionSetting('DATABASE_URL');
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new ConfigError(opts.url ? '--url' : 'DATABASE_URL', 'is not a postgres:// URL');
  }
  const where = {
    kind: 'postgres' as const,
    host: u.hostname,
    port: Number(u.port || 5432),
    database: u.pathname.slice(1) || 'postgres',
    user: decodeURIComponent(u.username),
    sslmode: u.searchParams.get('sslmode') ?? 'prefer',
  };
  return {
    connect: async () => {
      // A URL's sslmode is node-postgres' to interpret (pg-connection-string).
      const client = new pg.Client({ connectionString: url, application_name: 'tide-slots', connectionTimeoutMillis: 10_000 });
      client.on('error', () => undefined); // a short-lived command: the failing query reports it
      try {
        await client.connect();
      } catch (err) {
        void client.end().catch(() => undefined); // not awaited: see connectPg
        throw translatePgError(err, where);
      }
      return client;
    },
    server: serverLabel({ host: where.host, port: where.port }),
  };
}

/** Run `work` on a fresh connection and close it. A failure names the server; closing after a failure cannot hide it. */
export async function withSlotClient<T>(
  opts: Pick<ConnectionOptions, 'url' | 'connector'>,
  work: (c: pg.Client, server: string) => Promise<T>,
): Promise<T> {
  const { connect, server } = slotClient(opts);
  let client: pg.Client | undefined;
  let result: T;
  try {
    client = await connect();
    result = await work(client, server);
  } catch (err) {
    // The first error is the one to report; ending a connection that failed may fail as well.
    await client?.end().catch(() => undefined);
    if (err instanceof TideError) throw err;
    throw new TideError(`${server}: ${(err as Error).message}. Check that the server is up and the URL or connector file is right.`, {
      cause: err,
      retriable: true,
    });
  }
  await client.end();
  return result;
}

/** Every slot with Tide's marked and the time since last active derived (writes the state dir's slot-activity.json). */
export async function collectSlots(opts: ConnectionOptions): Promise<ServerSlots> {
  return (await collectSlotsWithTide(opts)).result;
}

/** The same, with the Tide slots found (slot name → connector, its file and its thresholds). */
export async function collectSlotsWithTide(opts: ConnectionOptions): Promise<{ result: ServerSlots; tide: Map<string, TideSlot> }> {
  const result = await withSlotClient(opts, (client, server) => readServerSlots(client, server));
  const tide = findTideSlots({ files: opts.connector, connectorsDir: opts.connectorsDir, stateDir: opts.stateDir });
  attachTideConnectors(result.slots, tide);
  deriveInactiveSince(result, tide, activityFilePath(opts.stateDir));
  return { result, tide };
}

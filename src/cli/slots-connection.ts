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
import { pgClientConfig } from '../source/pg-connection.ts';
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

/** A client for --connector (its first file), --url or DATABASE_URL, and its label. Not yet connected. */
export function slotClient(opts: Pick<ConnectionOptions, 'url' | 'connector'>): { client: pg.Client; server: string } {
  if (opts.url && opts.connector?.length) throw new ConfigError('--url', 'give either --url or --connector, not both');
  let config: pg.ClientConfig;
  let server: string;
  if (opts.connector?.length) {
    config = pgClientConfig(loadSourceConfig(opts.connector[0]!).config);
    server = serverLabel({ host: config.host, port: config.port });
  } else {
    const url = opts.url ?? connectionSetting('DATABASE_URL');
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      throw new ConfigError(opts.url ? '--url' : 'DATABASE_URL', 'is not a postgres:// URL');
    }
    config = { connectionString: url };
    server = serverLabel({ host: u.hostname, port: Number(u.port || 5432) });
  }
  return { client: new pg.Client({ ...config, application_name: 'tide-slots', connectionTimeoutMillis: 10_000 }), server };
}

/** Run `work` on a fresh connection and close it. A failure names the server; closing after a failure cannot hide it. */
export async function withSlotClient<T>(
  opts: Pick<ConnectionOptions, 'url' | 'connector'>,
  work: (c: pg.Client, server: string) => Promise<T>,
): Promise<T> {
  const { client, server } = slotClient(opts);
  let result: T;
  try {
    await client.connect();
    result = await work(client, server);
  } catch (err) {
    // The first error is the one to report; ending a connection that failed may fail as well.
    await client.end().catch(() => undefined);
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

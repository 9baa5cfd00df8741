import pg from 'pg';
import type { SlotThresholds } from '../../config/slot-thresholds.ts';
import { evaluateSlot, type SlotLevel } from '../slot-watch.ts';
import { readServerSlots, SlotQueryError, type SlotFacts } from '../slots.ts';

/**
 * The slots panel's facts: every replication slot of the server (not only Tide's), read and judged by the
 * same code as `tide slots` / `tide slots check` (src/ops/slots.ts, src/ops/slot-watch.ts), so the panel
 * and the command never disagree. Inactive time is the server's own (PostgreSQL 17+); the panel does not
 * keep the first-seen file the command keeps.
 */
export interface PanelSlot extends SlotFacts {
  level: SlotLevel;
  /** Why the level is not ok, one line per problem. */
  problems: string[];
  /** What to do about it. */
  advice: string[];
}

/** Where the server is, for messages: host, port and database, never the password. */
export function serverLabel(databaseUrl: string): string {
  try {
    const u = new URL(databaseUrl);
    return `postgres at ${u.hostname}:${u.port || '5432'}${u.pathname}`;
  } catch {
    return 'postgres (unparsable URL)';
  }
}

/**
 * Every replication slot of the server at `databaseUrl`, with levels. `tideSlots` maps slot names to the
 * Tide connectors using them. One short-lived connection per call.
 */
export async function readSlots(databaseUrl: string, tideSlots: Map<string, string>, thresholds: SlotThresholds): Promise<PanelSlot[]> {
  const server = serverLabel(databaseUrl);
  const client = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: 5000, application_name: 'tide-dashboard' });
  let result: Awaited<ReturnType<typeof readServerSlots>>;
  try {
    await client.connect();
    result = await readServerSlots(client, server);
  } catch (e) {
    // The first error is the one to report; closing a connection that failed can fail too.
    await client.end().catch(() => undefined);
    if (e instanceof SlotQueryError) throw e;
    throw new SlotQueryError(server, `${(e as Error).message}. Check that the server is up and the dashboard's database URL is right.`, {
      cause: e,
    });
  }
  await client.end();
  return result.slots.map((s) => {
    const facts = { ...s, connector: tideSlots.get(s.name) ?? null };
    return { ...facts, ...evaluateSlot(facts, thresholds, result) };
  });
}

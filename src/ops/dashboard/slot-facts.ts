import pg from 'pg';
import { SlotsQueryError } from './dashboard-errors.ts';

/**
 * The slots panel's facts: every replication slot of the server (not only Tide's), the same facts as
 * `tide slots`, each with a level against thresholds. Stand-in until src/ops/slots.ts (the `tide slots`
 * command's module) exists; then the panel should take its rows from there.
 *
 * Columns of pg_replication_slots as documented for PostgreSQL 15
 * (https://www.postgresql.org/docs/15/view-pg-replication-slots.html): wal_status and safe_wal_size
 * exist since 13, inactive_since since 17; columns the server lacks read as null.
 *   lag bytes     pg_current_wal_lsn() - confirmed_flush_lsn (what the consumer has not confirmed)
 *   retained WAL  pg_current_wal_lsn() - restart_lsn (what the server keeps on disk for the slot)
 *   wal_status    reserved | extended (beyond max_wal_size, still kept) | unreserved (files will be
 *                 removed at the next checkpoint) | lost (the slot can no longer be used)
 */

export type Level = 'ok' | 'warning' | 'critical';

export interface SlotThresholds {
  retainedWalWarningBytes: number;
  retainedWalCriticalBytes: number;
  lagWarningBytes: number;
  lagCriticalBytes: number;
  /** Only where the server reports inactive_since (PostgreSQL 17+). */
  inactiveWarningSeconds: number;
  inactiveCriticalSeconds: number;
}

export const DEFAULT_SLOT_THRESHOLDS: SlotThresholds = {
  retainedWalWarningBytes: 1 << 30,
  retainedWalCriticalBytes: 4 * (1 << 30),
  lagWarningBytes: 256 * (1 << 20),
  lagCriticalBytes: 1 << 30,
  inactiveWarningSeconds: 3600,
  inactiveCriticalSeconds: 24 * 3600,
};

export interface SlotFacts {
  name: string;
  plugin: string | null;
  type: string;
  database: string | null;
  active: boolean;
  activePid: number | null;
  restartLsn: string | null;
  confirmedFlushLsn: string | null;
  lagBytes: number | null;
  retainedWalBytes: number | null;
  walStatus: string | null;
  safeWalSizeBytes: number | null;
  /** Seconds since the slot became inactive, where the server reports it; null otherwise. */
  inactiveSeconds: number | null;
  /** The Tide connector using this slot, when it is one of Tide's. */
  connector: string | null;
  level: Level;
  /** Why the level is not ok, one line per problem. */
  problems: string[];
}

const MIB = 1 << 20;
const size = (b: number): string => (b >= 1 << 30 ? `${(b / (1 << 30)).toFixed(2)} GiB` : `${(b / MIB).toFixed(1)} MiB`);

/** The level of one slot against the thresholds, with the reasons (pure: unit-testable). */
export function slotLevel(s: Omit<SlotFacts, 'level' | 'problems'>, t: SlotThresholds): { level: Level; problems: string[] } {
  const problems: { level: Level; text: string }[] = [];
  const over = (value: number | null, warn: number, crit: number, what: string, show: (n: number) => string) => {
    if (value === null) return;
    if (value >= crit) problems.push({ level: 'critical', text: `${what} ${show(value)} ≥ ${show(crit)}` });
    else if (value >= warn) problems.push({ level: 'warning', text: `${what} ${show(value)} ≥ ${show(warn)}` });
  };
  over(s.retainedWalBytes, t.retainedWalWarningBytes, t.retainedWalCriticalBytes, 'retained WAL', size);
  over(s.lagBytes, t.lagWarningBytes, t.lagCriticalBytes, 'lag', size);
  if (!s.active) over(s.inactiveSeconds, t.inactiveWarningSeconds, t.inactiveCriticalSeconds, 'inactive for', (n) => `${Math.round(n)} s`);
  if (s.walStatus === 'lost')
    problems.push({ level: 'critical', text: 'wal_status lost: the slot is unusable; its consumer needs a fresh snapshot' });
  else if (s.walStatus === 'unreserved')
    problems.push({ level: 'critical', text: 'wal_status unreserved: WAL it needs goes at the next checkpoint' });
  else if (s.walStatus === 'extended') problems.push({ level: 'warning', text: 'wal_status extended: it holds WAL beyond max_wal_size' });
  const level: Level = problems.some((p) => p.level === 'critical') ? 'critical' : problems.length ? 'warning' : 'ok';
  return { level, problems: problems.map((p) => p.text) };
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
 * Every replication slot of the server at `databaseUrl`, with levels. `tideSlots` maps slot names
 * to the Tide connectors using them. One short-lived connection per call.
 */
export async function readSlots(databaseUrl: string, tideSlots: Map<string, string>, thresholds: SlotThresholds): Promise<SlotFacts[]> {
  const client = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: 5000, application_name: 'tide-dashboard' });
  let rows: SlotRow[];
  try {
    await client.connect();
    rows = (await client.query<SlotRow>(SLOTS_SQL)).rows;
  } catch (e) {
    // The query's error is the one to report; closing a connection that failed can fail too.
    await client.end().catch(() => undefined);
    throw new SlotsQueryError(
      serverLabel(databaseUrl),
      `${(e as Error).message}. Check that the server is up and the dashboard's database user may read pg_replication_slots.`,
      { cause: e },
    );
  }
  await client.end();
  const int = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));
  const text = (v: unknown): string | null => (v === null || v === undefined ? null : String(v));
  return rows.map((r) => {
    const s = r.s;
    const name = String(s.slot_name);
    const facts = {
      name,
      plugin: text(s.plugin),
      type: String(s.slot_type),
      database: text(s.database),
      active: s.active === true,
      activePid: int(s.active_pid),
      restartLsn: text(s.restart_lsn),
      confirmedFlushLsn: text(s.confirmed_flush_lsn),
      lagBytes: int(r.lag),
      retainedWalBytes: int(r.retained),
      walStatus: text(s.wal_status),
      safeWalSizeBytes: int(s.safe_wal_size),
      inactiveSeconds: s.active === true ? null : r.inactive,
      connector: tideSlots.get(name) ?? null,
    };
    return { ...facts, ...slotLevel(facts, thresholds) };
  });
}

interface SlotRow {
  s: Record<string, unknown>;
  lag: string | null;
  retained: string | null;
  inactive: number | null;
}

// to_jsonb(s) keeps columns this server version lacks (wal_status before 13, inactive_since before 17) out of the SQL.
const SLOTS_SQL = `SELECT to_jsonb(s) AS s,
       (pg_current_wal_lsn() - s.confirmed_flush_lsn)::text AS lag,
       (pg_current_wal_lsn() - s.restart_lsn)::text AS retained,
       extract(epoch FROM now() - (to_jsonb(s) ->> 'inactive_since')::timestamptz)::float8 AS inactive
FROM pg_replication_slots s ORDER BY s.slot_name`;

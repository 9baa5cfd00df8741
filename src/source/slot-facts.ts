import { TideError } from '../errors.ts';

/**
 * Every replication slot of a PostgreSQL server, as `tide slots` shows it (issue 5, "Slots").
 *
 * Columns follow pg_replication_slots (https://www.postgresql.org/docs/17/view-pg-replication-slots.html):
 * `wal_status` and `safe_wal_size` exist since 13, `conflicting` since 16, `inactive_since` and
 * `invalidation_reason` since 17. `slotsSql` builds the query for the server's version, so a column the
 * server lacks reads as NULL instead of failing the query.
 *   lag bytes     current WAL LSN − confirmed_flush_lsn: what the consumer has not confirmed yet
 *   retained WAL  current WAL LSN − restart_lsn: what the server keeps on disk for this slot
 * On a standby (PG16+ allows logical slots there) "current" is the last replayed LSN.
 *
 * Time since last active: before PG17 the server keeps no such time, so it is derived, best first:
 *   1. `inactive_since` (PG17+, source "server");
 *   2. for a Tide slot, the stopped connector's status file (`.tide/<name>.status.json`), which the running
 *      source rewrites every second, so its `updatedAt` is when the connector stopped ("connector-status");
 *   3. otherwise the first time `tide slots` saw the slot inactive, kept in `<state dir>/slot-activity.json`
 *      together with the slot's LSNs ("first-seen"): a changed LSN means someone used the slot in between,
 *      and the clock restarts. This is a lower bound of the real inactive time, exact to the interval at
 *      which `tide slots` / `tide slots check` runs (e.g. from cron).
 * pg_stat_replication cannot help: it lists only connected WAL senders, so an inactive slot is not in it.
 */

/** What slot code needs from a Postgres client (pg.Client has it). */
export interface SlotClient {
  query(text: string, values?: unknown[]): Promise<{ rows: Record<string, unknown>[] }>;
}

export type InactiveSinceSource = 'server' | 'connector-status' | 'first-seen';

export interface SlotFacts {
  name: string;
  /** Output plugin; null for physical slots. */
  plugin: string | null;
  /** `logical` or `physical`. */
  type: string;
  database: string | null;
  temporary: boolean;
  active: boolean;
  activePid: number | null;
  restartLsn: string | null;
  confirmedFlushLsn: string | null;
  /** Current WAL LSN − confirmed flush; null for physical slots. */
  lagBytes: number | null;
  /** Current WAL LSN − restart LSN; null once the slot lost its WAL. */
  retainedWalBytes: number | null;
  /** reserved | extended | unreserved | lost; null before PostgreSQL 13. */
  walStatus: string | null;
  /** Bytes that can still be written before this slot is in danger of losing WAL; null when unlimited or lost. */
  safeWalSizeBytes: number | null;
  /** Why the slot cannot be used any more (wal_removed, rows_removed, …), or null while it is usable. */
  invalidationReason: string | null;
  /** When the slot was last active (see above); null while active or unknown. */
  inactiveSince: string | null;
  inactiveSeconds: number | null;
  inactiveSinceSource: InactiveSinceSource | null;
  /** The Tide connector using this slot, when it is one of Tide's. */
  connector: string | null;
  /** That connector's file, when known (for the recovery command). */
  connectorFile: string | null;
}

export interface ServerSlots {
  /** host:port (slots are server-wide), never the password. */
  server: string;
  serverVersionNum: number;
  currentLsn: string;
  inRecovery: boolean;
  /** The server's `max_slot_wal_keep_size` (e.g. "-1" = unlimited, "1024MB"); null before 13. */
  maxSlotWalKeepSize: string | null;
  checkedAt: string;
  slots: SlotFacts[];
}

/** Reading the slots failed: names the server (never its password) and what to check. */
export class SlotQueryError extends TideError {
  constructor(
    readonly server: string,
    message: string,
    options: { cause?: unknown } = {},
  ) {
    super(`replication slots of ${server}: ${message}`, { ...options, retriable: true });
    this.name = 'SlotQueryError';
  }
}

/** The query for the server's version (`server_version_num`); with `oneSlot`, it takes the slot name as $1. */
export function slotsSql(versionNum: number, oneSlot = false): string {
  if (versionNum < 100000) throw new TideError(`PostgreSQL ${versionNum} is too old: tide slots needs 10 or later (pg_current_wal_lsn)`);
  const col = (since: number, expr: string, as: string, type: string) =>
    versionNum >= since ? `${expr} AS ${as}` : `NULL::${type} AS ${as}`;
  const invalidation =
    versionNum >= 170000
      ? 's.invalidation_reason'
      : versionNum >= 160000
        ? `CASE WHEN s.wal_status = 'lost' THEN 'wal_removed' WHEN s.conflicting THEN 'rows_removed' END`
        : versionNum >= 130000
          ? `CASE WHEN s.wal_status = 'lost' THEN 'wal_removed' END`
          : 'NULL::text';
  return `WITH w AS (SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END AS lsn)
SELECT s.slot_name::text AS name, s.plugin::text AS plugin, s.slot_type AS type, s.database::text AS database,
       s.temporary, s.active, s.active_pid, s.restart_lsn::text AS restart_lsn, s.confirmed_flush_lsn::text AS confirmed_flush_lsn,
       -- greatest() skips NULLs, so a slot without the LSN (physical: no confirmed flush; lost: no restart) keeps NULL via the CASE
       CASE WHEN s.confirmed_flush_lsn IS NOT NULL THEN greatest(0, pg_wal_lsn_diff(w.lsn, s.confirmed_flush_lsn))::bigint::text END AS lag_bytes,
       CASE WHEN s.restart_lsn IS NOT NULL THEN greatest(0, pg_wal_lsn_diff(w.lsn, s.restart_lsn))::bigint::text END AS retained_bytes,
       ${col(130000, 's.wal_status', 'wal_status', 'text')},
       ${col(130000, 's.safe_wal_size::text', 'safe_wal_size', 'text')},
       ${invalidation} AS invalidation_reason,
       ${col(170000, 's.inactive_since', 'inactive_since', 'timestamptz')}
FROM pg_replication_slots s, w${oneSlot ? '\nWHERE s.slot_name = $1' : ''}
ORDER BY s.slot_name`;
}

const SERVER_SQL = `SELECT current_setting('server_version_num')::int AS version,
       pg_is_in_recovery() AS in_recovery,
       (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END)::text AS lsn,
       current_setting('max_slot_wal_keep_size', true) AS keep,
       now() AS now`;

const num = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));
/** A nullable database value as text. */
export const text = (v: unknown): string | null => (v === null || v === undefined ? null : String(v));
const iso = (v: unknown): string | null => (v === null || v === undefined ? null : new Date(v as string | Date).toISOString());

/** Turn a row of `slotsSql` into facts (no Tide connector, no derived inactive time yet). */
export function slotFromRow(r: Record<string, unknown>, now: Date): SlotFacts {
  const active = r.active === true;
  const since = active ? null : iso(r.inactive_since);
  return {
    name: String(r.name),
    plugin: text(r.plugin),
    type: String(r.type),
    database: text(r.database),
    temporary: r.temporary === true,
    active,
    activePid: num(r.active_pid),
    restartLsn: text(r.restart_lsn),
    confirmedFlushLsn: text(r.confirmed_flush_lsn),
    lagBytes: num(r.lag_bytes),
    retainedWalBytes: num(r.retained_bytes),
    walStatus: text(r.wal_status),
    safeWalSizeBytes: num(r.safe_wal_size),
    invalidationReason: text(r.invalidation_reason),
    inactiveSince: since,
    inactiveSeconds: since === null ? null : Math.max(0, (now.getTime() - Date.parse(since)) / 1000),
    inactiveSinceSource: since === null ? null : 'server',
    connector: null,
    connectorFile: null,
  };
}

/** Every slot of the server `client` is connected to (`server` labels messages), as the server reports them. */
export async function readServerSlots(client: SlotClient, server: string): Promise<ServerSlots> {
  try {
    const info = (await client.query(SERVER_SQL)).rows[0]!;
    const now = info.now instanceof Date ? info.now : new Date();
    const rows = (await client.query(slotsSql(Number(info.version)))).rows;
    return {
      server,
      serverVersionNum: Number(info.version),
      currentLsn: String(info.lsn),
      inRecovery: info.in_recovery === true,
      maxSlotWalKeepSize: text(info.keep),
      checkedAt: now.toISOString(),
      slots: rows.map((r) => slotFromRow(r, now)),
    };
  } catch (err) {
    if (err instanceof TideError) throw err;
    throw new SlotQueryError(server, `${(err as Error).message}. Check that the server is up and the user may read pg_replication_slots.`, {
      cause: err,
    });
  }
}

/** One slot by name (undefined when it does not exist); `versionNum` from `server_version_num`. */
export async function readSlot(client: SlotClient, server: string, versionNum: number, name: string): Promise<SlotFacts | undefined> {
  try {
    const { rows } = await client.query(slotsSql(versionNum, true), [name]);
    return rows[0] ? slotFromRow(rows[0], new Date()) : undefined;
  } catch (err) {
    throw new SlotQueryError(server, `slot "${name}": ${(err as Error).message}`, { cause: err });
  }
}

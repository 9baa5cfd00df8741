import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { z } from 'zod';
import { resolveEnvRefs } from '../config/env-refs.ts';
import {
  givenThresholdsOf,
  SLOT_THRESHOLD_KEYS,
  slotThresholdConfigShape,
  slotThresholdsOf,
  type GivenThresholds,
} from '../config/slot-thresholds.ts';
import { toConfigError } from '../config/source-config.ts';
import { ConfigError, TideError } from '../errors.ts';
import { readStatus, type SourceStatus } from '../source/status-file.ts';
import { isPidAlive } from '../stack/process.ts';

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
const text = (v: unknown): string | null => (v === null || v === undefined ? null : String(v));
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

// ---------------------------------------------------------------------------------------------------------------
// Which slots are Tide's

export interface TideSlot {
  connector: string;
  /** The connector file, when the slot was found through one. */
  file: string | null;
  /** The connector's database (a slot name is unique per server; the database guards against a file for another server). */
  database: string | null;
  /** The last status the connector wrote, when there is one. */
  status: SourceStatus | null;
  /** The `slot.*` thresholds the connector file sets (checked), when it sets any. */
  thresholds: GivenThresholds | null;
}

export interface TideSlotSources {
  /** Connector files given on the command line. */
  files?: string[];
  /** A folder of connector files (`connectors/`); files that are not source connectors are skipped. */
  connectorsDir?: string;
  /** Where running sources write `<name>.status.json` (`.tide/`). */
  stateDir?: string;
  env?: NodeJS.ProcessEnv;
}

const SOURCE_CLASSES = new Set(['tide.PostgresSource', 'io.debezium.connector.postgresql.PostgresConnector']);

/** A source connector file's name, slot and database, or undefined for another kind of connector file. */
function sourceSlotOf(
  path: string,
  env: NodeJS.ProcessEnv,
): { name: string; slot: string; database: string | null; thresholds: GivenThresholds | null } | undefined {
  let raw: { name?: unknown; config?: Record<string, unknown> };
  try {
    raw = JSON.parse(readFileSync(path, 'utf8')) as typeof raw;
  } catch (err) {
    throw new TideError(`connector file ${path} cannot be read as JSON: ${(err as Error).message}. Fix it or move it out of the folder.`, {
      cause: err,
    });
  }
  const config = raw?.config;
  if (typeof raw?.name !== 'string' || !config || typeof config !== 'object') return undefined;
  const cls = config['connector.class'];
  const isSource = typeof cls === 'string' ? SOURCE_CLASSES.has(cls) : 'database.hostname' in config || 'slot.name' in config;
  if (!isSource) return undefined;
  // Only the keys needed here are resolved and checked: a file with other problems still marks its slot.
  const picked: Record<string, unknown> = { 'slot.name': config['slot.name'] ?? 'tide' };
  for (const key of ['database.dbname', ...Object.keys(SLOT_THRESHOLD_KEYS)]) if (config[key] !== undefined) picked[key] = config[key];
  const resolved = resolveEnvRefs(picked, env, path);
  const given = Object.keys(SLOT_THRESHOLD_KEYS).some((k) => k in resolved);
  let thresholds: GivenThresholds | null = null;
  if (given) {
    const parsed = z.object(slotThresholdConfigShape).safeParse(resolved);
    if (!parsed.success) throw toConfigError(parsed.error, path, resolved);
    try {
      slotThresholdsOf(parsed.data); // an inverted pair is the file's error, named here
    } catch (err) {
      throw err instanceof ConfigError ? new ConfigError(err.key, err.message.slice(err.key.length + 2), path) : err;
    }
    thresholds = givenThresholdsOf(parsed.data);
  }
  return { name: raw.name, slot: String(resolved['slot.name']), database: text(resolved['database.dbname']), thresholds };
}

/** Slot name → Tide connector, from connector files and the status files of sources that ran here. */
export function findTideSlots(sources: TideSlotSources): Map<string, TideSlot> {
  const env = sources.env ?? process.env;
  const out = new Map<string, TideSlot>();
  const files = [...(sources.files ?? [])];
  if (sources.connectorsDir && existsSync(sources.connectorsDir))
    for (const f of readdirSync(sources.connectorsDir).sort())
      if (f.endsWith('.json') && !f.endsWith('.schema.json')) files.push(join(sources.connectorsDir, f));
  for (const file of files) {
    const s = sourceSlotOf(file, env);
    if (s && !out.has(s.slot)) out.set(s.slot, { connector: s.name, file, database: s.database, status: null, thresholds: s.thresholds });
  }
  if (sources.stateDir && existsSync(sources.stateDir)) {
    for (const f of readdirSync(sources.stateDir).sort()) {
      if (!f.endsWith('.status.json')) continue;
      const status = readStatus(join(sources.stateDir, f));
      if (!status?.slot) continue;
      const known = out.get(status.slot);
      if (known && known.connector === status.name) known.status = status;
      else if (!known) out.set(status.slot, { connector: status.name, file: null, database: null, status, thresholds: null });
    }
  }
  return out;
}

/** Mark Tide's slots (matching name, and database where the connector file says). */
export function attachTideConnectors(slots: SlotFacts[], tide: Map<string, TideSlot>): void {
  for (const s of slots) {
    const t = tide.get(s.name);
    if (!t || (t.database !== null && s.database !== null && t.database !== s.database)) continue;
    s.connector = t.connector;
    s.connectorFile = t.file;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Time since last active, before PostgreSQL 17

interface ActivityRecord {
  firstSeenInactive: string;
  restartLsn: string | null;
  confirmedFlushLsn: string | null;
}
interface ActivityFile {
  version: 1;
  slots: Record<string, ActivityRecord>;
}

export function activityFilePath(stateDir: string): string {
  return join(stateDir, 'slot-activity.json');
}

/**
 * Fill `inactiveSince` where the server does not (see the header), and update the state file: record slots
 * first seen inactive, forget slots that are active or gone. Only this server's entries (`server` key) change.
 */
export function deriveInactiveSince(
  result: Pick<ServerSlots, 'server' | 'checkedAt' | 'slots'>,
  tide: Map<string, TideSlot>,
  statePath: string,
  alive: (pid: number) => boolean = isPidAlive,
): void {
  const now = result.checkedAt;
  let file: ActivityFile = { version: 1, slots: {} };
  if (existsSync(statePath)) {
    try {
      file = JSON.parse(readFileSync(statePath, 'utf8')) as ActivityFile;
    } catch (err) {
      throw new TideError(`slot activity file ${statePath} is not valid JSON (${(err as Error).message}). Delete it; it is rebuilt.`, {
        cause: err,
      });
    }
  }
  const prefix = `${result.server}#`;
  const seen = new Set<string>();
  for (const s of result.slots) {
    const key = prefix + s.name;
    seen.add(key);
    if (s.active) {
      delete file.slots[key];
      continue;
    }
    const prev = file.slots[key];
    const same = prev && prev.restartLsn === s.restartLsn && prev.confirmedFlushLsn === s.confirmedFlushLsn;
    const record = same ? prev : { firstSeenInactive: now, restartLsn: s.restartLsn, confirmedFlushLsn: s.confirmedFlushLsn };
    file.slots[key] = record;
    if (s.inactiveSinceSource === 'server') continue;
    const status = s.connector !== null ? tide.get(s.name)?.status : null;
    const stoppedAt = status && status.name === s.connector && !alive(status.pid) ? status.updatedAt : null;
    const since = stoppedAt ?? record.firstSeenInactive;
    s.inactiveSince = since;
    s.inactiveSeconds = Math.max(0, (Date.parse(now) - Date.parse(since)) / 1000);
    s.inactiveSinceSource = stoppedAt ? 'connector-status' : 'first-seen';
  }
  for (const key of Object.keys(file.slots)) if (key.startsWith(prefix) && !seen.has(key)) delete file.slots[key];
  try {
    mkdirSync(dirname(statePath), { recursive: true });
    writeFileSync(`${statePath}.tmp`, `${JSON.stringify(file, null, 2)}\n`);
    renameSync(`${statePath}.tmp`, statePath);
  } catch (err) {
    throw new TideError(
      `cannot write the slot activity file ${statePath}: ${(err as Error).message}. Run from a folder you may write, or pass --state-dir.`,
      { cause: err },
    );
  }
}

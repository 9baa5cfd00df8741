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
import { text, type ServerSlots, type SlotFacts } from '../source/slot-facts.ts';

// The slot queries live with the source, which watches its own slot (src/source/slot-facts.ts).
export * from '../source/slot-facts.ts';
import { isPidAlive } from '../stack/process.ts';

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

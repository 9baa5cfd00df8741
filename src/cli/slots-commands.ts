import { createInterface } from 'node:readline/promises';
import { InvalidArgumentError, type Command } from 'commander';
import pg from 'pg';
import { loadSourceConfig } from '../config/source-config.ts';
import { ConfigError, TideError } from '../errors.ts';
import {
  CONFIG_THRESHOLD_NAMES,
  DEFAULT_SLOT_THRESHOLDS,
  resolveSlotThresholds,
  type GivenThresholds,
  type SlotThresholds,
  type ThresholdNames,
} from '../config/slot-thresholds.ts';
import { checkSlots, type CheckResult, type SlotLevel } from '../ops/slot-watch.ts';
import {
  activityFilePath,
  attachTideConnectors,
  deriveInactiveSince,
  findTideSlots,
  readServerSlots,
  type ServerSlots,
  type SlotFacts,
  type TideSlot,
} from '../ops/slots.ts';
import { formatBytes, formatDuration, parseBytes, parseDurationSeconds } from '../units.ts';
import { pgClientConfig } from '../source/connector.ts';
import { connectionSetting } from '../stack/context.ts';

/**
 * `tide slots` (list), `tide slots check` (Nagios-style thresholds) and `tide slots drop` (issue 5, "Slots").
 * Exit codes of `check` follow the Nagios plugin guidelines
 * (https://nagios-plugins.org/doc/guidelines.html#AEN78): 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (the check
 * itself could not run).
 */

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

/** A plain text table, columns padded to their widest cell. */
export function renderTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

/** The human-readable listing. */
export function formatSlots(r: ServerSlots): string {
  const header = [
    'SLOT',
    'TIDE CONNECTOR',
    'PLUGIN',
    'TYPE',
    'DATABASE',
    'ACTIVE',
    'RESTART LSN',
    'CONFIRMED LSN',
    'LAG',
    'RETAINED WAL',
    'WAL STATUS',
    'SAFE WAL SIZE',
    'INACTIVE FOR',
  ];
  const rows = r.slots.map((s) => [
    s.name,
    s.connector ?? '-',
    s.plugin ?? '-',
    `${s.type}${s.temporary ? ' (temp)' : ''}`,
    s.database ?? '-',
    s.active ? `yes (pid ${s.activePid})` : 'no',
    s.restartLsn ?? '-',
    s.confirmedFlushLsn ?? '-',
    formatBytes(s.lagBytes),
    formatBytes(s.retainedWalBytes),
    s.walStatus ?? '-',
    formatBytes(s.safeWalSizeBytes),
    s.inactiveSeconds === null ? '-' : `${s.inactiveSinceSource === 'first-seen' ? '≥ ' : ''}${formatDuration(s.inactiveSeconds)}`,
  ]);
  const version = `${Math.floor(r.serverVersionNum / 10000)}.${r.serverVersionNum % 10000}`;
  const out = [
    `${r.slots.length} replication slot${r.slots.length === 1 ? '' : 's'} on ${r.server} (PostgreSQL ${version}${r.inRecovery ? ', standby' : ''}), current WAL LSN ${r.currentLsn}, max_slot_wal_keep_size ${r.maxSlotWalKeepSize === '-1' ? 'unlimited' : (r.maxSlotWalKeepSize ?? 'n/a')}`,
    '',
  ];
  if (r.slots.length === 0) return `${out[0]}\n`;
  out.push(renderTable(header, rows), '');
  out.push(
    'LAG = current LSN - confirmed flush LSN (not yet confirmed by the consumer); RETAINED WAL = current LSN - restart LSN (kept on disk).',
  );
  if (r.slots.some((s) => s.inactiveSinceSource === 'first-seen'))
    out.push(
      '≥: PostgreSQL < 17 records no inactive time; this is the time since `tide slots` first saw the slot idle (kept in slot-activity.json).',
    );
  return `${out.join('\n')}\n`;
}

// ---------------------------------------------------------------------------------------------------------------
// check

export interface CheckOptions extends ConnectionOptions {
  json?: boolean;
  slot?: string[];
  tideOnly?: boolean;
  maxRetained?: number;
  warnRetained?: number;
  critRetained?: number;
  maxLag?: number;
  warnLag?: number;
  critLag?: number;
  maxInactive?: number;
  warnInactive?: number;
  critInactive?: number;
}

const FLAG_NAMES: ThresholdNames = {
  retainedWalWarningBytes: '--warn-retained',
  retainedWalCriticalBytes: '--crit-retained',
  lagWarningBytes: '--warn-lag',
  lagCriticalBytes: '--crit-lag',
  inactiveWarningSeconds: '--warn-inactive',
  inactiveCriticalSeconds: '--crit-inactive',
};

/** The thresholds the flags set (--max-X is the same as --crit-X). */
export function givenByFlags(o: CheckOptions): GivenThresholds {
  return {
    retainedWalWarningBytes: o.warnRetained,
    retainedWalCriticalBytes: o.critRetained ?? o.maxRetained,
    lagWarningBytes: o.warnLag,
    lagCriticalBytes: o.critLag ?? o.maxLag,
    inactiveWarningSeconds: o.warnInactive,
    inactiveCriticalSeconds: o.critInactive ?? o.maxInactive,
  };
}

/**
 * Flags over `file` (the `slot.*` keys of the slot's connector file) over the defaults. A critical level given
 * alone pulls the default warning down to it; a warning above the critical level is an error naming the flag.
 */
export function thresholdsFromOptions(o: CheckOptions, file: GivenThresholds = {}): SlotThresholds {
  const flags = Object.fromEntries(Object.entries(givenByFlags(o)).filter(([, v]) => v !== undefined));
  const names = { ...FLAG_NAMES };
  for (const k of Object.keys(file) as (keyof SlotThresholds)[])
    if (!(k in flags)) names[k] = `${CONFIG_THRESHOLD_NAMES[k]} (connector file)`;
  return resolveSlotThresholds({ ...file, ...flags }, DEFAULT_SLOT_THRESHOLDS, names);
}

export function formatCheck(c: CheckResult): string {
  const count = (l: SlotLevel) => c.slots.filter((s) => s.level === l).length;
  const out = [
    `SLOTS ${c.status} - ${count('critical') + c.missing.length} critical, ${count('warning')} warning, ${count('ok')} ok (${c.slots.length} slot${c.slots.length === 1 ? '' : 's'} checked on ${c.server})`,
  ];
  for (const name of c.missing)
    out.push(`CRITICAL ${name}: the slot does not exist`, `  do: start its connector (it creates the slot), or stop monitoring it`);
  for (const s of [...c.slots].sort((a, b) => rank(b.level) - rank(a.level))) {
    if (s.level === 'ok') continue;
    const who = `${s.active ? `active, pid ${s.activePid}` : 'inactive'}${s.connector ? `, Tide connector ${s.connector}` : ''}`;
    out.push(`${s.level.toUpperCase()} ${s.name} (${who}):`);
    for (const p of s.problems) out.push(`  ${p}`);
    for (const a of s.advice) out.push(`  do: ${a}`);
  }
  return `${out.join('\n')}\n`;
}
const rank = (l: SlotLevel) => ({ ok: 0, warning: 1, critical: 2 })[l];

// ---------------------------------------------------------------------------------------------------------------
// confirmation, shared with `tide source resnapshot`

/**
 * Ask on a terminal; `--yes` skips the question; without a terminal and without --yes, refuse.
 * The answer must be the object's name (typing it is harder to do by accident than "y").
 */
export async function confirmByName(action: string, name: string, yes: boolean | undefined): Promise<boolean> {
  if (yes) return true;
  if (!process.stdin.isTTY)
    throw new TideError(`refusing to ${action} without confirmation: stdin is not a terminal. Pass --yes to ${action} non-interactively.`);
  const rl = createInterface({ input: process.stdin, output: process.stdout });
  try {
    const answer = await rl.question(`Type ${name} to ${action}, anything else cancels: `);
    if (answer.trim() === name) return true;
    console.log('cancelled; nothing was changed');
    return false;
  } finally {
    rl.close();
  }
}

/** What the consumer of `s` loses if the slot goes, in lines. */
export function dropConsequences(s: SlotFacts): string[] {
  const lines = [
    `  retained WAL released: ${formatBytes(s.retainedWalBytes)} (the server deletes the files at its next checkpoints)`,
    `  lost: the slot's position (confirmed LSN ${s.confirmedFlushLsn ?? '-'}); its consumer cannot resume from it, and WAL it has not read is no longer kept for it${s.lagBytes !== null ? ` (${formatBytes(s.lagBytes)} not yet confirmed)` : ''}.`,
  ];
  if (s.connector !== null)
    lines.push(
      `  Tide connector ${s.connector}: it needs a fresh snapshot afterwards. \`tide source resnapshot ${s.connectorFile ?? `connectors/${s.connector}.json`}\` drops the slot and clears the connector's offsets in one step.`,
    );
  return lines;
}

async function dropSlot(name: string, opts: ConnectionOptions & { yes?: boolean }): Promise<void> {
  const r = await collectSlots(opts);
  const s = r.slots.find((x) => x.name === name);
  if (!s)
    throw new TideError(
      `no replication slot "${name}" on ${r.server}. Slots there: ${r.slots.map((x) => x.name).join(', ') || 'none'}. Check the name with \`tide slots\`.`,
    );
  if (s.active) throw await activeSlotError(s, r.server, opts);
  console.log(
    [
      `slot ${s.name}: ${s.type}${s.plugin ? `, ${s.plugin}` : ''}${s.database ? `, database ${s.database}` : ''}${s.connector ? `, Tide connector ${s.connector}` : ''}, wal_status ${s.walStatus ?? 'n/a'}`,
      ...dropConsequences(s),
    ].join('\n'),
  );
  if (!(await confirmByName('drop the slot', s.name, opts.yes))) {
    process.exitCode = 1;
    return;
  }
  await dropSlotOnServer(opts, s.name, r.server);
  console.log(`dropped slot ${s.name}; ${formatBytes(s.retainedWalBytes)} of WAL is no longer retained`);
}

/** The refusal for an active slot: who holds it and what to do. */
export async function activeSlotError(
  s: SlotFacts,
  server: string,
  opts: Pick<ConnectionOptions, 'url' | 'connector'>,
): Promise<TideError> {
  const a = await withSlotClient(opts, async (client) => {
    const { rows } = await client.query<{ app: string | null; addr: string | null; since: Date | null }>(
      'SELECT application_name AS app, host(client_addr) AS addr, backend_start AS since FROM pg_stat_activity WHERE pid = $1',
      [s.activePid],
    );
    return rows[0];
  });
  const who = a
    ? ` (${a.app || 'no application_name'}${a.addr ? ` from ${a.addr}` : ''}${a.since ? `, connected since ${a.since.toISOString()}` : ''})`
    : '';
  const stop = s.connector
    ? `Stop the Tide connector ${s.connector} first (SIGTERM or Ctrl-C on its \`tide source start\`)`
    : 'Stop that consumer first';
  return new TideError(
    `slot "${s.name}" on ${server} is active: pid ${s.activePid}${who} is streaming from it. ${stop}, then run this again.`,
  );
}

/** pg_drop_replication_slot, with a message that names the slot when the server refuses. */
export async function dropSlotOnServer(opts: Pick<ConnectionOptions, 'url' | 'connector'>, name: string, server: string): Promise<void> {
  await withSlotClient(opts, async (client) => {
    try {
      await client.query('SELECT pg_drop_replication_slot($1)', [name]);
    } catch (err) {
      throw new TideError(
        `could not drop slot "${name}" on ${server}: ${(err as Error).message}. Nothing was changed; check \`tide slots\`.`,
        {
          cause: err,
        },
      );
    }
  });
}

// ---------------------------------------------------------------------------------------------------------------

const size = (flag: string) => (v: string) => {
  const n = parseBytes(v);
  if (!Number.isFinite(n)) throw new InvalidArgumentError(`${flag}: "${v}" is not a size: use e.g. 512MB, 2GB or a number of bytes`);
  return n;
};
const age = (flag: string) => (v: string) => {
  const n = parseDurationSeconds(v);
  if (!Number.isFinite(n)) throw new InvalidArgumentError(`${flag}: "${v}" is not a duration: use e.g. 90s, 30m, 6h, 2d`);
  return n;
};

export function registerSlotsCommands(program: Command): void {
  // No options on `slots` itself: commander would take an option it shares with a subcommand (--url, --json)
  // for the parent. `list` is the default subcommand, so `tide slots --json` still works.
  const slots = program.command('slots').description('replication slots of the server: list (default), check against thresholds, drop');

  withConnection(
    slots
      .command('list', { isDefault: true })
      .description('every replication slot of the server: lag, retained WAL, wal_status, time inactive, Tide or not')
      .option('--json', 'print JSON instead of a table'),
  ).action(async (opts: ConnectionOptions & { json?: boolean }) => {
    const r = await collectSlots(opts);
    process.stdout.write(opts.json ? `${JSON.stringify(r, null, 2)}\n` : formatSlots(r));
  });

  withConnection(
    slots
      .command('check')
      .description('apply thresholds; print what is wrong and what to do; exit 0 ok, 1 warning, 2 critical, 3 unknown (Nagios)')
      .option('--max-retained <size>', 'critical above this much retained WAL (same as --crit-retained)', size('--max-retained'))
      .option(
        '--warn-retained <size>',
        `warning above (default ${formatBytes(DEFAULT_SLOT_THRESHOLDS.retainedWalWarningBytes)})`,
        size('--warn-retained'),
      )
      .option(
        '--crit-retained <size>',
        `critical above (default ${formatBytes(DEFAULT_SLOT_THRESHOLDS.retainedWalCriticalBytes)})`,
        size('--crit-retained'),
      )
      .option('--max-lag <size>', 'critical above this much unconfirmed WAL (same as --crit-lag)', size('--max-lag'))
      .option('--warn-lag <size>', `warning above (default ${formatBytes(DEFAULT_SLOT_THRESHOLDS.lagWarningBytes)})`, size('--warn-lag'))
      .option('--crit-lag <size>', `critical above (default ${formatBytes(DEFAULT_SLOT_THRESHOLDS.lagCriticalBytes)})`, size('--crit-lag'))
      .option('--max-inactive <duration>', 'critical when inactive longer (same as --crit-inactive)', age('--max-inactive'))
      .option(
        '--warn-inactive <duration>',
        `warning when inactive longer (default ${formatDuration(DEFAULT_SLOT_THRESHOLDS.inactiveWarningSeconds)})`,
        age('--warn-inactive'),
      )
      .option(
        '--crit-inactive <duration>',
        `critical when inactive longer (default ${formatDuration(DEFAULT_SLOT_THRESHOLDS.inactiveCriticalSeconds)})`,
        age('--crit-inactive'),
      )
      .option('--slot <name>', 'check only this slot (repeatable); a missing one is critical', (v: string, p: string[] | undefined) => [
        ...(p ?? []),
        v,
      ])
      .option('--tide-only', "check only Tide's slots")
      .option('--json', 'print JSON')
      // A usage error is UNKNOWN (3) to a monitoring agent, not WARNING (1); help still exits 0.
      .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 3)),
  ).action(async (opts: CheckOptions) => {
    let result: CheckResult;
    try {
      // Flags over the slot's connector file over the defaults.
      const { result: slots, tide } = await collectSlotsWithTide(opts);
      result = checkSlots(slots, thresholdsFromOptions(opts), opts, (s) => {
        const file = s.connector === null ? undefined : (tide.get(s.name)?.thresholds ?? undefined);
        return file && thresholdsFromOptions(opts, file);
      });
    } catch (err) {
      // The check could not run: Nagios' UNKNOWN (3), not a warning.
      const message = err instanceof TideError ? err.message : ((err as Error)?.stack ?? String(err));
      process.stdout.write(
        opts.json ? `${JSON.stringify({ status: 'UNKNOWN', exitCode: 3, error: message })}\n` : `SLOTS UNKNOWN - ${message}\n`,
      );
      process.exitCode = 3;
      return;
    }
    process.stdout.write(opts.json ? `${JSON.stringify(result, null, 2)}\n` : formatCheck(result));
    process.exitCode = result.exitCode;
  });

  withConnection(
    slots
      .command('drop <name>')
      .description('drop an inactive slot after showing what it retains and what is lost; asks first unless --yes')
      .option('--yes', 'do not ask (needed when stdin is not a terminal)'),
  ).action(async (name: string, opts: ConnectionOptions & { yes?: boolean }) => dropSlot(name, opts));
}

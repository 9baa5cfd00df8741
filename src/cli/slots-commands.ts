import { createInterface } from 'node:readline/promises';
import { InvalidArgumentError, type Command } from 'commander';
import { DEFAULT_SLOT_THRESHOLDS } from '../config/slot-thresholds.ts';
import { TideError } from '../errors.ts';
import { type ServerSlots, type SlotFacts } from '../ops/slots.ts';
import { formatBytes, formatDuration, parseBytes, parseDurationSeconds } from '../units.ts';
import { runCheck } from './slots-check.ts';
import { collectSlots, withConnection, withSlotClient, type ConnectionOptions } from './slots-connection.ts';

/**
 * `tide slots` (list), `tide slots check` (Nagios-style thresholds) and `tide slots drop` (issue 5, "Slots").
 * Exit codes of `check` follow the Nagios plugin guidelines
 * (https://nagios-plugins.org/doc/guidelines.html#AEN78): 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (the check
 * itself could not run).
 */

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
  ).action(runCheck);

  withConnection(
    slots
      .command('drop <name>')
      .description('drop an inactive slot after showing what it retains and what is lost; asks first unless --yes')
      .option('--yes', 'do not ask (needed when stdin is not a terminal)'),
  ).action(async (name: string, opts: ConnectionOptions & { yes?: boolean }) => dropSlot(name, opts));
}

import { TideError } from '../errors.ts';
import {
  CONFIG_THRESHOLD_NAMES,
  DEFAULT_SLOT_THRESHOLDS,
  resolveSlotThresholds,
  type GivenThresholds,
  type SlotThresholds,
  type ThresholdNames,
} from '../config/slot-thresholds.ts';
import { checkSlots, type CheckResult, type SlotLevel } from '../ops/slot-watch.ts';
import { collectSlotsWithTide, type ConnectionOptions } from './slots-connection.ts';

/**
 * `tide slots check`: every slot (or the chosen ones) against thresholds, what is wrong and what to do, and a
 * Nagios plugin exit code (https://nagios-plugins.org/doc/guidelines.html#AEN78): 0 OK, 1 WARNING,
 * 2 CRITICAL, 3 UNKNOWN (the check itself could not run). Thresholds: flags over the slot's connector file
 * over the defaults (src/config/slot-thresholds.ts).
 */

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

/** The command's action: prints the verdict (text or --json) and sets the exit code. */
export async function runCheck(opts: CheckOptions): Promise<void> {
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
}

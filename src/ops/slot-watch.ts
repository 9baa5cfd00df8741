import { TideError } from '../errors.ts';
import { log as rootLog, type Logger } from '../log.ts';
import { DEFAULT_SLOT_THRESHOLDS, type SlotThresholds } from '../config/slot-thresholds.ts';
import { formatBytes, formatDuration } from '../units.ts';
import { readSlot, SlotQueryError, type ServerSlots, type SlotClient, type SlotFacts } from './slots.ts';
import { isLost, recoveryCommand, SlotLostError } from '../source/slot-lost.ts';

// The running source checks its own slot for loss (src/source/slot-lost.ts); the watch and `tide slots` reuse it.
export { findLostSlot, recoveryCommand, SlotLostError } from '../source/slot-lost.ts';

/**
 * Slot safety: judge a slot against thresholds (`evaluateSlot`, pure) and watch one slot from a running
 * source (`watchSlot`). The states come from pg_replication_slots.wal_status
 * (https://www.postgresql.org/docs/17/view-pg-replication-slots.html):
 *   reserved / extended  the WAL the slot needs is kept (extended: beyond max_wal_size, still within
 *                        max_slot_wal_keep_size); no problem by itself, the retained-WAL threshold covers size
 *   unreserved           the slot no longer reserves its WAL: files it needs go at the next checkpoint
 *                        (critical when nobody reads the slot, a warning while its consumer may still catch up)
 *   lost                 those files are gone (max_slot_wal_keep_size, https://www.postgresql.org/docs/17/runtime-config-replication.html):
 *                        the slot can never stream again; its consumer needs a fresh copy (for Tide: a new snapshot)
 * PostgreSQL 16+ also invalidates logical slots for other reasons (rows_removed on a standby, …): same outcome.
 */

export type SlotLevel = 'ok' | 'warning' | 'critical';

export type SlotEvalInput = Pick<
  SlotFacts,
  | 'name'
  | 'active'
  | 'activePid'
  | 'lagBytes'
  | 'retainedWalBytes'
  | 'walStatus'
  | 'invalidationReason'
  | 'inactiveSeconds'
  | 'inactiveSinceSource'
  | 'connector'
  | 'connectorFile'
>;

export interface SlotEvaluation {
  level: SlotLevel;
  /** What is wrong, one line each. */
  problems: string[];
  /** What to do about it, one line each, without repeats. */
  advice: string[];
}

/** The level of one slot against the thresholds, what is wrong and what to do (pure). */
export function evaluateSlot(s: SlotEvalInput, t: SlotThresholds, server: { maxSlotWalKeepSize?: string | null } = {}): SlotEvaluation {
  const found: { level: SlotLevel; text: string }[] = [];
  const advice = new Set<string>();
  const consumer =
    s.connector !== null
      ? `its connector ${s.connector} (tide source start ${s.connectorFile ?? `connectors/${s.connector}.json`})`
      : "the slot's consumer";
  const wakeOrDrop = `start ${consumer} so it confirms and the server can release WAL; if nothing will read the slot again, drop it: tide slots drop ${s.name}`;
  const behind = `the consumer (pid ${s.activePid ?? '?'}) is not keeping up: check its errors and throughput${s.connector ? ` (tide source status ${s.connectorFile ?? `connectors/${s.connector}.json`})` : ''}`;

  const over = (value: number | null, warn: number, crit: number, what: string, show: (n: number) => string) => {
    if (value === null || value < Math.min(warn, crit)) return false;
    const level: SlotLevel = value >= crit ? 'critical' : 'warning';
    found.push({ level, text: `${what} ${show(value)} is at or over the ${level} threshold ${show(level === 'critical' ? crit : warn)}` });
    return true;
  };

  if (isLost(s)) {
    const reason = s.invalidationReason ?? 'wal_removed';
    const why =
      reason === 'wal_removed'
        ? `the server removed WAL it still needed${server.maxSlotWalKeepSize && server.maxSlotWalKeepSize !== '-1' ? ` (max_slot_wal_keep_size = ${server.maxSlotWalKeepSize})` : ''}`
        : `the server invalidated it (${reason})`;
    found.push({
      level: 'critical',
      text: `wal_status ${s.walStatus ?? 'lost'}: ${why}; the slot can never stream again and changes were missed`,
    });
    advice.add(`recover with: ${recoveryCommand(s)}`);
  } else {
    const retained = over(s.retainedWalBytes, t.retainedWalWarningBytes, t.retainedWalCriticalBytes, 'retained WAL', formatBytes);
    const lag = over(s.lagBytes, t.lagWarningBytes, t.lagCriticalBytes, 'lag', formatBytes);
    const inactive =
      !s.active &&
      over(
        s.inactiveSeconds,
        t.inactiveWarningSeconds,
        t.inactiveCriticalSeconds,
        s.inactiveSinceSource === 'first-seen' ? 'inactive for at least' : 'inactive for',
        formatDuration,
      );
    if (retained || lag || inactive) advice.add(s.active ? behind : wakeOrDrop);
    if (s.walStatus === 'unreserved') {
      found.push({
        level: s.active ? 'warning' : 'critical',
        text: `wal_status unreserved: WAL this slot still needs goes at the next checkpoint${server.maxSlotWalKeepSize ? ` (max_slot_wal_keep_size = ${server.maxSlotWalKeepSize})` : ''}, and then the slot is lost`,
      });
      advice.add(s.active ? behind : wakeOrDrop);
      advice.add('to buy time, raise max_slot_wal_keep_size (ALTER SYSTEM SET max_slot_wal_keep_size = ...; SELECT pg_reload_conf();)');
    }
  }
  const level: SlotLevel = found.some((p) => p.level === 'critical') ? 'critical' : found.length > 0 ? 'warning' : 'ok';
  return { level, problems: found.map((p) => p.text), advice: [...advice] };
}

/** `tide slots check`: every slot (or the chosen ones) judged, and the worst level as a Nagios status. */
export interface CheckedSlot extends SlotFacts {
  level: SlotLevel;
  /** What this slot was judged by (its connector file's thresholds where it has them). */
  thresholds: SlotThresholds;
  problems: string[];
  advice: string[];
}

export interface CheckResult {
  status: 'OK' | 'WARNING' | 'CRITICAL';
  exitCode: 0 | 1 | 2;
  server: string;
  /** The thresholds of slots without their own (not from a connector file). */
  thresholds: SlotThresholds;
  slots: CheckedSlot[];
  /** Slots asked for with --slot that do not exist. */
  missing: string[];
}

export function checkSlots(
  r: ServerSlots,
  t: SlotThresholds,
  only: { slot?: string[]; tideOnly?: boolean },
  /** A slot's own thresholds (from its connector file), when it has them. */
  ownThresholds: (s: SlotFacts) => SlotThresholds | undefined = () => undefined,
): CheckResult {
  const picked = r.slots.filter((s) => (!only.slot?.length || only.slot.includes(s.name)) && (!only.tideOnly || s.connector !== null));
  const slots = picked.map((s) => {
    const thresholds = ownThresholds(s) ?? t;
    return { ...s, thresholds, ...evaluateSlot(s, thresholds, r) };
  });
  const missing = (only.slot ?? []).filter((n) => !r.slots.some((s) => s.name === n));
  const worst = missing.length || slots.some((s) => s.level === 'critical') ? 2 : slots.some((s) => s.level === 'warning') ? 1 : 0;
  return { status: (['OK', 'WARNING', 'CRITICAL'] as const)[worst], exitCode: worst, server: r.server, thresholds: t, slots, missing };
}

// ---------------------------------------------------------------------------------------------------------------
// The running source watches its own slot

/** The source's slot no longer exists (dropped while the connector ran). */
export class SlotMissingError extends TideError {
  constructor(
    readonly slot: string,
    readonly server: string,
    readonly command: string,
  ) {
    super(
      `replication slot "${slot}" on ${server} no longer exists: it was dropped while the connector used it, so changes may have been missed. Recover with: ${command}`,
    );
    this.name = 'SlotMissingError';
  }
}

/** One look at the slot: the numbers (for metrics) and the evaluation. */
export interface SlotReading extends SlotEvaluation {
  slot: string;
  connector: string | null;
  checkedAt: string;
  active: boolean;
  lagBytes: number | null;
  retainedWalBytes: number | null;
  walStatus: string | null;
  safeWalSizeBytes: number | null;
}

export interface SlotWatchOptions {
  /** A connection the watcher may query (the source's normal, non-replication client will do). */
  client: SlotClient;
  slot: string;
  /** For messages, e.g. "postgres at db1:5432"; never the password. */
  server: string;
  connector?: string;
  connectorFile?: string;
  thresholds?: Partial<SlotThresholds>;
  /** Default 10 s. */
  intervalMs?: number;
  /** While the slot stays over a threshold, the warning is logged again this often (default 5 min). */
  repeatMs?: number;
  log?: Logger;
  /** After every check, with the numbers (for metrics). */
  onReading?: (reading: SlotReading) => void;
  /** When the level changes (the first check counts as a change). */
  onChange?: (reading: SlotReading, previous: SlotLevel | undefined) => void;
  /**
   * Every error of the background loop comes here. SlotLostError and SlotMissingError stop the watch (the
   * source should stop with them); a SlotQueryError (retriable) does not, the next check tries again.
   */
  onError: (err: TideError) => void;
}

export interface SlotWatch {
  /** The last reading, or undefined before the first check finished. */
  readonly last: SlotReading | undefined;
  /** Check now (throws SlotLostError, SlotMissingError or SlotQueryError). */
  check(): Promise<SlotReading>;
  /** Stop the timer and wait for a check in flight. */
  stop(): Promise<void>;
}

/** Look at the slot every `intervalMs`; see SlotWatchOptions. The first check runs at once. */
export function watchSlot(opts: SlotWatchOptions): SlotWatch {
  const thresholds = { ...DEFAULT_SLOT_THRESHOLDS, ...opts.thresholds };
  const log = (opts.log ?? rootLog).child({ slot: opts.slot, ...(opts.connector ? { connector: opts.connector } : {}) });
  const intervalMs = opts.intervalMs ?? 10_000;
  const repeatMs = opts.repeatMs ?? 300_000;
  let server: { version: number; keep: string | null } | undefined;
  let last: SlotReading | undefined;
  let lastLoggedAt = 0;
  let timer: NodeJS.Timeout | undefined;
  let inFlight: Promise<unknown> | undefined;
  let stopped = false;
  const named = { name: opts.slot, connector: opts.connector ?? null, connectorFile: opts.connectorFile ?? null };

  async function check(): Promise<SlotReading> {
    if (!server) {
      try {
        const { rows } = await opts.client.query(
          `SELECT current_setting('server_version_num')::int AS version, current_setting('max_slot_wal_keep_size', true) AS keep`,
        );
        server = { version: Number(rows[0]!.version), keep: (rows[0]!.keep as string | null) ?? null };
      } catch (err) {
        throw new SlotQueryError(opts.server, `reading the server version: ${(err as Error).message}`, { cause: err });
      }
    }
    const facts = await readSlot(opts.client, opts.server, server.version, opts.slot);
    if (!facts) throw new SlotMissingError(opts.slot, opts.server, recoveryCommand(named));
    const slot = { ...facts, connector: named.connector, connectorFile: named.connectorFile };
    if (isLost(slot))
      throw new SlotLostError(
        opts.slot,
        opts.server,
        slot.invalidationReason ?? 'wal_removed',
        recoveryCommand(slot),
        slot.confirmedFlushLsn,
        server.keep,
      );
    const reading: SlotReading = {
      slot: opts.slot,
      connector: named.connector,
      checkedAt: new Date().toISOString(),
      active: slot.active,
      lagBytes: slot.lagBytes,
      retainedWalBytes: slot.retainedWalBytes,
      walStatus: slot.walStatus,
      safeWalSizeBytes: slot.safeWalSizeBytes,
      ...evaluateSlot(slot, thresholds, { maxSlotWalKeepSize: server.keep }),
    };
    const previous = last?.level;
    last = reading;
    report(reading, previous);
    return reading;
  }

  function report(r: SlotReading, previous: SlotLevel | undefined): void {
    const fields = {
      slotLevel: r.level,
      problems: r.problems,
      advice: r.advice,
      lagBytes: r.lagBytes,
      retainedWalBytes: r.retainedWalBytes,
    };
    const now = Date.now();
    if (r.level !== previous) {
      if (r.level !== 'ok') log[r.level === 'critical' ? 'error' : 'warn'](fields, 'replication slot over threshold');
      else if (previous !== undefined) log.info(fields, 'replication slot back within thresholds');
      lastLoggedAt = now;
      opts.onChange?.(r, previous);
    } else if (r.level !== 'ok' && now - lastLoggedAt >= repeatMs) {
      log[r.level === 'critical' ? 'error' : 'warn'](fields, 'replication slot still over threshold');
      lastLoggedAt = now;
    }
    opts.onReading?.(r);
  }

  const tick = async (): Promise<void> => {
    try {
      await check();
    } catch (err) {
      const e = err instanceof TideError ? err : new TideError(`slot watch: ${(err as Error).message}`, { cause: err });
      if (!e.retriable) stopped = true;
      if (e instanceof SlotLostError || e instanceof SlotMissingError) log.error({ err: e }, 'replication slot unusable');
      opts.onError(e);
    }
    // A monitoring timer must not keep the process alive on its own.
    if (!stopped) timer = setTimeout(run, intervalMs).unref();
  };
  const run = () => {
    inFlight = tick();
  };
  run();

  return {
    get last() {
      return last;
    },
    check,
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await inFlight;
    },
  };
}

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { migrate } from '../../src/app/migrate.ts';
import { createLogger } from '../../src/log.ts';
import { SlotLostError, watchSlot, type SlotLevel, type SlotReading } from '../../src/ops/slot-watch.ts';
import type { TideError } from '../../src/errors.ts';
import type { SourceOffsets } from '../../src/source/offset-store.ts';
import { parseLsn } from '../../src/source/lsn.ts';
import { postgresService } from '../../src/stack/postgres.ts';
import { stackContext } from '../../src/stack/context.ts';
import { createTestDatabase } from '../support/db.ts';
import { consumeAll, waitFor } from '../support/kafka.ts';
import { sourceConfig, startSource, writeConnectorFile } from '../support/source.ts';

/** The stack's Postgres port (CI runs the stack on other ports than the defaults). */
const PG_PORT = new URL(process.env.DATABASE_URL ?? 'postgresql://127.0.0.1:55432/').port || '5432';

/**
 * `tide slots`, `slots check`, `slots drop`, `source resnapshot` and the slot watcher, against real slots:
 * on the running stack (a fresh database for this file), and on a throwaway cluster with a tiny
 * max_slot_wal_keep_size where a slot really becomes unreserved and then lost.
 * Every slot a test creates is dropped in afterAll (a leftover slot retains WAL forever).
 */

const BIN = resolve('bin/tide.js');
const MB = 2 ** 20;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run the CLI in `cwd`; stdin is a pipe (not a terminal) fed with `input`. */
function tide(cwd: string, args: string[], input = ''): Promise<Run> {
  return new Promise((done) => {
    const child = execFile(process.execPath, [BIN, ...args], { cwd }, (err, stdout, stderr) =>
      done({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr }),
    );
    child.stdin!.end(input);
  });
}

/** Run the CLI on a pseudo-terminal (util-linux `script`), answering its question with `answer`. */
function tideOnTty(cwd: string, args: string[], answer: string): Promise<Run> {
  const command = [process.execPath, BIN, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  return new Promise((done) => {
    const child = execFile('script', ['-qec', command, '/dev/null'], { cwd }, (err, stdout, stderr) =>
      done({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr }),
    );
    child.stdin!.end(`${answer}\n`);
  });
}

async function slotRow(url: string, name: string): Promise<Record<string, unknown> | undefined> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const { rows } = await c.query(
      `SELECT active, active_pid, restart_lsn::text, wal_status, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint::text AS retained
         FROM pg_replication_slots WHERE slot_name = $1`,
      [name],
    );
    return rows[0] as Record<string, unknown> | undefined;
  } finally {
    await c.end();
  }
}

async function dropSlotIfInactive(url: string, name: string): Promise<void> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    await c.query('SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active', [name]);
  } finally {
    await c.end();
  }
}

const FACT_KEYS = [
  'active',
  'activePid',
  'confirmedFlushLsn',
  'connector',
  'connectorFile',
  'database',
  'inactiveSeconds',
  'inactiveSince',
  'inactiveSinceSource',
  'invalidationReason',
  'lagBytes',
  'name',
  'plugin',
  'restartLsn',
  'retainedWalBytes',
  'safeWalSizeBytes',
  'temporary',
  'type',
  'walStatus',
];

describe('tide slots on the running stack', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let sql: pg.Client;
  const dir = mkdtempSync(join(tmpdir(), 'tide-slots-'));
  const id = Date.now().toString(36);
  // A and B are Tide slots (their connector files are in <dir>/connectors), C belongs to someone else.
  let fileA: ReturnType<typeof sourceConfig>;
  let fileB: ReturnType<typeof sourceConfig>;
  let pathA: string;
  let pathB: string;
  const slotC = `t_slots_foreign_${id}`;
  const pub = `t_slots_pub_${id}`;
  let recv: ChildProcess | undefined;
  const slots = () => [fileA?.config['slot.name'], fileB?.config['slot.name'], slotC].filter((s): s is string => !!s);

  beforeAll(async () => {
    db = await createTestDatabase('slots');
    sql = new pg.Client({ connectionString: db.url });
    await sql.connect();
    mkdirSync(join(dir, 'connectors'));
    fileA = sourceConfig(db.url, 'slotsa');
    fileB = sourceConfig(db.url, 'slotsb');
    pathA = relative(dir, writeConnectorFile(join(dir, 'connectors'), fileA));
    pathB = relative(dir, writeConnectorFile(join(dir, 'connectors'), fileB));
    await sql.query(`CREATE PUBLICATION ${pub} FOR TABLE products`);
    await sql.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [fileA.config['slot.name']]);
    await sql.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [slotC]);
    // About 20 MB of WAL that nobody consumes: both slots retain it.
    await sql.query('CREATE TABLE wal_filler (id int, pad text)');
    await sql.query(`INSERT INTO wal_filler SELECT g, repeat('x', 200) FROM generate_series(1, 80000) g`);
  });

  afterAll(async () => {
    if (recv && recv.exitCode === null && recv.signalCode === null) {
      recv.kill('SIGTERM');
      await new Promise((r) => recv!.once('exit', r));
    }
    await sql?.end();
    if (db) {
      for (const s of slots()) {
        await waitFor(async () => (await slotRow(db.url, s))?.active !== true, `slot ${s} to be released`, 10_000);
        await dropSlotIfInactive(db.url, s);
      }
      await db.drop();
    }
  });

  it('lists every slot with lag, retained WAL and wal_status, marks Tide slots, and prints sizes in MB', async () => {
    const slotA = fileA.config['slot.name'];
    const run = await tide(dir, ['slots', '--json']);
    expect(run.code, run.stderr).toBe(0);
    const r = JSON.parse(run.stdout) as { slots: Record<string, unknown>[] } & Record<string, unknown>;
    expect(Object.keys(r).sort()).toEqual([
      'checkedAt',
      'currentLsn',
      'inRecovery',
      'maxSlotWalKeepSize',
      'server',
      'serverVersionNum',
      'slots',
    ]);
    expect(r).toMatchObject({
      server: `postgres at 127.0.0.1:${PG_PORT}`,
      inRecovery: false,
      // The local stack caps retained WAL (src/stack/postgres.ts), so a forgotten slot cannot fill the disk.
      maxSlotWalKeepSize: '10GB',
    });
    const a = r.slots.find((s) => s.name === slotA)!;
    expect(Object.keys(a).sort()).toEqual(FACT_KEYS);
    expect(a).toMatchObject({
      plugin: 'pgoutput',
      type: 'logical',
      database: db.name,
      temporary: false,
      active: false,
      activePid: null,
      invalidationReason: null,
      connector: fileA.name,
      connectorFile: pathA,
      inactiveSinceSource: 'first-seen',
    });
    expect(['reserved', 'extended']).toContain(a.walStatus);
    expect(a.retainedWalBytes as number).toBeGreaterThan(15 * MB);
    expect(a.lagBytes as number).toBeGreaterThan(15 * MB);
    // The server agrees: same restart LSN, and it retains at least what the CLI saw (WAL only grows).
    const direct = (await slotRow(db.url, slotA))!;
    expect(a.restartLsn).toBe(direct.restart_lsn);
    expect(Number(direct.retained)).toBeGreaterThanOrEqual(a.retainedWalBytes as number);
    expect(r.slots.find((s) => s.name === slotC)).toMatchObject({ connector: null, connectorFile: null, active: false });

    const text = await tide(dir, ['slots']);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(
      new RegExp(`^${slotA} +${fileA.name} +pgoutput +logical +${db.name} +no +\\S+ +\\S+ +[\\d.]+ MB +[\\d.]+ MB `, 'm'),
    );
    expect(text.stdout).toMatch(new RegExp(`^${slotC} +- +pgoutput`, 'm'));
  });

  it('keeps the first time it saw a slot inactive across runs (PostgreSQL < 17 has no inactive_since)', async () => {
    const slotA = fileA.config['slot.name'];
    const read = async () =>
      (JSON.parse((await tide(dir, ['slots', '--json'])).stdout).slots as Record<string, unknown>[]).find((s) => s.name === slotA)!;
    const first = await read();
    const second = await read();
    expect(second.inactiveSince).toBe(first.inactiveSince);
    expect(second.inactiveSeconds as number).toBeGreaterThan(first.inactiveSeconds as number);
    expect(existsSync(join(dir, '.tide', 'slot-activity.json'))).toBe(true);
  });

  it('check: retained WAL over --max-retained is critical (exit 2), over a warning threshold exit 1, else 0', async () => {
    const slotA = fileA.config['slot.name'];
    const server = `postgres at 127.0.0.1:${PG_PORT}`;
    const crit = await tide(dir, ['slots', 'check', '--slot', slotA, '--max-retained', '1MB']);
    expect(crit.code, crit.stderr).toBe(2);
    const lines = crit.stdout.trimEnd().split('\n');
    expect(lines[0]).toBe(`SLOTS CRITICAL - 1 critical, 0 warning, 0 ok (1 slot checked on ${server})`);
    expect(lines[1]).toBe(`CRITICAL ${slotA} (inactive, Tide connector ${fileA.name}):`);
    expect(lines[2]).toMatch(/^ {2}retained WAL [\d.]+ MB is at or over the critical threshold 1\.0 MB$/);
    expect(lines[3]).toBe(
      `  do: start its connector ${fileA.name} (tide source start ${pathA}) so it confirms and the server can release WAL; if nothing will read the slot again, drop it: tide slots drop ${slotA}`,
    );

    const warn = await tide(dir, ['slots', 'check', '--slot', slotA, '--warn-retained', '1MB', '--crit-retained', '10GB']);
    expect(warn.code, warn.stdout).toBe(1);
    expect(warn.stdout).toMatch(new RegExp(`^WARNING ${slotA} `, 'm'));

    const ok = await tide(dir, ['slots', 'check', '--slot', slotA]);
    expect(ok.code, ok.stdout).toBe(0);
    expect(ok.stdout).toBe(`SLOTS OK - 0 critical, 0 warning, 1 ok (1 slot checked on ${server})\n`);

    // Thresholds from the slot's connector file; flags still win over them.
    writeConnectorFile(join(dir, 'connectors'), { ...fileA, config: { ...fileA.config, 'slot.retained.wal.critical': 2 * MB } });
    try {
      const byFile = await tide(dir, ['slots', 'check', '--slot', slotA]);
      expect(byFile.code, byFile.stdout).toBe(2);
      expect(byFile.stdout).toMatch(/^ {2}retained WAL [\d.]+ MB is at or over the critical threshold 2\.0 MB$/m);
      const flagWins = await tide(dir, ['slots', 'check', '--slot', slotA, '--crit-retained', '10GB']);
      expect(flagWins.code, flagWins.stdout).toBe(0);
    } finally {
      writeConnectorFile(join(dir, 'connectors'), fileA);
    }

    const json = await tide(dir, ['slots', 'check', '--slot', slotA, '--slot', 'no_such_slot', '--max-retained', '1MB', '--json']);
    expect(json.code).toBe(2);
    const result = JSON.parse(json.stdout) as Record<string, unknown> & { slots: Record<string, unknown>[] };
    expect(Object.keys(result).sort()).toEqual(['exitCode', 'missing', 'server', 'slots', 'status', 'thresholds']);
    expect(result).toMatchObject({ status: 'CRITICAL', exitCode: 2, missing: ['no_such_slot'] });
    expect(Object.keys(result.slots[0]!).sort()).toEqual([...FACT_KEYS, 'advice', 'level', 'problems', 'thresholds'].sort());
    expect(result.slots[0]).toMatchObject({ name: slotA, level: 'critical' });

    const unknown = await tide(dir, ['slots', 'check', '--url', 'postgresql://tide:tide@127.0.0.1:1/x']);
    expect(unknown.code).toBe(3);
    expect(unknown.stdout).toMatch(
      /^SLOTS UNKNOWN - postgres \(127\.0\.0\.1:1\/x as tide\): nothing accepts connections at 127\.0\.0\.1:1\./,
    );
  });

  it('the slot watcher logs a warning over the threshold and exposes the numbers', async () => {
    const slotA = fileA.config['slot.name'];
    const lines: string[] = [];
    const log = createLogger(
      new Writable({
        write(chunk, _enc, cb) {
          lines.push(String(chunk));
          cb();
        },
      }),
      'info',
    );
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    const changes: [SlotLevel, SlotLevel | undefined][] = [];
    const errors: TideError[] = [];
    let first!: (r: SlotReading) => void;
    const reading = new Promise<SlotReading>((r) => (first = r));
    const watch = watchSlot({
      client,
      slot: slotA,
      server: 'test',
      connector: fileA.name,
      thresholds: { retainedWalWarningBytes: MB },
      intervalMs: 50,
      log,
      onChange: (r, prev) => changes.push([r.level, prev]),
      onReading: (r) => first(r),
      onError: (e) => errors.push(e),
    });
    try {
      const r = await reading;
      expect(r).toMatchObject({ slot: slotA, connector: fileA.name, active: false, level: 'warning' });
      expect(r.retainedWalBytes!).toBeGreaterThan(15 * MB);
      expect(r.lagBytes!).toBeGreaterThan(15 * MB);
      expect(r.problems).toEqual([expect.stringMatching(/^retained WAL [\d.]+ MB is at or over the warning threshold 1\.0 MB$/)]);
      await waitFor(() => (watch.last?.checkedAt ?? '') > r.checkedAt, 'a second check');
    } finally {
      await watch.stop();
      await client.end();
    }
    expect(errors).toEqual([]);
    expect(changes).toEqual([['warning', undefined]]); // logged once, not at every check
    const warnings = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === 'replication slot over threshold');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ level: 40, slotLevel: 'warning', slot: slotA, connector: fileA.name });
  });

  it('drop and resnapshot refuse an active slot, naming the pid and the connector to stop', async () => {
    const slotB = fileB.config['slot.name'];
    await sql.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [slotB]);
    const bindir = process.env.TIDE_PG_BINDIR;
    expect(bindir, 'TIDE_PG_BINDIR (from .stack/env) must point at the PostgreSQL binaries, for pg_recvlogical').toBeTruthy();
    recv = spawn(
      join(bindir!, 'pg_recvlogical'),
      ['-d', db.url, '--slot', slotB, '--start', '--no-loop', '-f', '/dev/null', '-o', 'proto_version=1', '-o', `publication_names=${pub}`],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let recvErr = '';
    recv.stderr!.on('data', (d) => (recvErr += String(d)));
    await waitFor(
      async () => (await slotRow(db.url, slotB))?.active === true || recv!.exitCode !== null,
      'pg_recvlogical to hold the slot',
    );
    expect(recv.exitCode, recvErr).toBeNull();
    try {
      const pid = (await slotRow(db.url, slotB))!.active_pid as number;

      const drop = await tide(dir, ['slots', 'drop', slotB, '--yes']);
      expect(drop.code).toBe(1);
      expect(drop.stderr).toMatch(
        new RegExp(
          `^tide: slot "${slotB}" on postgres at 127\\.0\\.0\\.1:${PG_PORT} is active: pid ${pid} \\(pg_recvlogical from 127\\.0\\.0\\.1, connected since [^)]+\\) is streaming from it\\. Stop the Tide connector ${fileB.name} first \\(SIGTERM or Ctrl-C on its \`tide source start\`\\), then run this again\\.$`,
          'm',
        ),
      );
      const resnap = await tide(dir, ['source', 'resnapshot', pathB, '--yes']);
      expect(resnap.code).toBe(1);
      expect(resnap.stderr).toContain(`slot "${slotB}" on postgres at 127.0.0.1:${PG_PORT} is active: pid ${pid}`);
      expect((await slotRow(db.url, slotB))?.active).toBe(true);
    } finally {
      recv.kill('SIGTERM');
      await waitFor(async () => (await slotRow(db.url, slotB))?.active === false, 'pg_recvlogical to let go of the slot');
    }
  });

  it('drop asks first: refuses without a terminal, cancels on a wrong answer, drops on the name or with --yes', async () => {
    const before = await tide(dir, ['slots', 'drop', slotC]);
    expect(before.code).toBe(1);
    expect(before.stdout).toMatch(
      new RegExp(`^slot ${slotC}: logical, pgoutput, database ${db.name}, wal_status \\w+\\n {2}retained WAL released: [\\d.]+ MB `),
    );
    expect(before.stdout).toContain('its consumer cannot resume from it');
    expect(before.stderr).toBe(
      'tide: refusing to drop the slot without confirmation: stdin is not a terminal. Pass --yes to drop the slot non-interactively.\n',
    );
    expect(await slotRow(db.url, slotC)).toBeDefined();

    const cancelled = await tideOnTty(dir, ['slots', 'drop', slotC], 'no');
    expect(cancelled.code).toBe(1);
    expect(cancelled.stdout).toContain(`Type ${slotC} to drop the slot, anything else cancels:`);
    expect(cancelled.stdout).toContain('cancelled; nothing was changed');
    expect(await slotRow(db.url, slotC)).toBeDefined();

    const confirmed = await tideOnTty(dir, ['slots', 'drop', slotC], slotC);
    expect(confirmed.code, confirmed.stdout).toBe(0);
    expect(confirmed.stdout).toMatch(new RegExp(`dropped slot ${slotC}; [\\d.]+ MB of WAL is no longer retained`));
    expect(await slotRow(db.url, slotC)).toBeUndefined();

    const slotB = fileB.config['slot.name'];
    const yes = await tide(dir, ['slots', 'drop', slotB, '--yes']);
    expect(yes.code, yes.stderr).toBe(0);
    expect(yes.stdout).toContain(`Tide connector ${fileB.name}: it needs a fresh snapshot afterwards. \`tide source resnapshot ${pathB}\``);
    expect(await slotRow(db.url, slotB)).toBeUndefined();

    const missing = await tide(dir, ['slots', 'drop', slotC, '--yes']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(
      new RegExp(`^tide: no replication slot "${slotC}" on postgres at .*Check the name with \`tide slots\`\\.$`, 'm'),
    );
  });

  it('source resnapshot drops the slot and the offsets file, and says what to run next', async () => {
    const slotA = fileA.config['slot.name'];
    const offsets = join('.tide', `${fileA.name}.offsets.json`);
    writeFileSync(join(dir, offsets), JSON.stringify({ slot: slotA, snapshot: { status: 'done' } }));
    const run = await tide(dir, ['source', 'resnapshot', pathA, '--yes']);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain('usable (wal_status');
    expect(run.stdout).toContain(`dropped slot ${slotA}\ndeleted ${offsets}\nnext: tide source start ${pathA}\n`);
    expect(await slotRow(db.url, slotA)).toBeUndefined();
    expect(existsSync(join(dir, offsets))).toBe(false);
  });
});

describe('a slot lost to max_slot_wal_keep_size (throwaway cluster)', () => {
  const port = 56447;
  const stackDir = mkdtempSync(join(tmpdir(), 'tide-slotlost-'));
  const dir = mkdtempSync(join(tmpdir(), 'tide-slotlost-cwd-'));
  const ctx = stackContext({ ...process.env, TIDE_STACK_DIR: stackDir, TIDE_PG_PORT: String(port) }, () => undefined);
  const url = `postgresql://tide:tide@127.0.0.1:${port}/orders`;
  let file: ReturnType<typeof sourceConfig>;
  let path: string;
  let sql: pg.Client;
  const offsetsFile = () => join(dir, '.tide', `${file.name}.offsets.json`);
  const readOffsets = () => JSON.parse(readFileSync(offsetsFile(), 'utf8')) as SourceOffsets;

  beforeAll(async () => {
    const prev = process.env.TIDE_PG_SETTINGS;
    process.env.TIDE_PG_SETTINGS = 'max_slot_wal_keep_size=1MB';
    try {
      await postgresService.start(ctx);
    } finally {
      if (prev === undefined) delete process.env.TIDE_PG_SETTINGS;
      else process.env.TIDE_PG_SETTINGS = prev;
    }
    await postgresService.waitReady(ctx, 60_000);
    await migrate(url);
    sql = new pg.Client({ connectionString: url });
    await sql.connect();
    await sql.query(`INSERT INTO products VALUES ('P1', 'one', 1.00, now()), ('P2', 'two', 2.00, now()), ('P3', 'three', 3.00, now())`);
    mkdirSync(join(dir, 'connectors'));
    file = sourceConfig(url, 'slotlost', { 'table.include.list': 'public\\.products' });
    path = relative(dir, writeConnectorFile(join(dir, 'connectors'), file));
  });

  afterAll(async () => {
    await sql?.end();
    await postgresService.stop(ctx); // the whole cluster goes, with its slots
    rmSync(stackDir, { recursive: true, force: true });
  });

  it('check reports unreserved, then lost with the recovery command; the watcher stops with SlotLostError; resnapshot recovers', async () => {
    const slot = file.config['slot.name'];
    const topic = `${file.config['topic.prefix']}.public.products`;

    // 1. The connector snapshots and streams, then stops: its slot stays behind, inactive.
    const firstRun = await startSource(file, join(dir, '.tide'));
    expect(await firstRun.stop()).toBe('stopped');
    const firstSnapshot = readOffsets().snapshot!;
    expect(firstSnapshot.status).toBe('done');

    // 2. WAL moves on by three segments: more than max_slot_wal_keep_size, so the slot is unreserved ...
    for (let i = 0; i < 3; i++) {
      await sql.query(`INSERT INTO customers (id, email, country) VALUES (${1000 + i}, 'c${i}@example.com', 'X')`);
      await sql.query('SELECT pg_switch_wal()');
    }
    const unreserved = await tide(dir, ['slots', 'check', '--url', url, '--slot', slot]);
    expect(unreserved.code, unreserved.stdout).toBe(2);
    expect(unreserved.stdout).toContain(
      `  wal_status unreserved: WAL this slot still needs goes at the next checkpoint (max_slot_wal_keep_size = 1MB), and then the slot is lost\n`,
    );
    expect(unreserved.stdout).toContain('  do: to buy time, raise max_slot_wal_keep_size');

    // 3. ... and the next checkpoint removes that WAL: lost.
    await sql.query('CHECKPOINT');
    const lost = await tide(dir, ['slots', 'check', '--url', url, '--slot', slot]);
    expect(lost.code, lost.stdout).toBe(2);
    expect(lost.stdout).toBe(
      [
        `SLOTS CRITICAL - 1 critical, 0 warning, 0 ok (1 slot checked on postgres at 127.0.0.1:${port})`,
        `CRITICAL ${slot} (inactive, Tide connector ${file.name}):`,
        `  wal_status lost: the server removed WAL it still needed (max_slot_wal_keep_size = 1MB); the slot can never stream again and changes were missed`,
        `  do: recover with: tide source resnapshot ${path}`,
        '',
      ].join('\n'),
    );
    const listed = JSON.parse((await tide(dir, ['slots', '--url', url, '--json'])).stdout) as { slots: Record<string, unknown>[] };
    expect(listed.slots.find((s) => s.name === slot)).toMatchObject({
      walStatus: 'lost',
      invalidationReason: 'wal_removed',
      retainedWalBytes: null,
      safeWalSizeBytes: null,
    });

    // 4. A running source's watcher stops with the typed error and the one recovery command.
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    const errors: TideError[] = [];
    const watch = watchSlot({
      client,
      slot,
      server: `postgres at 127.0.0.1:${port}`,
      connector: file.name,
      connectorFile: path,
      intervalMs: 20,
      log: createLogger(new Writable({ write: (_c, _e, cb) => cb() })),
      onError: (e) => errors.push(e),
    });
    await waitFor(() => errors.length > 0, 'the watcher to report the lost slot');
    await watch.stop();
    await client.end();
    expect(errors).toHaveLength(1); // it stopped: a lost slot is not retried
    const err = errors[0]!;
    expect(err).toBeInstanceOf(SlotLostError);
    expect(err.retriable).toBe(false);
    expect(err.message).toBe(
      `replication slot "${slot}" on postgres at 127.0.0.1:${port} is lost (wal_status=lost): the server removed WAL the slot still needed, because it retained more than max_slot_wal_keep_size (1MB). Changes after LSN ${(await slotConfirmed(url, slot)) ?? '?'} can no longer be streamed, so the connector needs a fresh snapshot. Recover with: tide source resnapshot ${path}`,
    );
    expect((err as SlotLostError).command).toBe(`tide source resnapshot ${path}`);
    expect(watch.last).toBeUndefined();

    // 5. Starting the connector on the lost slot fails at once with the same error (exit 2), not Postgres' raw one.
    const start = await tide(dir, ['source', 'start', path, '--http-port', '0']);
    expect(start.code, start.stderr).toBe(2);
    expect(start.stderr).toContain(`tide: ${err.message}\n`);

    // 6. The recovery command: drops the lost slot and the offsets ...
    const recover = await tide(dir, ['source', 'resnapshot', path, '--yes']);
    expect(recover.code, recover.stderr).toBe(0);
    expect(recover.stdout).toContain(`the slot is LOST (wal_removed): it can never stream again`);
    expect(recover.stdout).toContain(
      `dropped slot ${slot}\ndeleted ${join('.tide', `${file.name}.offsets.json`)}\nnext: tide source start ${path}\n`,
    );
    expect(await slotRow(url, slot)).toBeUndefined();
    expect(existsSync(offsetsFile())).toBe(false);

    // 7. ... so the next start creates a new slot and snapshots again: every row is in Kafka twice as a snapshot read.
    const secondRun = await startSource(file, join(dir, '.tide'));
    try {
      expect((await slotRow(url, slot))?.wal_status).toBe('reserved');
    } finally {
      expect(await secondRun.stop()).toBe('stopped');
    }
    const second = readOffsets().snapshot!;
    expect(second.status).toBe('done');
    expect(parseLsn(second.consistentLsn)).toBeGreaterThan(parseLsn(firstSnapshot.consistentLsn));
    const reads = (await consumeAll([topic])).filter((e) => e.value?.op === 'r');
    expect(reads.map((e) => (e.key as { product_no: string }).product_no).sort()).toEqual(['P1', 'P1', 'P2', 'P2', 'P3', 'P3']);
  });
});

async function slotConfirmed(url: string, slot: string): Promise<string | null> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const { rows } = await c.query<{ lsn: string | null }>(
      'SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1',
      [slot],
    );
    return rows[0]?.lsn ?? null;
  } finally {
    await c.end();
  }
}

import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { formatCheck, thresholdsFromOptions } from '../../src/cli/slots-check.ts';
import { formatSlots } from '../../src/cli/slots-commands.ts';
import { formatBytes, formatDuration, parseBytes, parseDurationSeconds } from '../../src/units.ts';
import { DEFAULT_SLOT_THRESHOLDS } from '../../src/config/slot-thresholds.ts';
import { checkSlots } from '../../src/ops/slot-watch.ts';
import {
  attachTideConnectors,
  deriveInactiveSince,
  findTideSlots,
  slotFromRow,
  slotsSql,
  type ServerSlots,
  type SlotFacts,
} from '../../src/ops/slots.ts';

const MB = 2 ** 20;

function facts(over: Partial<SlotFacts> = {}): SlotFacts {
  return {
    ...slotFromRow(
      {
        name: 'tide_orders',
        plugin: 'pgoutput',
        type: 'logical',
        database: 'orders',
        temporary: false,
        active: false,
        active_pid: null,
        restart_lsn: '0/1000',
        confirmed_flush_lsn: '0/2000',
        lag_bytes: '100',
        retained_bytes: '200',
        wal_status: 'reserved',
        safe_wal_size: null,
        invalidation_reason: null,
        inactive_since: null,
      },
      new Date('2026-01-01T00:00:00Z'),
    ),
    ...over,
  };
}

describe('slotsSql', () => {
  it('reads columns the server has and NULL for the ones it lacks', () => {
    const v12 = slotsSql(120000);
    expect(v12).toContain('NULL::text AS wal_status');
    expect(v12).toContain('NULL::text AS safe_wal_size');
    expect(v12).toContain('NULL::timestamptz AS inactive_since');
    expect(v12).not.toContain('conflicting');
    const v15 = slotsSql(150018);
    expect(v15).toContain('s.wal_status AS wal_status');
    expect(v15).toContain(`CASE WHEN s.wal_status = 'lost' THEN 'wal_removed' END AS invalidation_reason`);
    expect(v15).toContain('NULL::timestamptz AS inactive_since');
    expect(slotsSql(160004)).toContain("WHEN s.conflicting THEN 'rows_removed'");
    const v17 = slotsSql(170002);
    expect(v17).toContain('s.inactive_since AS inactive_since');
    expect(v17).toContain('s.invalidation_reason AS invalidation_reason');
  });

  it('takes the slot name as $1 for one slot, and refuses servers before 10', () => {
    expect(slotsSql(150000, true)).toContain('WHERE s.slot_name = $1');
    expect(slotsSql(150000)).not.toContain('$1');
    expect(() => slotsSql(90600)).toThrow(/needs 10 or later/);
  });
});

describe('slotFromRow', () => {
  it('turns text numbers into numbers and the server inactive_since into seconds', () => {
    const s = slotFromRow(
      { name: 'a', type: 'logical', active: false, lag_bytes: '5', retained_bytes: '7', inactive_since: new Date('2025-12-31T23:00:00Z') },
      new Date('2026-01-01T00:00:00Z'),
    );
    expect([s.lagBytes, s.retainedWalBytes, s.inactiveSeconds, s.inactiveSinceSource]).toEqual([5, 7, 3600, 'server']);
    expect(slotFromRow({ name: 'b', type: 'physical', active: true, inactive_since: new Date() }, new Date()).inactiveSince).toBeNull();
  });
});

describe('units', () => {
  it('parses sizes the way postgresql.conf writes them (1024-based), and rejects anything else', () => {
    expect(parseBytes('1MB')).toBe(MB);
    expect(parseBytes('1.5 GB')).toBe(1.5 * 2 ** 30);
    expect(parseBytes('512kb')).toBe(512 * 1024);
    expect(parseBytes('2GiB')).toBe(2 * 2 ** 30);
    expect(parseBytes('4096')).toBe(4096);
    expect(parseBytes('1XB')).toBeNaN();
    expect(parseBytes('-1MB')).toBeNaN();
    expect(parseBytes('')).toBeNaN();
  });

  it('formats sizes like pg_size_pretty', () => {
    expect([0, 1023, 1024, 20 * MB + 200_000, 3.25 * 2 ** 30, 150 * MB, null].map(formatBytes)).toEqual([
      '0 B',
      '1023 B',
      '1.0 kB',
      '20.2 MB',
      '3.3 GB',
      '150 MB',
      '-',
    ]);
  });

  it('parses and formats durations', () => {
    expect(['90', '90s', '15m', '6h', '2d', '1h30m', '1h 30m'].map(parseDurationSeconds)).toEqual([90, 90, 900, 21600, 172800, 5400, 5400]);
    expect(parseDurationSeconds('soon')).toBeNaN();
    expect(parseDurationSeconds('1h soon')).toBeNaN();
    expect([45, 720, 3600, 11100, 86400, 187200, null].map(formatDuration)).toEqual(['45s', '12m', '1h', '3h 5m', '1d', '2d 4h', '-']);
  });
});

describe('Tide slots', () => {
  it('come from source connector files (env references resolved; sink files skipped) and status files', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tide-slots-unit-'));
    mkdirSync(join(dir, 'connectors'));
    mkdirSync(join(dir, '.tide'));
    const src = {
      name: 'orders-source',
      config: { 'connector.class': 'tide.PostgresSource', 'slot.name': '${env:SLOT:-tide_x}', 'database.dbname': 'orders' },
    };
    writeFileSync(join(dir, 'connectors', 'orders-source.json'), JSON.stringify(src));
    writeFileSync(
      join(dir, 'connectors', 'dbz.json'),
      JSON.stringify({ name: 'dbz', config: { 'database.hostname': 'h', 'database.dbname': 'd' } }),
    );
    writeFileSync(
      join(dir, 'connectors', 'lake.json'),
      JSON.stringify({ name: 'lake', config: { 'connector.class': 'tide.DeltaLakeSink' } }),
    );
    writeFileSync(join(dir, 'connectors', 'source-connector.schema.json'), '{}');
    writeFileSync(join(dir, '.tide', 'other.status.json'), JSON.stringify({ name: 'other', slot: 'other_slot', pid: 1, updatedAt: 'x' }));
    const map = findTideSlots({ connectorsDir: join(dir, 'connectors'), stateDir: join(dir, '.tide'), env: { SLOT: 'tide_env' } });
    expect([...map.keys()].sort()).toEqual(['other_slot', 'tide', 'tide_env']);
    expect(map.get('tide_env')).toMatchObject({
      connector: 'orders-source',
      database: 'orders',
      file: join(dir, 'connectors', 'orders-source.json'),
    });
    expect(map.get('tide')).toMatchObject({ connector: 'dbz', database: 'd' }); // slot.name defaults to "tide"
    expect(map.get('other_slot')).toMatchObject({ connector: 'other', file: null });

    const slots = [facts({ name: 'tide_env' }), facts({ name: 'tide', database: 'elsewhere' }), facts({ name: 'nobody' })];
    attachTideConnectors(slots, map);
    expect(slots.map((s) => s.connector)).toEqual(['orders-source', null, null]); // same name on another database is not ours
  });

  it('a connector file that is not JSON is reported, not skipped', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tide-slots-unit-'));
    writeFileSync(join(dir, 'broken.json'), '{ nope');
    expect(() => findTideSlots({ connectorsDir: dir })).toThrow(/broken\.json cannot be read as JSON/);
  });
});

describe('deriveInactiveSince', () => {
  const server = 'postgres at h:1/db';
  const at = (iso: string, slots: SlotFacts[]) => ({ server, checkedAt: iso, slots });

  it('records the first time a slot is seen idle, keeps it while the LSNs stay, and restarts when they move', () => {
    const path = join(mkdtempSync(join(tmpdir(), 'tide-activity-')), 'sub', 'slot-activity.json');
    const first = [facts()];
    deriveInactiveSince(at('2026-01-01T00:00:00.000Z', first), new Map(), path);
    expect(first[0]).toMatchObject({ inactiveSince: '2026-01-01T00:00:00.000Z', inactiveSeconds: 0, inactiveSinceSource: 'first-seen' });

    const later = [facts()];
    deriveInactiveSince(at('2026-01-01T02:00:00.000Z', later), new Map(), path);
    expect(later[0]).toMatchObject({ inactiveSince: '2026-01-01T00:00:00.000Z', inactiveSeconds: 7200 });

    const moved = [facts({ confirmedFlushLsn: '0/3000' })];
    deriveInactiveSince(at('2026-01-01T03:00:00.000Z', moved), new Map(), path);
    expect(moved[0]).toMatchObject({ inactiveSince: '2026-01-01T03:00:00.000Z', inactiveSeconds: 0 });
  });

  it('forgets active and dropped slots of this server only', () => {
    const path = join(mkdtempSync(join(tmpdir(), 'tide-activity-')), 'slot-activity.json');
    writeFileSync(
      path,
      JSON.stringify({
        version: 1,
        slots: { 'other server#a': { firstSeenInactive: 'x', restartLsn: null, confirmedFlushLsn: null } },
      }),
    );
    deriveInactiveSince(at('2026-01-01T00:00:00.000Z', [facts({ name: 'a' }), facts({ name: 'b' })]), new Map(), path);
    deriveInactiveSince(at('2026-01-01T01:00:00.000Z', [facts({ name: 'a', active: true, activePid: 5 })]), new Map(), path);
    const kept = JSON.parse(readFileSync(path, 'utf8')) as { slots: Record<string, unknown> };
    expect(Object.keys(kept.slots).sort()).toEqual(['other server#a']);
  });

  it("uses a stopped Tide connector's last status time, and never overrides the server's own inactive_since", () => {
    const path = join(mkdtempSync(join(tmpdir(), 'tide-activity-')), 'slot-activity.json');
    const status = { name: 'orders-source', slot: 'tide_orders', pid: 99, updatedAt: '2025-12-31T22:00:00.000Z' } as never;
    const tide = new Map([['tide_orders', { connector: 'orders-source', file: null, database: null, status, thresholds: null }]]);
    const dead = [facts({ connector: 'orders-source' })];
    deriveInactiveSince(at('2026-01-01T00:00:00.000Z', dead), tide, path, () => false);
    expect(dead[0]).toMatchObject({ inactiveSinceSource: 'connector-status', inactiveSeconds: 7200 });

    const alive = [facts({ connector: 'orders-source' })];
    deriveInactiveSince(at('2026-01-01T00:00:00.000Z', alive), tide, path, () => true);
    expect(alive[0]!.inactiveSinceSource).toBe('first-seen');

    const fromServer = [facts({ inactiveSince: '2025-12-01T00:00:00.000Z', inactiveSeconds: 1, inactiveSinceSource: 'server' })];
    deriveInactiveSince(at('2026-01-01T00:00:00.000Z', fromServer), tide, path, () => false);
    expect(fromServer[0]).toMatchObject({ inactiveSince: '2025-12-01T00:00:00.000Z', inactiveSinceSource: 'server' });
  });

  it('an unreadable state file is an error that names it and says what to do', () => {
    const path = join(mkdtempSync(join(tmpdir(), 'tide-activity-')), 'slot-activity.json');
    writeFileSync(path, 'garbage');
    expect(() => deriveInactiveSince(at('2026-01-01T00:00:00.000Z', [facts()]), new Map(), path)).toThrow(
      /slot-activity\.json is not valid JSON .*Delete it; it is rebuilt/,
    );
  });
});

describe('tide slots check', () => {
  const server: ServerSlots = {
    server: 'postgres at h:1/db',
    serverVersionNum: 150018,
    currentLsn: '0/9000',
    inRecovery: false,
    maxSlotWalKeepSize: '-1',
    checkedAt: '2026-01-01T00:00:00.000Z',
    slots: [
      facts({ name: 'big', retainedWalBytes: 20 * MB, connector: 'orders-source', connectorFile: 'c.json' }),
      facts({ name: 'small', retainedWalBytes: 10 }),
    ],
  };

  it('--max-X is the critical threshold and pulls the warning down with it; a warning above critical is refused', () => {
    expect(thresholdsFromOptions({ stateDir: '', connectorsDir: '', maxRetained: MB })).toMatchObject({
      retainedWalWarningBytes: MB,
      retainedWalCriticalBytes: MB,
    });
    expect(thresholdsFromOptions({ stateDir: '', connectorsDir: '' })).toEqual(DEFAULT_SLOT_THRESHOLDS);
    expect(() => thresholdsFromOptions({ stateDir: '', connectorsDir: '', warnLag: 2 * MB, maxLag: MB })).toThrow(
      /--warn-lag: 2\.0 MB is above the critical threshold 1\.0 MB \(--crit-lag\): set --crit-lag to at least 2\.0 MB, or lower --warn-lag/,
    );
  });

  it('exits 2 / 1 / 0 by the worst slot, and names the slot with what to do', () => {
    const crit = checkSlots(server, thresholdsFromOptions({ stateDir: '', connectorsDir: '', maxRetained: MB }), {});
    expect([crit.status, crit.exitCode]).toEqual(['CRITICAL', 2]);
    expect(formatCheck(crit)).toMatchInlineSnapshot(`
      "SLOTS CRITICAL - 1 critical, 0 warning, 1 ok (2 slots checked on postgres at h:1/db)
      CRITICAL big (inactive, Tide connector orders-source):
        retained WAL 20.0 MB is at or over the critical threshold 1.0 MB
        do: start its connector orders-source (tide source start c.json) so it confirms and the server can release WAL; if nothing will read the slot again, drop it: tide slots drop big
      "
    `);
    const warn = checkSlots(server, thresholdsFromOptions({ stateDir: '', connectorsDir: '', warnRetained: MB }), {});
    expect([warn.status, warn.exitCode]).toEqual(['WARNING', 1]);
    const ok = checkSlots(server, thresholdsFromOptions({ stateDir: '', connectorsDir: '', maxRetained: MB }), { slot: ['small'] });
    expect([ok.status, ok.exitCode, ok.slots.map((s) => s.name)]).toEqual(['OK', 0, ['small']]);
  });

  it("judges a Tide slot by its connector file's thresholds, with flags over the file", () => {
    const dir = mkdtempSync(join(tmpdir(), 'tide-slots-unit-'));
    const config = { 'connector.class': 'tide.PostgresSource', 'slot.name': 'big', 'slot.retained.wal.critical': '${env:CRIT}' };
    writeFileSync(join(dir, 'orders-source.json'), JSON.stringify({ name: 'orders-source', config }));
    const tide = findTideSlots({ connectorsDir: dir, env: { CRIT: '10MB' } });
    expect(tide.get('big')!.thresholds).toEqual({ retainedWalCriticalBytes: 10 * MB });
    const own = (o: Parameters<typeof thresholdsFromOptions>[0]) => (s: SlotFacts) => {
      const file = tide.get(s.name)?.thresholds;
      return file ? thresholdsFromOptions(o, file) : undefined;
    };
    const opts = { stateDir: '', connectorsDir: dir };
    const byFile = checkSlots(server, thresholdsFromOptions(opts), {}, own(opts));
    expect([byFile.status, byFile.slots.map((s) => [s.name, s.level, s.thresholds.retainedWalCriticalBytes])]).toEqual([
      'CRITICAL',
      [
        ['big', 'critical', 10 * MB],
        ['small', 'ok', DEFAULT_SLOT_THRESHOLDS.retainedWalCriticalBytes],
      ],
    ]);
    const flagged = { ...opts, critRetained: 100 * MB };
    expect(checkSlots(server, thresholdsFromOptions(flagged), {}, own(flagged)).status).toBe('OK');
    expect(() => thresholdsFromOptions({ ...opts, warnRetained: 50 * MB }, tide.get('big')!.thresholds!)).toThrow(
      /--warn-retained: 50\.0 MB is above the critical threshold 10\.0 MB \(slot\.retained\.wal\.critical \(connector file\)\)/,
    );

    writeFileSync(
      join(dir, 'orders-source.json'),
      JSON.stringify({ name: 'orders-source', config: { ...config, 'slot.lag.warning': 'x' } }),
    );
    expect(() => findTideSlots({ connectorsDir: dir, env: { CRIT: '10MB' } })).toThrow(
      /orders-source\.json: slot\.lag\.warning: "x" is not a size/,
    );
  });

  it('--slot of a slot that does not exist is critical; --tide-only keeps Tide slots', () => {
    const missing = checkSlots(server, DEFAULT_SLOT_THRESHOLDS, { slot: ['gone'] });
    expect([missing.exitCode, missing.missing]).toEqual([2, ['gone']]);
    expect(formatCheck(missing)).toContain('CRITICAL gone: the slot does not exist');
    expect(checkSlots(server, DEFAULT_SLOT_THRESHOLDS, { tideOnly: true }).slots.map((s) => s.name)).toEqual(['big']);
  });

  it('the listing shows sizes in MB/GB and marks derived inactive times', () => {
    const text = formatSlots({
      ...server,
      slots: [facts({ name: 'big', retainedWalBytes: 20 * MB, inactiveSeconds: 60, inactiveSinceSource: 'first-seen' })],
    });
    expect(text).toMatch(
      /^1 replication slot on postgres at h:1\/db \(PostgreSQL 15\.18\), current WAL LSN 0\/9000, max_slot_wal_keep_size unlimited/,
    );
    expect(text).toMatch(/big +- +pgoutput +logical +orders +no +0\/1000 +0\/2000 +100 B +20\.0 MB +reserved +- +≥ 1m/);
    expect(text).toContain('≥: PostgreSQL < 17 records no inactive time');
  });
});

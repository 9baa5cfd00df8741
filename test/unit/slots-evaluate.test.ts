import { describe, expect, it } from 'vitest';
import { DEFAULT_SLOT_THRESHOLDS, type SlotThresholds } from '../../src/config/slot-thresholds.ts';
import { evaluateSlot, recoveryCommand, type SlotEvalInput } from '../../src/ops/slot-watch.ts';

const MB = 2 ** 20;
const GB = 2 ** 30;
const T: SlotThresholds = {
  retainedWalWarningBytes: 100 * MB,
  retainedWalCriticalBytes: GB,
  lagWarningBytes: 50 * MB,
  lagCriticalBytes: 500 * MB,
  inactiveWarningSeconds: 3600,
  inactiveCriticalSeconds: 86400,
};

function slot(over: Partial<SlotEvalInput> = {}): SlotEvalInput {
  return {
    name: 'tide_orders',
    active: false,
    activePid: null,
    lagBytes: 0,
    retainedWalBytes: 0,
    walStatus: 'reserved',
    invalidationReason: null,
    inactiveSeconds: 10,
    inactiveSinceSource: 'server',
    connector: 'orders-source',
    connectorFile: 'connectors/orders-source.json',
    ...over,
  };
}

describe('evaluateSlot', () => {
  it('is ok under every threshold', () => {
    expect(evaluateSlot(slot({ retainedWalBytes: 99 * MB, lagBytes: 49 * MB, inactiveSeconds: 3599 }), T)).toEqual({
      level: 'ok',
      problems: [],
      advice: [],
    });
  });

  it('warns at the warning threshold and is critical at the critical one (retained WAL)', () => {
    expect(evaluateSlot(slot({ retainedWalBytes: 100 * MB }), T).level).toBe('warning');
    expect(evaluateSlot(slot({ retainedWalBytes: GB - 1 }), T).level).toBe('warning');
    const crit = evaluateSlot(slot({ retainedWalBytes: GB }), T);
    expect(crit.level).toBe('critical');
    expect(crit.problems).toEqual(['retained WAL 1.0 GB is at or over the critical threshold 1.0 GB']);
  });

  it('tells an inactive Tide slot to start its connector or drop the slot', () => {
    expect(evaluateSlot(slot({ retainedWalBytes: 200 * MB }), T)).toMatchInlineSnapshot(`
      {
        "advice": [
          "start its connector orders-source (tide source start connectors/orders-source.json) so it confirms and the server can release WAL; if nothing will read the slot again, drop it: tide slots drop tide_orders",
        ],
        "level": "warning",
        "problems": [
          "retained WAL 200 MB is at or over the warning threshold 100 MB",
        ],
      }
    `);
  });

  it('tells an active slot that its consumer is behind, and ignores inactive time while active', () => {
    const e = evaluateSlot(slot({ active: true, activePid: 4242, lagBytes: 600 * MB, inactiveSeconds: 999_999, connector: null }), T);
    expect(e.level).toBe('critical');
    expect(e.problems).toEqual(['lag 600 MB is at or over the critical threshold 500 MB']);
    expect(e.advice).toEqual(['the consumer (pid 4242) is not keeping up: check its errors and throughput']);
  });

  it('judges time inactive, and says "at least" when it is only the first time seen idle', () => {
    expect(evaluateSlot(slot({ inactiveSeconds: 7200 }), T).problems).toEqual(['inactive for 2h is at or over the warning threshold 1h']);
    expect(evaluateSlot(slot({ inactiveSeconds: 90000, inactiveSinceSource: 'first-seen' }), T).problems).toEqual([
      'inactive for at least 1d 1h is at or over the critical threshold 1d',
    ]);
    expect(evaluateSlot(slot({ inactiveSeconds: null, inactiveSinceSource: null }), T).level).toBe('ok');
  });

  it('takes the worst level of several problems and gives each advice once', () => {
    const e = evaluateSlot(slot({ retainedWalBytes: 2 * GB, lagBytes: 60 * MB, inactiveSeconds: 4000 }), T);
    expect(e.level).toBe('critical');
    expect(e.problems).toHaveLength(3);
    expect(e.advice).toHaveLength(1);
  });

  it('wal_status unreserved: critical when nobody reads the slot, a warning while its consumer may catch up', () => {
    const idle = evaluateSlot(slot({ walStatus: 'unreserved' }), T, { maxSlotWalKeepSize: '1MB' });
    expect(idle.level).toBe('critical');
    expect(idle.problems).toEqual([
      'wal_status unreserved: WAL this slot still needs goes at the next checkpoint (max_slot_wal_keep_size = 1MB), and then the slot is lost',
    ]);
    expect(idle.advice[1]).toMatch(/raise max_slot_wal_keep_size/);
    expect(evaluateSlot(slot({ walStatus: 'unreserved', active: true, activePid: 7 }), T).level).toBe('warning');
  });

  it('wal_status extended alone is not a problem (the retained-WAL threshold judges size)', () => {
    expect(evaluateSlot(slot({ walStatus: 'extended' }), T).level).toBe('ok');
  });

  it('wal_status lost: critical with the one recovery command, whatever the numbers', () => {
    const e = evaluateSlot(slot({ walStatus: 'lost', retainedWalBytes: null, invalidationReason: 'wal_removed' }), T, {
      maxSlotWalKeepSize: '1MB',
    });
    expect(e).toMatchInlineSnapshot(`
      {
        "advice": [
          "recover with: tide source resnapshot connectors/orders-source.json",
        ],
        "level": "critical",
        "problems": [
          "wal_status lost: the server removed WAL it still needed (max_slot_wal_keep_size = 1MB); the slot can never stream again and changes were missed",
        ],
      }
    `);
  });

  it('other invalidations (PostgreSQL 16+: rows_removed on a standby, …) count as lost too', () => {
    const e = evaluateSlot(slot({ walStatus: 'reserved', invalidationReason: 'rows_removed', connector: null, connectorFile: null }), T);
    expect(e.level).toBe('critical');
    expect(e.problems[0]).toMatch(/invalidated it \(rows_removed\)/);
    expect(e.advice).toEqual([
      "recover with: tide slots drop tide_orders --yes, then re-initialise the slot's consumer from a fresh copy of the data (it missed changes)",
    ]);
  });

  it('servers before 13 have no wal_status: only the numbers are judged', () => {
    expect(evaluateSlot(slot({ walStatus: null, retainedWalBytes: 2 * GB }), DEFAULT_SLOT_THRESHOLDS).level).toBe('warning');
  });
});

describe('recoveryCommand', () => {
  it('names the connector file, or guesses connectors/<name>.json, or tells a foreign slot to re-sync', () => {
    expect(recoveryCommand({ name: 's', connector: 'c', connectorFile: '/x/c.json' })).toBe('tide source resnapshot /x/c.json');
    expect(recoveryCommand({ name: 's', connector: 'c', connectorFile: null })).toBe('tide source resnapshot connectors/c.json');
    expect(recoveryCommand({ name: 's', connector: null, connectorFile: null })).toMatch(/^tide slots drop s --yes, then re-initialise/);
  });
});

import { describe, expect, it } from 'vitest';
import { parseMix, DEFAULT_MIX } from '../../src/app/traffic.ts';
import { orderAttributes } from '../../src/app/replay.ts';
import { parseDuration } from '../../src/cli/options.ts';
import { listMigrations } from '../../src/app/migrate.ts';

describe('traffic mix', () => {
  it('defaults when not given', () => expect(parseMix(undefined)).toEqual(DEFAULT_MIX));
  it('zeroes unnamed operations', () => {
    const mix = parseMix('new-order=5,email=1');
    expect(mix['new-order']).toBe(5);
    expect(mix.email).toBe(1);
    expect(mix.status).toBe(0);
  });
  it('names the bad operation and lists the allowed ones', () => {
    expect(() => parseMix('new-order=1,refund=2')).toThrowErrorMatchingInlineSnapshot(
      `[ConfigError: --mix: unknown operation "refund". Allowed: new-order, status, item-quantity, attributes, cancel, delete-draft, price, email]`,
    );
  });
  it('rejects bad weights', () => {
    expect(() => parseMix('status=-1')).toThrow(/weight of "status" must be a number >= 0/);
    expect(() => parseMix('status=0')).toThrow(/at least one operation/);
  });
});

describe('replay attributes', () => {
  it('are deterministic per transaction', () => {
    expect(orderAttributes('581482')).toEqual(orderAttributes('581482'));
    expect(orderAttributes('581482').source).toBe('replay');
  });
});

describe('durations', () => {
  it.each([
    ['250ms', 250],
    ['30s', 30_000],
    ['5m', 300_000],
    ['2', 2000],
  ])('%s is %d ms', (text, ms) => expect(parseDuration(text)).toBe(ms));
  it('rejects junk', () => expect(() => parseDuration('soon')).toThrow(/not a duration/));
});

describe('migrations', () => {
  it('are listed in order with sha256 checksums, as Prisma records them', () => {
    const ms = listMigrations();
    expect(ms.length).toBeGreaterThan(0);
    expect(ms.map((m) => m.name)).toEqual([...ms.map((m) => m.name)].sort());
    for (const m of ms) expect(m.checksum).toMatch(/^[0-9a-f]{64}$/);
  });
});

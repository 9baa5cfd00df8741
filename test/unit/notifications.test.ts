import { describe, expect, it } from 'vitest';
import { customerName, dueBy, rateAt } from '../../src/app/notifications.ts';

describe('the notification generator schedule', () => {
  const opts = { rate: 100, burst: { rate: 1000, everyMs: 10_000, forMs: 2000 } };

  it('runs at the burst rate at the start of each period and the steady rate otherwise', () => {
    expect([rateAt(0, opts), rateAt(1999, opts), rateAt(2000, opts), rateAt(10_500, opts)]).toEqual([1000, 1000, 100, 1000]);
    expect(rateAt(5000, { rate: 100 })).toBe(100);
  });

  it('calls for the integral of the rate', () => {
    expect(dueBy(1000, { rate: 100 })).toBe(100);
    expect(dueBy(2000, opts)).toBe(2000);
    expect(dueBy(10_000, opts)).toBe(2800);
    expect(dueBy(11_000, opts)).toBe(3800);
    expect(dueBy(13_000, opts)).toBe(4900);
  });

  it('names customers stably', () => {
    expect(customerName(1)).toBe(customerName(1));
    expect(customerName(1)).not.toBe(customerName(2));
  });
});

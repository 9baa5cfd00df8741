import { describe, expect, it } from 'vitest';
import { ConnectionError, TideError } from '../../src/errors.ts';
import { RetriesExhaustedError, backoffDelay, withRetries } from '../../src/retry.ts';

const transient = () => new ConnectionError('kafka', '127.0.0.1:1', 'no broker answers', 'start it', { retriable: true });

describe('withRetries (errors.retry.timeout)', () => {
  it('backs off by doubling up to the maximum, with ±20 % jitter', () => {
    expect([1, 2, 3, 4, 10].map((a) => backoffDelay(a, 100, 1000, () => 0.5))).toEqual([100, 200, 400, 800, 1000]);
    expect(backoffDelay(1, 100, 1000, () => 0)).toBe(80);
    expect(backoffDelay(1, 100, 1000, () => 1)).toBe(120);
  });

  it('retries a retriable error until it succeeds, and reports each retry', async () => {
    const retries: number[] = [];
    let recovered = 0;
    const out = await withRetries(
      { timeoutMs: 5000, maxDelayMs: 5, initialDelayMs: 1 },
      { what: 'test', onRetry: (_e, a) => retries.push(a), onRecovered: (n) => (recovered = n) },
      async (attempt) => {
        if (attempt < 3) throw transient();
        return 'ok';
      },
    );
    expect(out).toBe('ok');
    expect(retries).toEqual([1, 2]);
    expect(recovered).toBe(3);
  });

  it('ends at once on an error waiting cannot fix', async () => {
    let tries = 0;
    const wrongPassword = new ConnectionError('postgres', '127.0.0.1:5432', 'password refused', 'fix it', { retriable: false });
    await expect(
      withRetries({ timeoutMs: 60_000, maxDelayMs: 5 }, { what: 'test' }, async () => {
        tries++;
        throw wrongPassword;
      }),
    ).rejects.toBe(wrongPassword);
    expect(tries).toBe(1);
  });

  it('gives up when the budget runs out, naming what it tried and the key to raise', async () => {
    const err = await withRetries({ timeoutMs: 30, maxDelayMs: 10, initialDelayMs: 5 }, { what: 'connect to Kafka' }, async () => {
      throw transient();
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RetriesExhaustedError);
    expect((err as Error).message).toMatch(
      /^kafka \(127.0.0.1:1\): no broker answers\. start it\n {2}\(gave up after \d+ tries over 0 s of connect to Kafka; raise errors.retry.timeout/,
    );
  });

  it('0 never retries; an abort stops the waiting at once', async () => {
    const e = transient();
    await expect(withRetries({ timeoutMs: 0, maxDelayMs: 5 }, { what: 't' }, async () => Promise.reject(e))).rejects.toBe(e);
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 20);
    const started = Date.now();
    await expect(
      withRetries({ timeoutMs: -1, maxDelayMs: 60_000, initialDelayMs: 60_000 }, { what: 't', signal: ac.signal }, async () =>
        Promise.reject(new TideError('down', { retriable: true })),
      ),
    ).rejects.toThrow('down');
    expect(Date.now() - started).toBeLessThan(30_000);
  });
});

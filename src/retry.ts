import { setTimeout as sleep } from 'node:timers/promises';
import { TideError } from './errors.ts';
import type { Logger } from './log.ts';

/**
 * Ride out transient failures (a restarting database or broker, a registry that does not answer, a
 * topic the sink waits for) for at most `errors.retry.timeout`, as Kafka Connect does, and end at once on
 * failures that waiting cannot fix (a wrong password, a wrong CA, a missing right): those are the errors
 * whose `retriable` is false.
 *
 * Backoff doubles from `initialDelayMs` up to `errors.retry.delay.max.ms`, with ±20 % jitter so that
 * several workers do not retry in step. Every retry is logged (what is retried, the error, the next
 * delay) and reported to `onRetry`, so /readyz and the metrics can show it; `onRecovered` is told when a
 * try succeeds after failures.
 */
export interface RetryPolicy {
  /** `errors.retry.timeout`: -1 retries for ever, 0 never retries. */
  timeoutMs: number;
  /** `errors.retry.delay.max.ms`. */
  maxDelayMs: number;
  initialDelayMs?: number;
}

export interface RetryHooks {
  /** What is being retried, for logs and the final error, e.g. `connect to Kafka at 127.0.0.1:59092`. */
  what: string;
  log?: Logger;
  /** Aborting stops the retries at once: the last error is thrown. */
  signal?: AbortSignal;
  onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
  onRecovered?: (attempts: number) => void;
  /** Whether `err` may be retried. Default: a TideError whose `retriable` is true. */
  isRetriable?: (err: unknown) => boolean;
}

export function isRetriable(err: unknown): boolean {
  return err instanceof TideError && err.retriable;
}

/** The policy of a connector file's `errors.retry.timeout` / `errors.retry.delay.max.ms`. */
export function retryPolicyOf(config: { 'errors.retry.timeout': number; 'errors.retry.delay.max.ms': number }): RetryPolicy {
  return { timeoutMs: config['errors.retry.timeout'], maxDelayMs: config['errors.retry.delay.max.ms'] };
}

/** The next delay: doubling from `initial`, capped at `max`, jittered by ±20 %. Pure but for `random`. */
export function backoffDelay(attempt: number, initial: number, max: number, random: () => number = Math.random): number {
  const base = Math.min(max, initial * 2 ** Math.max(0, attempt - 1));
  return Math.max(1, Math.round(base * (0.8 + 0.4 * random())));
}

/** The retry budget ran out: wraps the last transient error and says how long it was tried. */
export class RetriesExhaustedError extends TideError {
  constructor(what: string, attempts: number, elapsedMs: number, last: unknown) {
    const reason = last instanceof Error ? last.message : String(last);
    super(
      `${reason}\n  (gave up after ${attempts} tries over ${Math.round(elapsedMs / 1000)} s of ${what}; ` +
        'raise errors.retry.timeout to wait longer, -1 for ever)',
      { cause: last, retriable: false, exitCode: last instanceof TideError ? last.exitCode : 1 },
    );
    this.name = 'RetriesExhaustedError';
  }
}

/** Run `fn` until it succeeds, a non-retriable error is thrown, the signal aborts, or the budget runs out. */
export async function withRetries<T>(policy: RetryPolicy, hooks: RetryHooks, fn: (attempt: number) => Promise<T>): Promise<T> {
  const started = Date.now();
  const retriable = hooks.isRetriable ?? isRetriable;
  const initial = Math.min(policy.initialDelayMs ?? 250, policy.maxDelayMs);
  for (let attempt = 1; ; attempt++) {
    try {
      const result = await fn(attempt);
      if (attempt > 1) {
        hooks.log?.info({ attempts: attempt, seconds: Math.round((Date.now() - started) / 1000) }, `${hooks.what}: recovered`);
        hooks.onRecovered?.(attempt);
      }
      return result;
    } catch (err) {
      if (!retriable(err) || hooks.signal?.aborted) throw err;
      const elapsed = Date.now() - started;
      const delay = backoffDelay(attempt, initial, policy.maxDelayMs);
      if (policy.timeoutMs >= 0 && elapsed + delay > policy.timeoutMs) {
        if (policy.timeoutMs === 0) throw err;
        throw new RetriesExhaustedError(hooks.what, attempt, elapsed, err);
      }
      hooks.log?.warn(
        { err: err instanceof Error ? err.message : String(err), attempt, retryInMs: delay },
        `${hooks.what}: failed, retrying (errors.retry.timeout ${policy.timeoutMs < 0 ? 'unlimited' : `${policy.timeoutMs} ms`})`,
      );
      hooks.onRetry?.(err, attempt, delay);
      try {
        await sleep(delay, undefined, { signal: hooks.signal });
      } catch {
        throw err; // aborted while waiting: shutting down
      }
    }
  }
}

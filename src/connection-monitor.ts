import type { ConnectionKind } from './errors.ts';
import type { RetryHooks } from './retry.ts';

/**
 * How a connector says what its connections are doing, without knowing who listens. The source, the
 * sink and their clients call it; ops implements it (src/ops/connection-health.ts: `/readyz` and the
 * `tide_connection_*` metrics), and the CLI hands that implementation in. Source and sink never import
 * ops (the import rule in /work/shared/docs/style.md): this interface is all they see.
 *
 * A connection is named by its kind (`kafka`, `postgres`, …, as in ConnectionError) and its target
 * (`127.0.0.1:9092`): never a credential.
 */
export interface ConnectionMonitor {
  /** A try on the connection failed with `problem` and is tried again in `retryInMs`: one retry, and the connection is down. */
  retrying(kind: ConnectionKind, target: string, problem: string, retryInMs: number): void;
  /** The connection works but the connector waits for something it does not have yet, e.g. topics that do not exist yet. */
  waiting(kind: ConnectionKind, target: string, what: string): void;
  /** The connection works (again), and nothing is waited for on it. */
  up(kind: ConnectionKind, target: string): void;
}

/** A monitor that tells no one (tests, one-shot tools). */
export const QUIET_MONITOR: ConnectionMonitor = {
  retrying: () => undefined,
  waiting: () => undefined,
  up: () => undefined,
};

/** `hooks` for withRetries that also report each retry to `monitor` (`retrying`) and the recovery (`up`). */
export function reportingRetries(monitor: ConnectionMonitor, kind: ConnectionKind, target: string, hooks: RetryHooks): RetryHooks {
  return {
    ...hooks,
    onRetry: (err, attempt, delayMs) => {
      monitor.retrying(kind, target, err instanceof Error ? err.message : String(err), delayMs);
      hooks.onRetry?.(err, attempt, delayMs);
    },
    onRecovered: (attempts) => {
      monitor.up(kind, target);
      hooks.onRecovered?.(attempts);
    },
  };
}

import { reportingRetries, type ConnectionMonitor } from '../connection-monitor.ts';
import { ConnectionError, type TideError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { withRetries, type RetryPolicy } from '../retry.ts';

/**
 * When the running source reconnects by itself instead of failing: the connection to Postgres (SQL or
 * replication) was lost in a way that waiting can fix. That is a server that restarts, fails over or
 * shuts down (57P01 "terminating connection due to administrator command", 57P03 "the database system
 * is starting up"), a refused or reset socket, a connection closed under us, a slot still held by the
 * session the restart is ending. A wrong password, a revoked right or a lost slot are not: those stop
 * the source with their message. reconnectToPostgres below does the reconnect; SourceConnector hands it
 * the steps (close, flush, reopen from the slot's confirmed position).
 */
export function isConnectionLoss(err: unknown): err is ConnectionError {
  return err instanceof ConnectionError && err.retriable && (err.kind === 'postgres' || err.kind === 'postgres replication');
}

export interface ReconnectSteps {
  /** The connection that was lost, for messages (`Postgres at host:port/db`), and its monitor target. */
  where: string;
  target: string;
  policy: RetryPolicy;
  monitor: ConnectionMonitor;
  log: Logger;
  signal?: AbortSignal | undefined;
  /** Close what is left of the broken connections (the stream, the SQL connection). */
  teardown(): Promise<void>;
  /** Wait until Kafka acknowledged what was already sent, so the confirmed position is as far as it can be. */
  flush(): Promise<void>;
  /** Open the SQL connection and the replication stream from the slot's confirmed position. */
  reopen(): Promise<void>;
}

/**
 * Reconnect after `cause` with backoff for at most errors.retry.timeout (src/retry.ts), as pg_recvlogical
 * does, logging the loss and the recovery and telling the monitor (/readyz, metrics). Throws the last
 * error when the budget runs out or the failure cannot pass.
 */
export async function reconnectToPostgres(cause: TideError, s: ReconnectSteps): Promise<void> {
  const since = Date.now();
  s.monitor.retrying('postgres', s.target, cause.message, 0);
  s.log.warn({ err: cause.message }, "lost the connection to Postgres; reconnecting, to resume from the slot's confirmed position");
  await s.teardown();
  await s.flush();
  await withRetries(
    s.policy,
    reportingRetries(s.monitor, 'postgres', s.target, { what: `reconnect to ${s.where}`, log: s.log, signal: s.signal }),
    () => s.reopen(),
  );
  s.monitor.up('postgres', s.target);
  s.log.info(
    { seconds: Math.round((Date.now() - since) / 1000) },
    "reconnected to Postgres; streaming resumes from the slot's confirmed position",
  );
}

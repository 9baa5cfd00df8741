import { ConnectionError } from '../errors.ts';

/**
 * When the running source reconnects by itself instead of failing: the connection to Postgres (SQL or
 * replication) was lost in a way that waiting can fix. That is a server that restarts, fails over or
 * shuts down (57P01 "terminating connection due to administrator command", 57P03 "the database system
 * is starting up"), a refused or reset socket, a connection closed under us, a slot still held by the
 * session the restart is ending. A wrong password, a revoked right or a lost slot are not: those stop
 * the source with their message. The reconnect itself lives in SourceConnector.reconnect: it retries
 * with withRetries (src/retry.ts) for errors.retry.timeout and resumes from the slot's confirmed position.
 */
export function isConnectionLoss(err: unknown): err is ConnectionError {
  return err instanceof ConnectionError && err.retriable && (err.kind === 'postgres' || err.kind === 'postgres replication');
}

import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import pg from 'pg';
import type { SourceConfig } from '../config/source-config.ts';
import { ConfigError, type TideError } from '../errors.ts';
import { log as rootLog, type Logger } from '../log.ts';
import { translatePgError, type PgWhere } from './pg-errors.ts';
import { sessionOptions } from './session-settings.ts';

/**
 * How the source reaches its database: node-postgres settings from the connector keys, TLS with
 * libpq's `sslmode` meanings, and `connectPg`, the one way every source connection (SQL, snapshot,
 * replication, slot watch, CLI) is opened, so they all get the same TLS, error translation and
 * 'error' listener.
 *
 * sslmode, as libpq (PostgreSQL docs, "SSL Support", table "SSL Mode Descriptions"):
 * - `disable`: plaintext.
 * - `prefer` (the default): TLS without checks; if the server does not offer TLS, plaintext.
 * - `require`: TLS, no check of the certificate. As libpq does when a root certificate file is present,
 *   `require` with `database.sslrootcert` set checks the chain as `verify-ca` does: a CA given on
 *   purpose is never ignored.
 * - `verify-ca`: TLS, the chain must lead to `database.sslrootcert` (or Node's built-in roots when unset,
 *   or when it is `system`, as libpq 16's `sslrootcert=system`).
 * - `verify-full`: `verify-ca` and the certificate must name `database.hostname` (Node's check).
 * The TLS itself is Node's (through node-postgres' `ssl` option); only `prefer`'s fallback is ours.
 */

export type ClientConfig = pg.ClientConfig & { replication?: 'database' };

function readPem(c: SourceConfig, key: 'database.sslrootcert' | 'database.sslcert' | 'database.sslkey'): string | undefined {
  const path = c[key];
  if (path === undefined || (key === 'database.sslrootcert' && path === 'system')) return undefined;
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(key, `cannot read ${path}: ${(err as Error).message}`);
  }
}

/** node-postgres' `ssl` option for the connector's sslmode: false, or Node TLS options. */
export function pgTlsOptions(c: SourceConfig): false | ConnectionOptions {
  const mode = c['database.sslmode'];
  if (mode === 'disable') return false;
  const client: ConnectionOptions = {};
  const cert = readPem(c, 'database.sslcert');
  const key = readPem(c, 'database.sslkey');
  if (cert) client.cert = cert;
  if (key) client.key = key;
  if (c['database.sslpassword'] !== undefined) client.passphrase = c['database.sslpassword'];
  const rootGiven = c['database.sslrootcert'] !== undefined;
  const verify = mode === 'verify-ca' || mode === 'verify-full' || (mode === 'require' && rootGiven);
  if (!verify) return { ...client, rejectUnauthorized: false };
  const ca = readPem(c, 'database.sslrootcert');
  return {
    ...client,
    ...(ca ? { ca } : {}),
    rejectUnauthorized: true,
    // verify-ca: the chain only. Node checks the host name unless told not to.
    ...(mode === 'verify-full' ? {} : { checkServerIdentity: () => undefined }),
  };
}

/** The node-postgres settings for a source connector's database (its normal and replication connections). */
export function pgClientConfig(c: SourceConfig, ssl: false | ConnectionOptions = pgTlsOptions(c)): ClientConfig {
  return {
    host: c['database.hostname'],
    port: c['database.port'],
    user: c['database.user'],
    password: c['database.password'],
    database: c['database.dbname'],
    ssl,
    options: sessionOptions(),
    connectionTimeoutMillis: 10_000,
  };
}

export function pgWhere(c: SourceConfig, replication = false): PgWhere {
  return {
    kind: replication ? 'postgres replication' : 'postgres',
    host: c['database.hostname'],
    port: c['database.port'],
    database: c['database.dbname'],
    user: c['database.user'],
    sslmode: c['database.sslmode'],
  };
}

export interface ConnectOptions {
  /** A replication connection (`replication=database`): START_REPLICATION, CREATE_REPLICATION_SLOT. */
  replication?: boolean;
  applicationName?: string;
  /**
   * Errors after the connection opened (the server restarted, the network dropped), translated. Every
   * client gets a listener: node-postgres emits 'error', and an 'error' event nobody listens to ends
   * the process with a stack trace.
   */
  onError?: (err: TideError) => void;
  log?: Logger;
}

/**
 * Whether a failed TLS attempt under `prefer` should be tried again in plaintext, as libpq does: the
 * server offers no TLS ('N' to the SSLRequest), or its pg_hba.conf rejects this login over TLS
 * (a `hostnossl` line only) while a plaintext line may accept it.
 */
function plaintextMayWork(err: unknown): boolean {
  const e = err as { message?: string; code?: string };
  if (e.message === 'The server does not support SSL connections') return true;
  return e.code === '28000' && /pg_hba\.conf/.test(e.message ?? '') && /SSL encryption|SSL on/.test(e.message ?? '');
}

/** Open a connection to the source's database; failures are ConnectionErrors (see pg-errors.ts). */
export async function connectPg(c: SourceConfig, opts: ConnectOptions = {}): Promise<pg.Client> {
  const where = pgWhere(c, opts.replication);
  const log = opts.log ?? rootLog;
  const attempt = async (ssl: false | ConnectionOptions): Promise<pg.Client> => {
    const client = new pg.Client({
      ...pgClientConfig(c, ssl),
      ...(opts.replication ? { replication: 'database' } : {}),
      ...(opts.applicationName ? { application_name: opts.applicationName } : {}),
    } as ClientConfig);
    client.on('error', (err: Error) => {
      const e = translatePgError(err, where);
      if (opts.onError) opts.onError(e);
      else log.debug({ err: e.message }, 'postgres connection closed; the next query reports it');
    });
    try {
      await client.connect();
      return client;
    } catch (err) {
      // Not awaited: after a failed connect the socket may already have ended, and pg's end() then waits for an
      // 'end' event that never comes.
      void client.end().catch(() => undefined);
      throw err;
    }
  };
  const tls = pgTlsOptions(c);
  try {
    return await attempt(tls);
  } catch (err) {
    // node-postgres has no `prefer`: it either demands TLS or never asks. libpq's fallback, written here.
    if (c['database.sslmode'] === 'prefer' && plaintextMayWork(err)) {
      log.debug({ err: (err as Error).message }, 'database.sslmode=prefer: TLS was refused, connecting in plaintext');
      try {
        return await attempt(false);
      } catch (second) {
        throw translatePgError(second, where);
      }
    }
    throw translatePgError(err, where);
  }
}

/** How long endPg lets pg's graceful goodbye take before it destroys the socket. */
const END_GRACE_MS = 5000;

/**
 * Close a connection, also one that is stuck. pg's end() destroys the socket when a query is in flight (the
 * query rejects), but otherwise it sends Terminate and waits for the socket's close, which on a connection
 * lost without a FIN (a network cut, a frozen server) never comes. After END_GRACE_MS the socket is destroyed,
 * which ends the client and rejects whatever still waits on it. Never throws.
 */
export async function endPg(client: pg.Client | undefined): Promise<void> {
  if (!client) return;
  let timer: NodeJS.Timeout | undefined;
  const grace = new Promise<'late'>((r) => (timer = setTimeout(() => r('late'), END_GRACE_MS)));
  const ended = client.end().then(
    () => 'ended' as const,
    () => 'ended' as const,
  );
  const outcome = await Promise.race([ended, grace]);
  clearTimeout(timer);
  if (outcome === 'late') client.connection.stream.destroy();
}

/** Run `work` on a fresh connection, closing it after; errors are translated. */
export async function withPg<T>(c: SourceConfig, work: (client: pg.Client) => Promise<T>, opts: ConnectOptions = {}): Promise<T> {
  const client = await connectPg(c, opts);
  try {
    return await work(client);
  } catch (err) {
    throw translatePgError(err, pgWhere(c, opts.replication));
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * A connection for periodic queries (the slot watch): opened on first use, and opened again on the next
 * query after it was lost (a Postgres restart), so a monitoring loop outlives the server's restarts.
 */
export class ReopeningPgClient {
  private client: pg.Client | undefined;
  private opening: Promise<pg.Client> | undefined;
  private lost = false;
  private closed = false;

  constructor(
    private readonly config: SourceConfig,
    private readonly opts: Omit<ConnectOptions, 'onError' | 'replication'> = {},
  ) {}

  private async open(): Promise<pg.Client> {
    if (this.client && !this.lost) return this.client;
    this.opening ??= (async () => {
      const old = this.client;
      this.client = undefined;
      await old?.end().catch(() => undefined);
      this.lost = false;
      const client = await connectPg(this.config, { ...this.opts, onError: () => (this.lost = true) });
      if (this.closed) {
        await client.end().catch(() => undefined);
        throw new Error('closed');
      }
      this.client = client;
      return client;
    })().finally(() => (this.opening = undefined));
    return this.opening;
  }

  async query(text: string, values?: unknown[]): Promise<pg.QueryResult> {
    const client = await this.open();
    try {
      return await client.query(text, values);
    } catch (err) {
      throw translatePgError(err, pgWhere(this.config));
    }
  }

  async end(): Promise<void> {
    this.closed = true;
    await this.opening?.catch(() => undefined);
    await this.client?.end().catch(() => undefined);
    this.client = undefined;
  }
}

/**
 * The source's heartbeat (heartbeat.interval.ms): a tiny transactional WAL message that comes back through
 * the slot, so the slot advances even when captured tables are idle. A failure is logged, never thrown.
 */
export async function emitHeartbeat(sql: pg.Client, log: Logger): Promise<void> {
  try {
    await sql.query(`SELECT pg_logical_emit_message(true, 'tide_heartbeat', '')`);
  } catch (err) {
    log.warn({ err }, 'heartbeat failed');
  }
}

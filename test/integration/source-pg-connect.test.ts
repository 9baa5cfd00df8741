import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConnectionError } from '../../src/errors.ts';
import { SourceConnector } from '../../src/source/connector.ts';
import { readTables } from '../../src/source/catalog.ts';
import { connectPg } from '../../src/source/pg-connection.ts';
import { buildPlan } from '../../src/source/plan.ts';
import { toastedNow } from '../../src/source/prerequisites.ts';
import { stackCertPaths } from '../../src/stack/certs.ts';
import { stackContext } from '../../src/stack/context.ts';
import { CERT_GROUP, NO_TLS_GROUP } from '../../src/stack/postgres.ts';
import { createTestDatabase } from '../support/db.ts';
import { consumeUntil } from '../support/kafka.ts';
import { dropSlot, sourceConfig, startSource, writeConnectorFile } from '../support/source.ts';

const BIN = resolve('bin/tide.js');
const PASSWORD = 'conn-test-pw-1';

/**
 * Issue 9 (TLS to Postgres) and issue 10 (connection failures), against the stack's real Postgres,
 * which has ssl=on with a certificate for `localhost` only, signed by the stack CA. Every failure
 * ends the source quickly with a ConnectionError that names the connection, the cause and the fix,
 * and creates or confirms nothing (no slot appears).
 */
describe('Postgres connections: TLS modes and failures', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let admin: pg.Client;
  const certs = stackCertPaths(stackContext());
  const tag = Date.now().toString(36);
  const roles = { plain: `t_norepl_${tag}`, mtls: `t_mtls_${tag}`, notls: `t_notls_${tag}` };
  const dir = mkdtempSync(join(tmpdir(), 'tide-pgconn-'));
  const slots: string[] = [];
  /** Slots of the connectors that must fail: none of them may exist afterwards. */
  const failedSlots: string[] = [];
  const localhost = () => {
    const u = new URL(db.url);
    u.hostname = 'localhost';
    return u.toString();
  };
  /** A connector for this test's database; its slot is dropped after. */
  const file = (label: string, extra: Record<string, unknown>, url = db.url) => {
    const f = sourceConfig(url, label, { 'table.include.list': 'public\\.tls_probe', ...extra });
    slots.push(f.config['slot.name']);
    return f;
  };
  /** Run the connector in this process; it must fail. */
  const failure = async (f: ReturnType<typeof file>): Promise<ConnectionError> => {
    failedSlots.push(f.config['slot.name']);
    const err = await new SourceConnector(f, { stateDir: mkdtempSync(join(dir, 'state-')) }).run(new AbortController().signal).then(
      (state) => new Error(`the source did not fail: ${state}`),
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConnectionError);
    return err as ConnectionError;
  };
  const shown = (e: Error) =>
    e.message.replaceAll(db.name, '<db>').replaceAll(new URL(db.url).port, '<port>').replaceAll(`_${tag}`, '_<tag>');
  const slotCount = async () =>
    Number((await admin.query(`SELECT count(*) AS n FROM pg_replication_slots WHERE slot_name = ANY($1)`, [failedSlots])).rows[0].n);

  beforeAll(async () => {
    db = await createTestDatabase('pg_connect');
    admin = new pg.Client({ connectionString: db.url });
    await admin.connect();
    await admin.query('CREATE TABLE tls_probe (id int PRIMARY KEY, note text)');
    await admin.query(`CREATE ROLE ${roles.plain} LOGIN PASSWORD '${PASSWORD}'`);
    await admin.query(`CREATE ROLE ${roles.mtls} LOGIN REPLICATION PASSWORD '${PASSWORD}' IN ROLE ${CERT_GROUP}`);
    await admin.query(`CREATE ROLE ${roles.notls} LOGIN PASSWORD '${PASSWORD}' IN ROLE ${NO_TLS_GROUP}`);
  });
  afterAll(async () => {
    for (const s of slots) await dropSlot(db.url, s);
    await admin?.end();
    await db?.drop();
    const c = new pg.Client({ connectionString: process.env.DATABASE_URL });
    await c.connect();
    for (const r of Object.values(roles)) await c.query(`DROP ROLE IF EXISTS ${r}`);
    await c.end();
  });

  it('streams over verify-full to localhost with the stack CA; the SQL and replication connections are both encrypted', async () => {
    const f = file('tls_full', { 'database.sslmode': 'verify-full', 'database.sslrootcert': certs.ca }, localhost());
    const source = await startSource(f);
    try {
      expect(source.connector.state).toBe('streaming');
      await admin.query(`INSERT INTO tls_probe VALUES (1, 'over TLS')`);
      const events = await consumeUntil([`${f.config['topic.prefix']}.public.tls_probe`], (e) => e.length >= 1);
      expect((events[0]!.value!.after as { note: string }).note).toBe('over TLS');
      const { rows } = await admin.query<{ backend_type: string; ssl: boolean }>(
        `SELECT a.backend_type, s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
          WHERE a.datname = $1 AND a.pid <> pg_backend_pid()`,
        [db.name],
      );
      expect(rows.some((r) => r.backend_type === 'walsender')).toBe(true);
      expect(rows.filter((r) => r.backend_type === 'client backend').length).toBeGreaterThan(0);
      expect(rows.every((r) => r.ssl)).toBe(true);
    } finally {
      await source.stop();
    }
  });

  it('refuses a server certificate from another CA, and a host name the certificate does not name, before anything is created', async () => {
    const wrongCa = await failure(
      file('tls_wrong_ca', { 'database.sslmode': 'verify-ca', 'database.sslrootcert': certs.otherCa }, localhost()),
    );
    expect(wrongCa.code).toBe('tls');
    expect(shown(wrongCa)).toMatchInlineSnapshot(
      `"postgres (localhost:<port>/<db> as tide): the server's certificate is not trusted (SELF_SIGNED_CERT_IN_CHAIN). Set database.sslrootcert to the PEM file of the CA that signed the server's certificate (your provider publishes it)."`,
    );
    const mismatch = await failure(file('tls_mismatch', { 'database.sslmode': 'verify-full', 'database.sslrootcert': certs.ca }));
    expect(mismatch.code).toBe('tls');
    expect(shown(mismatch)).toMatchInlineSnapshot(
      `"postgres (127.0.0.1:<port>/<db> as tide): the server's certificate does not name 127.0.0.1 (Hostname/IP does not match certificate's altnames: IP: 127.0.0.1 is not in the cert's list: ). Connect with a host name the certificate names (database.hostname), or use database.sslmode=verify-ca to check only the chain."`,
    );
    // verify-ca checks only the chain: the same address is accepted.
    const client = await connectPg(file('tls_ca_only', { 'database.sslmode': 'verify-ca', 'database.sslrootcert': certs.ca }).config);
    await client.end();
    // libpq's rule: require with a root certificate checks the chain as verify-ca does.
    const requireWithRoot = await failure(
      file('tls_require_root', { 'database.sslmode': 'require', 'database.sslrootcert': certs.otherCa }, localhost()),
    );
    expect(requireWithRoot.code).toBe('tls');
    expect(await slotCount()).toBe(0);
  });

  it('a role that must show a client certificate: a good one works, an expired, untrusted or missing one is refused', async () => {
    const mtls = (label: string, cert?: [string, string]) =>
      file(
        label,
        {
          'database.user': roles.mtls,
          'database.password': PASSWORD,
          'database.sslmode': 'verify-full',
          'database.sslrootcert': certs.ca,
          ...(cert ? { 'database.sslcert': cert[0], 'database.sslkey': cert[1] } : {}),
        },
        localhost(),
      );
    for (const replication of [false, true]) {
      const ok = await connectPg(mtls('mtls_ok', [certs.clientCert, certs.clientKey]).config, { replication });
      await ok.end();
    }
    const expired = await failure(mtls('mtls_expired', [certs.expiredClientCert, certs.expiredClientKey]));
    const untrusted = await failure(mtls('mtls_untrusted', [certs.untrustedClientCert, certs.untrustedClientKey]));
    const missing = await failure(mtls('mtls_missing'));
    for (const e of [expired, untrusted, missing]) {
      expect(e.code).toBe('tls');
      expect(e.message).toMatch(/database\.sslcert and database\.sslkey/);
    }
    expect(shown(expired)).toMatchInlineSnapshot(
      `"postgres (localhost:<port>/<db> as t_mtls_<tag>): the server refused this client's certificate (ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED). Set database.sslcert and database.sslkey to a certificate that is valid now and signed by a CA the server trusts (its ssl_ca_file)."`,
    );
    expect(shown(untrusted)).toMatchInlineSnapshot(
      `"postgres (localhost:<port>/<db> as t_mtls_<tag>): the server refused this client's certificate (ERR_SSL_TLSV1_ALERT_UNKNOWN_CA). Set database.sslcert and database.sslkey to a certificate that is valid now and signed by a CA the server trusts (its ssl_ca_file)."`,
    );
    expect(shown(missing)).toMatchInlineSnapshot(
      `"postgres (localhost:<port>/<db> as t_mtls_<tag>): the server requires a client certificate it trusts (connection requires a valid client certificate). Set database.sslcert and database.sslkey to a certificate signed by a CA the server trusts, whose CN is database.user."`,
    );
    expect(await slotCount()).toBe(0);
  });

  it('sslmode=prefer uses TLS when the server takes it, and falls back to plaintext when pg_hba refuses TLS (as libpq)', async () => {
    const ssl = async (user: string) => {
      const c = await connectPg(
        file(`prefer_${user}`, {
          'database.user': user,
          'database.password': user === 'tide' ? 'tide' : PASSWORD,
          'database.sslmode': 'prefer',
        }).config,
      );
      try {
        return (await c.query<{ ssl: boolean }>('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()')).rows[0]!.ssl;
      } finally {
        await c.end();
      }
    };
    expect(await ssl('tide')).toBe(true);
    expect(await ssl(roles.notls)).toBe(false);
    // require never falls back.
    const err = await connectPg(
      file('require_notls', { 'database.user': roles.notls, 'database.password': PASSWORD, 'database.sslmode': 'require' }).config,
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectionError);
  });

  it('the CLI ends at once with one clear line for a wrong password, port, host or a user without REPLICATION', async () => {
    const cases: [string, Record<string, unknown>][] = [
      ['wrong password', { 'database.password': 'not-the-password' }],
      ['wrong port', { 'database.port': 1 }],
      ['unknown host', { 'database.hostname': 'no-such-host.invalid' }],
      ['no REPLICATION', { 'database.user': roles.plain, 'database.password': PASSWORD }],
    ];
    const results = await Promise.all(
      cases.map(async ([label, extra]) => {
        const f = file(label.replace(/ /g, '_'), { ...extra, 'publication.name': 'conn_test_pub' });
        failedSlots.push(f.config['slot.name']);
        const path = writeConnectorFile(dir, f);
        const started = Date.now();
        const { code, stderr } = await new Promise<{ code: number | null; stderr: string }>((r) =>
          execFile(process.execPath, [BIN, 'source', 'start', path, '--http-port', '0'], { cwd: dir, timeout: 60_000 }, (e, _o, stderr) =>
            r({ code: e ? ((e as { code?: number }).code ?? null) : 0, stderr }),
          ),
        );
        return { label, code, stderr, seconds: (Date.now() - started) / 1000 };
      }),
    );
    console.log(results.map((r) => `${r.label}: exit ${r.code} after ${r.seconds.toFixed(1)} s`).join('\n'));
    for (const r of results) {
      expect(r.code, r.label).toBe(1);
      expect(r.stderr, r.label).not.toMatch(/unexpected error|\n\s+at /);
    }
    // The CLI's answer is its one `tide:` line (the others are the JSON log).
    const answer = (stderr: string) => stderr.split('\n').filter((l) => l && !l.startsWith('{'));
    for (const r of results) expect(answer(r.stderr)[0], r.label).toMatch(/^tide: /);
    const lines = Object.fromEntries(results.map((r) => [r.label, shown(new Error(answer(r.stderr).join('\n')))]));
    expect(lines).toMatchInlineSnapshot(`
      {
        "no REPLICATION": "tide: Postgres at 127.0.0.1:<port>/<db>: the source cannot start: 3 prerequisites are missing (tide source plan lists them all):
        - REPLICATION attribute: t_norepl_<tag> lacks REPLICATION. Fix: ALTER ROLE "t_norepl_<tag>" REPLICATION;  (RDS: GRANT rds_replication TO "t_norepl_<tag>";)
        - SELECT on the captured tables: t_norepl_<tag> cannot read public.tls_probe. Fix: GRANT SELECT ON public.tls_probe TO "t_norepl_<tag>";
        - rights to create publication conn_test_pub (publication.autocreate.mode=filtered): t_norepl_<tag>: no CREATE on database <db>; not the owner of public.tls_probe (owned by tide). Fix: GRANT CREATE ON DATABASE "<db>" TO "t_norepl_<tag>"; GRANT "tide" TO "t_norepl_<tag>";  (or let the DBA create the publication: publication.autocreate.mode=disabled)",
        "unknown host": "tide: postgres (no-such-host.invalid:<port>/<db> as tide): host name no-such-host.invalid does not resolve (ENOTFOUND). Check database.hostname (a typo, or a private DNS name this machine cannot see).",
        "wrong password": "tide: postgres (127.0.0.1:<port>/<db> as tide): the password for user tide was refused. Check database.password (and database.user).",
        "wrong port": "tide: postgres (127.0.0.1:1/<db> as tide): nothing accepts connections at 127.0.0.1:1. Check database.hostname and database.port, and that Postgres is running and listens on that address (listen_addresses).",
      }
    `);
    expect(await slotCount()).toBe(0);
    // Below the start-up check, the replication connection itself says the same.
    const walsender = await connectPg(file('no_repl_direct', { 'database.user': roles.plain, 'database.password': PASSWORD }).config, {
      replication: true,
    }).catch((e: unknown) => e);
    expect(walsender).toBeInstanceOf(ConnectionError);
    expect(shown(walsender as Error)).toMatchInlineSnapshot(
      `"postgres replication (127.0.0.1:<port>/<db> as t_norepl_<tag>): user t_norepl_<tag> may not open a replication connection: it lacks the REPLICATION attribute. Run as a superuser (or on RDS/Cloud SQL, grant rds_replication / cloudsqlsuperuser): ALTER ROLE "t_norepl_<tag>" REPLICATION;"`,
    );
  });

  it('no free replication slot: the CLI ends at once naming max_replication_slots and the slots that use them', async () => {
    // Physical slots count against max_replication_slots like logical ones, cost nothing, and go in `finally`.
    const { rows } = await admin.query<{ free: number }>(
      `SELECT current_setting('max_replication_slots')::int - count(*)::int AS free FROM pg_replication_slots`,
    );
    const fillers = Array.from({ length: rows[0]!.free }, (_, i) => `t_fill_${tag}_${i}`);
    try {
      for (const f of fillers) await admin.query('SELECT pg_create_physical_replication_slot($1)', [f]);
      const f = file('no_free_slot', {});
      failedSlots.push(f.config['slot.name']);
      const started = Date.now();
      const { code, stderr } = await new Promise<{ code: number | null; stderr: string }>((r) =>
        execFile(
          process.execPath,
          [BIN, 'source', 'start', writeConnectorFile(dir, f), '--http-port', '0'],
          { cwd: dir, timeout: 60_000 },
          (e, _o, stderr) => r({ code: e ? ((e as { code?: number }).code ?? null) : 0, stderr }),
        ),
      );
      console.log(`no free slot: exit ${code} after ${((Date.now() - started) / 1000).toFixed(1)} s`);
      expect(code).toBe(1);
      const answer = stderr.split('\n').filter((l) => l && !l.startsWith('{'));
      expect(answer[0]).toMatch(/^tide: Postgres at .*: the source cannot start/);
      expect(answer.join('\n')).toMatch(
        /free replication slot: \d+ of max_replication_slots=\d+ in use; slot t_no_free_slot_\w+ will be created: .*t_fill_/,
      );
      expect(answer.join('\n')).toContain('raise max_replication_slots');
      expect(stderr).not.toMatch(/unexpected error|\n\s+at /);
    } finally {
      for (const f of fillers) await admin.query('SELECT pg_drop_replication_slot($1)', [f]).catch(() => undefined);
    }
    expect(await slotCount()).toBe(0);
  });

  it('start-up noise: start warns about unchanged TOAST only for tables that hold out-of-line values (plan lists every candidate)', async () => {
    await admin.query('CREATE TABLE toast_probe (id int PRIMARY KEY, body text)');
    await admin.query(`INSERT INTO toast_probe VALUES (1, 'short')`);
    const f = file('toast', { 'table.include.list': 'public\\.toast_probe' });
    const plan = () =>
      readTables(admin).then((tables) =>
        buildPlan(f.config, {
          tables,
          publication: { exists: false, allTables: false, tables: [] },
          slotExists: false,
          offsets: undefined,
        }),
      );
    expect((await plan()).toastAffected.map((t) => t.table)).toEqual(['public.toast_probe']);
    expect(await toastedNow(admin, await plan())).toEqual([]);
    // ~12 kB of hex: stored out of line, so an update that does not touch it carries no value for it.
    await admin.query(`INSERT INTO toast_probe SELECT 2, string_agg(md5(random()::text), '') FROM generate_series(1, 400)`);
    expect((await toastedNow(admin, await plan())).map((t) => t.table)).toEqual(['public.toast_probe']);
    // REPLICA IDENTITY FULL: updates carry every value, nothing to warn about.
    await admin.query('ALTER TABLE toast_probe REPLICA IDENTITY FULL');
    expect((await plan()).toastAffected).toEqual([]);
  });
});

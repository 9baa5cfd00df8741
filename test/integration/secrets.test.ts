import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { BlobServiceClient } from '@azure/storage-blob';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPrisma, type PrismaClient } from '../../src/app/db.ts';
import { replay } from '../../src/app/replay.ts';
import { stackCertPaths } from '../../src/stack/certs.ts';
import { stackContext } from '../../src/stack/context.ts';
import { CERT_GROUP } from '../../src/stack/postgres.ts';
import { writeConnectorFileAt } from '../support/connector-file.ts';
import { createTestDatabase } from '../support/db.ts';
import { waitFor } from '../support/kafka.ts';
import { ORDER_TABLES, sinkFile } from '../support/lake.ts';
import { dropSlot, sourceConfig, writeConnectorFile } from '../support/source.ts';

/**
 * Secrets never appear in logs, metrics or error messages (issue 5, "Logs"). The real CLI runs as a
 * child process with debug logging, stdout and stderr captured to files, with distinctive secrets:
 * a Postgres password (its own login role), the masking salt, the Azure Storage key of the lake
 * (azurite), and credentials in a schema registry URL. Everything the processes print, every
 * HTTP answer of the sink's ops server and the error output of failing starts is searched for them.
 */
const BIN = resolve('bin/tide.js');
const tag = randomBytes(6).toString('hex');
const PASSWORD = `PgPw-${tag}-s3cret`;
const WRONG_PASSWORD = `PgPw-${tag}-wr0ng`;
const SALT = `Salt-${tag}-pepper`;
const REGISTRY_PASSWORD = `RegPw-${tag}-k3y`;
const KEY_PASSPHRASE = `KeyPass-${tag}-phrase`;
const WRONG_KEY_PASSPHRASE = `KeyPass-${tag}-wr0ng`;
const REGISTRY_TOKEN = `RegToken-${tag}-b3arer`;
const WRONG_AZURE_KEY = Buffer.from(`wrong-azure-key-${tag}`).toString('base64');
const WRONG_S3_SECRET = `S3Secret-${tag}-wr0ng`;
/** The local S3's secret key: public (like azurite's key), but still a secret key that must never be printed. */
const S3_SECRET = process.env.TIDE_S3_SECRET_ACCESS_KEY ?? '';

describe('secrets never appear in logs, metrics or error messages', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let admin: pg.Client;
  let prisma: PrismaClient;
  let src: ReturnType<typeof sourceConfig>;
  const role = `t_secret_${tag}`;
  const dir = mkdtempSync(join(tmpdir(), 'tide-secrets-'));
  const children: ChildProcess[] = [];
  let azureKey: string;

  /** Run `tide <args>` in `dir`, stdout and stderr each to a file; `exited` resolves with the exit code. */
  function tide(name: string, args: string[], env: NodeJS.ProcessEnv = {}) {
    const out = join(dir, `${name}.out`);
    const err = join(dir, `${name}.err`);
    const outFd = openSync(out, 'w');
    const errFd = openSync(err, 'w');
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: dir,
      stdio: ['ignore', outFd, errFd],
      env: { ...process.env, TIDE_LOG_LEVEL: 'debug', ...env },
    });
    closeSync(outFd);
    closeSync(errFd);
    children.push(child);
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    return { child, exited, stdout: () => readFileSync(out, 'utf8'), stderr: () => readFileSync(err, 'utf8') };
  }

  /** What a source run left for `tide source status` and the dashboard: its status file (.tide/<name>.status.json). */
  function statusFile(name: string): string {
    const path = join(dir, '.tide', `${name}.status.json`);
    expect(existsSync(path), path).toBe(true);
    return readFileSync(path, 'utf8');
  }

  function secretsIn(text: string): string[] {
    return [
      PASSWORD,
      WRONG_PASSWORD,
      SALT,
      REGISTRY_PASSWORD,
      REGISTRY_TOKEN,
      WRONG_AZURE_KEY,
      azureKey,
      KEY_PASSPHRASE,
      WRONG_KEY_PASSPHRASE,
      WRONG_S3_SECRET,
      S3_SECRET,
    ].filter((s) => text.includes(s));
  }

  beforeAll(async () => {
    azureKey = /AccountKey=([^;]+)/.exec(process.env.AZURE_STORAGE_CONNECTION_STRING ?? '')?.[1] ?? '';
    expect(azureKey.length, 'AZURE_STORAGE_CONNECTION_STRING (from .stack/env) names the azurite key').toBeGreaterThan(20);
    db = await createTestDatabase('secrets');
    admin = new pg.Client({ connectionString: db.url });
    await admin.connect();
    // Its own login role, so the distinctive password is the one Postgres really checks.
    await admin.query(`CREATE ROLE ${role} LOGIN SUPERUSER REPLICATION PASSWORD '${PASSWORD}'`);
    prisma = createPrisma(db.url, 2);
    await replay(prisma, { limit: 120, concurrency: 2 });
    src = sourceConfig(db.url, 'secrets', {
      'database.user': role,
      'database.password': PASSWORD,
      'table.include.list': 'public\\.(customers|products|orders|order_items)',
    });
  }, 120_000);

  afterAll(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await prisma?.$disconnect();
    if (db && src) await dropSlot(db.url, src.config['slot.name']);
    await admin?.end();
    await db?.drop();
    // The role owned the publication in the test database: it can go once the database is gone.
    const server = new pg.Client({ connectionString: process.env.DATABASE_URL });
    await server.connect();
    await server.query(`DROP ROLE IF EXISTS ${role}_cert`);
    await server.query(`DROP ROLE IF EXISTS ${role}`).finally(() => server.end());
    if (azureKey)
      await BlobServiceClient.fromConnectionString(process.env.AZURE_STORAGE_CONNECTION_STRING!)
        .getContainerClient(`tide-secrets-${tag}`)
        .deleteIfExists();
  });

  it('source and sink run with the secrets: their logs, /metrics, /healthz and /readyz never show them', async () => {
    const sourcePath = writeConnectorFile(dir, src);
    expect(readFileSync(sourcePath, 'utf8')).toContain(PASSWORD); // in the file as an operator would write it
    const source = tide('source', ['source', 'start', sourcePath]);
    await waitFor(() => source.stderr().includes('"to":"streaming"'), 'the source to stream', 90_000);
    await admin.query(`UPDATE customers SET email = 'changed-' || id || '@example.com' WHERE id IN (SELECT id FROM customers LIMIT 5)`);

    const lakeUri = `az://tide-secrets-${tag}/lake`;
    const file = sinkFile(`secrets-${tag}`, src.config['topic.prefix'], lakeUri, { 'mask.hash.salt': SALT, 'flush.interval.ms': 200 });
    const sinkPath = join(dir, 'sink.json');
    writeConnectorFileAt(sinkPath, { name: file.name, config: file.config }, 2);
    const sink = tide('sink', ['sink', 'start', sinkPath, '--http-port', '0']);
    await waitFor(() => /metrics (http:\/\/127\.0\.0\.1:\d+\/)metrics/.test(sink.stdout()), 'the sink to print its URL', 60_000);
    const base = /metrics (http:\/\/127\.0\.0\.1:\d+\/)metrics/.exec(sink.stdout())![1]!;
    const get = async (path: string) => {
      const res = await fetch(`${base}${path}`);
      return { status: res.status, body: await res.text() };
    };
    const answers: string[] = [(await get('readyz')).body];
    await waitFor(async () => (await get('readyz')).status === 200, 'the sink to be ready', 90_000);
    await waitFor(
      async () => /tide_sink_messages_total\{connector="[^"]+"\} [1-9]/.test((await get('metrics')).body),
      'the sink to commit messages',
      60_000,
    );
    for (const path of ['metrics', 'healthz', 'readyz', 'nothing-here']) answers.push((await get(path)).body);
    const metrics = answers[1]!;
    // The scrape shows the pipeline, so it would show a secret that reached a label or a value.
    expect(metrics).toContain(`tide_sink_commits_total{connector="${file.name}",lake_table="silver/customers",operation="MERGE"}`);
    expect(secretsIn(answers.join('\n'))).toEqual([]);

    source.child.kill('SIGTERM');
    sink.child.kill('SIGTERM');
    expect(await source.exited).toBe(0);
    expect(await sink.exited).toBe(0);
    const logs = source.stderr() + source.stdout() + sink.stderr() + sink.stdout();
    // The capture holds the configuration-derived facts around the secrets (so a leak would be in it too).
    for (const fact of [src.config['slot.name'], `tide-secrets-${tag}`, ORDER_TABLES[0]!, '"level":20']) expect(logs).toContain(fact);
    expect(logs.split('\n').length).toBeGreaterThan(20);
    expect(secretsIn(logs)).toEqual([]);
    expect(secretsIn(statusFile(src.name))).toEqual([]);
  });

  it('a wrong password: the error says what failed, not the password', async () => {
    const file = { ...src, name: `${src.name}-wrong`, config: { ...src.config, 'database.password': WRONG_PASSWORD } };
    const run = tide('wrong-password', ['source', 'start', writeConnectorFile(dir, file)]);
    expect(await run.exited).toBe(1);
    const output = run.stderr() + run.stdout();
    expect(output).toContain(`the password for user ${role} was refused. Check database.password`);
    expect(secretsIn(output)).toEqual([]);
    expect(secretsIn(statusFile(file.name))).toEqual([]);
  });

  it('database.sslpassword (the passphrase of an encrypted client key): a right one connects, a wrong one fails; neither is shown', async () => {
    const certs = stackCertPaths(stackContext());
    const key = join(dir, 'client-encrypted.key');
    execFileSync('openssl', ['pkey', '-in', certs.clientKey, '-aes256', '-passout', `pass:${KEY_PASSPHRASE}`, '-out', key]);
    const certRole = `${role}_cert`;
    await admin.query(`CREATE ROLE ${certRole} LOGIN SUPERUSER PASSWORD '${PASSWORD}' IN ROLE ${CERT_GROUP}`);
    const tls = (name: string, passphrase: string) => ({
      ...src,
      name: `${src.name}-${name}`,
      config: {
        ...src.config,
        'database.user': certRole,
        'database.sslmode': 'require' as const,
        'database.sslcert': certs.clientCert,
        'database.sslkey': key,
        'database.sslpassword': passphrase,
      },
    });
    const plan = tide('tls-plan', ['source', 'plan', writeConnectorFile(dir, tls('tls-ok', KEY_PASSPHRASE))]);
    expect(await plan.exited, plan.stderr()).toBe(0);
    expect(plan.stdout()).toContain(`checked as ${certRole}`);
    const wrong = tide('tls-wrong', ['source', 'start', writeConnectorFile(dir, tls('tls-wrong', WRONG_KEY_PASSPHRASE))]);
    expect(await wrong.exited).toBe(1);
    expect(wrong.stderr()).toContain('the client key could not be decrypted. Check database.sslpassword');
    expect(secretsIn(plan.stdout() + plan.stderr() + wrong.stdout() + wrong.stderr())).toEqual([]);
  });

  let registryOutput: string | undefined;
  let registryStatus: string | undefined;

  it('an unreachable schema registry whose URL carries credentials: the run fails naming the registry; no log line shows the password', async () => {
    const file = {
      ...src,
      name: `${src.name}-registry`,
      config: {
        ...src.config,
        'slot.name': `${src.config['slot.name']}_r`,
        'schema.registry.url': `http://tide:${REGISTRY_PASSWORD}@127.0.0.1:9/apis/ccompat/v7`,
        // A bearer token too (it wins over the URL's user:password): neither may reach a log line.
        'schema.registry.bearer.auth.token': REGISTRY_TOKEN,
      },
    };
    const run = tide('registry', ['source', 'start', writeConnectorFile(dir, file)]);
    const code = await run.exited;
    await dropSlot(db.url, file.config['slot.name']);
    expect(code).toBe(1);
    registryOutput = run.stderr() + run.stdout();
    registryStatus = statusFile(file.name);
    expect(JSON.parse(registryStatus)).toMatchObject({ state: 'failed', error: expect.stringMatching(/^schema registry, subject /) });
    expect(registryOutput).toMatch(/schema registry, subject \S+: /);
    expect(registryOutput).toContain('127.0.0.1:9');
    const logLines = registryOutput.split('\n').filter((l) => l.startsWith('{'));
    expect(logLines.length).toBeGreaterThan(3);
    expect(secretsIn(logLines.join('\n'))).toEqual([]);
  });

  // HttpSchemaRegistry strips credentials from the URL (they become basic auth), and the CLI scrubs what it prints.
  it('the error message printed for that run does not show the password', () => {
    expect(registryOutput).toBeDefined();
    expect(secretsIn(registryOutput!)).toEqual([]);
  });

  // The connector keeps err.message as lastError in the status file (`tide source status`, the dashboard's /api/pipeline).
  it('the status file of that run does not show the password', () => {
    expect(registryStatus).toBeDefined();
    expect(secretsIn(registryStatus!)).toEqual([]);
  });

  it('a lake on Azure with a wrong account key: the error names the store, not the key', async () => {
    const file = sinkFile(`secrets-az-${tag}`, src.config['topic.prefix'], `az://tide-secrets-${tag}/wrong`);
    const path = join(dir, 'sink-wrong-key.json');
    writeConnectorFileAt(path, { name: file.name, config: file.config }, 2);
    const connectionString = (process.env.AZURE_STORAGE_CONNECTION_STRING ?? '').replace(azureKey, WRONG_AZURE_KEY);
    const run = tide('wrong-key', ['sink', 'start', path, '--http-port', '0'], { AZURE_STORAGE_CONNECTION_STRING: connectionString });
    const code = await Promise.race([run.exited, new Promise<'running'>((r) => setTimeout(() => r('running'), 60_000))]);
    if (code === 'running') run.child.kill('SIGKILL');
    expect(code).toBe(1);
    const output = run.stderr() + run.stdout();
    expect(output).toContain(`tide-secrets-${tag}`);
    expect(secretsIn(output)).toEqual([]);
  });

  it('a lake on S3 with a wrong secret key, then the right one with debug logging: no output shows either key', async () => {
    expect(S3_SECRET.length, 'TIDE_S3_SECRET_ACCESS_KEY (from .stack/env)').toBeGreaterThan(8);
    const lakeUri = `s3://${process.env.TIDE_S3_BUCKET}/secrets-${tag}`;
    const file = sinkFile(`secrets-s3-${tag}`, src.config['topic.prefix'], lakeUri, {
      's3.endpoint': process.env.TIDE_S3_ENDPOINT,
      's3.region': process.env.TIDE_S3_REGION,
    });
    const path = join(dir, 'sink-s3.json');
    writeConnectorFileAt(path, { name: file.name, config: file.config }, 2);
    const env = { AWS_ACCESS_KEY_ID: process.env.TIDE_S3_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY: WRONG_S3_SECRET };
    const wrong = tide('wrong-s3-key', ['sink', 'start', path, '--http-port', '0'], env);
    expect(await wrong.exited).toBe(1);
    const output = wrong.stderr() + wrong.stdout();
    expect(output).toContain(`lake (${lakeUri}): the request signature was refused (SignatureDoesNotMatch)`);
    expect(secretsIn(output)).toEqual([]);
    // The right key: the sink opens the lake (list, conditional-put probe), logs at debug, and stops on SIGTERM.
    const right = tide('right-s3-key', ['sink', 'start', path, '--http-port', '0'], { ...env, AWS_SECRET_ACCESS_KEY: S3_SECRET });
    await waitFor(() => right.stdout().includes('metrics http://'), 'the S3 sink to start', 60_000);
    right.child.kill('SIGTERM');
    expect(await right.exited).toBe(0);
    const logs = right.stderr() + right.stdout();
    expect(logs).toContain(lakeUri);
    expect(secretsIn(logs)).toEqual([]);
  });
});

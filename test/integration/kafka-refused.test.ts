import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPrisma, type PrismaClient } from '../../src/app/db.ts';
import { replay } from '../../src/app/replay.ts';
import { runTraffic } from '../../src/app/traffic.ts';
import { sinkConfigSchema, type SinkConfig } from '../../src/config/sink-config.ts';
import { parseConnectorFile, sourceConfigSchema, type ConnectorFile } from '../../src/config/source-config.ts';
import { ConfigError, ConnectionError } from '../../src/errors.ts';
import { DeltaTable } from '../../src/lake/delta/delta-table.ts';
import { LocalStore } from '../../src/lake/storage/local-store.ts';
import { SinkWorker } from '../../src/sink/sink-worker.ts';
import { bronzePath, silverPath } from '../../src/sink/table-layout.ts';
import { SourceConnector } from '../../src/source/connector.ts';
import { createTestDatabase } from '../support/db.ts';
import { ORDER_TABLES, sinkFile, startSink, waitForLake } from '../support/lake.ts';
import { scramKeys, mtlsKeys, stackCerts } from '../support/secure-kafka.ts';
import { sourceConfig, startSource, waitForSourceCaughtUp, writeConnectorFile } from '../support/source.ts';

/**
 * Credentials and certificates the secured broker refuses (issue 9, "Bad credentials"): the source and the
 * sink each end within seconds with a ConnectionError that names Kafka and its address, the problem and the
 * fix, marked not retriable (no retry loop waits on it), and with nothing confirmed or committed: the
 * slot's confirmed_flush_lsn stays where it was although Postgres holds unconfirmed changes, and no lake
 * table gets a new version although Kafka holds messages the lake has not taken.
 */

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'tide.js');
const run = promisify(execFile);

type Keys = Record<string, string>;
interface Case {
  name: string;
  keys: () => Keys;
  code: string;
  problem: RegExp;
  fix: RegExp;
}

const CASES: Case[] = [
  {
    name: 'a wrong SASL password',
    keys: () => ({ ...scramKeys(), 'kafka.sasl.password': 'not-the-password' }),
    code: 'auth',
    problem: /the broker refused the SASL SCRAM-SHA-512 login of user "tide"/,
    fix: /Check kafka.sasl.username and kafka.sasl.password/,
  },
  {
    name: 'a CA that did not sign the broker certificate',
    keys: () => ({ ...scramKeys(), 'kafka.ssl.ca.location': stackCerts().otherCa }),
    code: 'tls',
    problem:
      /the broker's certificate is not signed by a CA Tide trusts \(SELF_SIGNED_CERT_IN_CHAIN; Tide trusts the CA in kafka.ssl.ca.location\)/,
    fix: /Set kafka.ssl.ca.location to a PEM file holding the CA that signed the broker certificate/,
  },
  {
    name: 'a host name the broker certificate does not hold (127.0.0.1 under https identification)',
    keys: () => ({ ...scramKeys(), 'kafka.bootstrap.servers': scramKeys()['kafka.bootstrap.servers']!.replace('localhost', '127.0.0.1') }),
    code: 'tls',
    problem: /the broker's certificate does not name the host Tide connected to \(.*127\.0\.0\.1/,
    fix: /by a name their certificate holds/,
  },
  {
    name: 'an expired client certificate',
    keys: () => mtlsKeys(stackCerts().expiredClientCert, stackCerts().expiredClientKey),
    code: 'tls',
    problem: /the client certificate .*client-expired\.pem \(kafka.ssl.certificate.location\) expired on/,
    fix: /Renew the client certificate/,
  },
  {
    name: 'a client certificate from a CA the broker does not trust',
    keys: () => mtlsKeys(stackCerts().untrustedClientCert, stackCerts().untrustedClientKey),
    code: 'tls',
    problem: /the broker refused Tide's client certificate .*client-untrusted\.pem \(TLS alert /,
    fix: /signed by a CA the broker trusts/,
  },
];

/** The same connector file with other kafka.* keys (the slot, topics, offsets and lake stay the same). */
function withKafka<C extends object>(
  file: ConnectorFile<C>,
  keys: Keys,
  schema: typeof sourceConfigSchema | typeof sinkConfigSchema,
): ConnectorFile<C> {
  const raw = Object.fromEntries(
    Object.entries(file.config)
      .filter(([k, v]) => !k.startsWith('kafka.') && v !== undefined)
      .map(([k, v]) => [k, Array.isArray(v) ? v.join(',') : v]),
  );
  return parseConnectorFile(
    { name: file.name, config: { ...raw, ...keys } },
    schema as typeof sourceConfigSchema,
    file.source,
  ) as unknown as ConnectorFile<C>;
}

async function failure(what: Promise<unknown>): Promise<{ err: unknown; seconds: number }> {
  const started = Date.now();
  const err = await what.then(
    () => new Error('it did not fail'),
    (e: unknown) => e,
  );
  return { err, seconds: (Date.now() - started) / 1000 };
}

function expectRefusal(err: unknown, c: Case, address: string): ConnectionError {
  expect(err).toBeInstanceOf(ConnectionError);
  const e = err as ConnectionError;
  expect(e.kind).toBe('kafka');
  expect(e.target).toBe(address);
  expect(e.message.startsWith(`kafka (${address}): `)).toBe(true);
  expect(e.message).toMatch(c.problem);
  expect(e.fix).toMatch(c.fix);
  expect(e.retriable).toBe(false);
  expect(e.code).toBe(c.code);
  return e;
}

describe('secured Kafka: refused credentials and certificates fail fast and move nothing', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let prisma: PrismaClient;
  let sql: pg.Client;
  let src: ReturnType<typeof sourceConfig>;
  let stateDir: string;
  let sink: ConnectorFile<SinkConfig>;
  let lakeDir: string;
  let store: LocalStore;
  const seconds: Record<string, number> = {};

  const confirmedLsn = async () =>
    (
      await sql.query<{ lsn: string }>('SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1', [
        src.config['slot.name'],
      ])
    ).rows[0]!.lsn;
  const lakeVersions = async () => {
    const out: Record<string, number | undefined> = {};
    for (const t of ORDER_TABLES)
      for (const root of [bronzePath(t), silverPath(t)]) out[root] = (await DeltaTable.open(store, root))?.version;
    return out;
  };

  beforeAll(async () => {
    db = await createTestDatabase('kafka_refused');
    prisma = createPrisma(db.url, 4);
    sql = new pg.Client({ connectionString: db.url });
    await sql.connect();
    await replay(prisma, { limit: 40, concurrency: 2 });
    // A good run over SASL_SSL/SCRAM creates the slot, topics and lake tables.
    src = sourceConfig(db.url, 'kafkarefused', {
      'table.include.list': 'public\\.(customers|products|orders|order_items)',
      ...scramKeys(),
    });
    const source = await startSource(src);
    stateDir = source.stateDir;
    lakeDir = mkdtempSync(join(tmpdir(), 'tide-lake-refused-'));
    store = new LocalStore(lakeDir);
    sink = sinkFile(`refused-${Date.now().toString(36)}`, src.config['topic.prefix'], lakeDir, scramKeys());
    const running = startSink(sink, store);
    await waitForSourceCaughtUp(sql, src.config['slot.name']);
    await waitForLake(store, sink.name, src.config['topic.prefix']);
    await running.stop();
    // Messages in Kafka that the lake has not taken, then changes in Postgres the slot has not confirmed.
    expect((await runTraffic(prisma, { rate: 40, durationMs: 1500, concurrency: 2 })).errors).toBe(0);
    await waitForSourceCaughtUp(sql, src.config['slot.name']);
    expect(await source.stop()).toBe('stopped');
    expect((await runTraffic(prisma, { rate: 40, durationMs: 1000, concurrency: 2 })).errors).toBe(0);
  }, 300_000);

  afterAll(async () => {
    console.log(`seconds to fail: ${JSON.stringify(seconds)}`);
    await prisma?.$disconnect();
    await sql?.end();
    await db?.drop();
  });

  for (const c of CASES) {
    it(`source: ${c.name}`, async () => {
      const before = await confirmedLsn();
      const file = withKafka(src, c.keys(), sourceConfigSchema);
      const connector = new SourceConnector(file, { stateDir });
      const { err, seconds: s } = await failure(connector.run(new AbortController().signal));
      seconds[`source: ${c.name}`] = s;
      expectRefusal(err, c, file.config['kafka.bootstrap.servers'].join(','));
      expect(connector.state).toBe('failed');
      expect(await confirmedLsn()).toBe(before);
    });

    it(`sink: ${c.name}`, async () => {
      const before = await lakeVersions();
      const file = withKafka(sink, c.keys(), sinkConfigSchema);
      const { err, seconds: s } = await failure(new SinkWorker(file, { store }).run(new AbortController().signal));
      seconds[`sink: ${c.name}`] = s;
      expectRefusal(err, c, file.config['kafka.bootstrap.servers'].join(','));
      expect(await lakeVersions()).toEqual(before);
    });
  }

  it('an unknown SASL mechanism is a configuration error naming the key, before anything connects', async () => {
    const bad = { ...scramKeys(), 'kafka.sasl.mechanism': 'SCRAM-SHA-1' };
    expect(() => withKafka(src, bad, sourceConfigSchema)).toThrowError(ConfigError);
    expect(() => withKafka(sink, bad, sinkConfigSchema)).toThrow(
      /kafka.sasl.mechanism: must be one of "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", got "SCRAM-SHA-1"/,
    );
    // Through the CLI, as a user meets it: exit 1 with the message, nothing confirmed.
    const before = await confirmedLsn();
    const dir = mkdtempSync(join(tmpdir(), 'tide-refused-cli-'));
    const path = writeConnectorFile(dir, src);
    const json = JSON.parse(readFileSync(path, 'utf8')) as { config: Record<string, unknown> };
    json.config['kafka.sasl.mechanism'] = 'SCRAM-SHA-1';
    writeFileSync(path, JSON.stringify(json));
    const started = Date.now();
    const result = await run(process.execPath, [BIN, 'source', 'start', path, '--http-port', '0'], { cwd: dir }).then(
      () => ({ code: 0, stderr: '' }),
      (e: { code: number; stderr: string }) => e,
    );
    seconds['source CLI: an unknown mechanism'] = (Date.now() - started) / 1000;
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('kafka.sasl.mechanism: must be one of "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", got "SCRAM-SHA-1"');
    expect(await confirmedLsn()).toBe(before);
  });

  it('through the CLI, a wrong password prints one line naming Kafka, the problem and the fix, and exits 1', async () => {
    const before = await confirmedLsn();
    const dir = mkdtempSync(join(tmpdir(), 'tide-refused-cli-'));
    // The same slot and the offsets file of the good run.
    const keys = {
      ...scramKeys(),
      'kafka.sasl.password': 'not-the-password',
      'offset.storage.file.filename': join(stateDir, `${src.name}.offsets.json`),
    };
    const path = writeConnectorFile(dir, withKafka(src, keys, sourceConfigSchema));
    const started = Date.now();
    const result = await run(process.execPath, [BIN, 'source', 'start', path, '--http-port', '0'], { cwd: dir }).then(
      () => ({ code: 0, stderr: '' }),
      (e: { code: number; stderr: string }) => e,
    );
    seconds['source CLI: a wrong password'] = (Date.now() - started) / 1000;
    expect(result.code).toBe(1);
    // The CLI's own line (log lines are JSON and may come after it while the process drains).
    const printed = result.stderr.split('\n').filter((l) => l.startsWith('tide: '));
    expect(printed, result.stderr).toEqual([
      `tide: kafka (${scramKeys()['kafka.bootstrap.servers']}): the broker refused the SASL SCRAM-SHA-512 login of user "tide". ` +
        'Check kafka.sasl.username and kafka.sasl.password (or the username and password in kafka.sasl.jaas.config), and that the user has SCRAM-SHA-512 credentials on the cluster (SCRAM-SHA-256 and SCRAM-SHA-512 credentials are separate)',
    ]);
    expect(result.stderr).not.toContain('not-the-password');
    expect(await confirmedLsn()).toBe(before);
  });
});

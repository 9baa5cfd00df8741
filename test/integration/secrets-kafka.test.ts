import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPrisma, type PrismaClient } from '../../src/app/db.ts';
import { replay } from '../../src/app/replay.ts';
import { createTestDatabase } from '../support/db.ts';
import { waitFor } from '../support/kafka.ts';
import { eventHubsKeys, mtlsKeys, scramKeys, stackCerts } from '../support/secure-kafka.ts';
import { dropSlot, sourceConfig, writeConnectorFile } from '../support/source.ts';

/**
 * The Kafka secrets of issue 9 never appear in logs, status files or error messages, the same sweep as
 * secrets.test.ts for the keys added with secured Kafka: `kafka.sasl.password`, the password inside
 * `kafka.sasl.jaas.config` (an Event Hubs connection string), and `kafka.ssl.key.password`. The real CLI
 * runs with debug logging against the local broker's secured listeners; every byte it prints is searched.
 */
const BIN = resolve('bin/tide.js');
const tag = randomBytes(6).toString('hex');
const WRONG_SASL_PASSWORD = `KafkaPw-${tag}-wr0ng`;
const KEY_PASSWORD = `KeyPw-${tag}-s3cret`;
const WRONG_KEY_PASSWORD = `KeyPw-${tag}-wr0ng`;

describe('Kafka secrets never appear in logs, status files or error messages', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let prisma: PrismaClient;
  let src: ReturnType<typeof sourceConfig>;
  const dir = mkdtempSync(join(tmpdir(), 'tide-secrets-kafka-'));
  const children: ChildProcess[] = [];
  const encryptedKey = join(dir, 'client-encrypted.key');

  const secrets = () => [
    process.env.KAFKA_SCRAM_PASSWORD!,
    process.env.KAFKA_EVENT_HUBS_CONNECTION_STRING!,
    'tide-stack-event-hubs-key', // the SharedAccessKey inside it
    WRONG_SASL_PASSWORD,
    KEY_PASSWORD,
    WRONG_KEY_PASSWORD,
  ];
  const secretsIn = (text: string) => secrets().filter((s) => text.includes(s));

  function tide(name: string, file: ReturnType<typeof sourceConfig>) {
    const out = join(dir, `${name}.out`);
    const err = join(dir, `${name}.err`);
    const outFd = openSync(out, 'w');
    const errFd = openSync(err, 'w');
    const child = spawn(process.execPath, [BIN, 'source', 'start', writeConnectorFile(dir, file), '--http-port', '0'], {
      cwd: dir,
      stdio: ['ignore', outFd, errFd],
      env: { ...process.env, TIDE_LOG_LEVEL: 'debug' },
    });
    closeSync(outFd);
    closeSync(errFd);
    children.push(child);
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    return { child, exited, output: () => readFileSync(out, 'utf8') + readFileSync(err, 'utf8') };
  }

  const withKafka = (keys: Record<string, string>) => ({
    ...src,
    config: {
      ...Object.fromEntries(Object.entries(src.config).filter(([k]) => !k.startsWith('kafka.'))),
      ...keys,
    } as unknown as typeof src.config,
  });

  function statusFile(): string {
    const path = join(dir, '.tide', `${src.name}.status.json`);
    expect(existsSync(path), path).toBe(true);
    return readFileSync(path, 'utf8');
  }

  beforeAll(async () => {
    db = await createTestDatabase('secrets_kafka');
    prisma = createPrisma(db.url, 2);
    await replay(prisma, { limit: 20, concurrency: 2 });
    src = sourceConfig(db.url, 'secretskafka', { 'table.include.list': 'public\\.(customers|orders)', ...scramKeys() });
    // The stack's client key, encrypted with a distinctive passphrase (PKCS#8, as `openssl pkcs8 -topk8` writes).
    execFileSync('openssl', ['pkcs8', '-topk8', '-in', stackCerts().clientKey, '-out', encryptedKey, '-passout', `pass:${KEY_PASSWORD}`]);
  }, 120_000);

  afterAll(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await prisma?.$disconnect();
    if (db && src) await dropSlot(db.url, src.config['slot.name']);
    await db?.drop();
  });

  const runs: [string, () => Record<string, string>][] = [
    ['SCRAM (kafka.sasl.password)', () => scramKeys()],
    ['PLAIN with the Event Hubs connection string in kafka.sasl.jaas.config', () => eventHubsKeys()],
    [
      'mutual TLS with an encrypted key (kafka.ssl.key.password)',
      () => ({ ...mtlsKeys(undefined, encryptedKey), 'kafka.ssl.key.password': KEY_PASSWORD }),
    ],
  ];
  for (const [what, keys] of runs) {
    it(`a source streaming over ${what}: its debug log and status file show no secret`, async () => {
      const run = tide(what.split(' ')[0]!, withKafka(keys()));
      await waitFor(() => run.output().includes('"to":"streaming"'), 'the source to stream', 90_000);
      run.child.kill('SIGTERM');
      expect(await run.exited).toBe(0);
      const output = run.output();
      expect(output).toContain(`"connector":"${src.name}"`); // the capture holds what surrounds the secrets
      // The log covers the whole run, start to clean stop (a restart on the existing slot logs fewer lines than
      // the first run's snapshot, so no line count).
      expect(output).toContain('"to":"streaming"');
      expect(output).toContain('"to":"stopped"');
      expect(secretsIn(output)).toEqual([]);
      expect(secretsIn(statusFile())).toEqual([]);
    });
  }

  it('a wrong SASL password: the error names Kafka and the user, not the password', async () => {
    const run = tide('wrong-sasl', withKafka({ ...scramKeys(), 'kafka.sasl.password': WRONG_SASL_PASSWORD }));
    expect(await run.exited).toBe(1);
    const output = run.output();
    expect(output).toContain('the broker refused the SASL SCRAM-SHA-512 login of user "tide"');
    expect(secretsIn(output)).toEqual([]);
    expect(secretsIn(statusFile())).toEqual([]);
  });

  it('a wrong key password: the error names the key and the file, not the passphrase', async () => {
    const run = tide(
      'wrong-key-password',
      withKafka({ ...mtlsKeys(undefined, encryptedKey), 'kafka.ssl.key.password': WRONG_KEY_PASSWORD }),
    );
    expect(await run.exited).toBe(1);
    const output = run.output();
    expect(output).toContain(`kafka.ssl.key.password: does not decrypt the client key file ${encryptedKey}`);
    expect(secretsIn(output)).toEqual([]);
  });
});

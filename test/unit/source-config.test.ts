import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadSourceConfig, parseConnectorFile, sourceConfigSchema, sourceConnectorJsonSchema } from '../../src/config/source-config.ts';
import { slotThresholdsOf } from '../../src/config/slot-thresholds.ts';
import { buildPlan, needsSnapshot } from '../../src/source/plan.ts';
import type { CatalogTable } from '../../src/source/catalog.ts';

const base = {
  'database.hostname': 'db',
  'database.user': 'u',
  'database.dbname': 'shop',
  'topic.prefix': 'shop',
  'kafka.bootstrap.servers': 'k:9092',
  'schema.registry.url': 'http://registry:8081',
};
const parse = (config: Record<string, unknown>, env: NodeJS.ProcessEnv = {}) =>
  parseConnectorFile({ name: 'c', config }, sourceConfigSchema, 'c.json', env);

describe('source connector config', () => {
  it('fills Debezium-style defaults', () => {
    const { config } = parse(base);
    expect(config).toMatchObject({
      'database.port': 5432,
      'snapshot.mode': 'initial',
      'publication.autocreate.mode': 'filtered',
      'tombstones.on.delete': true,
      'decimal.handling.mode': 'precise',
    });
  });

  it('names each unknown, missing or bad key and what is allowed', () => {
    expect(() => parse({ ...base, 'database.hostname': undefined, 'snapshot.mode': 'always', 'database.prot': 1 }))
      .toThrowErrorMatchingInlineSnapshot(`
      [ConfigError: c.json: 3 problems:
        - database.hostname: is required
        - snapshot.mode: must be one of "initial", "never", "when_needed", "initial_only", got "always"
        - database.prot: unknown key: check the spelling against the documented keys]
    `);
    expect(() => parse({ ...base, 'database.port': 'abc' })).toThrowErrorMatchingInlineSnapshot(
      `[ConfigError: c.json: database.port: must be a number, got "abc"]`,
    );
    expect(() => parse({ ...base, 'table.include.list': 'public\\.(a' })).toThrow(
      /table.include.list: "public\\.\(a" is not a valid regular expression/,
    );
  });

  it('resolves ${env:NAME} secrets and says which variable is missing', () => {
    expect(parse({ ...base, 'database.password': '${env:PGPASS}' }, { PGPASS: 's3cret' }).config['database.password']).toBe('s3cret');
    expect(() => parse({ ...base, 'database.password': '${env:PGPASS}' })).toThrowErrorMatchingInlineSnapshot(
      `[ConfigError: c.json: database.password: refers to environment variable PGPASS, which is not set. Export PGPASS or put the value in the file.]`,
    );
  });

  it('resolves ${file:/path} secrets (trimmed) and names a missing file, never its contents', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tide-secret-'));
    writeFileSync(join(dir, 'pw'), 'from-a-file\n');
    expect(parse({ ...base, 'database.password': `\${file:${dir}/pw}` }).config['database.password']).toBe('from-a-file');
    expect(() => parse({ ...base, 'database.password': `\${file:${dir}/nope}` })).toThrow(
      `c.json: database.password: refers to the file ${dir}/nope, which does not exist. Mount the secret there or fix the path.`,
    );
    expect(() => parse({ ...base, 'database.password': '${file:relative/pw}' })).toThrow(/must name an absolute path/);
    rmSync(dir, { recursive: true });
  });

  it('checks the Kafka security keys together: SASL needs a mechanism and credentials, TLS keys need a TLS protocol', () => {
    expect(() => parse({ ...base, 'kafka.security.protocol': 'SASL_SSL' })).toThrowErrorMatchingInlineSnapshot(`
      [ConfigError: c.json: 2 problems:
        - kafka.sasl.mechanism: is required with kafka.security.protocol SASL_SSL: one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
        - kafka.sasl.username: kafka.security.protocol SASL_SSL needs credentials: set kafka.sasl.username and kafka.sasl.password, or kafka.sasl.jaas.config]
    `);
    expect(() => parse({ ...base, 'kafka.sasl.mechanism': 'GSSAPI' })).toThrow(
      /kafka.sasl.mechanism: must be one of "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", got "GSSAPI"/,
    );
    expect(() => parse({ ...base, 'kafka.ssl.ca.location': '/ca.pem' })).toThrow(
      /kafka.security.protocol: is PLAINTEXT, so kafka.ssl.ca.location would be ignored/,
    );
    expect(() => parse({ ...base, 'kafka.security.protocol': 'SSL', 'kafka.ssl.certificate.location': '/c.pem' })).toThrow(
      /mutual TLS needs both/,
    );
    const ok = parse({
      ...base,
      'kafka.security.protocol': 'SASL_SSL',
      'kafka.sasl.mechanism': 'SCRAM-SHA-512',
      'kafka.sasl.username': 'tide',
      'kafka.sasl.password': 'pw',
    }).config;
    expect(ok['kafka.ssl.endpoint.identification.algorithm']).toBe('https');
    expect(ok['errors.retry.timeout']).toBe(300_000);
  });

  it('takes slot thresholds as sizes and durations, and refuses a warning above its critical level', () => {
    const { config } = parse({
      ...base,
      'slot.retained.wal.warning': '512MB',
      'slot.lag.critical': 1048576,
      'slot.inactive.warning': '2h',
    });
    expect(slotThresholdsOf(config)).toEqual({
      retainedWalWarningBytes: 512 * 2 ** 20,
      retainedWalCriticalBytes: 4 * 2 ** 30,
      lagWarningBytes: 2 ** 20, // pulled down to the critical level given alone
      lagCriticalBytes: 2 ** 20,
      inactiveWarningSeconds: 7200,
      inactiveCriticalSeconds: 86400,
    });
    expect(config['slot.watch.interval.ms']).toBe(10_000);
    expect(() => parse({ ...base, 'slot.lag.warning': 'lots' })).toThrowErrorMatchingInlineSnapshot(
      `[ConfigError: c.json: slot.lag.warning: "lots" is not a size: use e.g. "512MB", "2GB" or a number of bytes]`,
    );
    expect(() => parse({ ...base, 'slot.retained.wal.warning': '8GB' })).toThrowErrorMatchingInlineSnapshot(
      `[ConfigError: c.json: slot.retained.wal.warning: 8.0 GB is above the critical threshold 4.0 GB (slot.retained.wal.critical, not set, so its default): set slot.retained.wal.critical to at least 8.0 GB, or lower slot.retained.wal.warning]`,
    );
  });

  it('loads the shipped orders connector', () => {
    const { name, config } = loadSourceConfig('connectors/orders-source.json', { PGPASSWORD: 'x' });
    expect(name).toBe('orders-source');
    expect(config['table.include.list']).toEqual(['public\\.(customers|products|orders|order_items)']);
  });

  it('publishes a JSON Schema for editors that matches the config schema', () => {
    const committed = JSON.parse(readFileSync('connectors/source-connector.schema.json', 'utf8'));
    expect(committed).toEqual(JSON.parse(JSON.stringify(sourceConnectorJsonSchema())));
  });
});

const table = (name: string, opts: Partial<CatalogTable> = {}): CatalogTable => ({
  oid: 1,
  schema: 'public',
  name,
  qualified: `public.${name}`,
  replicaIdentity: 'd',
  keyColumns: ['id'],
  columns: [
    {
      name: 'id',
      typeOid: 23,
      typeMod: -1,
      typeName: 'int4',
      typeCategory: 'N',
      notNull: true,
      hasDefault: false,
      defaultExpr: null,
      toastable: false,
    },
    {
      name: 'note',
      typeOid: 25,
      typeMod: -1,
      typeName: 'text',
      typeCategory: 'S',
      notNull: false,
      hasDefault: false,
      defaultExpr: null,
      toastable: true,
    },
  ],
  ...opts,
});

describe('source plan (SQL as data)', () => {
  const state = {
    tables: [table('orders'), table('audit', { keyColumns: [] }), table('skip')],
    publication: { exists: false, allTables: false, tables: [] },
    slotExists: false,
    offsets: undefined,
  };

  it('creates a filtered publication and a slot that exports its snapshot', () => {
    const { config } = parse({ ...base, 'table.include.list': 'public\\.(orders|audit)', 'slot.name': 's1', 'publication.name': 'p1' });
    const plan = buildPlan(config, state);
    expect(plan.statements.map((s) => s.sql)).toEqual([
      'CREATE PUBLICATION "p1" FOR TABLE "public"."orders", "public"."audit"',
      'CREATE_REPLICATION_SLOT "s1" LOGICAL pgoutput EXPORT_SNAPSHOT',
    ]);
    expect(plan.missingPrimaryKey).toEqual(['public.audit']);
    expect(plan.topics.map((t) => t.topic)).toEqual(['shop.public.orders', 'shop.public.audit', 'shop.transaction']);
    expect(plan.subjects).toContain('shop.public.orders-value');
    expect(plan.toastAffected).toEqual([
      { table: 'public.orders', columns: ['note'], fix: 'ALTER TABLE "public"."orders" REPLICA IDENTITY FULL' },
      { table: 'public.audit', columns: ['note'], fix: 'ALTER TABLE "public"."audit" REPLICA IDENTITY FULL' },
    ]);
  });

  it('changes nothing when publication and slot are in place', () => {
    const { config } = parse({ ...base, 'table.include.list': 'public\\.orders' });
    const plan = buildPlan(config, {
      ...state,
      publication: { exists: true, allTables: false, tables: ['public.orders'] },
      slotExists: true,
      offsets: { slot: 'tide', snapshot: { status: 'done', consistentLsn: '0/1', nextIndex: 1, tables: {} } },
    });
    expect(plan.statements).toEqual([]);
    expect(plan.snapshot).toBe(false);
  });

  it('decides the snapshot by snapshot.mode', () => {
    const cfg = (mode: string) => parse({ ...base, 'snapshot.mode': mode }).config;
    const running = { slot: 's', snapshot: { status: 'running' as const, consistentLsn: '0/1', nextIndex: 0, tables: {} } };
    expect(needsSnapshot(cfg('initial'), { slotExists: false, offsets: undefined })).toBe(true);
    expect(needsSnapshot(cfg('initial'), { slotExists: true, offsets: undefined })).toBe(false);
    expect(needsSnapshot(cfg('initial'), { slotExists: true, offsets: running })).toBe(true);
    expect(needsSnapshot(cfg('never'), { slotExists: false, offsets: undefined })).toBe(false);
    expect(needsSnapshot(cfg('when_needed'), { slotExists: true, offsets: undefined })).toBe(true);
  });
});

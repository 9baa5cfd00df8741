import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { ConfigError } from '../errors.ts';
import { bool, int, list, regexList } from './config-types.ts';
import { checkKafkaSecurity, checkRegistryAuth, kafkaSecurityShape, registryAuthShape, retryShape } from './connection-keys.ts';
import { resolveEnvRefs } from './env-refs.ts';
import { checkSlotThresholds, slotThresholdConfigShape } from './slot-thresholds.ts';

/**
 * The source connector's configuration, in Kafka Connect's file shape
 * `{ "name": ..., "config": { ... } }` with the key names a Debezium user knows.
 * Resolved once at start-up: defaults < file < `${env:NAME}` references.
 */
const identifier = z
  .string()
  .regex(/^[a-z_][a-z0-9_]{0,62}$/, 'must be a lower-case Postgres identifier: letters, digits and _, at most 63 characters');

export const sourceConfigSchema = z
  .object({
    'connector.class': z.enum(['tide.PostgresSource', 'io.debezium.connector.postgresql.PostgresConnector']).default('tide.PostgresSource'),
    'database.hostname': z.string().min(1),
    'database.port': int(1, 65535).default(5432),
    'database.user': z.string().min(1),
    'database.password': z.string().default(''),
    'database.dbname': z.string().min(1),
    // libpq's meanings; see src/source/pg-connection.ts. Managed servers want verify-full with the provider's CA.
    'database.sslmode': z.enum(['disable', 'prefer', 'require', 'verify-ca', 'verify-full']).default('prefer'),
    /** PEM file of the CA(s) that signed the server's certificate; `system` = Node's built-in roots. */
    'database.sslrootcert': z.string().min(1).optional(),
    /** PEM client certificate and key, for servers that check client certificates (pg_hba `clientcert=`). */
    'database.sslcert': z.string().min(1).optional(),
    'database.sslkey': z.string().min(1).optional(),
    /** The passphrase of an encrypted database.sslkey. */
    'database.sslpassword': z.string().optional(),
    'slot.name': identifier.default('tide'),
    // The slot watch of the running source, and `tide slots check` for this connector's slot (src/config/slot-thresholds.ts).
    ...slotThresholdConfigShape,
    'slot.watch.interval.ms': int(1000).default(10_000),
    'publication.name': identifier.default('tide_publication'),
    'publication.autocreate.mode': z.enum(['disabled', 'all_tables', 'filtered']).default('filtered'),
    'table.include.list': regexList.optional(),
    'table.exclude.list': regexList.optional(),
    'column.exclude.list': regexList.optional(),
    'topic.prefix': z.string().regex(/^[a-zA-Z0-9_-]+$/, 'may hold only letters, digits, _ and - (it starts every topic name)'),
    'topic.partitions': int(1, 1000).default(3),
    /** Unset: the cluster's default.replication.factor (Tide warns at start when topics end up below 3). */
    'topic.replication.factor': int(1, 10).optional(),
    'snapshot.mode': z.enum(['initial', 'never', 'when_needed', 'initial_only']).default('initial'),
    'snapshot.fetch.size': int(1, 1_000_000).default(10_000),
    /** How often the running source looks for new tables that match table.include.list (0 = never; see table-discovery.ts). */
    'table.discovery.interval.ms': int(0).default(10_000),
    'heartbeat.interval.ms': int(0).default(10_000),
    'tombstones.on.delete': bool.default(true),
    'decimal.handling.mode': z.enum(['precise', 'double', 'string']).default('precise'),
    /** `string`: timestamptz as Debezium sends it (io.debezium.time.ZonedTimestamp, ISO-8601 UTC); `micros`: Avro timestamp-micros. */
    'timestamptz.handling.mode': z.enum(['micros', 'string']).default('micros'),
    'kafka.bootstrap.servers': list.pipe(z.array(z.string()).min(1, 'needs at least one host:port')),
    ...kafkaSecurityShape,
    'schema.registry.url': z.url(),
    ...registryAuthShape,
    ...retryShape,
    'offset.storage.file.filename': z.string().min(1).optional(),
    'max.batch.size': int(1, 1_000_000).default(2048),
    /** The largest event (record batch) Tide produces; topics are created with and raised to it (src/events/message-size.ts). Kafka's default: 1048588. */
    'max.message.bytes': int(1024, 104_857_600).default(1_048_588),
  })
  .strict()
  .superRefine((c, ctx) => {
    checkSlotThresholds(c, ctx);
    checkPgTls(c, ctx);
    checkKafkaSecurity(c, ctx);
    checkRegistryAuth(c, ctx);
  });

/** Cross-key checks of the database TLS keys. */
function checkPgTls(c: Record<string, unknown>, ctx: z.RefinementCtx): void {
  const mode = c['database.sslmode'];
  const tlsKeys = ['database.sslrootcert', 'database.sslcert', 'database.sslkey'].filter((k) => c[k] !== undefined);
  if (mode === 'disable' && tlsKeys.length)
    ctx.addIssue({
      code: 'custom',
      path: ['database.sslmode'],
      message: `is disable, so ${tlsKeys.join(', ')} would be ignored: set it to verify-full (or verify-ca, require)`,
    });
  if ((c['database.sslcert'] === undefined) !== (c['database.sslkey'] === undefined))
    ctx.addIssue({
      code: 'custom',
      path: ['database.sslkey'],
      message: 'a client certificate needs both database.sslcert and database.sslkey',
    });
}

export type SourceConfig = z.output<typeof sourceConfigSchema>;

/** The whole connector file, for the published JSON Schema (connectors/source-connector.schema.json). */
export const sourceConnectorFileSchema = z.object({ $schema: z.string().optional(), name: z.string(), config: sourceConfigSchema });

export function sourceConnectorJsonSchema(): object {
  return z.toJSONSchema(sourceConnectorFileSchema, { io: 'input', unrepresentable: 'any' });
}

export interface ConnectorFile<C> {
  name: string;
  config: C;
  /** Where it came from, for messages. */
  source: string;
}

const fileSchema = z
  .object({
    $schema: z.string().optional(),
    name: z.string().regex(/^[a-zA-Z0-9_.-]+$/, 'may hold only letters, digits, _, . and -'),
    config: z.record(z.string(), z.unknown()),
  })
  .strict();

/** Turn zod's issues into one ConfigError that names every bad key and what is allowed. */
export function toConfigError(error: z.ZodError, source: string, given: Record<string, unknown> = {}): ConfigError {
  const problems = error.issues.map((issue): [string, string] => {
    if (issue.code === 'unrecognized_keys') {
      return [issue.keys.join(', '), `unknown key${issue.keys.length > 1 ? 's' : ''}: check the spelling against the documented keys`];
    }
    const key = issue.path.join('.');
    if (given[key] === undefined && issue.code === 'invalid_type') return [key, 'is required'];
    if (issue.code === 'invalid_value')
      return [key, `must be one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}, got ${JSON.stringify(given[key])}`];
    if (issue.code === 'invalid_type') return [key, `must be a ${issue.expected}, got ${JSON.stringify(given[key])}`];
    return [key, issue.message];
  });
  if (problems.length === 1) return new ConfigError(problems[0]![0], problems[0]![1], source);
  return new ConfigError('', `${problems.length} problems:\n${problems.map(([k, m]) => `  - ${k}: ${m}`).join('\n')}`, source);
}

export function parseConnectorFile<S extends z.ZodType>(
  raw: unknown,
  schema: S,
  source: string,
  env: NodeJS.ProcessEnv = process.env,
): ConnectorFile<z.output<S>> {
  const file = fileSchema.safeParse(raw);
  if (!file.success) throw toConfigError(file.error, source, (raw ?? {}) as Record<string, unknown>);
  const resolved = resolveEnvRefs(file.data.config, env, source);
  const parsed = schema.safeParse(resolved);
  if (!parsed.success) throw toConfigError(parsed.error, source, resolved);
  return { name: file.data.name, config: parsed.data, source };
}

export function readJsonFile(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError('(file)', `cannot read ${path}: ${(err as Error).message}`, path);
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ConfigError('(file)', `is not valid JSON: ${(err as Error).message}`, path);
  }
}

export function loadSourceConfig(path: string, env: NodeJS.ProcessEnv = process.env): ConnectorFile<SourceConfig> {
  return parseConnectorFile(readJsonFile(path), sourceConfigSchema, path, env);
}

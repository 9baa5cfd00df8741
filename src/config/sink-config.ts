import { z } from 'zod';
import { ConfigError } from '../errors.ts';
import { bool, int, list, regexList } from './config-types.ts';
import { checkKafkaSecurity, checkRegistryAuth, kafkaSecurityShape, registryAuthShape, retryShape } from './connection-keys.ts';
import { parseConnectorFile, readJsonFile, type ConnectorFile } from './source-config.ts';

/**
 * The sink connector's configuration (`connectors/orders-lake.json`), in the same
 * Kafka Connect file shape as the source: `{ "name": ..., "config": { ... } }`,
 * flat keys, lists comma-separated, `${env:NAME:-default}` references.
 *
 * Masking follows Debezium's idea (column.mask.*), with one list per rule: columns are
 * regexes on `schema.table.column`. Masks apply between bronze and silver (bronze is
 * the raw audit trail), so silver and gold never hold the clear value.
 */
export const sinkConfigSchema = z
  .object({
    'connector.class': z.literal('tide.DeltaLakeSink').default('tide.DeltaLakeSink'),
    topics: list.optional(),
    'topics.regex': z.string().optional(),
    'kafka.bootstrap.servers': list.pipe(z.array(z.string()).min(1, 'needs at least one host:port')),
    ...kafkaSecurityShape,
    'schema.registry.url': z.url(),
    ...registryAuthShape,
    ...retryShape,
    'group.id': z.string().min(1).optional(),
    /**
     * What the topics carry: `tide` (Tide's own source topics, the default), `events` (append-only event
     * topics no database produced: README "Event topics") or `debezium` (topics of Debezium's PostgreSQL connector).
     */
    'input.format': z.enum(['tide', 'events', 'debezium']).default('tide'),
    /** events: how a value is encoded, as Kafka Connect's value.converter: `avro` (Confluent wire format and the registry) or `json`. */
    'value.converter': z.preprocess((v) => (typeof v === 'string' ? (CONVERTER_CLASSES[v] ?? v) : v), z.enum(['avro', 'json'])).optional(),
    /** events with JSON values: a JSON Schema file (relative to the connector file) giving the fields, their types and which are required. */
    'value.converter.schema.file': z.string().min(1).optional(),
    /** events with JSON values: the fields as a list `name:type`, a trailing `?` for an optional one (e.g. `customer_id:long,payload:string?`). */
    'value.converter.fields': list.optional(),
    /** events: the event-time field; bronze is partitioned by its UTC date (`_event_date`), as Confluent's S3 sink's timestamp.field. */
    'timestamp.field': z.string().min(1).optional(),
    /** events: the key fields of silver, which keeps the latest row per key (by timestamp.field, ties by Kafka offset); unset: no silver. */
    'pk.fields': list.optional(),
    /**
     * Kafka's consumer session.timeout.ms: a worker that stops heartbeating (kill -9, a lost machine) keeps its
     * partitions this long before the group hands them to the others or to its restart. Must lie within the
     * broker's group.min.session.timeout.ms (default 6000) and group.max.session.timeout.ms.
     */
    'session.timeout.ms': int(1000, 3_600_000).default(6000),
    /** Where the lake lives: a directory (default `.lake`), `file://…`, `az://container/prefix`, `abfss://…` or `s3://bucket/prefix`. */
    'lake.uri': z.string().min(1).default('.lake'),
    /** The S3 bucket's region; default the AWS SDK's (AWS_REGION, the profile), or us-east-1 with s3.endpoint. */
    's3.region': z.string().min(1).optional(),
    /** An S3-compatible store's endpoint (MinIO, versitygw, R2, Ceph), e.g. http://127.0.0.1:59000; default AWS (or AWS_ENDPOINT_URL_S3). */
    's3.endpoint': z.url().optional(),
    /** Address buckets as <endpoint>/<bucket> (path style) rather than <bucket>.<endpoint>; default true when s3.endpoint is set. */
    's3.force.path.style': bool.optional(),
    'bronze.enabled': bool.default(true),
    /** Tables (regexes on schema.table) that also get `silver.<table>_history` (SCD type 2). */
    'silver.history.tables': regexList.default([]),
    /**
     * 0: a table's history merges right after its silver, in every flush. Above 0: history merges run in the
     * background on their own DuckDB instance, at most this often (or at silver.history.max.events), so silver's
     * latency does not wait for them and one merge takes many flushes (README "SCD2 history").
     */
    'silver.history.interval.ms': int(0, 3_600_000).default(0),
    /** Background history (interval above 0): a merge starts at this many waiting events; flushes wait at twice as many. */
    'silver.history.max.events': int(1, 100_000_000).default(500_000),
    /**
     * Tables (regexes on schema.table) whose silver merges write Delta deletion vectors instead of
     * rewriting files; sets the Delta table property of the same name (README "Deletion vectors").
     */
    'delta.enableDeletionVectors': regexList.default([]),
    /**
     * Silver tables with deletion vectors and one integer key keep a key index in memory (key → file and
     * row, about 40 bytes a key) so a merge finds the changed rows without scanning; a table with more live
     * rows than this falls back to scanning, logged once. 0 turns the index off (README "Deletion vectors").
     */
    'silver.key.index.max.rows': int(0, 100_000_000).default(10_000_000),
    /**
     * Silver tables with deletion vectors are compacted between flushes, one bounded step after a merge commit
     * (README "Compaction between flushes"): a step rewrites at most this many live rows (its latency bound, and
     * the largest file it writes). 0 (the default) turns it off: measured, it bounds the file count but does not
     * yet pay for itself in merge time (README "Compaction between flushes"); 500000 is the measured setting.
     */
    'silver.compaction.max.step.rows': int(0, 10_000_000).default(0),
    /** Compaction: this many small files of one size tier are merged into one (and tiers grow by this factor). */
    'silver.compaction.fanout': int(2, 100).default(8),
    /** Compaction: a file whose deletion vector deletes more than this share of its rows is rewritten without them. */
    'silver.compaction.max.deleted.ratio': z.coerce.number().gt(0).max(1).default(0.3),
    'mask.hash.columns': regexList.default([]),
    'mask.redact.columns': regexList.default([]),
    /** Columns that stay in clear even when a broader hash/redact pattern matches them. */
    'mask.keep.columns': regexList.default([]),
    'mask.hash.salt': z.string().default(''),
    /** A flush (one Delta commit per table) happens at this many buffered events or after this long. */
    'flush.max.events': int(1, 10_000_000).default(200_000),
    /**
     * … or at this many bytes of buffered messages (keys and values as Kafka delivered them): the sink's
     * memory per flush stays bounded whatever the size of the messages (README "The lake sink").
     */
    'flush.max.bytes': int(1024, 2 ** 31 - 1).default(64 << 20),
    'flush.interval.ms': int(10, 3_600_000).default(1000),
    'dead.letter.topic': z.string().min(1).optional(),
    'delta.checkpoint.interval': int(1, 10_000).default(10),
    /** DuckDB's memory limit for merges and gold queries (it spills to a temp directory beyond it), e.g. "2GB". */
    'duckdb.memory.limit': z
      .string()
      .regex(/^\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$/i, 'must be a size such as 512MB or 2GB')
      .default('2GB'),
    /** The folder of gold report SQL files, one table per <name>.sql, relative to the connector file (README "Gold reports"). */
    'gold.reports.dir': z.string().min(1).optional(),
    /** Gold reports are rebuilt when silver changed and at least this long passed since the last build; 0 turns gold off. */
    'gold.refresh.interval.ms': int(0).default(30_000),
    /**
     * The most of the time gold may spend building one on-change report: after a build of t ms it waits at least
     * t × (1/share − 1) (and gold.refresh.interval.ms) before the next, so a report that grows with the lake does not
     * take ever more of the CPU the flushes need. 1 = only the interval counts.
     */
    'gold.build.max.share': z.coerce.number().gt(0).max(1).default(0.25),
    /** A PostgreSQL database (postgresql://user:password@host:port/db?sslmode=…) where every gold table is published after each build, for BI tools. */
    // An empty value (e.g. "${env:REPORTING_DATABASE_URL:-}" with the variable unset) means no serving database.
    'serving.uri': z.preprocess(
      (v) => (v === '' ? undefined : v),
      z
        .string()
        .regex(/^postgres(ql)?:\/\/[^/]+\/[^/?]+/, 'must be a postgresql://host:port/database URL (user, password and ?sslmode= optional)')
        .optional(),
    ),
    /** The schema of the serving database the gold tables go to. */
    'serving.schema': z.string().min(1).default('gold'),
  })
  .strict()
  .superRefine((c, ctx) => {
    checkKafkaSecurity(c, ctx);
    checkRegistryAuth(c, ctx);
    const s3Keys = (['s3.region', 's3.endpoint', 's3.force.path.style'] as const).filter((k) => c[k] !== undefined);
    if (s3Keys.length && !/^s3a?:\/\//i.test(c['lake.uri']))
      ctx.addIssue({
        code: 'custom',
        path: [s3Keys[0]!],
        message: `applies only to a lake on S3, but lake.uri is ${JSON.stringify(c['lake.uri'])}: use s3://<bucket>/<prefix> or drop ${s3Keys.join(', ')}`,
      });
    if (c['serving.uri'] && c['gold.refresh.interval.ms'] && !c['gold.reports.dir'])
      ctx.addIssue({
        code: 'custom',
        path: ['serving.uri'],
        message: 'publishes gold tables, but gold.reports.dir names no report folder: set it (e.g. "reports/orders") or drop serving.uri',
      });
    if (c['serving.uri'] && !c['gold.refresh.interval.ms'])
      ctx.addIssue({
        code: 'custom',
        path: ['serving.uri'],
        message: 'publishes gold tables, but gold.refresh.interval.ms is 0 (gold off): set it (e.g. 30000) or drop serving.uri',
      });
    checkInputFormat(c, ctx);
    if (!c.topics?.length && !c['topics.regex'])
      ctx.addIssue({ code: 'custom', path: ['topics'], message: 'set topics (a comma-separated list) or topics.regex' });
    if (c['topics.regex']) {
      try {
        new RegExp(c['topics.regex']);
      } catch (err) {
        ctx.addIssue({ code: 'custom', path: ['topics.regex'], message: `is not a valid regular expression: ${(err as Error).message}` });
      }
    }
    if (c['mask.hash.columns'].length && c['mask.hash.salt'].length < 8)
      ctx.addIssue({
        code: 'custom',
        path: ['mask.hash.salt'],
        message:
          'mask.hash.columns is set, so a salt of at least 8 characters is required (e.g. "${env:TIDE_MASK_SALT}"); without one a hash of an email is easy to reverse',
      });
  });

export type SinkConfig = z.output<typeof sinkConfigSchema>;

/** Kafka Connect's converter class names, accepted for value.converter as well as the short names. */
const CONVERTER_CLASSES: Record<string, string> = {
  'io.confluent.connect.avro.AvroConverter': 'avro',
  'org.apache.kafka.connect.json.JsonConverter': 'json',
};

const EVENT_KEYS = ['value.converter', 'value.converter.schema.file', 'value.converter.fields', 'timestamp.field', 'pk.fields'] as const;

/** input.format and the keys that go with it (events: event-input.ts). */
function checkInputFormat(
  c: { [K in (typeof EVENT_KEYS)[number]]?: unknown } & {
    'input.format': string;
    'silver.history.tables': string[];
    'mask.hash.columns': string[];
    'mask.redact.columns': string[];
    'bronze.enabled': boolean;
    'pk.fields'?: string[];
  },
  ctx: z.RefinementCtx,
): void {
  const issue = (key: string, message: string) => ctx.addIssue({ code: 'custom', path: [key], message });
  if (c['input.format'] !== 'events') {
    const set = EVENT_KEYS.filter((k) => c[k] !== undefined);
    if (set.length)
      issue(
        set[0]!,
        `applies only with "input.format": "events" (it is "${c['input.format']}"): set input.format or drop ${set.join(', ')}`,
      );
    return;
  }
  if (!c['timestamp.field'])
    issue(
      'timestamp.field',
      'input.format events needs the event-time field that partitions bronze, e.g. "timestamp.field": "event_datetime"',
    );
  if (!c['value.converter']) issue('value.converter', 'input.format events needs the value encoding: "avro" (with the registry) or "json"');
  const json = c['value.converter'] === 'json';
  const given = [
    c['value.converter.schema.file'] && 'value.converter.schema.file',
    c['value.converter.fields'] && 'value.converter.fields',
  ].filter(Boolean);
  if (json && given.length !== 1)
    issue(
      'value.converter.fields',
      given.length
        ? 'set value.converter.fields or value.converter.schema.file, not both'
        : 'JSON events need their fields: value.converter.fields (e.g. "customer_id:long,event_datetime:timestamp") or value.converter.schema.file (a JSON Schema)',
    );
  if (!json && given.length)
    issue(String(given[0]), 'applies only to JSON values ("value.converter": "json"); Avro values carry their schema in the registry');
  const masks = (['mask.hash.columns', 'mask.redact.columns'] as const).filter((k) => c[k].length);
  if (masks.length)
    issue(masks[0]!, 'masking applies to the change tables of input.format tide; event topics are not masked yet: drop the mask.* keys');
  if (!c['bronze.enabled'] && !c['pk.fields']?.length)
    issue(
      'bronze.enabled',
      'with bronze off and no pk.fields nothing would be written: keep bronze on or name the silver key with pk.fields',
    );
  if (c['silver.history.tables'].length)
    issue(
      'silver.history.tables',
      'event topics have no history (they are append-only): drop silver.history.tables, or use pk.fields for a latest-row silver',
    );
}

export const sinkConnectorFileSchema = z.object({ $schema: z.string().optional(), name: z.string(), config: sinkConfigSchema });

export function sinkConnectorJsonSchema(): object {
  return z.toJSONSchema(sinkConnectorFileSchema, { io: 'input', unrepresentable: 'any' });
}

export function loadSinkConfig(path: string, env: NodeJS.ProcessEnv = process.env): ConnectorFile<SinkConfig> {
  const file = parseConnectorFile(readJsonFile(path), sinkConfigSchema, path, env);
  if (!/^[a-zA-Z0-9_-]+$/.test(file.name))
    throw new ConfigError('name', 'may hold only letters, digits, _ and - (it names Delta txn ids and the consumer group)', path);
  return file;
}

export type MaskRule = 'hash' | 'redact' | 'keep';

/** The rule for `schema.table.column`: keep wins over hash, hash over redact; default keep. */
export function maskRuleFor(config: SinkConfig, qualifiedColumn: string): MaskRule {
  const matches = (patterns: string[]) => patterns.some((p) => new RegExp(`^(?:${p})$`).test(qualifiedColumn));
  if (matches(config['mask.keep.columns'])) return 'keep';
  if (matches(config['mask.hash.columns'])) return 'hash';
  if (matches(config['mask.redact.columns'])) return 'redact';
  return 'keep';
}

import type { Command } from 'commander';
import { Kafka, logLevel } from 'kafkajs';
import { loadSinkConfig } from '../config/sink-config.ts';
import type { SinkConfig } from '../config/sink-config.ts';
import { TideError } from '../errors.ts';
import { kafkaConnection } from '../events/kafka-connection.ts';
import { explainKafkaError } from '../events/kafka-errors.ts';
import { DeltaTable } from '../lake/delta/delta-table.ts';
import { openStore, s3Settings } from '../lake/storage/open-store.ts';
import { log } from '../log.ts';
import { replayDeadLetters } from '../sink/dlq-replay.ts';
import { txnAppId } from '../sink/offsets.ts';
import { bronzePath, historyPath, silverPath, tableOfTopic } from '../sink/table-layout.ts';
import { sinkTopicFilter } from '../sink/topic-wait.ts';

/**
 * Recovery commands for the sink's lake (README "Recovering from a retention gap", "Dead letters"):
 *   tide lake accept-gap <sink connector file> <schema.table>
 *   tide lake dlq replay <sink connector file>
 */

/** The Kafka client of a sink connector file (its bootstrap servers, TLS and SASL settings). */
export function sinkKafka(file: { name: string; source: string; config: SinkConfig }, clientId: string): { kafka: Kafka; target: string } {
  const conn = kafkaConnection(file.config, { source: file.source, log });
  return { kafka: new Kafka(conn.kafkajs(clientId, { logLevel: logLevel.NOTHING, retry: { retries: 3 } })), target: conn.target };
}

/** The sink's topics that carry `table` (the `topics` list, or the topics that match `topics.regex`). */
async function topicsOf(config: SinkConfig, existing: string[], table: string): Promise<string[]> {
  const wanted = config.topics?.length ? new Set(config.topics) : undefined;
  const matches = config['topics.regex'] ? sinkTopicFilter(config['topics.regex']) : () => false;
  return existing.filter((t) => (wanted ? wanted.has(t) : matches(t)) && tableOfTopic(t) === table);
}

/**
 * After a retention gap (src/sink/retention-gap.ts) and a re-snapshot of the table: each of the table's
 * lake tables whose next offset Kafka no longer holds gets a commit with only a txn action, at the
 * partition's first retained offset − 1, so that it resumes there. The commit is the record of what was
 * given up (its commitInfo names the offsets). Tables that have the offsets are left alone.
 */
async function acceptGap(path: string, table: string): Promise<void> {
  const file = loadSinkConfig(path);
  const c = file.config;
  const { kafka, target } = sinkKafka(file, `tide-accept-gap-${file.name}`);
  const admin = kafka.admin();
  const store = await openStore(c['lake.uri'], { s3: s3Settings(c), access: 'write' });
  try {
    await admin.connect().catch((err: unknown) => {
      throw explainKafkaError(kafkaConnection(c, { source: file.source }), err, 'reading partition offsets');
    });
    const topics = await topicsOf(c, await admin.listTopics(), table);
    if (!topics.length)
      throw new TideError(
        `${path}: no topic of this sink carries ${table} on ${target}: check the table name (schema.table) and the sink's topics / topics.regex`,
      );
    const keepsHistory = c['silver.history.tables'].some((p) => new RegExp(`^(?:${p})$`).test(table));
    const layers = [
      ...(c['bronze.enabled'] ? [{ name: `bronze.${table}`, root: bronzePath(table) }] : []),
      { name: `silver.${table}`, root: silverPath(table) },
      ...(keepsHistory ? [{ name: `silver.${table}_history`, root: historyPath(table) }] : []),
    ];
    let changed = 0;
    for (const topic of topics) {
      for (const p of await admin.fetchTopicOffsets(topic)) {
        const low = BigInt(p.low);
        for (const layer of layers) {
          const delta = await DeltaTable.open(store, layer.root);
          const appId = txnAppId(file.name, topic, p.partition);
          const v = delta?.txnVersion(appId);
          if (!delta || v === undefined) {
            console.log(`${layer.name} partition ${p.partition}: no offsets yet (it starts at the first retained offset, ${low})`);
            continue;
          }
          if (BigInt(v) + 1n >= low) {
            console.log(`${layer.name} partition ${p.partition}: no gap (next offset ${BigInt(v) + 1n}, Kafka holds from ${low})`);
            continue;
          }
          const version = await delta.commit([{ txn: { appId, version: Number(low - 1n), lastUpdated: Date.now() } }], {
            operation: 'SET TRANSACTION',
            parameters: {
              reason: `tide lake accept-gap: offsets ${BigInt(v) + 1n}-${low - 1n} of ${topic} partition ${p.partition} were deleted by retention`,
            },
          });
          changed++;
          console.log(
            `${layer.name} partition ${p.partition}: offsets ${BigInt(v) + 1n}–${low - 1n} accepted as lost; resumes at ${low} (table version ${version})`,
          );
        }
      }
    }
    console.log(
      changed ? `accepted ${changed} gap(s); start the sink again` : 'nothing to accept: every table resumes at an offset Kafka holds',
    );
  } finally {
    await admin.disconnect().catch(() => undefined);
    await store.close();
  }
}

/** `tide lake dlq replay`: re-drive the sink's dead letters to their topics (src/sink/dlq-replay.ts) and say what it did. */
async function dlqReplay(path: string, opts: { dryRun?: boolean }): Promise<void> {
  const file = loadSinkConfig(path);
  const c = file.config;
  const dlq = c['dead.letter.topic'] ?? `${file.name}.dlq`;
  const { kafka } = sinkKafka(file, `tide-dlq-replay-${file.name}`);
  const wanted = c.topics?.length ? new Set(c.topics) : undefined;
  const matches = c['topics.regex'] ? sinkTopicFilter(c['topics.regex']) : () => false;
  let report;
  try {
    report = await replayDeadLetters({
      kafka,
      sinkName: file.name,
      deadLetterTopic: dlq,
      isSinkTopic: (t) => (wanted ? wanted.has(t) : matches(t)),
      dryRun: !!opts.dryRun,
    });
  } catch (err) {
    if (err instanceof TideError) throw err;
    throw explainKafkaError(kafkaConnection(c, { source: file.source }), err, `replaying ${dlq}`);
  }
  const verb = opts.dryRun ? 'would re-drive' : 're-drove';
  if (!report.ranges.length) return console.log(`${dlq}: nothing to replay (the group ${report.group} is at the end of the topic)`);
  console.log(`${dlq}: read offsets ${report.ranges.map((r) => `${r.partition}:${r.from}–${r.to - 1n}`).join(', ')}`);
  const perTarget = new Map<string, number>();
  for (const r of report.redriven)
    perTarget.set(`${r.topic} partition ${r.partition}`, (perTarget.get(`${r.topic} partition ${r.partition}`) ?? 0) + 1);
  console.log(`${verb} ${report.redriven.length} dead letter(s)${perTarget.size ? ':' : ''}`);
  for (const [target, n] of perTarget) console.log(`  ${n} to ${target}`);
  if (opts.dryRun)
    for (const r of report.redriven) console.log(`  ${r.dlqPartition}@${r.dlqOffset}: ${r.topic}[${r.partition}]@${r.offset}: ${r.reason}`);
  for (const s of report.skipped) console.log(`skipped ${s.record.dlqPartition}@${s.record.dlqOffset}: ${s.why}`);
  if (!opts.dryRun)
    console.log(
      `the group ${report.group} now ends at the last offset read: a second replay re-drives only newer dead letters. The sink applies the re-driven messages in (commit LSN, event index) order; those whose cause is not fixed become dead letters again.`,
    );
}

/** Adds `accept-gap` and `dlq replay` to the `lake` command group (lake-commands.ts). */
export function registerLakeRecoveryCommands(program: Command): void {
  const lake = program.commands.find((cmd) => cmd.name() === 'lake') ?? program.command('lake');
  lake
    .command('accept-gap <sink-connector-file> <table>')
    .description(
      'after a retention gap and a re-snapshot of <table> (schema.table): let its lake tables resume at the first offset Kafka still holds',
    )
    .action(acceptGap);
  lake
    .command('dlq')
    .description("the sink's dead-letter topic")
    .command('replay <sink-connector-file>')
    .description('re-drive the dead letters written since the last replay to the partitions they came from, once their cause is fixed')
    .option('--dry-run', 'list what would be re-driven; change nothing')
    .action(dlqReplay);
}

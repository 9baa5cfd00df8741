import type { Command } from 'commander';
import { loadSourceConfig } from '../config/source-config.ts';
import { ConfigError } from '../errors.ts';
import {
  clearSubjectLevel,
  COMPATIBILITY_LEVELS,
  defaultLevel,
  describeRegistry,
  detectRegistry,
  setSubjectLevel,
  subjectExists,
  subjectLevel,
  type CompatibilityLevel,
} from '../events/registry-compatibility.ts';
import { registryFromConfig } from '../events/schema-registry.ts';
import { registerConfigSecrets, registerEnvironmentSecrets } from '../log.ts';

/**
 * `tide source schema allow|restore <connector.json> <table>`: the remedy the schema pause offers (see
 * src/source/schema-guard.ts), applied so that it holds on the registry at hand (registry-compatibility.ts):
 * `allow` gives the table's `-key` and `-value` subjects their own compatibility level (NONE unless told),
 * `restore` returns them to the registry's default once the source has registered the new schema.
 */
function subjectsOf(file: string, table: string): { subjects: string[]; registry: ReturnType<typeof registryFromConfig> } {
  registerEnvironmentSecrets(process.env);
  const { config } = loadSourceConfig(file);
  registerConfigSecrets(config);
  const qualified = table.includes('.') ? table : `public.${table}`;
  const topic = `${config['topic.prefix']}.${qualified}`;
  return { subjects: [`${topic}-key`, `${topic}-value`], registry: registryFromConfig(config) };
}

export function registerSchemaCommands(program: Command): void {
  const source =
    program.commands.find((c) => c.name() === 'source') ??
    program.command('source').description('the source connector: Postgres WAL (pgoutput) to Kafka as Avro');
  const schema = source.command('schema').description("a captured table's subjects in the schema registry");

  schema
    .command('allow <connector.json> <table>')
    .description(
      "after an incompatible schema change paused the source: set the compatibility of the table's -key and -value subjects (NONE unless --level) on Apicurio or Confluent, so the restarted source registers the new schema",
    )
    .option('--level <level>', `the subjects' compatibility: ${COMPATIBILITY_LEVELS.join(', ')}`, 'NONE')
    .action(async (file: string, table: string, opts: { level: string }) => {
      const level = opts.level.toUpperCase() as CompatibilityLevel;
      if (!COMPATIBILITY_LEVELS.includes(level))
        throw new ConfigError('--level', `must be one of ${COMPATIBILITY_LEVELS.join(', ')}, got ${JSON.stringify(opts.level)}`);
      const { subjects, registry } = subjectsOf(file, table);
      const kind = await detectRegistry(registry);
      const fallback = await defaultLevel(registry, kind);
      let changed = 0;
      for (const subject of subjects) {
        if (!(await subjectExists(registry, subject))) {
          console.log(`${subject}: no version registered yet, nothing to allow`);
          continue;
        }
        const before = await subjectLevel(registry, kind, subject);
        await setSubjectLevel(registry, kind, subject, level);
        changed++;
        console.log(
          `${subject} (${describeRegistry(kind)}): compatibility ${level}, was ${before ?? `the registry default (${fallback ?? 'unknown'})`}`,
        );
      }
      if (changed)
        console.log(
          `Restart the source: it registers the new schema. Once it streams, return the subjects to the registry default: tide source schema restore ${file} ${table}`,
        );
    });

  schema
    .command('restore <connector.json> <table>')
    .description("return the table's -key and -value subjects to the registry's default compatibility (after `schema allow` and a restart)")
    .action(async (file: string, table: string) => {
      const { subjects, registry } = subjectsOf(file, table);
      const kind = await detectRegistry(registry);
      const fallback = await defaultLevel(registry, kind);
      for (const subject of subjects) {
        await clearSubjectLevel(registry, kind, subject);
        console.log(`${subject} (${describeRegistry(kind)}): follows the registry default again (${fallback ?? 'unknown'})`);
      }
    });
}

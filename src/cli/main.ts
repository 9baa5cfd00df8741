import { Command } from 'commander';
import { TideError } from '../errors.ts';
import { scrubSecrets } from '../log.ts';
import { loadStackEnvIntoProcess } from '../stack/context.ts';

type Register = (program: Command) => void;

/**
 * Command groups load on demand: `tide source start` imports only the source's modules, not DuckDB,
 * the Azure SDK or Prisma (start-up through tsx is most of a short run's time; see README Performance).
 * `tide --help` and unknown commands load everything, so help stays complete.
 */
const GROUPS: Record<string, () => Promise<Register[]>> = {
  stack: async () => [(await import('./stack-commands.ts')).registerStackCommands],
  app: async () => [(await import('./app-commands.ts')).registerAppCommands],
  source: async () => [
    (await import('./source-commands.ts')).registerSourceCommands,
    (await import('./recovery-commands.ts')).registerRecoveryCommands,
    (await import('./schema-commands.ts')).registerSchemaCommands,
  ],
  sink: async () => [(await import('./sink-commands.ts')).registerSinkCommands],
  lake: async () => [
    (await import('./lake-commands.ts')).registerLakeCommands,
    (await import('./lake-recovery-commands.ts')).registerLakeRecoveryCommands,
    (await import('./report-commands.ts')).registerReportCommands,
  ],
  slots: async () => [(await import('./slots-commands.ts')).registerSlotsCommands],
  demo: async () => [(await import('./demo.ts')).registerDemoCommand],
};

const program = new Command()
  .name('tide')
  .description('Tide: change data capture from PostgreSQL to Kafka (Avro) and Delta Lake')
  .version('0.1.0')
  .showHelpAfterError();

const wanted = process.argv[2];
const groups = wanted !== undefined && GROUPS[wanted] ? [GROUPS[wanted]] : Object.values(GROUPS);
for (const load of groups) for (const register of await load()) register(program);

loadStackEnvIntoProcess();

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof TideError) {
    process.stderr.write(`tide: ${scrubSecrets(err.message)}\n`);
  } else {
    process.stderr.write(`tide: unexpected error: ${scrubSecrets((err as Error)?.stack ?? String(err))}\n`);
  }
  process.exitCode = err instanceof TideError ? err.exitCode : 1;
}

import { Command } from 'commander';
import { TideError } from '../errors.ts';
import { scrubSecrets } from '../log.ts';
import { registerAppCommands } from './app-commands.ts';
import { registerDemoCommand } from './demo.ts';
import { registerStackCommands } from './stack-commands.ts';
import { registerLakeCommands } from './lake-commands.ts';
import { registerSinkCommands } from './sink-commands.ts';
import { registerSourceCommands } from './source-commands.ts';
import { registerRecoveryCommands } from './recovery-commands.ts';
import { registerSlotsCommands } from './slots-commands.ts';
import { loadStackEnvIntoProcess } from '../stack/context.ts';

const program = new Command()
  .name('tide')
  .description('Tide: change data capture from PostgreSQL to Kafka (Avro) and Delta Lake')
  .version('0.1.0')
  .showHelpAfterError();

registerStackCommands(program);
registerAppCommands(program);
registerSourceCommands(program);
registerSinkCommands(program);
registerLakeCommands(program);
registerSlotsCommands(program);
registerRecoveryCommands(program);

registerDemoCommand(program);

loadStackEnvIntoProcess();

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof TideError) {
    process.stderr.write(`tide: ${scrubSecrets(err.message)}\n`);
  } else {
    process.stderr.write(`tide: unexpected error: ${scrubSecrets((err as Error)?.stack ?? String(err))}\n`);
  }
  process.exitCode = 1;
}

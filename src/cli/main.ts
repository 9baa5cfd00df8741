import { Command } from 'commander';
import { TideError } from '../errors.ts';
import { registerAppCommands, runMigrate, runReplay } from './app-commands.ts';
import { registerStackCommands } from './stack-commands.ts';
import { registerSourceCommands } from './source-commands.ts';
import { parsePositiveInt } from './options.ts';
import { stackContext } from '../stack/context.ts';
import { stackUp } from '../stack/stack.ts';

const program = new Command()
  .name('tide')
  .description('Tide: change data capture from PostgreSQL to Kafka (Avro) and Delta Lake')
  .version('0.1.0')
  .showHelpAfterError();

registerStackCommands(program);
registerAppCommands(program);
registerSourceCommands(program);

program
  .command('demo')
  .description('the local default: start the stack, migrate the order app and replay a sample of the data set')
  .option('--limit <rows>', 'sale lines of the data set to replay', parsePositiveInt, 20_000)
  .action(async (opts: { limit: number }) => {
    await stackUp(stackContext());
    await runMigrate();
    await runReplay({ limit: opts.limit });
  });

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof TideError) {
    process.stderr.write(`tide: ${err.message}\n`);
  } else {
    process.stderr.write(`tide: unexpected error: ${(err as Error)?.stack ?? String(err)}\n`);
  }
  process.exitCode = 1;
}

import type { Command } from 'commander';
import { loadSinkConfig } from '../config/sink-config.ts';
import { Lifecycle } from '../lifecycle.ts';
import { SinkWorker } from '../sink/sink-worker.ts';

export function registerSinkCommands(program: Command): void {
  const sink = program.command('sink').description('the sink connector: Kafka CDC topics to Delta Lake bronze, silver and gold');

  sink
    .command('start <connector.json>')
    .description('run the sink in the foreground; SIGTERM/SIGINT commits what is buffered and exits')
    .action(async (file: string) => {
      const worker = new SinkWorker(loadSinkConfig(file));
      const lifecycle = new Lifecycle().handleSignals();
      await worker.run(lifecycle.signal);
    });
}

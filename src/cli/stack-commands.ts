import type { Command } from 'commander';
import { stackContext } from '../stack/context.ts';
import { stackDown, stackStatus, stackUp } from '../stack/stack.ts';

export function registerStackCommands(program: Command): void {
  const stack = program
    .command('stack')
    .description(
      'the native local stack: PostgreSQL, Kafka (KRaft), a schema registry (Apicurio), azurite (Azure Blob Storage) and versitygw (S3)',
    );

  stack
    .command('up')
    .description('install (cached), start and wait for every service; writes .stack/env')
    .action(async () => {
      const ctx = stackContext();
      const started = Date.now();
      await stackUp(ctx);
      console.log(`stack is up in ${((Date.now() - started) / 1000).toFixed(1)} s; connection settings in ${ctx.stackDir}/env`);
    });

  stack
    .command('down')
    .description('stop every service (data is kept under .stack/)')
    .action(async () => {
      await stackDown(stackContext());
      console.log('stack is down');
    });

  stack
    .command('status')
    .description('show whether each service answers; exits 1 if any is down')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }) => {
      const rows = await stackStatus(stackContext());
      if (opts.json) console.log(JSON.stringify(rows, null, 2));
      else
        for (const r of rows) {
          console.log(`${r.name.padEnd(9)} ${r.up ? 'up  ' : 'DOWN'}  127.0.0.1:${r.port}  log: ${r.log}`);
          for (const l of r.listeners ?? []) console.log(`  ${l.name.padEnd(9)}${l.up ? 'up  ' : 'DOWN'}  ${l.address}  (${l.detail})`);
        }
      if (rows.some((r) => !r.up || r.listeners?.some((l) => !l.up))) process.exitCode = 1;
    });
}

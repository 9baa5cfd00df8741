import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { loadSourceConfig } from '../config/source-config.ts';
import { ConfigError, TideError } from '../errors.ts';
import { readServerSlots } from '../ops/slots.ts';
import { formatBytes } from '../units.ts';
import { readStatus } from '../source/status-file.ts';
import { isPidAlive } from '../stack/process.ts';
import { activeSlotError, confirmByName, dropSlotOnServer } from './slots-commands.ts';
import { withSlotClient } from './slots-connection.ts';

/**
 * Recovery from a lost slot as one command (issue 5, "Slots"): `tide source resnapshot <connector.json>`.
 *
 * A slot that lost its WAL (wal_status = lost, see src/ops/slot-watch.ts) can never stream again: the
 * changes it missed are gone from the server. The connector must start over from a fresh snapshot. The
 * source takes one when its slot does not exist (src/source/plan.ts `needsSnapshot`: snapshot.mode
 * initial, when_needed and initial_only), so recovery is: drop the slot and delete the connector's
 * offsets file (`offset.storage.file.filename`, default `.tide/<name>.offsets.json`, as in
 * src/cli/source-commands.ts), then `tide source start` again.
 */

interface ResnapshotOptions {
  yes?: boolean;
  stateDir: string;
}

async function resnapshot(file: string, opts: ResnapshotOptions): Promise<void> {
  const { name, config } = loadSourceConfig(file);
  const slotName = config['slot.name'];
  if (config['snapshot.mode'] === 'never')
    throw new ConfigError(
      'snapshot.mode',
      'is "never": after the slot is dropped the next start would not snapshot, and the changes the lost slot missed would stay missing. Set snapshot.mode to "initial" (or "when_needed"), then run this again.',
      file,
    );
  const status = readStatus(join(opts.stateDir, `${name}.status.json`));
  if (status && status.pid !== process.pid && isPidAlive(status.pid) && status.state !== 'stopped')
    throw new TideError(
      `connector ${name} is running (pid ${status.pid}, state ${status.state}, per ${join(opts.stateDir, `${name}.status.json`)}). Stop it first (SIGTERM or Ctrl-C on its \`tide source start\`), then run this again.`,
    );

  const conn = { connector: [file] };
  const server = await withSlotClient(conn, (client, label) => readServerSlots(client, label));
  const slot = server.slots.find((s) => s.name === slotName);
  if (slot?.active) throw await activeSlotError({ ...slot, connector: name }, server.server, conn);

  const offsetsPath = config['offset.storage.file.filename'] ?? join(opts.stateDir, `${name}.offsets.json`);
  const hasOffsets = existsSync(offsetsPath);
  const lost = slot !== undefined && (slot.walStatus === 'lost' || slot.invalidationReason !== null);
  const out = [`tide source resnapshot: connector ${name} (${file}), slot ${slotName} on ${server.server}`];
  if (!slot) out.push(`  the slot does not exist`);
  else
    out.push(
      `  the slot is ${lost ? `LOST (${slot.invalidationReason ?? 'wal_status lost'}): it can never stream again` : `usable (wal_status ${slot.walStatus ?? 'n/a'}): a resnapshot is only needed when changes were missed`}`,
      `  will drop slot ${slotName} (retained WAL released: ${formatBytes(slot.retainedWalBytes)})`,
    );
  out.push(hasOffsets ? `  will delete the offsets file ${offsetsPath}` : `  no offsets file at ${offsetsPath}`);
  out.push(
    `  then \`tide source start ${file}\` creates a new slot and snapshots every captured table (snapshot.mode=${config['snapshot.mode']}).`,
    `  Downstream, every row arrives again as a snapshot read (op=r) with a newer commit_lsn, so the lake's silver tables take the`,
    `  snapshot's values; after each table's end-of-snapshot markers, keys that the snapshot does not read again are deleted from`,
    `  silver and closed in its history (rows deleted while the slot was unusable: see README "Snapshot, schema changes").`,
  );
  console.log(out.join('\n'));
  if (!slot && !hasOffsets) {
    console.log(`nothing to do: the next \`tide source start ${file}\` takes a fresh snapshot`);
    return;
  }
  if (!(await confirmByName(`reset connector ${name}`, name, opts.yes))) {
    process.exitCode = 1;
    return;
  }
  if (slot) {
    await dropSlotOnServer(conn, slotName, server.server);
    console.log(`dropped slot ${slotName}`);
  }
  if (hasOffsets) {
    try {
      rmSync(offsetsPath);
    } catch (err) {
      throw new TideError(
        `dropped slot ${slotName} but could not delete ${offsetsPath}: ${(err as Error).message}. Delete it by hand before \`tide source start\`.`,
        { cause: err },
      );
    }
    console.log(`deleted ${offsetsPath}`);
  }
  console.log(`next: tide source start ${file}`);
}

export function registerRecoveryCommands(program: Command): void {
  const source =
    program.commands.find((c) => c.name() === 'source') ??
    program.command('source').description('the source connector: Postgres WAL (pgoutput) to Kafka as Avro');
  source
    .command('resnapshot <connector.json>')
    .description("recover from a lost slot: drop the connector's slot and offsets so the next start takes a fresh snapshot")
    .option('--yes', 'do not ask (needed when stdin is not a terminal)')
    .option('--state-dir <dir>', 'where the connector keeps its offsets and status files', '.tide')
    .action(async (file: string, opts: ResnapshotOptions) => resnapshot(file, opts));
}

import type { ConnectorFile, SourceConfig } from '../config/source-config.ts';
import { TideError } from '../errors.ts';
import { readSlot, type SlotClient, type SlotFacts } from './slot-facts.ts';

/** The one command that recovers a lost slot. */
export function recoveryCommand(slot: Pick<SlotFacts, 'name' | 'connector' | 'connectorFile'>): string {
  if (slot.connector === null)
    return `tide slots drop ${slot.name} --yes, then re-initialise the slot's consumer from a fresh copy of the data (it missed changes)`;
  return `tide source resnapshot ${slot.connectorFile ?? `connectors/${slot.connector}.json`}`;
}

/** The server invalidated the slot (PG13+ wal_status, PG16+ conflicting, PG17+ invalidation_reason). */
export const isLost = (s: Pick<SlotFacts, 'walStatus' | 'invalidationReason'>) => s.walStatus === 'lost' || s.invalidationReason !== null;

/** The source's slot was invalidated: it can never stream again. Carries the one recovery command. */
export class SlotLostError extends TideError {
  constructor(
    readonly slot: string,
    readonly server: string,
    readonly reason: string,
    readonly command: string,
    confirmedFlushLsn: string | null,
    maxSlotWalKeepSize: string | null,
  ) {
    const why =
      reason === 'wal_removed'
        ? `the server removed WAL the slot still needed, because it retained more than max_slot_wal_keep_size${maxSlotWalKeepSize ? ` (${maxSlotWalKeepSize})` : ''}`
        : `the server invalidated it (${reason})`;
    super(
      `replication slot "${slot}" on ${server} is lost (wal_status=lost): ${why}. Changes after LSN ${confirmedFlushLsn ?? '?'} can no longer be streamed, so the connector needs a fresh snapshot. Recover with: ${command}`,
      { exitCode: 2 },
    );
    this.name = 'SlotLostError';
  }
}

/**
 * The SlotLostError for `slot` when the server has invalidated it, else undefined (also when it does not
 * exist). The source asks at start and when its stream breaks: Postgres 13–15 end the walsender of a slot
 * they invalidate, and its raw error would not say why or what to do.
 */
export async function findLostSlot(
  client: SlotClient,
  server: string,
  slot: Pick<SlotFacts, 'name' | 'connector' | 'connectorFile'>,
): Promise<SlotLostError | undefined> {
  const { rows } = await client.query(
    `SELECT current_setting('server_version_num')::int AS version, current_setting('max_slot_wal_keep_size', true) AS keep`,
  );
  const facts = await readSlot(client, server, Number(rows[0]!.version), slot.name);
  if (!facts || !isLost(facts)) return undefined;
  return new SlotLostError(
    slot.name,
    server,
    facts.invalidationReason ?? 'wal_removed',
    recoveryCommand(slot),
    facts.confirmedFlushLsn,
    (rows[0]!.keep as string | null) ?? null,
  );
}

/** The SlotLostError when the server has invalidated the slot of this connector (`file`). */
export function lostSlotOf(sql: SlotClient, file: ConnectorFile<SourceConfig>): Promise<SlotLostError | undefined> {
  const c = file.config;
  return findLostSlot(sql, `postgres at ${c['database.hostname']}:${c['database.port']}`, {
    name: c['slot.name'],
    connector: file.name,
    connectorFile: file.source,
  });
}

/** What `lookup` found within `ms` (undefined when it took longer or failed): a failure's explanation must not hold it up. */
export function lostWithin(lookup: Promise<SlotLostError | undefined>, ms: number): Promise<SlotLostError | undefined> {
  const timeout = new Promise<undefined>((r) => setTimeout(() => r(undefined), ms).unref());
  return Promise.race([lookup, timeout]).catch(() => undefined);
}

import type pg from 'pg';
import type { SourceConfig } from '../config/source-config.ts';
import type { Logger } from '../log.ts';
import { ChangeHandler, type ChangeHandlerOptions } from './change-handler.ts';
import { parseLsn, type Lsn } from './lsn.ts';
import { connectPg, pgWhere } from './pg-connection.ts';
import { translatePgError } from './pg-errors.ts';
import { pgoutputOptions } from './pgoutput-plugin.ts';
import { ReplicationStream } from './replication-stream.ts';

export interface StreamOpening {
  config: SourceConfig;
  /** A normal connection: reads the slot's confirmed position. */
  sql: pg.Client;
  log: Logger;
  /** The change handler's callbacks (change-handler.ts); the rest comes from the configuration. */
  handler: Omit<ChangeHandlerOptions, 'topicPrefix' | 'db' | 'tombstonesOnDelete'>;
  /** With a gate, nothing is handled until it resolves. */
  gate: Promise<void> | undefined;
  /** Told, in this order and before the stream starts: the new handler, the slot's confirmed position, the stream. */
  onHandler: (handler: ChangeHandler) => void;
  onPosition: (confirmed: Lsn) => void;
  onStream: (stream: ReplicationStream) => void;
}

/** Opens the replication stream from the slot's confirmed position (never from what was merely received). */
export async function openStream(o: StreamOpening): Promise<void> {
  const c = o.config;
  const handler = new ChangeHandler({
    ...o.handler,
    topicPrefix: c['topic.prefix'],
    db: c['database.dbname'],
    tombstonesOnDelete: c['tombstones.on.delete'],
  });
  o.onHandler(handler);
  const { rows } = await o.sql.query<{ lsn: string }>(
    `SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1`,
    [c['slot.name']],
  );
  const confirmed = parseLsn(rows[0]!.lsn);
  o.onPosition(confirmed);
  const stream = new ReplicationStream(
    (onError) => connectPg(c, { replication: true, log: o.log, onError }),
    handler,
    (err) => translatePgError(err, pgWhere(c, true)),
  );
  o.onStream(stream);
  await stream.start(c['slot.name'], confirmed, pgoutputOptions([c['publication.name']]), o.gate);
}

import type { Client } from 'pg';
import { PgoutputPlugin, type Pgoutput } from 'pg-logical-replication';

/**
 * pgoutput through pg-logical-replication, with two changes:
 *
 * 1. Values stay as Postgres' text output. The library converts them with
 *    pg-types (timestamps to JS Date, losing microseconds; local-time dates);
 *    Tide converts them itself (type-mapping.ts). The library reads each
 *    column's converter from the cached relation, so we swap in the identity.
 * 2. `messages 'true'`, so the heartbeat's pg_logical_emit_message arrives.
 *
 * Protocol version 1: Postgres sends a transaction only after it committed,
 * spilling large ones to its own disk (logical_decoding_work_mem), so Tide
 * never sees rolled-back work and needs no buffering of its own. The BEGIN
 * message already carries the final commit LSN.
 */
const identity = (text: string) => text;

export class RawPgoutputPlugin extends PgoutputPlugin {
  constructor(publicationNames: string[]) {
    super({ protoVersion: 1, publicationNames, messages: true });
  }

  override parse(buffer: Buffer): Pgoutput.Message {
    const message = super.parse(buffer) as Pgoutput.Message;
    if (message.tag === 'relation') for (const c of message.columns) c.parser = identity;
    return message;
  }

  override start(client: Client, slotName: string, lastLsn: string): Promise<unknown> {
    const publications = this.options.publicationNames.map((p: string) => p.replace(/'/g, "''")).join(',');
    return client.query(
      `START_REPLICATION SLOT "${slotName}" LOGICAL ${lastLsn} (proto_version '1', publication_names '${publications}', messages 'true')`,
    );
  }
}

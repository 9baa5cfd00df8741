/**
 * The options Tide starts pgoutput with (START_REPLICATION ... LOGICAL ... (options)):
 *
 * - Protocol version 1: Postgres sends a transaction only after it committed,
 *   spilling large ones to its own disk (logical_decoding_work_mem), so Tide
 *   never sees rolled-back work and needs no buffering of its own. The BEGIN
 *   message already carries the final commit LSN.
 * - Values as text (no `binary`): Tide converts Postgres' text output itself
 *   (type-mapping.ts), and text columns pass through as their UTF-8 bytes.
 * - `messages 'true'`, so the heartbeat's pg_logical_emit_message arrives.
 *
 * Messages are decoded by pgoutput-decoder.ts.
 */
export function pgoutputOptions(publicationNames: string[]): string {
  const publications = publicationNames.map((p) => p.replace(/'/g, "''")).join(',');
  return `proto_version '1', publication_names '${publications}', messages 'true'`;
}

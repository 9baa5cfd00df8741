import type pg from 'pg';
import { z } from 'zod';
import { TideError } from '../errors.ts';

/**
 * Signals to a running (or stopped) source, and the watermarks of incremental snapshots: both are logical
 * decoding messages (`pg_logical_emit_message`), so they travel through the replication slot itself.
 *
 * Why messages and not a signal table (Debezium offers both): a message needs no table, no INSERT right and no
 * publication entry; every role may call `pg_logical_emit_message` unless a DBA revoked it (the heartbeat
 * already relies on it). A *transactional* signal reaches the connector only if its transaction commits, in
 * commit order with the data, and a stopped connector finds it in the slot at its next start.
 *
 * A signal: prefix `tide.signal`, content JSON in Debezium's shape (its "execute-snapshot" signal), plus the
 * slot it is meant for (every slot on the database sees every message):
 *
 *   SELECT pg_logical_emit_message(true, 'tide.signal',
 *     '{"type":"execute-snapshot","slot":"tide","data":{"data-collections":["public.orders"],"type":"incremental",
 *       "additional-conditions":[{"data-collection":"public.orders","filter":"created_at > now() - interval ''7 days''"}]}}');
 *
 * A watermark: prefix `tide.watermark`, non-transactional, content `{"slot":…,"window":…,"kind":"low"|"high"}`.
 */
export const SIGNAL_PREFIX = 'tide.signal';
export const WATERMARK_PREFIX = 'tide.watermark';

const signalSchema = z.object({
  type: z.literal('execute-snapshot'),
  slot: z.string().optional(),
  data: z.object({
    'data-collections': z.array(z.string().min(1)).min(1),
    type: z.enum(['incremental', 'INCREMENTAL']).optional(),
    'additional-conditions': z.array(z.object({ 'data-collection': z.string(), filter: z.string().min(1) })).optional(),
  }),
});

export interface SnapshotRequest {
  /** `schema.table` */
  table: string;
  /** An SQL predicate the rows must satisfy (Debezium's additional-conditions filter). */
  where?: string;
  /** Why: a signal (`tide source snapshot` or SQL), a table that joined the include list, or a table created while running. */
  reason: 'signal' | 'joined' | 'created';
  requestedAt: string;
}

/** The snapshot requests of a signal meant for `slot` (empty for another slot's), or an error naming what is wrong. */
export function parseSignal(content: Buffer | string, slot: string, now = new Date()): SnapshotRequest[] {
  let json: unknown;
  try {
    json = JSON.parse(content.toString());
  } catch (err) {
    throw new TideError(`signal ${JSON.stringify(content.toString().slice(0, 200))} is not JSON: ${(err as Error).message}`);
  }
  const parsed = signalSchema.safeParse(json);
  if (!parsed.success)
    throw new TideError(
      `signal ${JSON.stringify(content.toString().slice(0, 200))} is not an execute-snapshot signal: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`,
    );
  const s = parsed.data;
  if (s.slot !== undefined && s.slot !== slot) return [];
  const filters = new Map((s.data['additional-conditions'] ?? []).map((c) => [c['data-collection'], c.filter]));
  return s.data['data-collections'].map((table) => {
    const where = filters.get(table);
    return { table, ...(where ? { where } : {}), reason: 'signal' as const, requestedAt: now.toISOString() };
  });
}

/** The signal `tide source snapshot` sends. */
export function snapshotSignal(slot: string, tables: string[], where?: string): string {
  return JSON.stringify({
    type: 'execute-snapshot',
    slot,
    data: {
      'data-collections': tables,
      type: 'incremental',
      ...(where ? { 'additional-conditions': tables.map((t) => ({ 'data-collection': t, filter: where })) } : {}),
    },
  });
}

/** Send a signal: transactional, so it arrives only once committed. Returns its LSN. */
export async function emitSignal(client: pg.ClientBase, content: string): Promise<string> {
  const { rows } = await client.query<{ lsn: string }>(`SELECT pg_logical_emit_message(true, $1, $2)::text AS lsn`, [
    SIGNAL_PREFIX,
    content,
  ]);
  return rows[0]!.lsn;
}

export interface Watermark {
  slot: string;
  window: string;
  kind: 'low' | 'high';
}

/** Write a watermark now (non-transactional: it takes its WAL position at once). Returns its LSN. */
export async function emitWatermark(client: pg.ClientBase, w: Watermark): Promise<string> {
  const { rows } = await client.query<{ lsn: string }>(`SELECT pg_logical_emit_message(false, $1, $2)::text AS lsn`, [
    WATERMARK_PREFIX,
    JSON.stringify(w),
  ]);
  return rows[0]!.lsn;
}

/** A watermark message's content, or undefined when it is not one of `slot`'s. */
export function parseWatermark(content: Buffer, slot: string): Watermark | undefined {
  try {
    const w = JSON.parse(content.toString()) as Partial<Watermark>;
    if (w.slot !== slot || typeof w.window !== 'string' || (w.kind !== 'low' && w.kind !== 'high')) return undefined;
    return w as Watermark;
  } catch {
    return undefined;
  }
}

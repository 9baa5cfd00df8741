import type { ChangeEvent } from '../../src/sink/change-event.ts';

/** The commit time of a test change at `at`: second `at` after a fixed epoch. */
export const commitMsAt = (at: number): number => 1_700_000_000_000 + at * 1000;

/**
 * A change event of `public.orders` keyed by `id`, as the sink decodes one, for tests that hand batches to the
 * merges directly: at commit LSN `at` (event index 0), committed at commitMsAt(at), Kafka offset `at` unless
 * given. `row` is the after image (the before image for a delete); a truncate has none and no key.
 */
export function orderEvent(
  op: 'c' | 'u' | 'd' | 't',
  row: Record<string, unknown> | null,
  at: number,
  opts: { offset?: number; unchangedToast?: string[] } = {},
): ChangeEvent {
  return {
    topic: 'orders',
    partition: 0,
    offset: BigInt(opts.offset ?? at),
    table: 'public.orders',
    op,
    before: op === 'd' ? row : null,
    after: op === 'd' || op === 't' ? null : row,
    unchangedToast: opts.unchangedToast ?? [],
    commitLsn: BigInt(at),
    eventIndex: 0,
    txId: null,
    commitTsMs: commitMsAt(at),
    eventTsMs: null,
    snapshot: false,
    columns: [],
    valueSchemaId: 1,
    keyColumns: op === 't' ? [] : ['id'],
  };
}

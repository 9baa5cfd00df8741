import { describe, expect, it } from 'vitest';
import { missingRanges, RetentionGapError, seekTarget, TopicRewoundError } from '../../src/sink/retention-gap.ts';

const at = (table: string, next: number | undefined) => ({ table, next: next === undefined ? undefined : BigInt(next) });

describe('where a partition resumes, and what retention took', () => {
  it('seeks to the lowest offset a table needs, or the earliest retained one when a table is new', () => {
    expect(seekTarget([at('bronze.public.t', 50), at('silver.public.t', 40)])).toBe(40n);
    expect(seekTarget([at('bronze.public.t', undefined), at('silver.public.t', 40)])).toBe('earliest');
    expect(seekTarget([])).toBe('earliest');
  });

  it('names each table that needs offsets below the first retained one', () => {
    const positions = [
      at('bronze.public.t', 20),
      at('silver.public.t', 25),
      at('silver.public.t_history', 40),
      at('bronze.public.new', undefined),
    ];
    expect(missingRanges(positions, 20n, 30n, true)).toEqual([
      { table: 'bronze.public.t', from: 20n, to: 29n },
      { table: 'silver.public.t', from: 25n, to: 29n },
    ]);
    // Mid-run (not fresh), a new table that was reading from `expected` misses the hole as well.
    expect(missingRanges(positions, 35n, 38n, false).map((m) => [m.table, m.from, m.to])).toEqual([
      ['bronze.public.t', 35n, 37n],
      ['silver.public.t', 35n, 37n],
      ['bronze.public.new', 35n, 37n],
    ]);
    // A hole above the first retained offset (transaction markers, compaction) is no gap.
    expect(missingRanges(positions, 20n, 20n, true)).toEqual([]);
  });

  it('says what was lost and the way out', () => {
    const err = new RetentionGapError(
      'orders.public.orders',
      2,
      350n,
      [{ table: 'silver.public.orders', from: 120n, to: 349n }],
      'connectors/orders-lake.json',
    );
    expect(err.message).toMatchInlineSnapshot(
      `"kafka topic orders.public.orders partition 2: the messages at offsets 120–349 were deleted by retention before the sink wrote them (the partition now starts at offset 350): silver.public.orders needs offsets 120–349. The sink stops instead of skipping them. Way out: re-snapshot the table (tide source resnapshot <source connector file>, or an incremental snapshot of public.orders) so that Kafka carries every current row again, then run \`tide lake accept-gap connectors/orders-lake.json public.orders\` to let the tables resume at offset 350 (README "Recovering from a retention gap"). Raise the topic's retention.ms above the sink's longest outage."`,
    );
    expect(new TopicRewoundError('orders.public.orders', 0, 500n, 12n).message).toMatchInlineSnapshot(
      `"kafka topic orders.public.orders partition 0: it ends at offset 12, but the lake tables have committed up to offset 499: the topic was deleted and created again, or kafka.bootstrap.servers points at another cluster. The sink stops instead of skipping the new messages as already written. Check kafka.bootstrap.servers; if the topic was re-created, move the table's lake tables aside (they are rebuilt from the new topic's first offset) and re-snapshot the table."`,
    );
  });
});

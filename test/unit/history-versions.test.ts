import { describe, expect, it } from 'vitest';
import type { ChangeEvent } from '../../src/sink/change-event.ts';
import { historyVersions } from '../../src/sink/history-merge.ts';
import { commitMsAt, orderEvent } from '../support/change-events.ts';

/** historyVersions (pure): a batch's change events become SCD2 versions and closing positions. */
const event = (offset: number, op: 'c' | 'u' | 'd', at: number, row: Record<string, unknown>): ChangeEvent =>
  orderEvent(op, row, at, { offset });

describe('historyVersions', () => {
  it('a change the source sent twice (a replay after its crash, at a new Kafka offset) is one version', () => {
    const batch = historyVersions(
      [
        event(1, 'c', 10, { id: 1n, status: 'new' }),
        event(2, 'u', 20, { id: 1n, status: 'paid' }),
        // The source restarted from an older confirmed position: the same two changes again.
        event(3, 'c', 10, { id: 1n, status: 'new' }),
        event(4, 'u', 20, { id: 1n, status: 'paid' }),
        event(5, 'd', 30, { id: 1n, status: 'paid' }),
      ],
      ['id'],
      [],
    );
    const at = commitMsAt;
    expect(batch.versions.map((v) => [v.row.status, v.validFrom, v.validTo])).toEqual([
      ['new', at(10), at(20)],
      ['paid', at(20), at(30)],
    ]);
    expect(batch.changes.map((c) => Number(c.commitLsn))).toEqual([10, 20, 30]);
  });

  it('keeps changes of different keys at one position (a Debezium snapshot gives all its rows one position)', () => {
    const batch = historyVersions(
      [event(1, 'c', 10, { id: 1n, status: 'a' }), event(2, 'c', 10, { id: 2n, status: 'b' }), event(3, 'c', 10, { id: 3n, status: 'c' })],
      ['id'],
      [],
    );
    expect(batch.versions.map((v) => v.row.id)).toEqual([1n, 2n, 3n]);
    expect(batch.changes).toHaveLength(3);
  });
});

import { describe, expect, it } from 'vitest';
import type { ChangeEvent } from '../../src/sink/change-event.ts';
import { historySteps, historyVersions, historyVersionsInTurns } from '../../src/sink/history-merge.ts';
import { orderEvent } from '../support/change-events.ts';

/**
 * historyVersionsInTurns (pure): the background lane's history batch is built in steps with a turn of the
 * event loop between them (event-loop-turns.ts), so a flush's callbacks run while a large merge is planned;
 * the batch is the one historyVersions builds at once.
 */
const events = (): ChangeEvent[] => [
  // Out of order on purpose: the steps start after the sort.
  orderEvent('u', { id: 1n, status: 'paid', note: 'x' }, 20, { offset: 5 }),
  orderEvent('c', { id: 1n, status: 'new', note: 'n' }, 10, { offset: 1 }),
  orderEvent('c', { id: 2n, status: 'new', note: 'm' }, 11, { offset: 2 }),
  orderEvent('u', { id: 2n, status: 'paid' }, 21, { offset: 6, unchangedToast: ['note'] }),
  orderEvent('d', { id: 1n, status: 'paid' }, 30, { offset: 7 }),
  orderEvent('c', { id: 3n, status: 'new', note: 'o' }, 12, { offset: 3 }),
  orderEvent('t', null, 40, { offset: 8 }),
  orderEvent('c', { id: 3n, status: 'again', note: 'p' }, 50, { offset: 9 }),
  orderEvent('u', { id: 2n, status: 'paid' }, 21, { offset: 10, unchangedToast: ['note'] }), // a replay
];

describe('historyVersionsInTurns', () => {
  it('builds the same batch as historyVersions, whatever the step size', async () => {
    const once = historyVersions(events(), ['id'], []);
    expect(once.versions.length).toBe(6); // the delete opens none, the replay is dropped
    expect(once.truncateAt?.at).toBeDefined();
    for (const every of [1, 2, 3, 100]) expect(await historyVersionsInTurns(events(), ['id'], [], every)).toEqual(once);
  });

  it('yields after the sort and every `every` events, and not at all for a batch within one step', () => {
    const count = (every: number) => {
      const steps = historySteps(events(), ['id'], [], every);
      let yields = 0;
      while (!steps.next().done) yields++;
      return yields;
    };
    expect(count(3)).toBe(1 + 2); // after the sort; before events 4 and 7 (of 9)
    expect(count(1)).toBe(1 + 8);
    expect(count(9)).toBe(0);
  });

  it('lets callbacks already queued (a flush) run before the batch is done', async () => {
    const order: string[] = [];
    setImmediate(() => order.push('flush'));
    await historyVersionsInTurns(events(), ['id'], [], 2).then(() => order.push('history'));
    expect(order).toEqual(['flush', 'history']);
  });
});

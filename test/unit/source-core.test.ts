import { describe, expect, it } from 'vitest';
import { EventPublisher } from '../../src/source/publisher.ts';
import type { EventProducer, OutgoingMessage } from '../../src/events/kafka-producer.ts';
import { formatLsn, parseLsn } from '../../src/source/lsn.ts';
import { TRANSITIONS, transition, type SourceEvent, type SourceState } from '../../src/source/source-state.ts';
import { avroName, uniqueAvroNames } from '../../src/events/avro-names.ts';

/** A producer whose sends resolve only when the test says so. */
class ManualProducer implements EventProducer {
  sent: OutgoingMessage[][] = [];
  private resolvers: (() => void)[] = [];
  async ensureTopics(): Promise<void> {}
  send(messages: OutgoingMessage[]): Promise<void> {
    this.sent.push(messages);
    return new Promise((r) => this.resolvers.push(r));
  }
  ackNext(): void {
    this.resolvers.shift()!();
  }
  async close(): Promise<void> {}
}
const msg = (n: number): OutgoingMessage => ({ topic: 't', key: Buffer.from([n]), value: Buffer.from([n]) });
const tick = () => new Promise((r) => setTimeout(r, 0));

describe('EventPublisher', () => {
  it('confirms a transaction only after Kafka acknowledged every event before its commit', async () => {
    const producer = new ManualProducer();
    const confirmed: bigint[] = [];
    const p = new EventPublisher(producer, {
      maxBatch: 2,
      lingerMs: 1000,
      onConfirmable: (l) => confirmed.push(l),
      onError: () => undefined,
    });
    await p.add(msg(1));
    await p.add(msg(2)); // full batch: sent
    p.commit(100n); // tx 1 ends after event 2
    expect(confirmed).toEqual([]);
    producer.ackNext();
    await tick();
    expect(confirmed).toEqual([100n]);
  });

  it('confirms an empty transaction (a heartbeat) at once when nothing is pending, never past pending events', async () => {
    const producer = new ManualProducer();
    const confirmed: bigint[] = [];
    const p = new EventPublisher(producer, {
      maxBatch: 1,
      lingerMs: 1000,
      onConfirmable: (l) => confirmed.push(l),
      onError: () => undefined,
    });
    p.commit(10n);
    expect(confirmed).toEqual([10n]);
    await p.add(msg(1));
    p.commit(20n);
    p.commit(30n); // an empty transaction after an unacknowledged event
    expect(confirmed).toEqual([10n]);
    producer.ackNext();
    await tick();
    expect(confirmed).toEqual([10n, 30n]);
  });

  it('keeps one batch in flight and makes add() wait (backpressure), in order', async () => {
    const producer = new ManualProducer();
    const p = new EventPublisher(producer, { maxBatch: 2, lingerMs: 1000, onConfirmable: () => undefined, onError: () => undefined });
    await p.add(msg(1));
    await p.add(msg(2));
    await p.add(msg(3));
    let added = false;
    const fourth = p.add(msg(4)).then(() => (added = true));
    await tick();
    expect(added).toBe(false);
    expect(producer.sent.length).toBe(1);
    producer.ackNext();
    await fourth;
    expect(producer.sent.map((b) => b.map((m) => m.key![0]))).toEqual([
      [1, 2],
      [3, 4],
    ]);
  });

  it('stops confirming and reports when Kafka fails', async () => {
    const failing: EventProducer = {
      ensureTopics: async () => {},
      send: async () => Promise.reject(new Error('broker gone')),
      close: async () => {},
    };
    const confirmed: bigint[] = [];
    const errors: Error[] = [];
    const p = new EventPublisher(failing, {
      maxBatch: 1,
      lingerMs: 1,
      onConfirmable: (l) => confirmed.push(l),
      onError: (e) => errors.push(e),
    });
    await p.add(msg(1));
    p.commit(5n);
    await tick();
    expect(errors.map((e) => e.message)).toEqual(['broker gone']);
    expect(confirmed).toEqual([]);
    await expect(p.add(msg(2))).rejects.toThrow('broker gone');
  });
});

describe('LSNs', () => {
  it.each(['0/0', '16/B374D848', 'FFFFFFFF/FFFFFFFF'])('%s round-trips', (text) => expect(formatLsn(parseLsn(text))).toBe(text));
  it('orders numerically, not as text', () => expect(parseLsn('1/0') > parseLsn('0/FFFFFFFF')).toBe(true));
});

describe('source state machine', () => {
  const cases: [SourceState, SourceEvent, SourceState | 'illegal'][] = [
    ['starting', 'snapshot', 'snapshotting'],
    ['starting', 'stream', 'streaming'],
    ['snapshotting', 'stream', 'streaming'],
    ['streaming', 'pause', 'paused'],
    ['streaming', 'fail', 'failed'],
    ['paused', 'stop', 'stopped'],
    ['streaming', 'snapshot', 'illegal'],
    ['stopped', 'stream', 'illegal'],
    ['failed', 'stream', 'illegal'],
  ];
  it.each(cases)('%s --%s--> %s', (from, event, to) => {
    if (to === 'illegal') expect(() => transition(from, event)).toThrow(/no transition/);
    else expect(transition(from, event)).toBe(to);
  });
  it('every state can stop', () => {
    for (const s of Object.keys(TRANSITIONS) as SourceState[]) if (s !== 'stopped') expect(TRANSITIONS[s].stop).toBe('stopped');
  });
});

describe('Avro names', () => {
  it.each([
    ['order_items', 'order_items'],
    ['unit price', 'unit_price'],
    ['2fa', '_2fa'],
    ['prix-€', 'prix__'],
    ['', '_'],
  ])('%j becomes %j', (pg, avro) => expect(avroName(pg)).toBe(avro));
  it('refuses two columns that adjust to the same name', () => {
    expect(() => uniqueAvroNames('public.t', ['a-b', 'a_b'])).toThrowErrorMatchingInlineSnapshot(
      `[TideError: table public.t: columns "a-b" and "a_b" both become the Avro name "a_b". Rename one, or exclude one with column.exclude.list.]`,
    );
  });
});

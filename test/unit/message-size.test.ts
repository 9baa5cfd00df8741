import { describe, expect, it } from 'vitest';
import { chunkBySize, recordBytes } from '../../src/events/message-size.ts';

const msg = (n: number, i: number) => ({ topic: 't', key: Buffer.from([i]), value: Buffer.alloc(n) });

describe('sends split by size (max.message.bytes)', () => {
  it('keeps order and puts at most `limit` bytes in a run; a larger message goes alone', () => {
    const messages = [msg(400, 0), msg(400, 1), msg(400, 2), msg(5000, 3), msg(10, 4)];
    const chunks = chunkBySize(messages, 1000);
    expect(chunks.map((c) => c.map((m) => m.key[0]))).toEqual([[0, 1], [2], [3], [4]]);
    for (const c of chunks.filter((c) => c.length > 1))
      expect(61 + c.reduce((n, m) => n + recordBytes(m) - 61, 0)).toBeLessThanOrEqual(1000);
    expect(chunks.flat()).toEqual(messages);
  });

  it('counts key, value, headers and the batch and record framing', () => {
    expect(recordBytes({ topic: 't', key: Buffer.alloc(10), value: Buffer.alloc(100) })).toBe(61 + 21 + 110);
    expect(recordBytes({ topic: 't', key: null, value: null, headers: { ab: Buffer.alloc(5) } })).toBe(61 + 21 + 10 + 2 + 5);
  });
});

import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { untilAborted } from '../../src/abortable.ts';
import { sourceConfigSchema } from '../../src/config/source-config.ts';
import { log } from '../../src/log.ts';
import { IncrementalSnapshots } from '../../src/source/incremental-snapshot.ts';
import { OffsetStore } from '../../src/source/offset-store.ts';

const config = sourceConfigSchema.parse({
  'database.hostname': 'localhost',
  'database.user': 'tide',
  'database.dbname': 'shop',
  'topic.prefix': 'shop',
  'kafka.bootstrap.servers': 'localhost:9092',
  'schema.registry.url': 'http://localhost:8081',
});

describe('stopping the incremental snapshots', () => {
  it('ends the loop when the source failed or paused: the connector signal is then never aborted', async () => {
    const store = new OffsetStore(join(mkdtempSync(join(tmpdir(), 'tide-inc-stop-')), 'offsets.json'));
    const errors: Error[] = [];
    const incremental = new IncrementalSnapshots({
      config,
      store,
      publisher: () => undefined,
      captures: () => false,
      codecFor: () => Promise.reject(new Error('no registry in a unit test')),
      connect: () => Promise.reject(new Error('no database in a unit test')),
      log,
      onError: (err) => errors.push(err),
    });
    const neverAborted = new AbortController().signal;
    incremental.start(neverAborted);
    await new Promise((r) => setTimeout(r, 10)); // the loop waits for work now
    await incremental.stop(); // before the fix: the loop woke, found no work, and waited again, for ever
    expect(errors).toEqual([]);
  });
});

describe('untilAborted', () => {
  it('settles as the work does, or rejects with the reason once the signal aborts', async () => {
    await expect(untilAborted(Promise.resolve(7), new AbortController().signal)).resolves.toBe(7);
    await expect(untilAborted(Promise.reject(new Error('bad')), new AbortController().signal)).rejects.toThrow('bad');
    const stop = new AbortController();
    const never = untilAborted(new Promise<never>(() => undefined), stop.signal);
    stop.abort(new Error('the source is stopping'));
    await expect(never).rejects.toThrow('the source is stopping');
    const late = Promise.reject(new Error('rejected after the stop'));
    await expect(untilAborted(late, stop.signal)).rejects.toThrow('the source is stopping'); // and `late` is not unhandled
  });
});

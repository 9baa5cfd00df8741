import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DeltaTable } from '../../src/lake/delta/delta-table.ts';
import { LocalStore } from '../../src/lake/storage/local-store.ts';
import { silverPath } from '../../src/sink/table-layout.ts';
import { waitFor } from '../support/kafka.ts';
import { sinkFile, startSink } from '../support/lake.ts';
import { useSourceFixture } from '../support/source-fixture.ts';

/**
 * A sink that has fallen far behind flushes up to `flush.max.events` messages of one table at once (the
 * shipped 200,000). Found by bench/pipeline-sustained.ts: with more than ~125,000 messages of one table in a
 * flush the sink crashed with `RangeError: Maximum call stack size exceeded` in flushNow, which spread one
 * argument per message into Array.push. On the real stack: 150,000 changes in one transaction reach Kafka
 * before the sink starts, and its first flush holds them all.
 */
const ROWS = 150_000;

describe('sink: one flush of more messages than a call can take arguments', () => {
  const fx = useSourceFixture('sink_large_flush', ['CREATE TABLE bulk (id int PRIMARY KEY, v text NOT NULL)'], {
    'table.include.list': 'public\\.bulk',
  });

  it(`commits ${ROWS} changes of one table in one flush`, async () => {
    const { sql } = fx;
    const topic = fx.topic('public.bulk');
    const lakeDir = mkdtempSync(join(tmpdir(), 'tide-large-flush-'));
    const store = new LocalStore(lakeDir);
    const sinkName = `large-${Date.now().toString(36)}`;
    await sql.query(`INSERT INTO bulk SELECT g, 'v' || g FROM generate_series(1, ${ROWS}) g`);
    // Every change is in Kafka before the sink starts; the flush waits 30 s after the first message or for 200,000.
    fx.sink = startSink(
      sinkFile(sinkName, fx.src.config['topic.prefix'], lakeDir, {
        topics: topic,
        'silver.history.tables': '',
        'flush.max.events': 200_000,
        // Bounded by events only here (the bytes bound is the next test's).
        'flush.max.bytes': 1 << 30,
        'flush.interval.ms': 30_000,
      }),
      store,
    );
    const failed = fx.sink.done.then(
      () => 'the sink stopped',
      (err: unknown) => `the sink failed: ${(err as Error).stack ?? String(err)}`,
    );
    // The crash came after the lake commit: wait for the flush itself to finish, not only for silver.
    const sink = fx.sink;
    const flushed = fx
      .waitForCommitted(store, sinkName, silverPath('public.bulk'), topic)
      .then(() => waitFor(async () => sink.worker.stats.flushes > 0, 'the flush to finish', 60_000))
      .then(() => 'flushed');
    expect(await Promise.race([flushed, failed])).toBe('flushed');
    expect(sink.worker.stats.flushes, 'all in one flush').toBe(1);
    expect(sink.worker.stats.messages).toBe(ROWS);
    const silver = await DeltaTable.open(store, silverPath('public.bulk'));
    const rows = silver!.files().reduce((n, f) => n + (JSON.parse(f.stats!) as { numRecords: number }).numRecords, 0);
    expect(rows).toBe(ROWS);
    await fx.sink.stop();
    fx.sink = undefined;
  }, 300_000);

  it('flushes when the buffered messages reach flush.max.bytes, before flush.max.events or the interval', async () => {
    const { sql } = fx;
    const topic = fx.topic('public.bulk');
    const lakeDir = mkdtempSync(join(tmpdir(), 'tide-large-flush-'));
    const store = new LocalStore(lakeDir);
    const sinkName = `bytes-${Date.now().toString(36)}`;
    // The table already holds the first test's 150,000 rows (or this test inserts them): 150,000 messages of
    // some tens of bytes each are several MiB, far beyond a 256 KiB bound.
    await sql.query(`INSERT INTO bulk SELECT g, 'v' || g FROM generate_series(1, ${ROWS}) g ON CONFLICT DO NOTHING`);
    fx.sink = startSink(
      sinkFile(sinkName, fx.src.config['topic.prefix'], lakeDir, {
        topics: topic,
        'silver.history.tables': '',
        'flush.max.events': 200_000,
        'flush.max.bytes': 256 * 1024,
        'flush.interval.ms': 600_000,
      }),
      store,
    );
    const sink = fx.sink;
    await fx.waitForCommitted(store, sinkName, silverPath('public.bulk'), topic);
    await waitFor(async () => sink.worker.stats.messages >= ROWS, 'the flushes to finish', 60_000);
    // Without the bytes bound nothing would flush for 10 minutes (fewer messages than flush.max.events).
    expect(sink.worker.stats.flushes).toBeGreaterThan(5);
    const silver = await DeltaTable.open(store, silverPath('public.bulk'));
    const rows = silver!.files().reduce((n, f) => n + (JSON.parse(f.stats!) as { numRecords: number }).numRecords, 0);
    expect(rows).toBe(ROWS);
    await fx.sink.stop();
    fx.sink = undefined;
  }, 300_000);
});

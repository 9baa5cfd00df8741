import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPrisma } from '../../src/app/db.ts';
import { replay } from '../../src/app/replay.ts';
import { ConnectionError } from '../../src/errors.ts';
import { LocalStore } from '../../src/lake/storage/local-store.ts';
import { ConnectionHealth } from '../../src/ops/connection-health.ts';
import { TideMetrics } from '../../src/ops/metrics.ts';
import { SinkWorker } from '../../src/sink/sink-worker.ts';
import { createTestDatabase } from '../support/db.ts';
import { waitFor } from '../support/kafka.ts';
import { ORDER_TABLES, sinkFile, waitForLake } from '../support/lake.ts';
import { dropSlot, sourceConfig, startSource, type RunningSource } from '../support/source.ts';

/**
 * A sink started before its topics exist (issue 10). Before: it exited at once with
 * `This server does not host this topic-partition`, naming no topic. Now it waits for them within
 * errors.retry.timeout, saying which topics it waits for (log, /readyz), and follows the source once
 * it has created them; topics that never come end the sink with an error naming them.
 */
describe('a sink started before its topics exist', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let source: RunningSource | undefined;
  let src: ReturnType<typeof sourceConfig>;
  const dir = mkdtempSync(join(tmpdir(), 'tide-topic-wait-'));

  beforeAll(async () => {
    db = await createTestDatabase('topic_wait');
    const prisma = createPrisma(db.url, 2);
    await replay(prisma, { limit: 150, concurrency: 2 });
    await prisma.$disconnect();
    src = sourceConfig(db.url, 'topicwait', { 'table.include.list': 'public\\.(customers|products|orders|order_items)' });
  }, 120_000);

  afterAll(async () => {
    await source?.stop();
    if (src) await dropSlot(db.url, src.config['slot.name']);
    await db?.drop();
  });

  it('waits for them (log, /readyz), then reads what the source publishes once it has created them', async () => {
    const lakeDir = join(dir, 'lake');
    const store = new LocalStore(lakeDir);
    const name = `wait-${Date.now().toString(36)}`;
    const health = new ConnectionHealth(name, new TideMetrics({ processMetrics: false }));
    const worker = new SinkWorker(sinkFile(name, src.config['topic.prefix'], lakeDir), { store, monitor: health });
    const abort = new AbortController();
    const done = worker.run(abort.signal);
    let failure: unknown;
    done.catch((e: unknown) => (failure = e));
    const topics = ORDER_TABLES.map((t) => `${src.config['topic.prefix']}.${t}`);
    await waitFor(
      () => failure !== undefined || /waiting for topics/.test(health.reason() ?? ''),
      'the sink to wait for its topics',
      60_000,
    );
    expect(failure).toBeUndefined();
    expect(health.reason()).toBe(
      `kafka (${src.config['kafka.bootstrap.servers'].join(',')}): waiting for topics ${topics.join(', ')} to exist`,
    );

    source = await startSource(src, join(dir, 'state'));
    await waitForLake(store, name, src.config['topic.prefix'], 180_000);
    expect(failure).toBeUndefined();
    expect(health.reason()).toBeUndefined();
    expect(worker.stats.silverChanges).toBeGreaterThan(0);
    abort.abort();
    await done;
  });

  it('topics that never come: the sink stops after errors.retry.timeout with an error naming them', async () => {
    const lakeDir = join(dir, 'lake-missing');
    const name = `missing-${Date.now().toString(36)}`;
    const file = sinkFile(name, `never_${Date.now().toString(36)}`, lakeDir, { 'errors.retry.timeout': 3000 });
    const err = await new SinkWorker(file, { store: new LocalStore(lakeDir) }).run(new AbortController().signal).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConnectionError);
    expect((err as ConnectionError).code).toBe('missing-topics');
    expect((err as Error).message).toMatch(
      new RegExp(
        `^kafka \\([^)]+\\): sink ${name} is still waiting for topics ${file.config.topics!.map((t) => t.replace(/\./g, '\\.')).join(', ')} to exist after \\d+ s \\(errors\\.retry\\.timeout 3 s\\)\\. ` +
          'start the source connector first \\(it creates the topics\\), or fix `topics`; raise errors.retry.timeout to wait longer$',
      ),
    );
  });

  it('topics.regex that matches nothing waits the same way, then names the pattern', async () => {
    const lakeDir = join(dir, 'lake-regex');
    const name = `regex-${Date.now().toString(36)}`;
    const regex = `nomatch_${Date.now().toString(36)}\\..*`;
    const base = sinkFile(name, 'unused', lakeDir, { 'errors.retry.timeout': 3000 });
    const file = { ...base, config: { ...base.config, topics: undefined, 'topics.regex': regex } };
    const err = await new SinkWorker(file, { store: new LocalStore(lakeDir) }).run(new AbortController().signal).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConnectionError);
    expect((err as Error).message).toContain(`is still waiting for a topic that matches topics.regex ${regex} after`);
  });
});

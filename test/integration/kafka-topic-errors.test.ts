import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TopicCreationError } from '../../src/events/kafka-errors.ts';
import { createTestDatabase } from '../support/db.ts';
import { SourceConnector } from '../../src/source/connector.ts';
import { dropSlot, sourceConfig, writeConnectorFile } from '../support/source.ts';

const run = promisify(execFile);
const BIN = resolve('bin/tide.js');

/**
 * Topics Kafka refuses to create (issue 10). Before: `KafkaJSAggregateError: Topic creation errors`
 * with no topic named. Now a TopicCreationError names the topic and what to change, and `source plan`
 * reports a name Kafka would refuse before anything is created.
 */
describe('topics Kafka refuses', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  const dir = mkdtempSync(join(tmpdir(), 'tide-topics-'));
  const slots: string[] = [];

  beforeAll(async () => {
    db = await createTestDatabase('topic_errors');
  });
  afterAll(async () => {
    for (const slot of slots) await dropSlot(db.url, slot);
    await db?.drop();
  });

  const longPrefix = `p${'x'.repeat(239)}`; // + ".public.orders": 254 characters

  it('a topic name over 249 characters: plan names it as a blocker, start stops with the topic and the limit', async () => {
    const file = sourceConfig(db.url, 'longtopic', { 'table.include.list': 'public\\.orders', 'topic.prefix': longPrefix });
    slots.push(file.config['slot.name']);
    const path = writeConnectorFile(dir, file);
    const plan = await run(process.execPath, [BIN, 'source', 'plan', path], { cwd: dir }).then(
      () => {
        throw new Error('source plan should exit 1 on a topic name Kafka refuses');
      },
      (e: { code: number; stdout: string }) => e,
    );
    expect(plan.code).toBe(1);
    expect(plan.stdout).toContain(
      `-- BLOCKER: kafka topic ${longPrefix.slice(0, 80)}…: is 254 characters long; Kafka allows at most 249. ` +
        'Topic names are <topic.prefix>.<schema>.<table>: shorten topic.prefix (or rename the table, or exclude it with table.exclude.list)',
    );

    const err = await runUntilStopped(file, join(dir, 'state-long'));
    expect(err).toBeInstanceOf(TopicCreationError);
    expect((err as TopicCreationError).topic).toBe(`${longPrefix}.public.orders`);
    expect((err as Error).message).toMatch(/is 254 characters long; Kafka allows at most 249\. .*shorten topic\.prefix/);
  });

  it('any other creation error names the topic (a replication factor above the broker count)', async () => {
    const file = sourceConfig(db.url, 'rf', { 'table.include.list': 'public\\.orders', 'topic.replication.factor': 3 });
    slots.push(file.config['slot.name']);
    const err = await runUntilStopped(file, join(dir, 'state-rf'));
    expect(err).toBeInstanceOf(TopicCreationError);
    expect((err as Error).message).toMatch(
      new RegExp(
        `^kafka topic ${file.config['topic.prefix']}\\.(public\\.orders|transaction): Kafka refused to create it: Replication-factor is invalid.*\\. ` +
          'set topic.replication.factor to at most the number of brokers$',
        'i',
      ),
    );
  });
});

/** Run the connector until it ends by itself; its error (undefined when it returned). */
function runUntilStopped(file: ReturnType<typeof sourceConfig>, stateDir: string): Promise<unknown> {
  return new SourceConnector(file, { stateDir }).run(new AbortController().signal).then(
    () => undefined,
    (e: unknown) => e,
  );
}

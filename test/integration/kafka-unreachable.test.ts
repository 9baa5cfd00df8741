import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeConnectorFileAt } from '../support/connector-file.ts';
import { closedPort, printedHttpUrl, startCli, type RunningCli } from '../support/cli.ts';
import { createTestDatabase } from '../support/db.ts';
import { sinkFile } from '../support/lake.ts';
import { dropSlot, sourceConfig, startSource, writeConnectorFile } from '../support/source.ts';

/**
 * `kafka.bootstrap.servers` pointing where no broker listens (issue 10). Before: `source start` and
 * `sink start` logged nothing about Kafka for a minute and ignored SIGTERM (they had to be killed).
 * Now they say what they wait for, stop at once on SIGTERM, and end by themselves after the start-up
 * budget with a ConnectionError that names the connection, the cause and the fix. The bounds below only
 * catch a hang; they are no speed check.
 */
const HANG = 20_000;

describe('Kafka unreachable: source and sink say so, stop on SIGTERM, and end with a clear error', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let port: number;
  let source: ReturnType<typeof sourceConfig>;
  let sourcePath: string;
  let sinkPath: string;
  const dir = mkdtempSync(join(tmpdir(), 'tide-kafka-down-'));
  const running: RunningCli[] = [];
  const cli = (...args: string[]) => {
    const c = startCli([...args, '--http-port', '0'], dir);
    running.push(c);
    return c;
  };

  beforeAll(async () => {
    db = await createTestDatabase('kafka_down');
    port = await closedPort();
    source = sourceConfig(db.url, 'kafkadown', {
      'table.include.list': 'public\\.orders',
      'kafka.bootstrap.servers': `127.0.0.1:${port}`,
    });
    sourcePath = writeConnectorFile(dir, source);
    const sink = sinkFile('kafka-down-sink', source.config['topic.prefix'], join(dir, 'lake'), {
      'kafka.bootstrap.servers': `127.0.0.1:${port}`,
    });
    sinkPath = join(dir, 'sink.json');
    writeConnectorFileAt(sinkPath, { name: sink.name, config: sink.config });
  });

  afterAll(async () => {
    for (const c of running) if (c.child.exitCode === null) c.child.kill('SIGKILL');
    if (source) await dropSlot(db.url, source.config['slot.name']);
    await db?.drop();
  });

  const waitingLine = () => new RegExp(`waiting for Kafka at 127\\.0\\.0\\.1:${port}`);
  const finalError = (doing: string) =>
    new RegExp(
      `^tide: kafka \\(127\\.0\\.0\\.1:${port}\\): no broker answered while ${doing} \\(ECONNREFUSED\\) ` +
        `\\(tried \\d+ times over \\d+ s; at start-up Tide waits at most 15 s for a broker it has not reached yet\\)\\. ` +
        'Check kafka.bootstrap.servers and that the brokers are running and reachable from this machine$',
      'm',
    );

  it('source start (first start): logs that it waits for Kafka, is not ready meanwhile, and stops at once on SIGTERM', async () => {
    const c = cli('source', 'start', sourcePath);
    await c.waitForOutput(waitingLine());
    const url = printedHttpUrl(c.output())!;
    const ready = await fetch(`${url}readyz`);
    expect(ready.status).toBe(503);
    expect(((await ready.json()) as { reason: string }).reason).toMatch(
      new RegExp(`^connections of ${source.name} kafka \\(127\\.0\\.0\\.1:${port}\\) is down for \\d+ s, \\d+ retr(y|ies) so far`),
    );
    const metrics = await (await fetch(`${url}metrics`)).text();
    expect(metrics).toMatch(new RegExp(`tide_connection_retries_total\\{connector="${source.name}",connection="kafka"\\} [1-9]`));
    expect(metrics).toContain(`tide_connection_up{connector="${source.name}",connection="kafka"} 0`);
    c.child.kill('SIGTERM');
    expect(await c.exitWithin(HANG), `still running ${HANG / 1000} s after SIGTERM:\n${c.output().slice(-3000)}`).toBe(0);
    expect(c.output()).toMatch(/stopped while starting/);
  });

  it('source start: ends by itself with a ConnectionError naming Kafka, the cause and the fix, without a stack trace', async () => {
    const c = cli('source', 'start', sourcePath);
    expect(await c.exitWithin(60_000), c.output().slice(-3000)).toBe(1);
    expect(c.output()).toMatch(
      finalError(`creating topics ${source.config['topic.prefix']}\\.public\\.orders, ${source.config['topic.prefix']}\\.transaction`),
    );
    expect(c.output()).not.toMatch(/^\s+at /m);
  });

  it('source start after a first run (slot in place): the same', async () => {
    // A first run against the real broker creates the slot, the topics and the offsets.
    const brokers = (process.env.KAFKA_BROKERS ?? '127.0.0.1:59092').split(',');
    const real = await startSource({ ...source, config: { ...source.config, 'kafka.bootstrap.servers': brokers } }, join(dir, '.tide'));
    expect(await real.stop()).toBe('stopped');
    const c = cli('source', 'start', sourcePath);
    await c.waitForOutput(waitingLine());
    c.child.kill('SIGTERM');
    expect(await c.exitWithin(HANG), c.output().slice(-3000)).toBe(0);
  });

  it('sink start: logs that it waits for Kafka, is not ready meanwhile, stops at once on SIGTERM, or ends with the error', async () => {
    const c = cli('sink', 'start', sinkPath);
    await c.waitForOutput(waitingLine());
    const url = printedHttpUrl(c.output())!;
    const ready = await fetch(`${url}readyz`);
    expect(ready.status).toBe(503);
    expect(((await ready.json()) as { reason: string }).reason).toMatch(new RegExp(`kafka \\(127\\.0\\.0\\.1:${port}\\) is down for`));
    c.child.kill('SIGTERM');
    expect(await c.exitWithin(HANG), `still running ${HANG / 1000} s after SIGTERM:\n${c.output().slice(-3000)}`).toBe(0);

    const d = cli('sink', 'start', sinkPath);
    expect(await d.exitWithin(60_000), d.output().slice(-3000)).toBe(1);
    expect(d.output()).toMatch(finalError('listing topics'));
    expect(d.output()).not.toMatch(/^\s+at /m);
  });
});

import { type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { runTraffic, type TrafficStats } from '../../src/app/traffic.ts';
import { hashValue } from '../../src/sink/masking.ts';
import { bronzePath, historyPath, silverPath } from '../../src/sink/table-layout.ts';
import { spawnSink } from '../support/connector-file.ts';
import { useOrderPipeline } from '../support/order-pipeline.ts';
import { readWithDeltaRs } from '../support/delta-reader.ts';
import { consumeAll, waitFor } from '../support/kafka.ts';
import {
  checkHistory,
  describeDiff,
  diffTables,
  MASK_SALT,
  ORDER_KEYS,
  ORDER_TABLES,
  postgresRows,
  sinkFile,
  startSink,
} from '../support/lake.ts';

/**
 * Issue 12 item 2: three `tide sink start` processes with one connector file share the topics' partitions
 * (one consumer group) and commit to the same Delta tables, while the order app writes. One worker is
 * killed with kill -9 and started again; another kills itself between writing its data files and its Delta
 * commit (fault injection) and is started again. Afterwards bronze holds every Kafka event exactly once
 * (and each (commit_lsn, event_index) once), silver equals Postgres, and history has exactly one current
 * version per key. Twice: with history merged in every flush, and on its own cadence (silver.history.interval.ms:
 * src/sink/history-lane.ts), where a kill -9 drops what waits for history and a rebalance seeks partitions back
 * to history's position.
 */
describe.each([
  { mode: 'history in every flush', label: 'sinkscale', history: {} },
  { mode: 'history in the background', label: 'sinkscalebg', history: { 'silver.history.interval.ms': 1500 } },
])('a sink scaled out to three workers ($mode)', ({ label, history }) => {
  // Three partitions per topic (the source's default topic.partitions): four topics, twelve partitions. The
  // test starts the sink workers (`tide sink start`) on the fixture's connector file itself.
  const fx = useOrderPipeline({
    label,
    replay: 400,
    sink: { 'flush.interval.ms': 200, ...history },
    startSink: false,
    timeoutMs: 180_000,
  });
  const { lakeDir, workDir, sinkName, connectorPath } = fx;
  const workers: { child: ChildProcess; exited: Promise<number | null> }[] = [];
  const logOf = (i: number) => join(workDir, `worker-${i}.log`);

  const startWorker = (i: number, crashAt?: string) => {
    workers[i] = spawnSink(connectorPath, workDir, logOf(i), crashAt);
    return workers[i].exited;
  };

  /** The partitions (`topic:partition`) of each consumer-group join a worker logged, in order. */
  const joins = (i: number): string[][] =>
    readFileSync(logOf(i), 'utf8')
      .split('\n')
      .filter((l) => l.includes('joined the consumer group'))
      .map((l) => {
        const assignment = (JSON.parse(l) as { assignment: Record<string, number[]> }).assignment;
        return Object.entries(assignment).flatMap(([t, ps]) => ps.map((p) => `${t}:${p}`));
      });

  afterAll(async () => {
    for (const w of workers) {
      w?.child.kill('SIGKILL');
      await w?.exited;
    }
  });

  it('loses and duplicates nothing when workers share the partitions, one is killed and one dies in a commit', async () => {
    const abort = new AbortController();
    const traffic: Promise<TrafficStats> = runTraffic(fx.prisma, { rate: 40, concurrency: 2, signal: abort.signal, durationMs: 540_000 });
    startWorker(0);
    startWorker(1);
    // Worker 2 kills itself at its 4th commit, after writing data files and before the Delta commit.
    const crashed = startWorker(2, 'before-commit:4');
    await waitFor(() => [0, 1, 2].every((i) => joins(i).at(-1)?.length), 'every worker to own partitions', 60_000);

    // kill -9 of worker 0 while traffic flows; the others take its partitions once its session times out.
    await new Promise((r) => setTimeout(r, 3000));
    const rejoinsBefore = joins(1).length;
    const killedAt = Date.now();
    workers[0]!.child.kill('SIGKILL');
    expect(await workers[0]!.exited).toBe(-9);
    await waitFor(() => joins(1).length > rejoinsBefore, 'the others to take the killed worker’s partitions', 60_000);
    const takenOverMs = Date.now() - killedAt;
    const joinsBefore = joins(0).length;
    const restartedAt = Date.now();
    startWorker(0);
    await waitFor(
      () => joins(0).length > joinsBefore && (joins(0).at(-1)?.length ?? 0) > 0,
      'the restarted worker to own partitions again',
      60_000,
    );
    const backInMs = Date.now() - restartedAt;

    const code = await Promise.race([crashed, new Promise<string>((r) => setTimeout(() => r('timeout'), 60_000))]);
    expect(code, readFileSync(logOf(2), 'utf8').slice(-3000)).toBe(-9);
    expect(readFileSync(logOf(2), 'utf8')).toContain('killing myself at before-commit');
    const joinsOf2 = joins(2).length;
    startWorker(2);
    await waitFor(
      () => joins(2).length > joinsOf2 && (joins(2).at(-1)?.length ?? 0) > 0,
      'the worker that died in a commit to own partitions again',
      60_000,
    );
    await new Promise((r) => setTimeout(r, 2000));

    abort.abort();
    const stats = await traffic;
    expect(stats.errors, stats.lastError).toBe(0);
    await fx.settle(180_000);
    for (const w of workers) w.child.kill('SIGTERM');
    for (const [i, w] of workers.entries()) expect(await w.exited, readFileSync(logOf(i), 'utf8').slice(-3000)).toBe(0);

    // Every worker owned partitions at the end (after the restarts the group spread them again).
    const owned = [0, 1, 2].map((i) => joins(i).at(-1) ?? []);
    for (const o of owned) expect(o.length).toBeGreaterThan(0);
    expect(new Set(owned.flat()).size).toBe(owned.flat().length);

    const { prefix } = fx;
    for (const table of ORDER_TABLES) {
      // Bronze: exactly the Kafka events (tombstones excluded), each once; each (commit_lsn, event_index) once.
      const events = (await consumeAll([`${prefix}.${table}`])).filter((e) => e.value !== null);
      const bronze = await readWithDeltaRs(join(lakeDir, bronzePath(table)));
      const col = (name: string) => bronze.columns.indexOf(name);
      const inBronze = bronze.rows.map((r) => `${String(r[col('_kafka_partition')])}:${String(r[col('_kafka_offset')])}`);
      expect(new Set(inBronze).size, `${table}: duplicated Kafka offsets in bronze`).toBe(inBronze.length);
      const positions = bronze.rows.map((r) => `${String(r[col('_commit_lsn')])}:${String(r[col('_event_index')])}`);
      expect(new Set(positions).size, `${table}: duplicated (commit_lsn, event_index) in bronze`).toBe(positions.length);
      const inKafka = new Set(events.map((e) => `${e.partition}:${e.offset}`));
      const have = new Set(inBronze);
      expect(
        [...inKafka].filter((k) => !have.has(k)),
        `${table}: events missing from bronze`,
      ).toEqual([]);
      expect(inBronze.length).toBe(inKafka.size);

      // Silver: equal to Postgres.
      const expected = await postgresRows(fx.db.url, table);
      if (table === 'public.customers') for (const r of expected) r.email = r.email === null ? null : hashValue(MASK_SALT, r.email);
      const silver = await readWithDeltaRs(join(lakeDir, silverPath(table)));
      const actual = silver.rows.map((r) => Object.fromEntries(silver.columns.map((c, i) => [c, r[i]])));
      const diff = diffTables(expected, actual, ORDER_KEYS[table]!, Object.keys(expected[0]!));
      console.log(`${describeDiff(table, diff)}; bronze ${inBronze.length} events`);
      expect(diff.expectedChecksum, describeDiff(table, diff)).toBe(diff.actualChecksum);

      // History (kept for public.orders): every version once, one current version per key, equal to Postgres.
      if (table === 'public.orders') {
        const history = await readWithDeltaRs(join(lakeDir, historyPath(table)));
        expect(checkHistory(history, bronze, expected, 'id')).toEqual([]);
      }
    }
    console.log(
      `sink scale-out: partitions per worker at the end ${owned.map((o) => o.length).join('/')}; the others took the kill -9'd worker's partitions ${takenOverMs} ms after the kill, it owned partitions again ${backInMs} ms after its restart (process start included); traffic ${JSON.stringify(stats.ops)}`,
    );
  }, 300_000);

  // Once: it does not depend on how history merges.
  if (label === 'sinkscale')
    it('stops with the key to change when the broker refuses session.timeout.ms', async () => {
      // The stack's broker keeps Kafka's default group.min.session.timeout.ms (6000).
      const file = sinkFile(`${sinkName}-short`, fx.prefix, join(workDir, 'lake-short'), {
        'session.timeout.ms': 1000,
        'errors.retry.timeout': 0,
      });
      const sink = startSink(file);
      const err = await sink.done.then(
        () => undefined,
        (e: unknown) => e as Error,
      );
      // The stack's port differs between worktrees and CI.
      expect(err?.message.replace(/^kafka \([^)]*\)/, 'kafka (<brokers>)')).toMatchInlineSnapshot(
        `"kafka (<brokers>): the broker refused the consumer's session timeout while consuming: it is outside the broker's group.min.session.timeout.ms … group.max.session.timeout.ms. Set session.timeout.ms in the sink's connector file within the broker's range (Kafka's default minimum is 6000)"`,
      );
    }, 120_000);
});

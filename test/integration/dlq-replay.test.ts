import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DeltaTable } from '../../src/lake/delta/delta-table.ts';
import { LocalStore } from '../../src/lake/storage/local-store.ts';
import { txnAppId } from '../../src/sink/offsets.ts';
import { bronzePath, historyPath, silverPath } from '../../src/sink/table-layout.ts';
import { writeConnectorFileAt } from '../support/connector-file.ts';
import { startCli } from '../support/cli.ts';
import { readWithDeltaRs } from '../support/delta-reader.ts';
import { consumeUntil, kafka } from '../support/kafka.ts';
import { highWatermarks, sinkFile, startSink } from '../support/lake.ts';
import { useSourceFixture } from '../support/source-fixture.ts';
import { waitForSourceCaughtUp } from '../support/source.ts';

/**
 * `tide lake dlq replay` (issue 11 item 20) on the real stack. The lake starts in the state an older sink
 * left it in when the registry could not give a schema: five updates dead-lettered (the message bytes in
 * the dead-letter topic with Tide's tide.error.* headers) and the lake's offsets committed past them. A
 * newer change of two of those keys follows. The replay re-drives the five; silver takes the three that are
 * newer than its rows and keeps the newer values of the other two (order per key holds); a second replay
 * adds nothing.
 */
describe('tide lake dlq replay', () => {
  const fx = useSourceFixture('dlq_replay', ['CREATE TABLE dl (id int PRIMARY KEY, v text NOT NULL)'], {
    'table.include.list': 'public\\.dl',
  });

  it('re-drives dead letters once, in order per key, and reports what it did', async () => {
    const { sql, src } = fx;
    const lakeDir = mkdtempSync(join(tmpdir(), 'tide-dlq-replay-'));
    const store = new LocalStore(lakeDir);
    const sinkName = `dlq-${Date.now().toString(36)}`;
    const topic = `${src.config['topic.prefix']}.public.dl`;
    const file = sinkFile(sinkName, src.config['topic.prefix'], lakeDir, { topics: topic, 'silver.history.tables': 'public\\.dl' });
    const roots = [bronzePath('public.dl'), silverPath('public.dl'), historyPath('public.dl')];
    const committedTo = async (offset: number) => {
      for (const root of roots) await fx.waitForCommitted(store, sinkName, root, topic, BigInt(offset));
    };
    const silverValues = async () => {
      const view = await readWithDeltaRs(join(lakeDir, silverPath('public.dl')));
      const [id, v] = [view.columns.indexOf('id'), view.columns.indexOf('v')];
      return Object.fromEntries(view.rows.map((r) => [Number(r[id]), r[v]]));
    };

    await sql.query(`INSERT INTO dl SELECT g, 'a' FROM generate_series(1, 10) g`);
    fx.sink = startSink(file, store);
    await committedTo(9);
    await fx.sink.stop();
    fx.sink = undefined;

    // What an older sink did: offsets 10–14 dead-lettered, and the lake committed past them.
    await sql.query(`UPDATE dl SET v = 'b' WHERE id <= 5`);
    await waitForSourceCaughtUp(sql, src.config['slot.name']);
    const updates = (await consumeUntil([topic], (es) => es.length >= 15)).filter((e) => Number(e.offset) >= 10);
    expect(updates).toHaveLength(5);
    const producer = kafka().producer({ idempotent: true });
    await producer.connect();
    await producer.send({
      topic: `${sinkName}.dlq`,
      messages: updates.map((e) => ({
        key: e.rawKey,
        value: e.rawValue,
        headers: {
          'tide.error.reason': `schema registry, subject (schema id 1): no such schema (dead-lettered by an older sink)`,
          'tide.error.topic': topic,
          'tide.error.partition': String(e.partition),
          'tide.error.offset': e.offset,
          'tide.error.time': new Date().toISOString(),
        },
      })),
    });
    await producer.disconnect();
    for (const root of roots) {
      const t = (await DeltaTable.open(store, root))!;
      await t.commit([{ txn: { appId: txnAppId(sinkName, topic, 0), version: 14, lastUpdated: Date.now() } }], { operation: 'WRITE' });
    }

    // Newer changes of two of those keys, then the sink catches up: the five updates are missing.
    await sql.query(`UPDATE dl SET v = 'c' WHERE id IN (4, 5)`);
    fx.sink = startSink(file, store);
    await committedTo(16);
    expect(await silverValues()).toEqual({ 1: 'a', 2: 'a', 3: 'a', 4: 'c', 5: 'c', 6: 'a', 7: 'a', 8: 'a', 9: 'a', 10: 'a' });

    // The replay, while the sink runs.
    const dir = mkdtempSync(join(tmpdir(), 'tide-dlq-cli-'));
    const path = join(dir, `${sinkName}.json`);
    writeConnectorFileAt(path, { name: sinkName, config: file.config });
    const first = startCli(['lake', 'dlq', 'replay', path], process.cwd());
    expect(await first.exitWithin(90_000), first.output()).toBe(0);
    expect(first.output()).toContain(`${sinkName}.dlq: read offsets 0:0–4`);
    expect(first.output()).toContain(`re-drove 5 dead letter(s):\n  5 to ${topic} partition 0`);
    await committedTo(21);
    expect(await silverValues()).toEqual({ 1: 'b', 2: 'b', 3: 'b', 4: 'c', 5: 'c', 6: 'a', 7: 'a', 8: 'a', 9: 'a', 10: 'a' });

    const history = await readWithDeltaRs(join(lakeDir, historyPath('public.dl')));
    const hc = (n: string) => history.columns.indexOf(n);
    const versionsOf = (id: number) =>
      history.rows
        .filter((r) => Number(r[hc('id')]) === id)
        .sort((a, b) => Number(a[hc('_commit_lsn')]) - Number(b[hc('_commit_lsn')]))
        .map((r) => `${String(r[hc('v')])}${r[hc('_is_current')] ? '*' : ''}`);
    expect(versionsOf(1)).toEqual(['a', 'b*']);
    // Older than the key's current version when it came back: history keeps a, c (README: dlq replay).
    expect(versionsOf(4)).toEqual(['a', 'c*']);
    expect(history.rows.filter((r) => r[hc('_is_current')] === true)).toHaveLength(10);

    // A second replay adds nothing.
    const second = startCli(['lake', 'dlq', 'replay', path], process.cwd());
    expect(await second.exitWithin(90_000), second.output()).toBe(0);
    expect(second.output()).toContain('nothing to replay');
    const [mark] = await highWatermarks([topic]);
    expect(mark!.high).toBe(22n);
    await fx.sink.stop();
    fx.sink = undefined;
    const bronze = await readWithDeltaRs(join(lakeDir, bronzePath('public.dl')));
    expect(bronze.rows).toHaveLength(17);
  }, 300_000);
});

import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { DeltaTable } from '../../src/lake/delta/delta-table.ts';
import { LocalStore } from '../../src/lake/storage/local-store.ts';
import { txnAppId } from '../../src/sink/offsets.ts';
import { RetentionGapError } from '../../src/sink/retention-gap.ts';
import { bronzePath, historyPath, silverPath } from '../../src/sink/table-layout.ts';
import { writeConnectorFileAt } from '../support/connector-file.ts';
import { startCli } from '../support/cli.ts';
import { readWithDeltaRs } from '../support/delta-reader.ts';
import { waitFor } from '../support/kafka.ts';
import { sinkFile, startSink } from '../support/lake.ts';
import { useSourceFixture } from '../support/source-fixture.ts';
import { waitForSourceCaughtUp } from '../support/source.ts';

/**
 * Where each lake table starts reading Kafka (issue 11, items 18 and 19), on the real stack: Postgres → Tide
 * source → Kafka (one partition per topic) → Tide sink → Delta tables read back with delta-rs.
 *   - a layer switched on later (history, bronze) starts at the earliest retained offset, not at the
 *     consumer group's committed offset, while the tables that have the messages skip them;
 *   - offsets a table needs that Kafka's retention deleted stop the sink with an error naming the table,
 *     the partition and the offsets; `tide lake accept-gap` is the way on after a re-snapshot.
 */
const brokers = (process.env.KAFKA_BROKERS ?? '127.0.0.1:59092').split(',');

describe('sink offsets: tables added later, retention gaps', () => {
  const fx = useSourceFixture(
    'sink_offsets',
    ['CREATE TABLE items (id int PRIMARY KEY, v text NOT NULL)', 'CREATE TABLE gaps (id int PRIMARY KEY, v text NOT NULL)'],
    { 'table.include.list': 'public\\.(items|gaps)' },
  );

  it('a history table and bronze switched on later get every version from the first offset', async () => {
    const { sql, src } = fx;
    const prefix = src.config['topic.prefix'];
    const lakeDir = mkdtempSync(join(tmpdir(), 'tide-offsets-later-'));
    const store = new LocalStore(lakeDir);
    const sinkName = `later-${Date.now().toString(36)}`;
    const topic = `${prefix}.public.items`;
    const config = { topics: topic, 'silver.history.tables': '', 'bronze.enabled': false };
    await sql.query(`INSERT INTO items SELECT g, 'v1' FROM generate_series(1, 20) g`);
    await sql.query(`UPDATE items SET v = 'v2'`);

    // Silver only: 40 events; the group's committed offset (for lag tooling) ends at 40.
    fx.sink = startSink(sinkFile(sinkName, prefix, lakeDir, config), store);
    await fx.waitForCommitted(store, sinkName, silverPath('public.items'), topic);
    await fx.sink.stop();

    await sql.query(`UPDATE items SET v = 'v3' WHERE id <= 10`);
    // Now with bronze and history: they have no offsets, silver has 40.
    fx.sink = startSink(
      sinkFile(sinkName, prefix, lakeDir, { ...config, 'bronze.enabled': true, 'silver.history.tables': 'public\\.items' }),
      store,
    );
    await fx.waitForCommitted(store, sinkName, historyPath('public.items'), topic);
    await fx.waitForCommitted(store, sinkName, bronzePath('public.items'), topic);
    await fx.waitForCommitted(store, sinkName, silverPath('public.items'), topic);
    await fx.sink.stop();
    fx.sink = undefined;

    const bronze = await readWithDeltaRs(join(lakeDir, bronzePath('public.items')));
    const offsets = bronze.rows.map((r) => Number(r[bronze.columns.indexOf('_kafka_offset')])).sort((a, b) => a - b);
    expect(offsets).toEqual(Array.from({ length: 50 }, (_, i) => i));

    const history = await readWithDeltaRs(join(lakeDir, historyPath('public.items')));
    const col = (name: string) => history.columns.indexOf(name);
    const versions = new Map<number, string[]>();
    for (const r of [...history.rows].sort((a, b) => Number(a[col('_commit_lsn')]) - Number(b[col('_commit_lsn')])))
      versions.set(Number(r[col('id')]), [...(versions.get(Number(r[col('id')])) ?? []), String(r[col('v')])]);
    expect(versions.size).toBe(20);
    for (let id = 1; id <= 20; id++) expect(versions.get(id), `versions of id ${id}`).toEqual(id <= 10 ? ['v1', 'v2', 'v3'] : ['v1', 'v2']);
    const current = history.rows.filter((r) => r[col('_is_current')] === true);
    expect(current).toHaveLength(20);

    const silver = await readWithDeltaRs(join(lakeDir, silverPath('public.items')));
    const silverValues = silver.rows.map((r) => [Number(r[silver.columns.indexOf('id')]), r[silver.columns.indexOf('v')]]);
    expect(silverValues.sort((a, b) => Number(a[0]) - Number(b[0]))).toEqual(
      Array.from({ length: 20 }, (_, i) => [i + 1, i < 10 ? 'v3' : 'v2']),
    );
  }, 300_000);

  it('offsets deleted by retention stop the sink with the table, partition and offsets; accept-gap lets it go on', async () => {
    const { sql, src } = fx;
    const prefix = src.config['topic.prefix'];
    const lakeDir = mkdtempSync(join(tmpdir(), 'tide-offsets-gap-'));
    const store = new LocalStore(lakeDir);
    const sinkName = `gap-${Date.now().toString(36)}`;
    const topic = `${prefix}.public.gaps`;
    const file = sinkFile(sinkName, prefix, lakeDir, { topics: topic, 'silver.history.tables': 'public\\.gaps' });
    await sql.query(`INSERT INTO gaps SELECT g, 'v1' FROM generate_series(1, 20) g`);
    fx.sink = startSink(file, store);
    await fx.waitForCommitted(store, sinkName, historyPath('public.gaps'), topic);
    await fx.sink.stop();
    fx.sink = undefined;

    // While the sink is stopped: 10 more changes, then Kafka's retention deletes every closed segment.
    await sql.query(`UPDATE gaps SET v = 'v2' WHERE id <= 10`);
    await waitForSourceCaughtUp(sql, src.config['slot.name']);
    const kafka = new Kafka({ brokers, logLevel: logLevel.NOTHING });
    const admin = kafka.admin();
    await admin.connect();
    let low: bigint;
    try {
      await admin.alterConfigs({
        validateOnly: false,
        resources: [
          {
            type: 2, // TOPIC
            name: topic,
            configEntries: [
              { name: 'segment.ms', value: '200' },
              { name: 'retention.ms', value: '1000' },
            ],
          },
        ],
      });
      // A later change rolls the segment (a segment is closed when a message arrives after segment.ms); the
      // closed one, offsets 0–29, is then older than retention.ms and the broker deletes it (and maybe the
      // expired active segment too: Kafka rolls and deletes it as well).
      await new Promise((r) => setTimeout(r, 500));
      await sql.query(`UPDATE gaps SET v = 'v2' WHERE id = 19`);
      await waitForSourceCaughtUp(sql, src.config['slot.name']);
      await waitFor(
        async () => BigInt((await admin.fetchTopicOffsets(topic))[0]!.low) >= 30n,
        `Kafka's retention to delete offsets 0–29 of ${topic}`,
        90_000,
      );
      // Back to the default, so that nothing the rest of the test writes is deleted.
      await admin.alterConfigs({
        validateOnly: false,
        resources: [
          {
            type: 2,
            name: topic,
            configEntries: [
              { name: 'retention.ms', value: '604800000' },
              { name: 'segment.ms', value: '604800000' },
            ],
          },
        ],
      });
      low = BigInt((await admin.fetchTopicOffsets(topic))[0]!.low);
    } finally {
      await admin.disconnect();
    }

    fx.sink = startSink(file, store);
    const err = await fx.sink.done.then(
      () => undefined,
      (e: unknown) => e,
    );
    fx.sink = undefined;
    expect(err).toBeInstanceOf(RetentionGapError);
    const message = (err as Error).message;
    expect(message).toContain(`kafka topic ${topic} partition 0`);
    for (const t of ['bronze.public.gaps', 'silver.public.gaps', 'silver.public.gaps_history'])
      expect(message).toContain(`${t} needs offsets 20–${low - 1n}`);
    expect(message).toContain(`tide lake accept-gap ${file.source} public.gaps`);
    // Nothing was committed past the gap.
    for (const root of [bronzePath('public.gaps'), silverPath('public.gaps'), historyPath('public.gaps')])
      expect((await DeltaTable.open(store, root))!.txnVersion(txnAppId(sinkName, topic, 0))).toBe(19);

    // The way on (after a re-snapshot of the table, which this test leaves out): accept the gap through the CLI.
    const dir = mkdtempSync(join(tmpdir(), 'tide-offsets-cli-'));
    const path = join(dir, `${sinkName}.json`);
    writeConnectorFileAt(path, { name: sinkName, config: file.config });
    const cli = startCli(['lake', 'accept-gap', path, 'public.gaps'], process.cwd());
    expect(await cli.exitWithin(60_000), cli.output()).toBe(0);
    expect(cli.output()).toContain(`silver.public.gaps partition 0: offsets 20–${low - 1n} accepted as lost; resumes at ${low}`);
    await sql.query(`UPDATE gaps SET v = 'v3' WHERE id = 20`);
    fx.sink = startSink(file, store);
    await fx.waitForCommitted(store, sinkName, silverPath('public.gaps'), topic);
    await fx.sink.stop();
    fx.sink = undefined;
    const silver = await readWithDeltaRs(join(lakeDir, silverPath('public.gaps')));
    const v20 = silver.rows.find((r) => Number(r[silver.columns.indexOf('id')]) === 20);
    expect(v20?.[silver.columns.indexOf('v')]).toBe('v3');
  }, 300_000);
});

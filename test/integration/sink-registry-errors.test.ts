import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DeltaTable } from '../../src/lake/delta/delta-table.ts';
import { LocalStore } from '../../src/lake/storage/local-store.ts';
import { SchemaUnavailableError } from '../../src/sink/change-event.ts';
import { txnAppId } from '../../src/sink/offsets.ts';
import { bronzePath, silverPath } from '../../src/sink/table-layout.ts';
import { kafka, waitFor } from '../support/kafka.ts';
import { highWatermarks, sinkFile, startSink } from '../support/lake.ts';
import { useSourceFixture } from '../support/source-fixture.ts';
import { waitForSourceCaughtUp } from '../support/source.ts';

/**
 * Issue 11 item 20 on the real stack (Apicurio's Confluent API): a message whose schema the registry does
 * not have (HTTP 404, error code 40403) stops the sink. It is not dead-lettered and the lake does not
 * commit past it (nor past the later messages of its partition).
 */
describe('sink: schemas the registry cannot give', () => {
  const fx = useSourceFixture('sink_registry_errors', ['CREATE TABLE reg (id int PRIMARY KEY, v text NOT NULL)'], {
    'table.include.list': 'public\\.reg',
  });

  it('an unknown schema id stops the sink: no dead letter, nothing committed past it', async () => {
    const { sql, src } = fx;
    const lakeDir = mkdtempSync(join(tmpdir(), 'tide-registry-errors-'));
    const store = new LocalStore(lakeDir);
    const sinkName = `regerr-${Date.now().toString(36)}`;
    const topic = `${src.config['topic.prefix']}.public.reg`;
    const file = sinkFile(sinkName, src.config['topic.prefix'], lakeDir, { topics: topic, 'silver.history.tables': '' });
    await sql.query(`INSERT INTO reg SELECT g, 'a' FROM generate_series(1, 5) g`);
    await waitForSourceCaughtUp(sql, src.config['slot.name']);
    fx.sink = startSink(file, store);
    await waitFor(
      async () => (await DeltaTable.open(store, silverPath('public.reg')))?.txnVersion(txnAppId(sinkName, topic, 0)) === 4,
      'silver to commit offsets 0–4',
      90_000,
    );
    await fx.sink.stop();
    fx.sink = undefined;

    // Offset 5: Confluent framing with a schema id the registry never issued; then 5 good changes.
    const producer = kafka().producer();
    await producer.connect();
    await producer.send({ topic, messages: [{ key: null, value: Buffer.from([0, 0x7f, 0xff, 0xf0, 0x00, 2, 4, 6]) }] });
    await producer.disconnect();
    await sql.query(`INSERT INTO reg SELECT g, 'b' FROM generate_series(6, 10) g`);
    await waitForSourceCaughtUp(sql, src.config['slot.name']);

    fx.sink = startSink(file, store);
    const err = await fx.sink.done.then(
      () => undefined,
      (e: unknown) => e,
    );
    fx.sink = undefined;
    expect(err).toBeInstanceOf(SchemaUnavailableError);
    expect((err as Error).message).toContain(`kafka topic ${topic} partition 0 offset 5: the value schema 2147479552 cannot be fetched`);
    expect((err as Error).message).toContain('neither dead-letters the message nor commits past it');
    for (const root of [bronzePath('public.reg'), silverPath('public.reg')])
      expect((await DeltaTable.open(store, root))!.txnVersion(txnAppId(sinkName, topic, 0)), root).toBe(4);
    const [dlq] = await highWatermarks([`${sinkName}.dlq`]);
    expect(dlq!.high).toBe(0n);
  }, 240_000);
});

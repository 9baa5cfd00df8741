import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConnectorFile } from '../../src/config/source-config.ts';
import { sinkConfigSchema } from '../../src/config/sink-config.ts';
import { DeltaTable } from '../../src/lake/delta/delta-table.ts';
import { optimizeTable } from '../../src/lake/maintenance/optimize.ts';
import { vacuumTable } from '../../src/lake/maintenance/vacuum.ts';
import { ParquetEngine } from '../../src/lake/parquet/parquet-engine.ts';
import { LocalStore } from '../../src/lake/storage/local-store.ts';
import { log } from '../../src/log.ts';
import type { ChangeEvent } from '../../src/sink/change-event.ts';
import type { SinkColumn } from '../../src/sink/lake-columns.ts';
import { TableSink, type SinkContext } from '../../src/sink/table-sink.ts';
import { DeleteMarkers, deleteMarkersPath, MARKER_RETENTION_MS } from '../../src/sink/delete-markers.ts';
import type { KeyChange } from '../../src/sink/silver-changes.ts';
import type { LakeColumn } from '../../src/lake/lake-schema.ts';
import { historyPath, silverPath } from '../../src/sink/table-layout.ts';
import { QUIET_SINK_OBSERVER } from '../../src/sink/sink-observer.ts';
import { readWithDeltaRs } from '../support/delta-reader.ts';

/**
 * The sink's tables against a lake that moved under it (issue 11): real Delta tables, DuckDB and delta-rs.
 *  - item 17: `lake optimize` and `lake vacuum --retain 0 --force` on the silver table of an idle, running
 *    sink; its next merge planned from its old view of the table and failed with "…parquet: does not exist".
 *  - item 12: a crash after the silver commit and before the history commit; the replayed batch found
 *    nothing pending in silver and skipped history, so those versions were lost from history for good.
 */
const dir = mkdtempSync(join(tmpdir(), 'tide-table-sink-'));
const store = new LocalStore(dir);
let engine: ParquetEngine;

const columns: SinkColumn[] = [
  { name: 'id', avroName: 'id', type: { kind: 'long' }, nullable: false, convert: (v) => v },
  { name: 'name', avroName: 'name', type: { kind: 'string' }, nullable: true, convert: (v) => v },
];

function context(name: string, history: boolean): SinkContext {
  const { config } = parseConnectorFile(
    {
      name,
      config: {
        topics: 't',
        'kafka.bootstrap.servers': '127.0.0.1:1',
        'schema.registry.url': 'http://127.0.0.1:1',
        'lake.uri': dir,
        ...(history ? { 'silver.history.tables': 'public\\.items' } : {}),
      },
    },
    sinkConfigSchema,
    'test',
  );
  return { name, config, engine, store, log, sendDeadLetters: async () => {}, observer: QUIET_SINK_OBSERVER };
}

let offset = 0n;
let lsn = 100n;
function upsert(id: number, name: string): ChangeEvent {
  lsn += 10n;
  return {
    topic: 't',
    partition: 0,
    offset: offset++,
    table: 'public.items',
    op: 'u',
    before: null,
    after: { id: BigInt(id), name },
    unchangedToast: [],
    commitLsn: lsn,
    eventIndex: 0,
    txId: 1,
    commitTsMs: 1_700_000_000_000 + Number(lsn),
    eventTsMs: null,
    snapshot: false,
    columns,
    valueSchemaId: 1,
    keyColumns: ['id'],
  };
}
const offsetsOf = (events: ChangeEvent[]) => [{ topic: 't', partition: 0, offset: events[events.length - 1]!.offset }];

/** A flush as the sink worker makes it with history kept: bronze and silver, then (history-lane.ts, inline) history. */
async function withHistory(sink: TableSink, events: ChangeEvent[]): Promise<void> {
  await sink.apply(events, offsetsOf(events));
  await sink.applyHistory(engine, events, offsetsOf(events), []);
}

async function rows(path: string): Promise<string[]> {
  const view = await readWithDeltaRs(join(dir, path));
  const id = view.columns.indexOf('id');
  const name = view.columns.indexOf('name');
  return view.rows.map((r) => `${r[id]}=${r[name]}`).sort();
}

describe('a running sink whose tables moved under it', () => {
  beforeAll(async () => {
    engine = await ParquetEngine.create();
  });
  afterAll(async () => {
    await engine?.close();
  });

  it('re-reads the log and plans again after optimize + vacuum --retain 0 removed the files it knew', async () => {
    const sink = new TableSink(context('maint', false), 'public.items');
    await sink.open();
    for (let b = 0; b < 4; b++) {
      const events = [upsert(b * 2 + 1, 'v1'), upsert(b * 2 + 2, 'v1')];
      await sink.apply(events, offsetsOf(events));
    }
    // Maintenance from another process: its own view of the table.
    const other = (await DeltaTable.open(store, silverPath('public.items')))!;
    const optimized = await optimizeTable(engine, other, { minFileBytes: 1 << 20 });
    expect(optimized.filesRemoved).toBe(4);
    const vacuumed = await vacuumTable(other, { retainHours: 0 });
    expect(vacuumed.deleted.length).toBe(4);

    const events = [upsert(1, 'v2'), upsert(9, 'v1')];
    await sink.apply(events, offsetsOf(events));
    expect(await rows(silverPath('public.items'))).toEqual(['1=v2', '2=v1', '3=v1', '4=v1', '5=v1', '6=v1', '7=v1', '8=v1', '9=v1']);
  });

  it('history catches up on a replayed batch whose silver commit landed before a crash', async () => {
    // The state a crash between the two commits leaves: silver has the batch, history does not.
    const first = [upsert(101, 'a'), upsert(102, 'a')];
    const noHistory = new TableSink(context('crash', false), 'public.items2');
    await noHistory.open();
    const firstFor = first.map((e) => ({ ...e, table: 'public.items2' }));
    await noHistory.apply(firstFor, offsetsOf(firstFor));

    // The restarted sink (history on) gets exactly that batch again (its group offsets were not committed),
    // then a newer change.
    const config = { ...context('crash', true).config, 'silver.history.tables': ['public\\.items2'] };
    const restarted = new TableSink({ ...context('crash', true), config }, 'public.items2');
    await restarted.open();
    await withHistory(restarted, firstFor);
    const newer = [{ ...upsert(101, 'b'), table: 'public.items2' }];
    await withHistory(restarted, newer);

    expect(await rows(silverPath('public.items2'))).toEqual(['101=b', '102=a']);
    const history = await readWithDeltaRs(join(dir, historyPath('public.items2')));
    const id = history.columns.indexOf('id');
    const name = history.columns.indexOf('name');
    const current = history.columns.indexOf('_is_current');
    expect(history.rows.map((r) => `${r[id]}=${r[name]}${r[current] ? ' (current)' : ''}`).sort()).toEqual([
      '101=a',
      '101=b (current)',
      '102=a (current)',
    ]);
  });

  it('history ignores a source replay: no second open version, no duplicate closed version, no resurrected delete', async () => {
    const config = { ...context('replay', true).config, 'silver.history.tables': ['public\\.items3'] };
    const sink = new TableSink({ ...context('replay', true), config }, 'public.items3');
    await sink.open();
    const at = (e: ChangeEvent) => ({ ...e, table: 'public.items3' });
    const del = (id: number): ChangeEvent => ({ ...upsert(id, 'x'), op: 'd', before: { id: BigInt(id), name: 'x' }, after: null });
    const applied = [at(upsert(1, 'a')), at(upsert(2, 'a')), at(del(2))];
    await withHistory(sink, applied);
    // The source crashed before confirming and sends the same changes again (same LSNs, new Kafka offsets),
    // followed by a new one.
    const replayed = [...applied.map((e) => ({ ...e, offset: offset++ })), at(upsert(1, 'b'))];
    await withHistory(sink, replayed);

    expect(await rows(silverPath('public.items3'))).toEqual(['1=b']);
    const history = await readWithDeltaRs(join(dir, historyPath('public.items3')));
    const id = history.columns.indexOf('id');
    const name = history.columns.indexOf('name');
    const current = history.columns.indexOf('_is_current');
    expect(history.rows.map((r) => `${r[id]}=${r[name]}${r[current] ? ' (current)' : ''}`).sort()).toEqual(['1=a', '1=b (current)', '2=a']);
  });

  it('a type change inside one flush: each event is checked against the type it is written with (dead letter, not a silent rescale)', async () => {
    const letters: { reason: string; offset: bigint }[] = [];
    const ctx = {
      ...context('types', false),
      sendDeadLetters: async (l: { event: ChangeEvent; reason: string }[]) =>
        void letters.push(...l.map((d) => ({ reason: d.reason, offset: d.event.offset }))),
    };
    const sink = new TableSink(ctx, 'public.prices');
    await sink.open();
    const priceColumns = (scale: number, amount: 'integer' | 'long'): SinkColumn[] => [
      columns[0]!,
      { name: 'price', avroName: 'price', type: { kind: 'decimal', precision: 10 + scale, scale }, nullable: true, convert: (v) => v },
      { name: 'qty', avroName: 'qty', type: { kind: amount }, nullable: true, convert: (v) => v },
    ];
    const row = (
      id: number,
      price: bigint,
      qty: number | bigint,
      scale: number,
      amount: 'integer' | 'long',
      schemaId: number,
    ): ChangeEvent => ({
      ...upsert(id, 'x'),
      table: 'public.prices',
      after: { id: BigInt(id), price, qty },
      columns: priceColumns(scale, amount),
      valueSchemaId: schemaId,
    });
    // numeric(12,2) → numeric(14,4) and int4 → int8 between two changes of one flush.
    const events = [row(1, 150n, 1, 2, 'integer', 1), row(2, 12_345n, 3_000_000_000n, 4, 'long', 2)];
    await sink.apply(events, offsetsOf(events));
    const view = await readWithDeltaRs(join(dir, silverPath('public.prices')));
    const price = view.columns.indexOf('price');
    const id = view.columns.indexOf('id');
    expect(view.rows.map((r) => `${r[id]}=${r[price]}`)).toEqual(['1=1.50']);
    expect(letters).toHaveLength(1);
    expect(letters[0]!.offset).toBe(events[1]!.offset);
    expect(letters[0]!.reason).toMatch(/column price of public\.prices arrives as decimal\(14,4\) but .* has decimal\(12,2\)/);
  });

  it('deleted keys stay deleted: a replayed older insert of a deleted key does not come back, and silver has plain rows only', async () => {
    const sink = new TableSink(context('markers', false), 'public.items4');
    await sink.open();
    const at = (e: ChangeEvent) => ({ ...e, table: 'public.items4' });
    const insert = at(upsert(7, 'a'));
    const keep = at(upsert(8, 'a'));
    const del = at({ ...upsert(7, 'x'), op: 'd', before: { id: 7n, name: 'x' }, after: null });
    await sink.apply([insert, keep, del], offsetsOf([insert, keep, del]));
    expect(await rows(silverPath('public.items4'))).toEqual(['8=a']);
    // The source restarts and re-sends from before the delete: the insert arrives again, alone in its batch.
    const replayed = { ...insert, offset: offset++ };
    await sink.apply([replayed], offsetsOf([replayed]));
    expect(await rows(silverPath('public.items4'))).toEqual(['8=a']);
    // A newer insert of the key is a real one.
    const again = at(upsert(7, 'b'));
    await sink.apply([again], offsetsOf([again]));
    expect(await rows(silverPath('public.items4'))).toEqual(['7=b', '8=a']);
    const view = await readWithDeltaRs(join(dir, silverPath('public.items4')));
    expect(view.columns).toEqual(['id', 'name', '_commit_lsn', '_event_index', '_commit_ts']);
  });

  it('delete markers compact to the newest marker per key and drop those past the retention', async () => {
    const key: LakeColumn = { name: 'id', type: { kind: 'long' }, nullable: false };
    const markers = await DeleteMarkers.open(store, 'public.compact', [key]);
    const d = (id: number, lsn: number): KeyChange => ({
      key: [BigInt(id)],
      deleted: true,
      row: {},
      unchanged: [],
      commitLsn: BigInt(lsn),
      eventIndex: 0,
      commitTsMs: 0,
    });
    await markers.record(engine, [d(1, 10), d(2, 20)], ['id']);
    await markers.record(engine, [d(1, 30)], ['id']);
    await markers.compact(engine, ['id']);
    const view = await readWithDeltaRs(join(dir, deleteMarkersPath('public.compact')));
    const id = view.columns.indexOf('id');
    const lsnAt = view.columns.indexOf('_commit_lsn');
    expect(view.rows.map((r) => `${r[id]}@${r[lsnAt]}`).sort()).toEqual(['1@30', '2@20']);
    expect(view.files).toHaveLength(1);
    await markers.compact(engine, ['id'], Date.now() + MARKER_RETENTION_MS + 60_000);
    expect((await readWithDeltaRs(join(dir, deleteMarkersPath('public.compact')))).rows).toEqual([]);
  });
});

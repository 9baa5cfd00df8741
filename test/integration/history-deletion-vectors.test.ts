import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeltaConflictError } from '../../src/lake/delta/delta-errors.ts';
import { DeltaTable } from '../../src/lake/delta/delta-table.ts';
import { TIDE_PROTOCOL, withDeletionVectors } from '../../src/lake/delta/protocol-check.ts';
import type { LakeSchema } from '../../src/lake/lake-schema.ts';
import { optimizeTable } from '../../src/lake/maintenance/optimize.ts';
import { vacuumTable } from '../../src/lake/maintenance/vacuum.ts';
import { ParquetEngine } from '../../src/lake/parquet/parquet-engine.ts';
import { LocalStore } from '../../src/lake/storage/local-store.ts';
import type { ChangeEvent } from '../../src/sink/change-event.ts';
import { historyColumns, historyVersions, mergeHistory } from '../../src/sink/history-merge.ts';
import { reconcileHistory, SNAPSHOT_END_PROPERTY } from '../../src/sink/snapshot-reconcile.ts';
import { HistoryKeyIndex, historyIndexOf } from '../../src/sink/history-key-index.ts';
import { log } from '../../src/log.ts';
import { deltaReaderAvailable, readWithDeltaRs } from '../support/delta-reader.ts';
import { SparkDelta, sparkMissing } from '../support/spark.ts';
import { orderEvent } from '../support/change-events.ts';

/**
 * History (SCD type 2) merges with deletion vectors (history-dv-merge.ts): a closing version is deleted
 * through its file's vector and written again, closed. The same changes go through a copy-on-write history
 * and a history with deletion vectors: Tide, delta-rs and Spark must read the second exactly as Tide reads
 * the first, after random inserts, updates (some without their TOAST column), deletes, re-inserts, replays,
 * a truncate, a second worker's commit, a checkpoint, a re-snapshot's reconcile, optimize and vacuum. A third
 * history takes the same changes through the key index (history-key-index.ts): it must hold the same
 * versions, and its index must match a full read of the table after every step.
 */
const skipDeltaRs = deltaReaderAvailable() ? undefined : 'the delta-rs venv is missing: run `bash scripts/setup-python.sh`';
if (skipDeltaRs) console.warn(`history-deletion-vectors: skipped: ${skipDeltaRs}`);
const skipSpark = sparkMissing();
if (skipSpark) console.warn(`history-deletion-vectors: Spark checks skipped: ${skipSpark}`);

const schema: LakeSchema = {
  columns: historyColumns([
    { name: 'id', type: { kind: 'long' }, nullable: false },
    { name: 'name', type: { kind: 'string' }, nullable: true },
    { name: 'note', type: { kind: 'string' }, nullable: true },
  ]),
};
const COLUMNS = schema.columns.map((c) => c.name);
const dir = mkdtempSync(join(tmpdir(), 'tide-history-dv-'));
const store = new LocalStore(dir);
let engine: ParquetEngine;
let spark: SparkDelta | undefined;

let lsn = 5000;
const event = (op: 'c' | 'u' | 'd' | 't', id: number, name = '', note?: string, at = ++lsn): ChangeEvent =>
  orderEvent(op, op === 't' ? null : note === undefined ? { id: BigInt(id), name } : { id: BigInt(id), name, note }, at, {
    unchangedToast: op !== 'd' && note === undefined && op !== 't' ? ['note'] : [],
  });

function createHistory(root: string, vectors: boolean): Promise<DeltaTable> {
  return DeltaTable.create(store, root, {
    name: root.replace('/', '.').replace(/-/g, '_'),
    schema,
    configuration: vectors ? { 'delta.enableDeletionVectors': 'true', 'delta.checkpointInterval': '5' } : {},
    ...(vectors ? { protocol: withDeletionVectors(TIDE_PROTOCOL) } : {}),
  });
}

/** The key index (history-key-index.ts) for merges into the indexed table; the others scan. */
const INDEX = { maxRows: 1_000_000 };
let indexed: DeltaTable | undefined;
const merge = (table: DeltaTable, events: ChangeEvent[], index = table === indexed || table.root === indexed?.root ? INDEX : undefined) =>
  mergeHistory(engine, table, schema, ['id'], historyVersions(events, ['id'], []), [], undefined, index);

/**
 * The key index of `table` holds, for every key, exactly the latest live version (position, version,
 * current bit) that a full read of the table finds: a stale position (a closed row, a removed file) fails.
 */
async function expectIndexTrue(table: DeltaTable, step: string): Promise<void> {
  const index = historyIndexOf(table);
  if (!(index instanceof HistoryKeyIndex)) throw new Error(`${step}: the history key index of ${table.label} is ${String(index)}`);
  expect(await index.sync(engine, table), step).toMatchObject({ ok: true });
  await engine.createView('history_truth', store, table.root, table.files(), schema, [], { positions: true });
  const truth = await engine.query(
    `SELECT id, __tide_file AS f, __tide_row AS r, _commit_lsn AS l, _event_index AS e, _is_current AS c FROM history_truth ` +
      `QUALIFY row_number() OVER (PARTITION BY id ORDER BY _commit_lsn DESC, _event_index DESC) = 1 ORDER BY id`,
  );
  const localOf = new Map<string, string>();
  for (const f of table.files()) localOf.set(f.path, await store.localFile(`${table.root}/${decodeURIComponent(f.path)}`));
  const held = truth.map((t) => {
    const v = index.latest(t.id as bigint);
    return v && [String(t.id), localOf.get(v.path), v.row, v.commitLsn, v.eventIndex, v.current];
  });
  expect(held, `${step}: the index's latest versions`).toEqual(truth.map((t) => [String(t.id), t.f, Number(t.r), t.l, Number(t.e), t.c]));
  expect(index.size, `${step}: keys in the index`).toBe(truth.length);
}

/** Every version as Tide reads the table (deletion vectors applied), in one order. */
async function tideVersions(table: DeltaTable): Promise<unknown[][]> {
  await engine.createView('history_check', store, table.root, table.files(), schema);
  const rows = await engine.query(
    `SELECT id, name, note, epoch_us(_valid_from) AS f, epoch_us(_valid_to) AS t, _is_current AS c, _commit_lsn AS l, _event_index AS e FROM history_check`,
  );
  return sorted(rows.map((r) => [r.id, r.name, r.note, r.f, r.t, r.c, r.l, r.e].map(norm)));
}

/** A reader's view (delta-rs, Spark) in the same shape as `tideVersions`. */
function asVersions(view: { columns: string[]; rows: unknown[][] }): unknown[][] {
  const at = (name: string) => view.columns.indexOf(name);
  for (const c of COLUMNS) expect(at(c), `column ${c}`).toBeGreaterThanOrEqual(0);
  const ts = (v: unknown) => (v === null || v === undefined ? null : micros(v));
  return sorted(
    view.rows.map((r) =>
      [
        r[at('id')],
        r[at('name')],
        r[at('note')],
        ts(r[at('_valid_from')]),
        ts(r[at('_valid_to')]),
        r[at('_is_current')],
        r[at('_commit_lsn')],
        r[at('_event_index')],
      ].map(norm),
    ),
  );
}

/** Timestamps as the readers hand them over (ISO strings, epoch numbers), in microseconds. */
function micros(v: unknown): string {
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'number') return String(v);
  const ms = Date.parse(
    String(v)
      .replace(' ', 'T')
      .replace(/(\.\d{3})\d*/, '$1') + (/[zZ]|[+-]\d\d:?\d\d$/.test(String(v)) ? '' : 'Z'),
  );
  return String(BigInt(ms) * 1000n);
}
const norm = (v: unknown): unknown => (typeof v === 'bigint' || typeof v === 'number' ? String(v) : v === undefined ? null : v);
const sorted = (rows: unknown[][]) => rows.sort((a, b) => Number(a[0]) - Number(b[0]) || Number(a[6]) - Number(b[6]));

async function expectSameHistory(cow: DeltaTable, dv: DeltaTable, step: string): Promise<void> {
  const want = await tideVersions(cow);
  expect(want.length, step).toBeGreaterThan(0);
  const [tide, deltaRs, sparkView] = await Promise.all([
    tideVersions(dv),
    readWithDeltaRs(join(dir, dv.root)),
    spark?.read(join(dir, dv.root)),
  ]);
  expect(tide, `${step}: Tide`).toEqual(want);
  expect(asVersions(deltaRs), `${step}: delta-rs`).toEqual(want);
  if (sparkView) expect(asVersions(sparkView), `${step}: Spark`).toEqual(want);
  // One current version per key at most.
  const current = want.filter((r) => r[5] === true).map((r) => r[0]);
  expect(new Set(current).size, step).toBe(current.length);
}

describe.skipIf(skipDeltaRs)('history merges with deletion vectors', () => {
  beforeAll(async () => {
    const [e, s] = await Promise.all([ParquetEngine.create(), skipSpark ? undefined : SparkDelta.start()]);
    engine = e;
    spark = s;
  }, 300_000);
  afterAll(async () => {
    await spark?.stop();
    await engine?.close();
  });

  it('holds exactly the versions of the copy-on-write history, rewriting no file; delta-rs and Spark agree', async () => {
    const cow = await createHistory('silver/cow_history', false);
    const dv = await createHistory('silver/dv_history', true);
    const dvi = (indexed = await createHistory('silver/dvi_history', true));
    let steps = 0;
    const both = async (events: ChangeEvent[]) => {
      await merge(cow, events);
      await merge(dv, events);
      await merge(dvi, events);
      await expectIndexTrue(dvi, `merge ${++steps}`);
    };
    /** The indexed history equals the copy-on-write one too. */
    const expectSame = async (step: string) => {
      await expectSameHistory(cow, dv, step);
      await expectSameHistory(cow, dvi, `${step} (key index)`);
    };
    // Seeded pseudo-random traffic: the same on every run.
    let seed = 7;
    const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) % n) as number;
    const live = new Set<number>();
    const batches: ChangeEvent[][] = [];
    await both(Array.from({ length: 300 }, (_, i) => (live.add(i), event('c', i, `n${i}`, `note${i}`))));
    for (let b = 0; b < 8; b++) {
      const events: ChangeEvent[] = [];
      for (let i = 0; i < 60; i++) {
        const id = rand(340);
        if (!live.has(id)) {
          live.add(id);
          events.push(event('c', id, `new${b}-${i}`, `note${b}`));
        } else if (rand(8) === 0) {
          live.delete(id);
          events.push(event('d', id));
        } else events.push(event('u', id, `u${b}-${i}`, rand(3) === 0 ? undefined : `note${b}-${i}`));
      }
      batches.push(events);
      const before = dv.files().map((f) => f.path);
      await both(events);
      // Nothing rewritten: every file the table had is still there (some with a vector).
      const after = new Set(dv.files().map((f) => f.path));
      expect(
        before.filter((p) => !after.has(p)),
        `batch ${b}: no file removed`,
      ).toEqual([]);
    }
    expect(dv.files().some((f) => f.deletionVector)).toBe(true);
    await expectSame('after random batches');

    // Replays (the source re-sends after a crash) change nothing, also mixed with a new change.
    const version = dv.version;
    await both(batches[3]!);
    await both([...batches[5]!, event('u', [...live][0]!, 'after replay', 'r')]);
    expect(dv.version).toBe(version + 2);
    // A restart (after a crash): a new table object builds its index from scratch; a batch the source
    // sends twice (a duplicate flush) lands once.
    const again = [event('u', [...live][2]!, 'resent', undefined), event('d', [...live][3]!), event('c', 900, 'resent new', 'n')];
    live.delete([...live][3]!);
    live.add(900);
    await merge(cow, again);
    await merge(dv, again);
    const restarted = (await DeltaTable.open(store, dvi.root))!;
    await merge(restarted, again);
    await merge(restarted, again);
    await dvi.refresh();
    await expectIndexTrue(restarted, 'after a restart and a duplicate flush');
    await expectSame('after replays');

    // A truncate closes every open version; changes after it in the same batch open new ones.
    await both([event('u', [...live][1]!, 'before truncate', undefined), event('t', 0), event('c', 1000, 'after truncate', 'x')]);
    live.clear();
    live.add(1000);
    await both([event('u', 1000, 'again', undefined), event('c', 5, 'back', 'y')]);
    await expectSame('after a truncate');

    // A checkpoint carries the descriptors.
    await dv.checkpoint();
    const reopened = (await DeltaTable.open(store, dv.root))!;
    await expectSameHistory(cow, reopened, 'after a checkpoint');
    await dvi.checkpoint();

    // A second worker's commit on a file with a vector: the stale merge is a conflict, the re-read one goes through.
    const other = (await DeltaTable.open(store, dv.root))!;
    const byOther = event('u', 5, 'by other', 'o');
    await merge(other, [byOther]);
    await merge((await DeltaTable.open(store, dvi.root))!, [byOther], INDEX);
    await merge(cow, [byOther]);
    const mine = event('u', 1000, 'by me', undefined);
    for (const t of [dv, dvi]) {
      const err = await merge(t, [mine]).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DeltaConflictError);
      await t.refresh();
      await merge(t, [mine]);
    }
    await merge(cow, [mine]);
    await expectIndexTrue(dvi, 'after a conflict');
    await expectSame('after a conflict');

    // A re-snapshot's reconcile (snapshot-reconcile.ts) closes the current versions the snapshot did not read
    // (key 5 here); with vectors, through the vectors: no file is rewritten.
    const c = ++lsn;
    const snapshot = [{ ...event('u', 1000, 'snapshot', undefined, c), eventIndex: 0 }];
    await both(snapshot);
    const beforeReconcile = dv.files().map((f) => f.path);
    for (const t of [cow, dv, dvi]) {
      const end = { commitLsn: String(c), partitions: 1, tsMs: 1_700_000_000_000 + c * 1000 + 500, seen: [0] };
      const configuration = { ...t.metadata.configuration, [SNAPSHOT_END_PROPERTY]: JSON.stringify(end) };
      await t.commit([{ metaData: { ...t.metadata, configuration } }], { operation: 'SET TBLPROPERTIES' });
      expect(await reconcileHistory(engine, t, ['id'], log)).toBeGreaterThan(0);
    }
    const kept = new Set(dv.files().map((f) => f.path));
    expect(
      beforeReconcile.filter((p) => !kept.has(p)),
      'reconcile: no file removed',
    ).toEqual([]);
    const reconciled = await tideVersions(dv);
    expect(reconciled.filter((r) => r[5] === true).map((r) => r[0])).toEqual(['1000']);
    await expectSame('after a re-snapshot reconcile');

    // Optimize purges the vectors; vacuum deletes the vector files; merges go on.
    for (const t of [dv, dvi]) {
      // The indexed table is optimized through another table object: a foreign commit for its index.
      const opt = await optimizeTable(engine, t === dvi ? (await DeltaTable.open(store, t.root))! : t, { maxDeletedRowsRatio: 0 });
      expect(opt.purged).toBeGreaterThan(0);
      await t.refresh();
      expect(t.files().some((f) => f.deletionVector)).toBe(false);
      await vacuumTable(t, { retainHours: 0, now: Date.now() + 3_600_000 });
      expect(readdirSync(join(dir, t.root)).filter((n) => n.startsWith('deletion_vector_'))).toEqual([]);
    }
    await both([event('u', 1000, 'after optimize', 'z'), event('d', 5), event('c', 6, 'six', undefined)]);
    await expectSame('after optimize and vacuum');
  }, 600_000);

  it('turns the key index off past silver.key.index.max.rows keys, and merges go on by scanning', async () => {
    const cow = await createHistory('silver/cow_capped', false);
    const dv = await createHistory('silver/dv_capped', true);
    const capped = { maxRows: 50 };
    const both = async (events: ChangeEvent[]) => {
      await merge(cow, events);
      await mergeHistory(engine, dv, schema, ['id'], historyVersions(events, ['id'], []), [], undefined, capped);
    };
    await both(Array.from({ length: 40 }, (_, i) => event('c', i, `n${i}`, `note${i}`)));
    await both([event('u', 3, 'three', undefined), event('c', 40, 'forty', 'x')]);
    expect(historyIndexOf(dv)).toBeInstanceOf(HistoryKeyIndex);
    await expectIndexTrue(dv, 'under the cap');
    await both(Array.from({ length: 20 }, (_, i) => event('c', 100 + i, `m${i}`, 'y')));
    await both([event('u', 3, 'three again', undefined), event('d', 100), event('u', 101, 'one-o-one', undefined)]);
    expect(historyIndexOf(dv)).toBe('off');
    await expectSameHistory(cow, dv, 'past the cap');
  });
});

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeltaTable } from '../../src/lake/delta/delta-table.ts';
import { TIDE_PROTOCOL, withDeletionVectors } from '../../src/lake/delta/protocol-check.ts';
import type { LakeSchema } from '../../src/lake/lake-schema.ts';
import { ParquetEngine } from '../../src/lake/parquet/parquet-engine.ts';
import { LocalStore } from '../../src/lake/storage/local-store.ts';
import type { ChangeEvent } from '../../src/sink/change-event.ts';
import type { HistoryIndexOptions } from '../../src/sink/history-key-index.ts';
import { historyColumns, historyVersions, mergeHistory } from '../../src/sink/history-merge.ts';
import { deltaReaderAvailable, readWithDeltaRs } from '../support/delta-reader.ts';
import { orderEvent } from '../support/change-events.ts';

/**
 * The history merge's new-version rule (newerThanHistory, history-dv-merge.ts): a staged version is kept
 * only when it is newer than every version of its key that history holds. After a source crash the
 * source re-sends events, and a batch can carry a version of a key OLDER than what history already knows
 * about the key (here: after the key was deleted). Such a version must not be appended: it would reopen a
 * deleted key with a stale row. The same on the three merge paths: copy-on-write, deletion vectors with a
 * scan, deletion vectors with the key index (history-key-index.ts). Checked with delta-rs as the reader.
 */
const skip = deltaReaderAvailable() ? undefined : 'the delta-rs venv is missing: run `bash scripts/setup-python.sh`';
if (skip) console.warn(`history-stale-version: skipped: ${skip}`);
console.warn(
  'history-stale-version: "older than the delete only" skipped: a known gap, history keeps a delete as a time (_valid_to), not an LSN',
);

const schema: LakeSchema = {
  columns: historyColumns([
    { name: 'id', type: { kind: 'long' }, nullable: false },
    { name: 'name', type: { kind: 'string' }, nullable: true },
  ]),
};
const dir = mkdtempSync(join(tmpdir(), 'tide-history-stale-'));
const store = new LocalStore(dir);
let engine: ParquetEngine;

/** A change of key `id` at commit LSN `lsn` (event index 0), committed at second `lsn` after a fixed epoch. */
const event = (op: 'c' | 'u' | 'd', id: number, lsn: number, name = ''): ChangeEvent => orderEvent(op, { id: BigInt(id), name }, lsn);

const PATHS: { path: string; vectors: boolean; index?: HistoryIndexOptions }[] = [
  { path: 'copy-on-write', vectors: false },
  { path: 'deletion vectors, scan', vectors: true },
  { path: 'deletion vectors, key index', vectors: true, index: { maxRows: 1_000_000 } },
];

describe.skipIf(skip)('history merge: a replayed version older than the key history holds', () => {
  beforeAll(async () => {
    engine = await ParquetEngine.create();
  });
  afterAll(async () => {
    await engine?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  describe.each(PATHS)('$path', ({ path, vectors, index }) => {
    const root = `silver/${path.replace(/[^a-z]+/g, '_')}_history`;
    const merge = (table: DeltaTable, events: ChangeEvent[]) =>
      mergeHistory(engine, table, schema, ['id'], historyVersions(events, ['id'], []), [], undefined, index);

    const create = (name: string) =>
      DeltaTable.create(store, `${root}_${name}`, {
        name: `${root}_${name}`.replace('/', '.'),
        schema,
        configuration: vectors ? { 'delta.enableDeletionVectors': 'true' } : {},
        ...(vectors ? { protocol: withDeletionVectors(TIDE_PROTOCOL) } : {}),
      });
    /** Key 1's versions as delta-rs reads the table. */
    const versionsOf = async (table: DeltaTable) => {
      const view = await readWithDeltaRs(join(dir, table.root));
      const at = (c: string) => view.columns.indexOf(c);
      return view.rows
        .filter((r) => String(r[at('id')]) === '1')
        .map((r) => ({
          lsn: String(r[at('_commit_lsn')]),
          name: r[at('name')],
          current: r[at('_is_current')],
          closed: r[at('_valid_to')] !== null,
        }))
        .sort((a, b) => Number(a.lsn) - Number(b.lsn));
    };

    it('drops a replayed version older than a version history holds, after a delete (insert @10, update @18, delete @20, replay @15)', async () => {
      const table = await create('older_than_version');
      await merge(table, [event('c', 1, 10, 'v1')]);
      await merge(table, [event('u', 1, 18, 'v2')]);
      await merge(table, [event('d', 1, 20)]);
      // A replay after a source crash: an update of key 1 older than its latest version, straight into the merge.
      await merge(table, [event('u', 1, 15, 'stale')]);
      expect(await versionsOf(table), `${path}: key 1 stays deleted, no version @15`).toEqual([
        { lsn: '10', name: 'v1', current: false, closed: true },
        { lsn: '18', name: 'v2', current: false, closed: true },
      ]);
    });

    // Known gap (not fixed by 38edea8): history records a delete only as the closed version's _valid_to (a
    // time), not its LSN, so a version between the key's latest version and its delete looks newer than all
    // history holds and is appended, current. Reproduced on all three paths; see the session 12 report.
    it.skip('drops a replayed version older than the delete only (insert @10, delete @20, replay @15): known gap', async () => {
      const table = await create('older_than_delete');
      await merge(table, [event('c', 1, 10, 'v1')]);
      await merge(table, [event('d', 1, 20)]);
      await merge(table, [event('u', 1, 15, 'stale')]);
      expect(await versionsOf(table), `${path}: key 1 stays deleted, no version @15`).toEqual([
        { lsn: '10', name: 'v1', current: false, closed: true },
      ]);
    });
  });
});

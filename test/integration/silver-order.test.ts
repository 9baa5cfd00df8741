import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeltaTable } from '../../src/lake/delta/delta-table.ts';
import type { LakeSchema } from '../../src/lake/lake-schema.ts';
import { ParquetEngine } from '../../src/lake/parquet/parquet-engine.ts';
import { LocalStore } from '../../src/lake/storage/local-store.ts';
import type { KeyChange, SilverBatch } from '../../src/sink/silver-changes.ts';
import { mergeSilver, TRUNCATED_AT } from '../../src/sink/silver-merge.ts';
import { SILVER_META } from '../../src/sink/table-layout.ts';
import { readWithDeltaRs } from '../support/delta-reader.ts';

/**
 * Silver across Kafka partitions: a table's events reach the sink in per-partition order only, so one
 * batch may hold a change committed after a truncate that arrives in a later batch (the truncate has no key
 * and sits on its own partition), or a change from before a truncate may arrive after it. Silver must end as
 * Postgres did: (commit LSN, event index) decides, never arrival order. Real Delta table, DuckDB and delta-rs.
 */
const schema: LakeSchema = {
  columns: [
    { name: 'id', type: { kind: 'long' }, nullable: false },
    { name: 'name', type: { kind: 'string' }, nullable: true },
    ...SILVER_META,
  ],
};
const dir = mkdtempSync(join(tmpdir(), 'tide-silver-order-'));
const store = new LocalStore(dir);
let engine: ParquetEngine;

const upsert = (id: number, name: string, commitLsn: number, eventIndex = 0): KeyChange => ({
  key: [BigInt(id)],
  deleted: false,
  row: { id: BigInt(id), name },
  unchanged: [],
  commitLsn: BigInt(commitLsn),
  eventIndex,
  commitTsMs: 1_700_000_000_000 + commitLsn,
});

async function silverRows(root: string): Promise<[number, string][]> {
  const view = await readWithDeltaRs(join(dir, root));
  const id = view.columns.indexOf('id');
  const name = view.columns.indexOf('name');
  return view.rows.map((r) => [Number(r[id]), String(r[name])] as [number, string]).sort((a, b) => a[0] - b[0]);
}

describe('silver merge ordered by (commit LSN, event index) across batches', () => {
  beforeAll(async () => {
    engine = await ParquetEngine.create();
  });
  afterAll(async () => {
    await engine?.close();
  });

  it('a truncate keeps rows committed after it that an earlier batch applied, and drops late changes from before it', async () => {
    const table = await DeltaTable.create(store, 'silver/t', { name: 'silver.t', schema });
    const merge = (batch: SilverBatch) => mergeSilver(engine, table, schema, ['id'], batch, []);

    // Batch 1 (partition 1 ran ahead): id 1 at LSN 100 (before the truncate), id 2 at LSN 300 (after it).
    await merge({ changes: [upsert(1, 'old', 100), upsert(2, 'after truncate', 300)] });
    expect(await silverRows('silver/t')).toEqual([
      [1, 'old'],
      [2, 'after truncate'],
    ]);

    // Batch 2 (partition 0): the TRUNCATE committed at LSN 200, then an insert at LSN 250.
    await merge({ truncate: { commitLsn: 200n, eventIndex: 0 }, changes: [upsert(3, 'after truncate too', 250)] });
    expect(await silverRows('silver/t')).toEqual([
      [2, 'after truncate'],
      [3, 'after truncate too'],
    ]);
    expect(table.metadata.configuration[TRUNCATED_AT]).toBe('200/0');

    // Batch 3 (partition 2, late): changes from before the truncate stay gone; a later one applies.
    await merge({ changes: [upsert(4, 'before truncate', 150), upsert(1, 'before truncate', 199, 5), upsert(5, 'new', 400)] });
    expect(await silverRows('silver/t')).toEqual([
      [2, 'after truncate'],
      [3, 'after truncate too'],
      [5, 'new'],
    ]);

    // A replayed older truncate changes nothing.
    await merge({ truncate: { commitLsn: 200n, eventIndex: 0 }, changes: [] });
    expect((await silverRows('silver/t')).map(([id]) => id)).toEqual([2, 3, 5]);
  });
});

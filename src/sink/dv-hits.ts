import type { AddAction } from '../lake/delta/actions.ts';
import type { DeltaTable } from '../lake/delta/delta-table.ts';
import { literal } from '../lake/parquet/duckdb-sql.ts';
import type { ParquetEngine } from '../lake/parquet/parquet-engine.ts';
import { deletedRowSql } from '../lake/parquet/deleted-rows.ts';

/**
 * Delete from `hits` (a temp table with `__f`, the local path of a row's file, and `__r`, its
 * `file_row_number`) the rows that their file's deletion vector already deletes: old versions, written
 * again elsewhere. Only the vectors of files with hits are read. Their rows are staged as 64-row words or keys
 * (ParquetEngine.stageDeletedRows: typed arrays, no JS value per row) and joined in DuckDB, the way a view
 * leaves them out; before, each deleted row was a JS array with a BigInt (history) or a number
 * spelled out in the SQL text (silver), millions once a file's vector had grown.
 */
export async function dropDeletedHits(
  engine: ParquetEngine,
  table: DeltaTable,
  hits: string,
  byLocal: ReadonlyMap<string, AddAction>,
): Promise<void> {
  const withVector = (await engine.query(`SELECT DISTINCT __f FROM ${hits}`))
    .map((r) => String(r.__f))
    .filter((local) => byLocal.get(local)?.deletionVector);
  if (!withVector.length) return;
  const gone = await engine.stageDeletedRows(
    table.store,
    table.root,
    withVector.map((local) => byLocal.get(local)!),
    table.label,
  );
  try {
    const index = withVector.map((local, i) => `(${literal(local)}, ${i})`).join(', ');
    await engine.run(
      `DELETE FROM ${hits} h USING (VALUES ${index}) m(f, i), ${gone.table} d WHERE h.__f = m.f AND ${deletedRowSql(gone, 'm.i', 'h.__r').deleted}`,
    );
  } finally {
    await engine.drop(gone.table);
  }
}

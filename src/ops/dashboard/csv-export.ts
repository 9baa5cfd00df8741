import { createReadStream } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { openTable } from '../../lake/lake-catalog.ts';
import type { ParquetEngine } from '../../lake/parquet/parquet-engine.ts';
import type { ObjectStore } from '../../lake/storage/object-store.ts';
import { DashboardRequestError } from './dashboard-errors.ts';

/**
 * The detailed report download: a gold table as CSV, written the way `tide lake export <table>
 * --format csv` writes it (src/cli/lake-commands.ts: a view over the table's current files, then
 * DuckDB's COPY … (FORMAT csv, HEADER true)) into a temp file that is streamed and removed.
 *
 * Only gold tables: bronze keeps the raw change events, whose PII silver and gold mask.
 */
const NAME = /^gold\.[a-z0-9_]+$/;
let exports = 0;

/** `gold.daily_billing` from the URL's `gold.daily_billing.csv`; a DashboardRequestError otherwise. */
export function exportTableName(fileName: string): string {
  const name = decodeURIComponent(fileName).replace(/\.csv$/, '');
  if (!fileName.endsWith('.csv') || !NAME.test(name))
    throw new DashboardRequestError(
      404,
      'table',
      `${JSON.stringify(fileName)} is not a gold report export: ask for /api/export/gold.<report>.csv, e.g. gold.daily_billing.csv`,
    );
  return name;
}

/** Write gold table `name` as CSV to `res` (with headers); throws before any byte is sent when the table is missing. */
export async function sendTableCsv(res: ServerResponse, engine: ParquetEngine, store: ObjectStore, name: string): Promise<void> {
  const table = await openTable(store, name);
  const dir = await mkdtemp(join(tmpdir(), 'tide-dashboard-export-'));
  const view = `dashboard_export_${++exports}`;
  try {
    const file = join(dir, `${name}.csv`);
    await engine.createView(view, store, table.root, table.files(), table.schema, table.partitionColumns);
    try {
      await engine.run(`COPY (SELECT * FROM ${view}) TO '${file.replace(/'/g, "''")}' (FORMAT csv, HEADER true)`);
    } finally {
      await engine.run(`DROP VIEW IF EXISTS ${view}`);
    }
    const { size } = await stat(file);
    res.writeHead(200, {
      'content-type': 'text/csv; charset=utf-8',
      'content-length': String(size),
      'content-disposition': `attachment; filename="${name}.csv"`,
      'cache-control': 'no-store',
      'x-delta-version': String(table.version),
    });
    await pipeline(createReadStream(file), res);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

import { DeltaTable } from '../../lake/delta/delta-table.ts';
import type { ParquetEngine } from '../../lake/parquet/parquet-engine.ts';
import type { ObjectStore } from '../../lake/storage/object-store.ts';
import { goldPath } from '../../sink/table-layout.ts';
import { GoldReadError } from './dashboard-errors.ts';

/**
 * Reads gold tables from the lake for the dashboard: never from Postgres. Each read opens (then
 * refreshes) the table's Delta log, registers a DuckDB view over the data files of that version under
 * a name of its own (concurrent requests never see each other's views), runs the query and drops the
 * view. Results are cached per table version and query, so polling pages cost one log refresh per
 * request until the sink commits a new version.
 */

export interface GoldRows {
  rows: Record<string, unknown>[];
  /** The gold table's Delta version the rows come from. */
  version: number;
  /** When that version was committed (ms since the epoch; the commit file's modification time). */
  committedAtMs: number | null;
}

/** Results kept for at most this many (table version, query) pairs. */
const CACHE_ENTRIES = 128;

export class GoldReader {
  private readonly tables = new Map<string, DeltaTable>();
  private readonly cache = new Map<string, Promise<GoldRows>>();
  private views = 0;

  constructor(
    private readonly store: ObjectStore,
    private readonly engine: ParquetEngine,
  ) {}

  /** The gold table at its newest version, or undefined while the sink has not built it yet. */
  async table(report: string): Promise<DeltaTable | undefined> {
    const known = this.tables.get(report);
    if (known) {
      await known.refresh();
      return known;
    }
    const opened = await DeltaTable.open(this.store, goldPath(report));
    if (opened) this.tables.set(report, opened);
    return opened;
  }

  /**
   * Run `sql(view)` over the newest version of gold.<report>, where `view` is the name to select
   * from. Undefined when the table does not exist yet.
   */
  async read(report: string, sql: (view: string) => string): Promise<GoldRows | undefined> {
    const table = await this.table(report);
    if (!table) return undefined;
    const version = table.version;
    const text = sql('{{view}}');
    const key = `${report}@${version}\u0000${text}`;
    let result = this.cache.get(key);
    if (!result) {
      result = this.query(table, report, text);
      this.cache.set(key, result);
      // A failed read is not cached: the next poll tries again.
      result.catch(() => this.cache.delete(key));
      while (this.cache.size > CACHE_ENTRIES) this.cache.delete(this.cache.keys().next().value!);
    }
    return result;
  }

  private async query(table: DeltaTable, report: string, text: string): Promise<GoldRows> {
    const view = `dashboard_${report.replace(/[^A-Za-z0-9_]/g, '_')}_${++this.views}`;
    const version = table.version;
    const files = table.files();
    try {
      await this.engine.createView(view, this.store, table.root, files, table.schema, table.partitionColumns);
      try {
        const rows = await this.engine.query(text.replaceAll('{{view}}', view));
        const commit = await this.store.stat(`${table.root}/_delta_log/${String(version).padStart(20, '0')}.json`);
        return { rows, version, committedAtMs: commit?.modified ?? null };
      } finally {
        await this.engine.run(`DROP VIEW IF EXISTS ${view}`);
      }
    } catch (e) {
      throw new GoldReadError(
        report,
        `reading version ${version} (${files.length} files) from ${this.store.uri} failed: ${(e as Error).message}. ` +
          'If a vacuum removed its files, the next refresh reads the newest version.',
        { cause: e },
      );
    }
  }
}

import type { Action } from '../lake/delta/actions.ts';
import { DeltaTable } from '../lake/delta/delta-table.ts';
import type { LakeColumn, LakeSchema, LakeType } from '../lake/lake-schema.ts';
import type { DataFile } from '../lake/parquet/parquet-engine.ts';
import { duckdbType, type ParquetEngine } from '../lake/parquet/parquet-engine.ts';
import type { ObjectStore } from '../lake/storage/object-store.ts';
import type { Logger } from '../log.ts';
import { goldPath, lakeTableName, silverPath } from '../sink/table-layout.ts';
import { GOLD_REPORTS, type GoldReport } from './gold-reports.ts';
import { servingSelectExpression, type ServingDatabase } from './serving.ts';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Gold: reporting tables defined as SQL over silver, run by DuckDB. Each refresh registers one view
 * per silver table (`silver_<table>`, over the table's current Parquet files), runs every report and
 * replaces the gold table's content in one Delta commit (remove all + add), updating its schema when
 * the report's columns changed (the attributes pivot grows a column per new key).
 */
export const GOLD_SOURCE_TABLES = ['public.customers', 'public.products', 'public.orders', 'public.order_items'];

export interface GoldResult {
  report: string;
  rows: number;
  version: number;
  ms: number;
}

/** DuckDB's result type → the lake's; anything else is cast to a string. */
export function lakeTypeOfDuckdb(type: string): LakeType {
  const t = type.toUpperCase();
  const dec = /^DECIMAL\((\d+),\s*(\d+)\)$/.exec(t);
  if (dec) return { kind: 'decimal', precision: Number(dec[1]), scale: Number(dec[2]) };
  if (t.endsWith('[]')) return { kind: 'array', element: lakeTypeOfDuckdb(t.slice(0, -2)) };
  switch (t) {
    case 'VARCHAR':
      return { kind: 'string' };
    case 'BIGINT':
    case 'UBIGINT':
    case 'UINTEGER':
      return { kind: 'long' };
    case 'HUGEINT':
    case 'UHUGEINT':
      return { kind: 'decimal', precision: 38, scale: 0 };
    case 'INTEGER':
    case 'USMALLINT':
      return { kind: 'integer' };
    case 'SMALLINT':
    case 'TINYINT':
    case 'UTINYINT':
      return { kind: 'short' };
    case 'DOUBLE':
      return { kind: 'double' };
    case 'FLOAT':
      return { kind: 'float' };
    case 'BOOLEAN':
      return { kind: 'boolean' };
    case 'BLOB':
      return { kind: 'binary' };
    case 'DATE':
      return { kind: 'date' };
    case 'TIMESTAMP WITH TIME ZONE':
    case 'TIMESTAMP':
    case 'TIMESTAMP_NS':
    case 'TIMESTAMP_MS':
    case 'TIMESTAMP_S':
      return { kind: 'timestamp' };
    default:
      return { kind: 'string' };
  }
}

const q = (name: string): string => `"${name.replace(/"/g, '""')}"`;

export class GoldRefresher {
  /** Reports that failed, newest last (for status and metrics). */
  readonly failures: { report: string; error: string; at: number }[] = [];

  constructor(
    private readonly engine: ParquetEngine,
    private readonly store: ObjectStore,
    private readonly log: Logger,
    private readonly reports: GoldReport[] = GOLD_REPORTS,
    /** Where each built gold table is published for BI tools (serving.uri), if anywhere. */
    private readonly serving?: ServingDatabase,
  ) {}

  /** Register `silver_<table>` views; false when a silver table does not exist yet. */
  async registerSilverViews(): Promise<boolean> {
    for (const qualified of GOLD_SOURCE_TABLES) {
      const table = await DeltaTable.open(this.store, silverPath(qualified));
      if (!table) return false;
      await this.engine.createView(`silver_${lakeTableName(qualified)}`, this.store, table.root, table.files(), table.schema);
    }
    return true;
  }

  async refresh(): Promise<GoldResult[]> {
    if (!(await this.registerSilverViews())) {
      this.log.info('gold: not every silver table exists yet; skipping this refresh');
      return [];
    }
    const results: GoldResult[] = [];
    for (const report of this.reports) {
      // One report failing (e.g. an attribute key that cannot be a column) must not stop the others.
      try {
        results.push(await this.refreshReport(report));
      } catch (err) {
        this.failures.push({ report: report.name, error: (err as Error).message, at: Date.now() });
        this.log.error({ report: report.name, err }, 'gold report failed; the other reports go on, this one keeps its previous version');
      }
    }
    this.log.info({ reports: results }, 'gold refreshed');
    return results;
  }

  /** Rebuild one report: run its SQL over the silver views and replace the gold table's content in one commit. */
  async refreshReport(report: GoldReport): Promise<GoldResult> {
    const started = Date.now();
    const sql = await report.duckdbSql((s) => this.engine.query(s));
    const described = await this.engine.query(`DESCRIBE ${sql}`);
    const columns: LakeColumn[] = described.map((d) => ({
      name: String(d.column_name),
      type: lakeTypeOfDuckdb(String(d.column_type)),
      nullable: true,
    }));
    const select = `SELECT ${columns.map((c) => `CAST(${q(c.name)} AS ${duckdbType(c.type)}) AS ${q(c.name)}`).join(', ')} FROM (${sql}) r`;
    const schema = { columns };
    let table = await DeltaTable.open(this.store, goldPath(report.name));
    table ??= await DeltaTable.create(this.store, goldPath(report.name), {
      name: `gold.${report.name}`,
      schema,
      description: report.description,
    });
    const adds = await this.engine.writeFiles(select, { store: this.store, root: table.root, schema });
    const now = Date.now();
    const actions: Action[] = [];
    if (JSON.stringify(table.schema) !== JSON.stringify(schema)) actions.push({ metaData: table.evolveSchema(schema) });
    for (const f of table.files())
      actions.push({
        remove: { path: f.path, deletionTimestamp: now, dataChange: true, partitionValues: f.partitionValues, size: f.size },
      });
    actions.push(...adds.map((add) => ({ add })));
    const version = await table.commit(actions, { operation: 'WRITE', parameters: { mode: 'Overwrite' } });
    const rows = adds.reduce((n, a) => n + (a.stats ? Number((JSON.parse(a.stats) as { numRecords: number }).numRecords) : 0), 0);
    if (this.serving) await this.publish(report, table.root, adds, schema, version);
    return { report: report.name, rows, version, ms: Date.now() - started };
  }

  /**
   * Publish gold version `version` (its files `adds`) to the serving database: DuckDB writes the rows as
   * CSV, which the serving database loads with COPY. A failure leaves the served table as it was; the gold
   * table is committed already, and the next build publishes again.
   */
  private async publish(report: GoldReport, root: string, adds: DataFile[], schema: LakeSchema, version: number): Promise<void> {
    const view = `serving_${report.name}`;
    const dir = await mkdtemp(join(tmpdir(), 'tide-serving-'));
    try {
      await this.engine.createView(view, this.store, root, adds, schema);
      const csvPath = join(dir, `${report.name}.csv`);
      const exprs = schema.columns.map((c) => `${servingSelectExpression(c)} AS ${q(c.name)}`).join(', ');
      await this.engine.run(`COPY (SELECT ${exprs} FROM ${q(view)}) TO '${csvPath.replaceAll("'", "''")}' (FORMAT csv, HEADER false)`);
      await this.serving!.publish({
        name: report.name,
        columns: schema.columns,
        csvPath,
        report: report.name,
        description: report.description,
        lakeVersion: version,
        builtAt: new Date(),
      });
    } catch (err) {
      // The gold table is committed; only its served copy is stale until a later build publishes again.
      this.failures.push({ report: `serving:${report.name}`, error: (err as Error).message, at: Date.now() });
      this.log.error(
        { report: report.name, err },
        'publishing the gold table to the serving database failed; it keeps its previous rows there',
      );
    } finally {
      await this.engine.run(`DROP VIEW IF EXISTS ${q(view)}`).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    }
  }
}

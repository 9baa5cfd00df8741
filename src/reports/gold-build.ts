import type { Action, AddAction } from '../lake/delta/actions.ts';
import { DeltaTable } from '../lake/delta/delta-table.ts';
import type { LakeColumn, LakeSchema, LakeType } from '../lake/lake-schema.ts';
import { duckdbType, type DataFile, type ParquetEngine } from '../lake/parquet/parquet-engine.ts';
import type { ObjectStore } from '../lake/storage/object-store.ts';
import { goldPath } from '../sink/table-layout.ts';
import { FINGERPRINT_PROPERTY, quoteIdentifier as q, quoteLiteral, type GoldReport } from './gold-reports.ts';
import { GoldReportError, reportSqlError } from './report-errors.ts';

/**
 * Writing one gold table from its report's SQL: a full build replaces the table's content in one Delta
 * commit (remove all + add); an incremental build (`-- tide: incremental by <column> [lookback <d>]`)
 * recomputes only the rows at or after the table's high-water mark and merges them in one commit.
 *
 * Incremental, exactly:
 *   W      = max(<column>) over the gold table's rows (the high-water mark);
 *   since  = W - lookback, given to the SQL as {{since}} (a TIMESTAMPTZ literal);
 *   result = every gold row with <column> < since, kept as it is,
 *            + every row the SQL returns with <column> >= since (rows it returns before since are dropped).
 * Only data files whose <column> maximum (Delta file statistics) is >= since are rewritten; older files
 * stay. The SQL must therefore return every row at or after since completely, from the inputs it reads
 * with `>= {{since}}`: a row's <column> must not be earlier than the input rows it is made from (a
 * bucket start such as date_trunc('minute', event_time) is fine). The first build, a table without rows,
 * and a change of the report's columns are full builds ({{since}} = -infinity).
 */
export interface BuildResult {
  table: DeltaTable;
  version: number;
  /** Rows written by this build (all of them for a full build, the recomputed ones for an incremental one). */
  rows: number;
  /** The table's files after the build (what the serving database publishes). */
  files: AddAction[];
  /** The {{since}} literal of an incremental build; undefined for a full one. */
  since?: string;
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

const rowsOf = (adds: DataFile[]): number =>
  adds.reduce((n, a) => n + (a.stats ? Number((JSON.parse(a.stats) as { numRecords: number }).numRecords) : 0), 0);

/** The report's SQL for `since`, its lake schema (DESCRIBE), and the SELECT that casts to it. Errors name the file's line. */
export async function describeReport(engine: ParquetEngine, report: GoldReport, since?: string) {
  try {
    const sql = await report.duckdbSql((s) => engine.query(s), since);
    // Nothing before the SQL's first line, so DuckDB's LINE n is the file's line n.
    const inner = `SELECT * FROM (${sql}\n) r`;
    const described = await engine.query(`DESCRIBE ${inner}`);
    const columns: LakeColumn[] = described.map((d) => ({
      name: String(d.column_name),
      type: lakeTypeOfDuckdb(String(d.column_type)),
      nullable: true,
    }));
    const select = `SELECT ${columns.map((c) => `CAST(${q(c.name)} AS ${duckdbType(c.type)}) AS ${q(c.name)}`).join(', ')} FROM (${sql}\n) r`;
    return { sql: inner, columns, select, schema: { columns } as LakeSchema };
  } catch (err) {
    if (err instanceof GoldReportError) throw err;
    throw reportSqlError(report.file, err);
  }
}

async function openOrCreate(store: ObjectStore, report: GoldReport, schema: LakeSchema): Promise<DeltaTable> {
  return (
    (await DeltaTable.open(store, goldPath(report.name))) ??
    (await DeltaTable.create(store, goldPath(report.name), {
      name: `gold.${report.name}`,
      schema,
      description: report.description,
      configuration: { [FINGERPRINT_PROPERTY]: report.fingerprint },
    }))
  );
}

const sameSchema = (a: LakeSchema, b: LakeSchema) => JSON.stringify(a) === JSON.stringify(b);

/** Whether the gold table was last built by the report's current SQL (false after an edit, or for a table built before fingerprints). */
export const builtBySameSql = (table: DeltaTable, report: GoldReport) =>
  table.metadata.configuration[FINGERPRINT_PROPERTY] === report.fingerprint;

/** The metaData action a full build commits: the report's schema and SQL fingerprint, when either changed. */
function metadataUpdate(table: DeltaTable, report: GoldReport, schema: LakeSchema): Action[] {
  if (sameSchema(table.schema, schema) && builtBySameSql(table, report)) return [];
  const metaData = sameSchema(table.schema, schema) ? table.metadata : table.evolveSchema(schema);
  return [{ metaData: { ...metaData, configuration: { ...metaData.configuration, [FINGERPRINT_PROPERTY]: report.fingerprint } } }];
}

/** Replace the gold table's content with the report's rows. */
export async function buildFull(engine: ParquetEngine, store: ObjectStore, report: GoldReport): Promise<BuildResult> {
  const { select, schema } = await describeReport(engine, report);
  const table = await openOrCreate(store, report, schema);
  const adds = await engine.writeFiles(select, { store, root: table.root, schema });
  const now = Date.now();
  const actions: Action[] = metadataUpdate(table, report, schema);
  for (const f of table.files())
    actions.push({ remove: { path: f.path, deletionTimestamp: now, dataChange: true, partitionValues: f.partitionValues, size: f.size } });
  actions.push(...adds.map((add) => ({ add })));
  const version = await table.commit(actions, { operation: 'WRITE', parameters: { mode: 'Overwrite' } });
  return { table, version, rows: rowsOf(adds), files: table.files() };
}

/** The largest value of `column` in a file, from its statistics (ms); undefined when unknown. */
export function fileMaxMs(add: AddAction, column: string): number | undefined {
  if (!add.stats) return undefined;
  const max = (JSON.parse(add.stats) as { maxValues?: Record<string, unknown> }).maxValues?.[column];
  const ms = typeof max === 'string' ? Date.parse(max) : NaN;
  return Number.isNaN(ms) ? undefined : ms;
}

/** {{since}} of an incremental build: W - lookback, in ms and as a SQL literal. */
export interface Since {
  ms: number;
  literal: string;
}

/** The high-water mark of an incremental report's gold table, minus its lookback; undefined when a full build is due (no table or no rows). */
export async function highWaterMark(engine: ParquetEngine, store: ObjectStore, report: GoldReport): Promise<Since | undefined> {
  const inc = report.incremental!;
  const existing = await DeltaTable.open(store, goldPath(report.name));
  if (!existing || !existing.files().length) return undefined;
  if (!existing.schema.columns.some((c) => c.name === inc.column))
    throw new GoldReportError(report.name, `incremental by ${inc.column}, but the table gold.${report.name} has no column ${inc.column}`);
  const view = `tide_mark_${report.name}`;
  await engine.createView(view, store, existing.root, existing.files(), existing.schema);
  try {
    const [{ w }] = (await engine.query(`SELECT epoch_us(CAST(max(${q(inc.column)}) AS TIMESTAMPTZ)) AS w FROM ${q(view)}`)) as [
      { w: bigint | number | null },
    ];
    if (w === null) return undefined;
    const ms = Number(BigInt(w) / 1000n) - inc.lookbackMs;
    return { ms, literal: `TIMESTAMPTZ ${quoteLiteral(new Date(ms).toISOString())}` };
  } finally {
    await engine.run(`DROP VIEW IF EXISTS ${q(view)}`).catch(() => undefined);
  }
}

/**
 * Recompute the rows at or after `since` and merge them; see the module comment. Without `since`, or when
 * the report's columns changed, a full build: `widen` first registers the input views unpruned again.
 */
export async function buildIncremental(
  engine: ParquetEngine,
  store: ObjectStore,
  report: GoldReport,
  since: Since | undefined,
  widen: () => Promise<unknown>,
): Promise<BuildResult> {
  const inc = report.incremental!;
  const col = q(inc.column);
  const existing = await DeltaTable.open(store, goldPath(report.name));
  if (!since || !existing) return buildFull(engine, store, report);
  const { select, schema } = await describeReport(engine, report, since.literal);
  if (!schema.columns.some((c) => c.name === inc.column))
    throw new GoldReportError(
      report.name,
      `incremental by ${inc.column}, but its SQL returns no column ${inc.column}: name an output time column`,
    );
  // New columns or types: the kept rows would not fit, so everything is recomputed; edited SQL too, as its
  // kept rows were computed by the old SQL.
  if (!sameSchema(existing.schema, schema) || !builtBySameSql(existing, report)) {
    await widen();
    return buildFull(engine, store, report);
  }
  const rewrite = existing.files().filter((f) => (fileMaxMs(f, inc.column) ?? Infinity) >= since.ms);
  const view = `tide_build_${report.name}`;
  await engine.createView(view, store, existing.root, rewrite, existing.schema);
  try {
    const names = schema.columns.map((c) => q(c.name)).join(', ');
    const merged =
      `SELECT ${names} FROM ${q(view)} WHERE ${col} < ${since.literal} OR ${col} IS NULL ` +
      `UNION ALL SELECT ${names} FROM (${select}) n WHERE n.${col} >= ${since.literal}`;
    const adds = await engine.writeFiles(merged, { store, root: existing.root, schema });
    const now = Date.now();
    const actions: Action[] = rewrite.map((f) => ({
      remove: { path: f.path, deletionTimestamp: now, dataChange: true, partitionValues: f.partitionValues, size: f.size },
    }));
    actions.push(...adds.map((add) => ({ add })));
    const version = await existing.commit(actions, {
      operation: 'MERGE',
      parameters: { incrementalBy: inc.column, since: new Date(since.ms).toISOString() },
    });
    return { table: existing, version, rows: rowsOf(adds), files: existing.files(), since: since.literal };
  } finally {
    await engine.run(`DROP VIEW IF EXISTS ${q(view)}`).catch(() => undefined);
  }
}

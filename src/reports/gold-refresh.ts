import { DeltaTable } from '../lake/delta/delta-table.ts';
import type { AddAction } from '../lake/delta/actions.ts';
import type { LakeSchema } from '../lake/lake-schema.ts';
import type { ParquetEngine } from '../lake/parquet/parquet-engine.ts';
import type { ObjectStore } from '../lake/storage/object-store.ts';
import type { Logger } from '../log.ts';
import { goldPath } from '../sink/table-layout.ts';
import { buildFull, buildIncremental, builtBySameSql, fileMaxMs, highWaterMark } from './gold-build.ts';
import { quoteIdentifier as q, type GoldReport } from './gold-reports.ts';
import { LakeTables } from './lake-tables.ts';
import { InputsMissingError } from './report-errors.ts';
import { isDue, onChangeSpacingMs } from './report-schedule.ts';
import { servingSelectExpression, type ServingDatabase } from './serving.ts';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export { lakeTypeOfDuckdb } from './gold-build.ts';

/**
 * Gold: the team's reports (gold.reports.dir), run by DuckDB over the lake and written back as Delta
 * tables. Before a report runs, each lake table its SQL names gets a view `<layer>_<table>` over the
 * table's current files. Reports run in dependency order, so one that reads `gold_<other>` sees the
 * other's build of the same pass. When each report is due follows its `refresh` header
 * (report-schedule.ts); the sink tells the refresher which tables each flush changed (noteChanged).
 * After each build the table is published to the serving database, when there is one.
 */
export interface GoldResult {
  report: string;
  rows: number;
  version: number;
  ms: number;
  /** For an incremental build: the {{since}} it recomputed from. */
  since?: string;
}

export interface GoldRefresherOptions {
  /** Where each built gold table is published for BI tools (serving.uri), if anywhere. */
  serving?: ServingDatabase;
  /** gold.refresh.interval.ms: the least time between two on-change builds of a report (and between retries of a failed one). */
  onChangeIntervalMs?: number;
  /** gold.build.max.share: an on-change report waits longer than the interval after a long build (report-schedule.ts onChangeSpacingMs). */
  maxBuildShare?: number;
  /** The clock (tests). */
  now?: () => number;
}

interface ReportState {
  /** Last build (ms); undefined until known (read from the gold table's log at the first scheduled pass). */
  lastBuildMs?: number;
  /** How long its last build in this process took (ms). */
  lastBuildTookMs?: number;
  /** The change sequence number its last build saw. */
  builtSeq: number;
  /** Its gold table does not exist: an on-change or every-N report is built at once (a report added to the folder). */
  neverBuilt?: boolean;
  failedAtMs?: number;
  /** It waited for a table it reads to exist at this change sequence number: asked again after the next change. */
  waitSeq?: number;
}

export class GoldRefresher {
  /** Reports that failed, newest last (for status and metrics). */
  readonly failures: { report: string; error: string; at: number }[] = [];
  private readonly state = new Map<string, ReportState>();
  private changeSeq = 0;
  /** Lake table root → the sequence number of its last change. */
  private readonly changedAt = new Map<string, number>();
  private loadedBuildTimes = false;
  private readonly now: () => number;
  /** The lake tables reports read, kept open between passes and refreshed (lake-tables.ts). */
  private readonly lakeTables: LakeTables;

  constructor(
    private readonly engine: ParquetEngine,
    private readonly store: ObjectStore,
    private readonly log: Logger,
    readonly reports: GoldReport[],
    private readonly opts: GoldRefresherOptions = {},
  ) {
    this.now = opts.now ?? Date.now;
    this.lakeTables = new LakeTables(store);
    for (const r of reports) this.state.set(r.name, { builtSeq: 0 });
  }

  /** The sink committed to these lake tables (roots, e.g. silver/orders). */
  noteChanged(roots: string[]): void {
    const seq = ++this.changeSeq;
    for (const root of roots) this.changedAt.set(root, seq);
  }

  private inputsChanged(r: GoldReport): boolean {
    const { builtSeq: built, neverBuilt } = this.state.get(r.name)!;
    if (neverBuilt) return true;
    // A report whose SQL names no lake table Tide can see follows every change.
    if (!r.reads.length) return this.changeSeq > built;
    return r.reads.some((x) => (this.changedAt.get(x.root) ?? 0) > built);
  }

  /** Whether the report should be built now (its refresh header; a failed one waits gold.refresh.interval.ms). */
  isDue(r: GoldReport, nowMs = this.now()): boolean {
    const s = this.state.get(r.name)!;
    const interval = this.opts.onChangeIntervalMs ?? 0;
    if (s.failedAtMs !== undefined && nowMs - s.failedAtMs < Math.max(interval, 1000)) return false;
    if (s.waitSeq === this.changeSeq) return false;
    const spacing = onChangeSpacingMs(interval, s.lastBuildTookMs, this.opts.maxBuildShare ?? 1);
    return isDue(r.schedule, { nowMs, lastBuildMs: s.lastBuildMs, inputsChanged: this.inputsChanged(r), onChangeIntervalMs: spacing });
  }

  anyDue(): boolean {
    const now = this.now();
    return this.reports.some((r) => this.isDue(r, now));
  }

  /**
   * Read each report's last build from its gold table (the sink calls this at start; refreshDue otherwise):
   * after a restart a daily report is not built twice a day, and a report without a table (new in the
   * folder) or whose SQL was edited since its last build is built at once.
   */
  async loadBuildTimes(): Promise<void> {
    if (this.loadedBuildTimes) return;
    this.loadedBuildTimes = true;
    for (const r of this.reports) {
      const table = await DeltaTable.open(this.store, goldPath(r.name)).catch(() => undefined);
      if (!table) {
        this.state.get(r.name)!.neverBuilt = true;
        continue;
      }
      if (!builtBySameSql(table, r)) {
        // Edited while the sink was down (or built before Tide kept fingerprints): built whole at once.
        this.state.get(r.name)!.neverBuilt = true;
        this.log.info({ report: r.name, file: r.file }, 'gold report changed since its last build; it is rebuilt whole now');
        continue;
      }
      const commit = await this.store
        .stat(`${table.root}/_delta_log/${String(table.version).padStart(20, '0')}.json`)
        .catch(() => undefined);
      if (commit?.modified !== undefined) this.state.get(r.name)!.lastBuildMs ??= commit.modified;
    }
  }

  /** Build the reports that are due, in dependency order (the sink calls this after its flushes). */
  async refreshDue(): Promise<GoldResult[]> {
    await this.loadBuildTimes();
    return this.buildPass((r) => this.isDue(r));
  }

  /** Build every report now (or the ones named), in dependency order: tests and `tide lake report run`. */
  async refresh(names?: string[]): Promise<GoldResult[]> {
    return this.buildPass((r) => !names || names.includes(r.name));
  }

  /** Build, with `force`, every report whose inputs changed since its last build, whatever its schedule (tests, shutdown). */
  async refreshChanged(): Promise<GoldResult[]> {
    return this.buildPass((r) => this.inputsChanged(r));
  }

  private async buildPass(wanted: (r: GoldReport) => boolean): Promise<GoldResult[]> {
    const results: GoldResult[] = [];
    for (const report of this.reports) {
      // Asked per report, in order: a report built in this pass makes its dependents' inputs changed.
      if (!wanted(report)) continue;
      const s = this.state.get(report.name)!;
      const seq = this.changeSeq;
      try {
        const result = await this.refreshReport(report);
        results.push(result);
        const done = { builtSeq: seq, lastBuildMs: this.now(), lastBuildTookMs: result.ms };
        Object.assign(s, { ...done, failedAtMs: undefined, neverBuilt: false, waitSeq: undefined });
        this.noteChanged([goldPath(report.name)]);
      } catch (err) {
        if (err instanceof InputsMissingError) {
          s.waitSeq = this.changeSeq;
          this.log.info({ report: report.name, missing: err.missing }, 'gold report waits for the tables it reads to exist');
          continue;
        }
        // One report failing (e.g. an attribute key that cannot be a column) must not stop the others.
        s.failedAtMs = this.now();
        // Should a kept table be what failed it, the next pass reads every table from its log afresh.
        this.lakeTables.clear();
        this.failures.push({ report: report.name, error: (err as Error).message, at: Date.now() });
        this.log.error({ report: report.name, err }, 'gold report failed; the other reports go on, this one keeps its previous version');
      }
    }
    if (results.length) this.log.info({ reports: results }, 'gold refreshed');
    return results;
  }

  /**
   * A view per lake table the report names; returns the required ones (after FROM/JOIN) that do not exist
   * yet. With `sinceMs` (an incremental build), a table with a column the SQL compares with `>= {{since}}`
   * gets only the data files whose statistics for it reach `sinceMs`: older files are not even opened.
   */
  async registerViews(report: GoldReport, sinceMs?: number): Promise<{ missing: string[]; line: number }> {
    const missing: string[] = [];
    let line = 1;
    for (const read of report.reads) {
      const table = await this.lakeTables.get(read.root);
      if (!table) {
        if (read.required) {
          if (!missing.length) line = read.line;
          missing.push(read.root.replace('/', '.'));
        }
        continue;
      }
      let files = table.files();
      const by =
        sinceMs === undefined ? [] : (report.incremental?.inputColumns ?? []).filter((c) => table.schema.columns.some((x) => x.name === c));
      if (by.length) files = files.filter((f) => by.every((c) => (fileMaxMs(f, c) ?? Infinity) >= sinceMs!));
      await this.engine.createView(read.view, this.store, table.root, files, table.schema, table.partitionColumns);
    }
    return { missing, line };
  }

  /**
   * Build one report now and publish it; `full` rebuilds an incremental report from all its inputs (late
   * data older than its lookback). InputsMissingError when a table it reads does not exist yet.
   */
  async refreshReport(report: GoldReport, opts: { full?: boolean } = {}): Promise<GoldResult> {
    const started = Date.now();
    const since = report.incremental && !opts.full ? await highWaterMark(this.engine, this.store, report) : undefined;
    const { missing, line } = await this.registerViews(report, since?.ms);
    if (missing.length) throw new InputsMissingError(report.file, line, missing, this.store.uri);
    const built = report.incremental
      ? await buildIncremental(this.engine, this.store, report, since, () => this.registerViews(report))
      : await buildFull(this.engine, this.store, report);
    if (this.opts.serving) await this.publish(report, built.table.root, built.files, built.table.schema, built.version);
    return {
      report: report.name,
      rows: built.rows,
      version: built.version,
      ms: Date.now() - started,
      ...(built.since ? { since: built.since } : {}),
    };
  }

  /**
   * Publish gold version `version` (its files `adds`) to the serving database: DuckDB writes the rows as
   * CSV, which the serving database loads with COPY. A failure leaves the served table as it was; the gold
   * table is committed already, and the next build publishes again.
   */
  private async publish(report: GoldReport, root: string, adds: AddAction[], schema: LakeSchema, version: number): Promise<void> {
    const view = `serving_${report.name}`;
    const dir = await mkdtemp(join(tmpdir(), 'tide-serving-'));
    try {
      await this.engine.createView(view, this.store, root, adds, schema);
      const csvPath = join(dir, `${report.name}.csv`);
      const exprs = schema.columns.map((c) => `${servingSelectExpression(c)} AS ${q(c.name)}`).join(', ');
      await this.engine.run(`COPY (SELECT ${exprs} FROM ${q(view)}) TO '${csvPath.replaceAll("'", "''")}' (FORMAT csv, HEADER false)`);
      await this.opts.serving!.publish({
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

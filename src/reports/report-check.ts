import { join } from 'node:path';
import { DeltaTable } from '../lake/delta/delta-table.ts';
import type { ParquetEngine } from '../lake/parquet/parquet-engine.ts';
import type { ObjectStore } from '../lake/storage/object-store.ts';
import { describeReport } from './gold-build.ts';
import type { GoldReport } from './gold-reports.ts';
import { TideError } from '../errors.ts';
import { loadReportFile, orderByDependencies, reportFiles } from './report-folder.ts';
import { ReportFileError } from './report-errors.ts';
import { describeSchedule } from './report-schedule.ts';

/**
 * `tide lake report check`: every report of a folder run against the current lake without writing
 * anything. Per file: the header, the SQL's syntax, the tables and columns it names (DuckDB's binder), and
 * a sample row count (at most SAMPLE_ROWS). A report that reads another report of the folder sees that
 * report's SQL as `gold_<name>` (a view), so a change to both is checked together, before any build.
 */
export const SAMPLE_ROWS = 1000;

export interface CheckResult {
  file: string;
  report?: string;
  ok: boolean;
  /** ok: "on-change, 4 columns, 1000+ rows (sample)"; failed: the error, `<file>:<line>: …`. */
  message: string;
}

/** Load every file on its own, so one broken file does not hide the others' results. */
function loadAll(dir: string): { reports: GoldReport[]; failed: CheckResult[] } {
  const reports: GoldReport[] = [];
  const failed: CheckResult[] = [];
  for (const f of reportFiles(dir)) {
    try {
      reports.push(loadReportFile(dir, f));
    } catch (err) {
      if (!(err instanceof TideError)) throw err;
      failed.push({ file: join(dir, f), ok: false, message: err.message });
    }
  }
  return { reports: orderByDependencies(reports), failed };
}

export async function checkReportFolder(dir: string, engine: ParquetEngine, store: ObjectStore): Promise<CheckResult[]> {
  let parsed: { reports: GoldReport[]; failed: CheckResult[] };
  try {
    parsed = loadAll(dir);
  } catch (err) {
    if (!(err instanceof TideError)) throw err;
    return [{ file: dir, ok: false, message: err.message }];
  }
  const results: CheckResult[] = [...parsed.failed];
  const failedReports = new Set<string>();
  for (const report of parsed.reports) {
    try {
      const blocked = report.dependsOn.filter((d) => failedReports.has(d));
      if (blocked.length)
        throw new ReportFileError(report.file, 1, `reads the report(s) ${blocked.join(', ')}, which failed the check above`);
      for (const read of report.reads) {
        // A report of this folder is read as its SQL (registered below when it passed).
        if (read.root.startsWith('gold/') && parsed.reports.some((r) => `gold/${r.name}` === read.root)) continue;
        const table = await DeltaTable.open(store, read.root);
        if (table) await engine.createView(read.view, store, table.root, table.files(), table.schema, table.partitionColumns);
        else if (read.required)
          throw new ReportFileError(
            report.file,
            read.line,
            `the lake ${store.uri} has no table ${read.root.replace('/', '.')} (read as ${read.view}): check the name (\`tide lake tables\` lists them), or start the sink that writes it`,
          );
      }
      const { sql, columns } = await describeReport(engine, report);
      const [{ n }] = (await engine.query(`SELECT count(*) AS n FROM (SELECT 1 FROM (${sql}) s LIMIT ${SAMPLE_ROWS + 1})`)) as [
        { n: bigint | number },
      ];
      const rows = Number(n) > SAMPLE_ROWS ? `${SAMPLE_ROWS}+ rows` : `${Number(n)} rows`;
      await engine.run(`CREATE OR REPLACE TEMP VIEW "gold_${report.name}" AS ${sql}\n`);
      const incremental = report.incremental ? `, incremental by ${report.incremental.column}` : '';
      results.push({
        file: report.file,
        report: report.name,
        ok: true,
        message: `${describeSchedule(report.schedule)}${incremental}, ${columns.length} columns, ${rows} (sample)`,
      });
    } catch (err) {
      if (!(err instanceof TideError)) throw err;
      failedReports.add(report.name);
      results.push({ file: report.file, report: report.name, ok: false, message: err.message });
    }
  }
  return results;
}

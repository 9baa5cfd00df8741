import { basename } from 'node:path';
import { LAYERS } from '../lake/lake-catalog.ts';
import { ON_CHANGE, parseSchedule, type Schedule } from './report-schedule.ts';
import { ReportFileError } from './report-errors.ts';

/**
 * One gold report file (`<name>.sql` in the folder `gold.reports.dir`): its header directives and the lake
 * tables it reads. Pure text work; report-folder.ts loads the files and orders them.
 *
 * Header directives are SQL comments, anywhere in the file, one per line:
 *
 *     -- tide: refresh = on-change | every 60s | daily 02:00 UTC
 *     -- tide: incremental by <output time column> [lookback 10m]
 *
 * The first other comment line is the report's description (a leading `gold.<name>:` is dropped).
 * Lake tables are read as `<layer>_<table>`: `silver_orders`, `silver_orders_history`, `bronze_orders`,
 * `gold_<report>`.
 */
export interface TableRead {
  /** The DuckDB view name, e.g. silver_orders. */
  view: string;
  /** The lake table's root, e.g. silver/orders. */
  root: string;
  /** 1-based line of its first mention, for messages. */
  line: number;
  /** Named after FROM or JOIN: the report cannot run without it. */
  required: boolean;
}

export interface Incremental {
  /** The report's output column the high-water mark is taken from (a timestamp or date). */
  column: string;
  /** How far before the high-water mark rows are recomputed (late data). */
  lookbackMs: number;
  /** The input columns the SQL compares with `>= {{since}}`: files of the tables it reads are pruned by their statistics. */
  inputColumns: string[];
}

export interface ReportFile {
  name: string;
  /** The file's path, for messages. */
  path: string;
  /** The SQL as written (header included, so DuckDB's line numbers are the file's). */
  sql: string;
  description: string;
  schedule: Schedule;
  incremental?: Incremental;
  reads: TableRead[];
}

export const SINCE_PLACEHOLDER = '{{since}}';
export const PIVOT_PLACEHOLDER = /^[ \t]*\{\{attribute_columns\}\}[ \t]*$/m;
const DIRECTIVE = /^[ \t]*--[ \t]*tide:[ \t]*(.*?)[ \t]*$/;
const NAME = /^[a-z_][a-z0-9_]*$/;

/** A report name from its file name: `daily_billing.sql` → daily_billing (it names gold/<name> and a Postgres table). */
export function reportName(path: string): string {
  const name = basename(path).replace(/\.sql$/i, '');
  if (!NAME.test(name))
    throw new ReportFileError(
      path,
      1,
      `the file name must be <name>.sql with a name of lower-case letters, digits and _ (it names the table gold.<name>); rename the file`,
    );
  return name;
}

/** The text with comments and string literals blanked (newlines kept), so references are found only in code. */
export function codeOnly(sql: string): string {
  return sql.replace(/--[^\n]*|\/\*[\s\S]*?\*\/|'(?:[^']|'')*'/g, (m) => m.replace(/[^\n]/g, ' '));
}

const lineAt = (text: string, offset: number): number => text.slice(0, offset).split('\n').length;

function parseDuration(text: string): number | undefined {
  const m = /^(\d+)\s*(s|m|h|d)$/i.exec(text.trim());
  return m ? Number(m[1]) * { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2]!.toLowerCase() as 's' | 'm' | 'h' | 'd'] : undefined;
}

/** The lake tables `sql` names as `<layer>_<table>`, except names it defines itself (CTEs). */
export function tableReads(sql: string): TableRead[] {
  const code = codeOnly(sql);
  const defined = new Set(
    [...code.matchAll(/\b([A-Za-z_][A-Za-z0-9_]*)\s+AS\s*(?:NOT\s+)?(?:MATERIALIZED\s+)?\(/gi)].map((m) => m[1]!.toLowerCase()),
  );
  const reads = new Map<string, TableRead>();
  const pattern = new RegExp(`(\\b(?:FROM|JOIN)\\s+)?"?\\b((${LAYERS.join('|')})_([A-Za-z0-9_]+))\\b`, 'gi');
  for (const m of code.matchAll(pattern)) {
    const view = m[2]!.toLowerCase();
    if (defined.has(view)) continue;
    const required = m[1] !== undefined;
    const have = reads.get(view);
    if (have) {
      have.required ||= required;
      continue;
    }
    const offset = m.index + (m[1]?.length ?? 0);
    reads.set(view, { view, root: `${m[3]!.toLowerCase()}/${m[4]!.toLowerCase()}`, line: lineAt(sql, offset), required });
  }
  return [...reads.values()];
}

/** Parse a report file's text. Errors name the file and the line. */
export function parseReportFile(path: string, text: string): ReportFile {
  const name = reportName(path);
  let schedule: Schedule | undefined;
  let incremental: Incremental | undefined;
  // The description: the first paragraph of comment lines (up to an empty comment line or code).
  const paragraph: string[] = [];
  let paragraphDone = false;
  const lines = text.split('\n');
  lines.forEach((line, i) => {
    const directive = DIRECTIVE.exec(line);
    if (!directive) {
      const comment = /^[ \t]*--[ \t]*(.*?)[ \t]*$/.exec(line)?.[1];
      if (comment) {
        if (!paragraphDone) paragraph.push(comment);
      } else if (paragraph.length) paragraphDone = true;
      return;
    }
    const body = directive[1]!;
    const refresh = /^refresh\s*=\s*(.*)$/i.exec(body);
    const incr = /^incremental\s+by\s+([A-Za-z_][A-Za-z0-9_]*)(?:\s+lookback\s+(\S+))?$/i.exec(body);
    if (refresh) {
      if (schedule) throw new ReportFileError(path, i + 1, 'a second refresh directive: keep one');
      schedule = parseSchedule(refresh[1]!);
      if (!schedule)
        throw new ReportFileError(
          path,
          i + 1,
          `refresh must be on-change, every <n>s|m|h (e.g. every 60s) or daily HH:MM UTC (e.g. daily 02:00 UTC), got ${JSON.stringify(refresh[1])}`,
        );
    } else if (incr) {
      if (incremental) throw new ReportFileError(path, i + 1, 'a second incremental directive: keep one');
      const lookbackMs = incr[2] === undefined ? 0 : parseDuration(incr[2]);
      if (lookbackMs === undefined)
        throw new ReportFileError(path, i + 1, `lookback must be a duration such as 90s, 10m, 2h or 1d, got ${JSON.stringify(incr[2])}`);
      incremental = { column: incr[1]!, lookbackMs, inputColumns: [] };
    } else {
      throw new ReportFileError(
        path,
        i + 1,
        `unknown directive ${JSON.stringify(body)}: use "-- tide: refresh = on-change | every 60s | daily 02:00 UTC" or "-- tide: incremental by <time column> [lookback 10m]"`,
      );
    }
  });
  const code = codeOnly(text);
  const sinceAt = code.indexOf(SINCE_PLACEHOLDER);
  if (incremental && sinceAt < 0)
    throw new ReportFileError(
      path,
      lines.findIndex((l) => DIRECTIVE.test(l) && /incremental/i.test(l)) + 1,
      `incremental by ${incremental.column} needs ${SINCE_PLACEHOLDER} in its SQL to read only new rows, e.g. WHERE event_time >= ${SINCE_PLACEHOLDER}`,
    );
  if (!incremental && sinceAt >= 0)
    throw new ReportFileError(
      path,
      lineAt(text, sinceAt),
      `${SINCE_PLACEHOLDER} is set only for incremental reports: add "-- tide: incremental by <time column>" or remove it`,
    );
  // `event_time >= {{since}}` or `e.event_time > {{since}}`: the columns whose file statistics can prune inputs.
  if (incremental)
    incremental.inputColumns = [
      ...new Set([...code.matchAll(/(?:\b[A-Za-z_]\w*\.)?"?\b([A-Za-z_]\w*)"?\s*>=?\s*\{\{since\}\}/g)].map((m) => m[1]!)),
    ];
  if (!code.trim()) throw new ReportFileError(path, 1, 'holds no SQL: write one SELECT query');
  return {
    name,
    path,
    sql: text.replace(/;\s*$/, ''),
    description: paragraph.join(' ').replace(new RegExp(`^gold\\.${name}:\\s*`), '') || `gold report ${name}`,
    schedule: schedule ?? ON_CHANGE,
    ...(incremental ? { incremental } : {}),
    reads: tableReads(text),
  };
}

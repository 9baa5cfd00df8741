import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { ConfigError } from '../errors.ts';
import { attributeKeys, orderAttributesSql, quoteIdentifier, type GoldReport } from './gold-reports.ts';
import { parseReportFile, PIVOT_PLACEHOLDER, SINCE_PLACEHOLDER, tableReads, type ReportFile } from './report-file.ts';
import { ReportFileError } from './report-errors.ts';

/**
 * A folder of gold reports (`gold.reports.dir`): every `<name>.sql` is the report gold.<name>, except
 * `<name>.keys.sql`, the keys query of the pivot report `<name>.sql` (gold-reports.ts, Pivot). Reports that
 * read other reports (`gold_<name>`) come after them; a cycle is refused with the files that form it.
 */
export const KEYS_SUFFIX = '.keys.sql';

/** The literal {{since}} becomes on a first (full) build: every row is newer than it. */
export const NO_HIGH_WATER_MARK = "TIMESTAMPTZ '-infinity'";

/** The folder as `gold.reports.dir` names it: relative to the connector file's folder. */
export function reportDirOf(connectorFile: string, dir: string): string {
  return resolve(connectorFile.startsWith('test:') ? '.' : join(connectorFile, '..'), dir);
}

function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new ReportFileError(path, 1, `cannot read the file: ${(err as Error).message}`, { cause: err });
  }
}

const fingerprintOf = (...texts: string[]) =>
  createHash('sha256')
    .update(texts.map((t) => t.replace(/\r\n/g, '\n').trim()).join('\0'))
    .digest('hex')
    .slice(0, 32);

function reportOf(file: ReportFile, dir: string): GoldReport {
  const fill = (sql: string, since?: string) => sql.replaceAll(SINCE_PLACEHOLDER, since ?? NO_HIGH_WATER_MARK);
  const base = {
    name: file.name,
    description: file.description,
    file: file.path,
    schedule: file.schedule,
    ...(file.incremental ? { incremental: file.incremental } : {}),
    reads: file.reads,
    dependsOn: [] as string[],
    fingerprint: fingerprintOf(file.sql),
  };
  if (!PIVOT_PLACEHOLDER.test(file.sql)) return { ...base, duckdbSql: (_q, since) => Promise.resolve(fill(file.sql, since)) };
  const keysPath = join(dir, `${file.name}${KEYS_SUFFIX}`);
  if (!existsSync(keysPath))
    throw new ReportFileError(
      file.path,
      file.sql.split('\n').findIndex((l) => PIVOT_PLACEHOLDER.test(l)) + 1,
      `{{attribute_columns}} takes its columns from ${basename(keysPath)}, which does not exist: write that query (one column named key) beside it`,
    );
  const keysSql = readText(keysPath).replace(/;\s*$/, '');
  const reads = [...file.reads];
  for (const r of tableReads(keysSql)) if (!reads.some((x) => x.view === r.view)) reads.push({ ...r, line: 1 });
  return {
    ...base,
    reads,
    fingerprint: fingerprintOf(file.sql, keysSql),
    duckdbSql: async (q, since) => {
      const template = fill(file.sql, since);
      // Its fixed columns are whatever the SQL outputs without the key columns: no key may take one of their names.
      const described = await q(`DESCRIBE ${template.replace(PIVOT_PLACEHOLDER, '')}`);
      const fixedColumns = described.map((d) => String(d.column_name).toLowerCase());
      const keys = await attributeKeys(q, fill(keysSql, since), file.name);
      return orderAttributesSql(template, keys, 'duckdb', { report: file.name, fixedColumns });
    },
  };
}

/** Order reports so each comes after the reports it reads; refuse a cycle, naming its files. */
export function orderByDependencies(reports: GoldReport[]): GoldReport[] {
  const byName = new Map(reports.map((r) => [r.name, r]));
  for (const r of reports)
    r.dependsOn = [...new Set(r.reads.filter((x) => x.root.startsWith('gold/')).map((x) => x.root.slice(5)))].filter((n) => byName.has(n));
  const ordered: GoldReport[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (r: GoldReport, path: GoldReport[]) => {
    if (state.get(r.name) === 'done') return;
    if (state.get(r.name) === 'visiting') {
      const cycle = [...path.slice(path.indexOf(r)), r].map((x) => basename(x.file));
      throw new ConfigError(
        'gold.reports.dir',
        `the reports ${cycle.join(' → ')} read each other in a cycle (${quoteIdentifier(`gold_${r.name}`)} and the like): no build order exists. Make one of them read silver or bronze instead of the other report`,
      );
    }
    state.set(r.name, 'visiting');
    for (const d of [...r.dependsOn].sort()) visit(byName.get(d)!, [...path, r]);
    state.set(r.name, 'done');
    ordered.push(r);
  };
  for (const r of [...reports].sort((a, b) => (a.name < b.name ? -1 : 1))) visit(r, []);
  return ordered;
}

/** The report files of a folder (`<name>.sql`, not `<name>.keys.sql`), sorted. */
export function reportFiles(dir: string): string[] {
  if (!existsSync(dir) || !statSync(dir).isDirectory())
    throw new ConfigError(
      'gold.reports.dir',
      `${dir} is not a folder: point gold.reports.dir (relative to the connector file) at the folder of your report .sql files`,
    );
  const files = readdirSync(dir)
    .filter((f) => f.toLowerCase().endsWith('.sql') && !f.toLowerCase().endsWith(KEYS_SUFFIX))
    .sort();
  if (!files.length)
    throw new ConfigError('gold.reports.dir', `the folder ${dir} holds no .sql files: write one report per file, <name>.sql`);
  return files;
}

/** One report file of the folder (not yet ordered). */
export function loadReportFile(dir: string, file: string): GoldReport {
  const path = join(dir, file);
  return reportOf(parseReportFile(path, readText(path)), dir);
}

/** Every report of the folder, in build order. */
export function loadReportFolder(dir: string): GoldReport[] {
  return orderByDependencies(reportFiles(dir).map((f) => loadReportFile(dir, f)));
}

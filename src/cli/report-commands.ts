import { existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { loadSinkConfig, type SinkConfig } from '../config/sink-config.ts';
import type { ConnectorFile } from '../config/source-config.ts';
import { ConfigError, TideError } from '../errors.ts';
import { ParquetEngine } from '../lake/parquet/parquet-engine.ts';
import { openStore, s3Settings } from '../lake/storage/open-store.ts';
import { log, registerConfigSecrets } from '../log.ts';
import { GoldRefresher } from '../reports/gold-refresh.ts';
import { checkReportFolder } from '../reports/report-check.ts';
import { loadReportFolder, reportDirOf } from '../reports/report-folder.ts';
import { ServingDatabase } from '../reports/serving.ts';
import { tableOfTopic } from '../sink/table-layout.ts';

const DEFAULT_CONNECTOR = 'connectors/orders-lake.json';

/** The connector file and its report folder (gold.reports.dir, relative to the file). */
function connectorReports(path: string): { file: ConnectorFile<SinkConfig>; dir: string } {
  if (!existsSync(path))
    throw new ConfigError('<connector-file>', `${path} does not exist: name the sink connector file, e.g. ${DEFAULT_CONNECTOR}`);
  const file = loadSinkConfig(path);
  registerConfigSecrets(file.config);
  const dir = file.config['gold.reports.dir'];
  if (!dir)
    throw new ConfigError(
      'gold.reports.dir',
      'is not set: name the folder of the report .sql files (relative to the connector file)',
      path,
    );
  return { file, dir: reportDirOf(resolve(path), dir) };
}

/**
 * `tide lake report check <dir | connector-file>` and `tide lake report run <connector-file> <name>`:
 * the team's gold reports (README "Gold reports").
 */
export function registerReportCommands(program: Command): void {
  const lake = program.commands.find((c) => c.name() === 'lake') ?? program.command('lake');
  const report = lake.command('report').description('the gold reports of gold.reports.dir: check them against the lake, build one now');

  report
    .command('check <dir-or-connector>')
    .description(
      'validate every report file against the current lake without writing: header, SQL syntax, missing tables or columns, a sample row count',
    )
    .option('--lake <uri>', 'the lake to check against (default: lake.uri of the connector file)')
    .option('--connector <file>', 'the sink connector file whose lake.uri is used when a folder is given', DEFAULT_CONNECTOR)
    .action(async (target: string, opts: { lake?: string; connector: string }) => {
      const isFolder = existsSync(target) && statSync(target).isDirectory();
      const connector = isFolder ? opts.connector : target;
      let dir = resolve(target);
      let config: SinkConfig | undefined;
      if (!isFolder)
        ({
          dir,
          file: { config },
        } = connectorReports(target));
      else if (!opts.lake && existsSync(connector)) config = loadSinkConfig(connector).config;
      const uri = opts.lake ?? config?.['lake.uri'];
      if (!uri)
        throw new ConfigError(
          '--lake',
          `no --lake given and the connector file ${connector} does not exist: pass --lake <dir or URI> or --connector <file>`,
        );
      const store = await openStore(uri, {
        configKey: opts.lake ? '--lake' : `lake.uri (${connector})`,
        access: 'read',
        ...(config && !opts.lake ? { s3: s3Settings(config) } : {}),
      });
      const engine = await ParquetEngine.create();
      try {
        const results = await checkReportFolder(dir, engine, store);
        for (const r of results) console.log(r.ok ? `ok    ${r.report}: ${r.message}` : `FAIL  ${r.message}`);
        const failed = results.filter((r) => !r.ok).length;
        console.log(failed ? `${failed} of ${results.length} failed` : `${results.length} reports ok (${dir}, lake ${store.uri})`);
        if (failed) process.exitCode = 1;
      } finally {
        await engine.close();
        await store.close();
      }
    });

  report
    .command('run <connector-file> <name>')
    .description('build one gold report now (and publish it to serving.uri when set), whatever its refresh schedule')
    .option('--full', 'rebuild an incremental report from all its inputs (to count data that arrived later than its lookback)')
    .action(async (path: string, name: string, opts: { full?: boolean }) => {
      const { file, dir } = connectorReports(path);
      const c = file.config;
      const reports = loadReportFolder(dir);
      const wanted = reports.find((r) => r.name === name.replace(/^gold\./, ''));
      if (!wanted)
        throw new ConfigError('<name>', `no report ${name} in ${dir}: the reports there are ${reports.map((r) => r.name).join(', ')}`);
      const store = await openStore(c['lake.uri'], { access: 'write', s3: s3Settings(c) });
      const engine = await ParquetEngine.create({ memoryLimit: c['duckdb.memory.limit'] });
      const serving = c['serving.uri'] ? new ServingDatabase({ uri: c['serving.uri'], schema: c['serving.schema'], log }) : undefined;
      try {
        const captured = (c.topics ?? []).map((t) => tableOfTopic(t) ?? t);
        await serving?.refuseCapturedDatabase(captured);
        const gold = new GoldRefresher(engine, store, log, reports, { serving });
        const r = await gold.refreshReport(wanted, { full: opts.full });
        if (gold.failures.length)
          throw new TideError(
            `gold.${r.report} was built (version ${r.version}) but not published: ${gold.failures.map((f) => f.error).join('; ')}`,
          );
        console.log(
          `gold.${r.report}: version ${r.version}, ${r.rows} rows written in ${r.ms} ms${r.since ? ` (incremental: rows at or after ${r.since})` : ''}${serving ? ', published to the serving database' : ''}`,
        );
      } finally {
        await serving?.close();
        await engine.close();
        await store.close();
      }
    });
}

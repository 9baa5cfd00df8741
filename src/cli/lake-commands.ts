import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { loadSinkConfig } from '../config/sink-config.ts';
import { ConfigError } from '../errors.ts';
import { DeltaConflictError, DeltaLogError, DeltaProtocolError } from '../lake/delta/delta-errors.ts';
import { listTableRoots, openTable, tableInfo } from '../lake/lake-catalog.ts';
import { DEFAULT_MAX_DELETED_ROWS_RATIO, optimizeTable } from '../lake/maintenance/optimize.ts';
import { vacuumTable } from '../lake/maintenance/vacuum.ts';
import { ParquetEngine } from '../lake/parquet/parquet-engine.ts';
import { openStore, parseStoreUri, s3Settings, type OpenStoreOptions } from '../lake/storage/open-store.ts';
import type { ObjectStore } from '../lake/storage/object-store.ts';

const DEFAULT_CONNECTOR = 'connectors/orders-lake.json';

interface LakeOptions {
  lake?: string;
  connector: string;
}

/**
 * The lake to work on: --lake, else the sink connector file's lake.uri (with its s3.* keys; with
 * --lake s3://…, the AWS SDK's own settings apply: AWS_REGION, AWS_ENDPOINT_URL_S3, the profile).
 * `access` is what the command does: `read` (tables, export) or `write` (optimize, vacuum); an S3
 * lake is checked for it at open. A local lake directory must exist: a typo in --lake would
 * otherwise look like an empty lake.
 */
async function lakeStore(opts: LakeOptions, access: 'read' | 'write'): Promise<ObjectStore> {
  let uri: string;
  let key: string;
  let s3: OpenStoreOptions['s3'];
  if (opts.lake) {
    uri = opts.lake;
    key = '--lake';
  } else {
    if (!existsSync(opts.connector))
      throw new ConfigError(
        '--lake',
        `no --lake given and the connector file ${opts.connector} does not exist: pass --lake <dir or URI> or --connector <file>`,
      );
    const config = loadSinkConfig(opts.connector).config;
    uri = config['lake.uri'];
    key = `lake.uri (${opts.connector})`;
    s3 = s3Settings(config);
  }
  const location = parseStoreUri(uri, { configKey: key });
  if (location.kind === 'local' && !existsSync(location.dir))
    throw new ConfigError(
      key,
      `the lake directory ${location.dir} does not exist${opts.lake ? '' : ' (has the sink run yet?)'}: check the path, or start the sink to create it`,
    );
  return openStore(uri, { configKey: key, access, ...(s3 ? { s3 } : {}) });
}

const human = (bytes: number): string =>
  bytes < 1024
    ? `${bytes} B`
    : bytes < 1 << 20
      ? `${(bytes / 1024).toFixed(1)} KiB`
      : bytes < 1 << 30
        ? `${(bytes / (1 << 20)).toFixed(1)} MiB`
        : `${(bytes / (1 << 30)).toFixed(2)} GiB`;
const ago = (ms: number | null): string => {
  if (ms === null) return '-';
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  return s < 120 ? `${s}s` : s < 7200 ? `${Math.round(s / 60)}m` : s < 172800 ? `${Math.round(s / 3600)}h` : `${Math.round(s / 86400)}d`;
};

/** A decimal number from an option (`0` allowed only when `zeroOk`); ConfigError naming the option otherwise. */
function nonNegative(option: string, text: string, expected: string, zeroOk: boolean): number {
  const n = /^\s*\d+(\.\d+)?\s*$/.test(text) ? Number(text) : NaN;
  if (!Number.isFinite(n) || (!zeroOk && n === 0)) throw new ConfigError(option, `must be ${expected}, got ${JSON.stringify(text)}`);
  return n;
}

function withLake(cmd: Command): Command {
  return cmd
    .option('--lake <uri>', 'the lake: a directory, file://, az://, abfss:// or s3:// URI')
    .option('--connector <file>', 'read lake.uri from this sink connector file', DEFAULT_CONNECTOR);
}

/** Below this, vacuum needs --force. */
const MIN_SAFE_RETAIN_HOURS = 1;

export function registerLakeCommands(program: Command): void {
  const lake = program.command('lake').description('the Delta Lake tables the sink keeps: list, export, compact, clean up');

  withLake(lake.command('tables'))
    .description("each table's version, files, size, rows, last commit and freshness (age of the newest change applied)")
    .option('--json', 'print JSON instead of a table')
    .action(async (opts: LakeOptions & { json?: boolean }) => {
      const store = await lakeStore(opts, 'read');
      try {
        const infos = [];
        for (const root of await listTableRoots(store)) {
          const info = await tableInfo(store, root);
          if (info) infos.push(info);
        }
        if (opts.json) {
          console.log(
            JSON.stringify(
              infos.map((i) => ({ ...i, freshnessSeconds: i.newestChangeMs === null ? null : (Date.now() - i.newestChangeMs) / 1000 })),
              null,
              2,
            ),
          );
          return;
        }
        if (!infos.length) return console.log(`no tables yet in ${store.uri} (start the sink: tide sink start ${DEFAULT_CONNECTOR})`);
        const rows = infos.map((i) => [
          i.name,
          String(i.version),
          String(i.files),
          human(i.bytes),
          i.rows === null ? '?' : String(i.rows),
          ago(i.lastCommitMs),
          ago(i.newestChangeMs),
        ]);
        const head = ['table', 'version', 'files', 'size', 'rows', 'last commit', 'freshness'];
        const widths = head.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
        for (const r of [head, ...rows]) console.log(r.map((v, c) => (c === 0 ? v.padEnd(widths[c]!) : v.padStart(widths[c]!))).join('  '));
      } finally {
        await store.close();
      }
    });

  withLake(lake.command('export <table>'))
    .description('write a table (e.g. gold.daily_billing, silver.orders) to a CSV or Parquet file: the detailed report export')
    .option('--format <format>', 'csv or parquet', 'csv')
    .option('--out <file>', 'output file (default <table>.<format>)')
    .option('--where <condition>', 'only the rows for which this SQL condition on the table\'s columns holds, e.g. "customer_id = 42"')
    .action(async (name: string, opts: LakeOptions & { format: string; out?: string; where?: string }) => {
      if (opts.format !== 'csv' && opts.format !== 'parquet')
        throw new ConfigError('--format', `must be csv or parquet, got ${JSON.stringify(opts.format)}`);
      const out = resolve(opts.out ?? `${name}.${opts.format}`);
      const store = await lakeStore(opts, 'read');
      const engine = await ParquetEngine.create();
      try {
        const table = await openTable(store, name);
        await engine.createView('export_table', store, table.root, table.files(), table.schema, table.partitionColumns);
        const format = opts.format === 'csv' ? `(FORMAT csv, HEADER true)` : `(FORMAT parquet, COMPRESSION zstd)`;
        // The condition is the user's own SQL over their own lake (as a report file is): DuckDB parses it, and
        // an error names --where rather than the COPY around it.
        const rows = opts.where ? `(SELECT * FROM export_table WHERE ${opts.where})` : 'export_table';
        try {
          await engine.run(`COPY (SELECT * FROM ${rows}) TO '${out.replace(/'/g, "''")}' ${format}`);
        } catch (err) {
          if (!opts.where) throw err;
          throw new ConfigError(
            '--where',
            `${JSON.stringify(opts.where)} is not a condition on ${name}'s columns: ${(err as Error).message}`,
          );
        }
        const [{ n }] = (await engine.query(`SELECT count(*) AS n FROM ${rows}`)) as [{ n: bigint }];
        console.log(`wrote ${n} rows of ${name}${opts.where ? ` where ${opts.where}` : ''} (version ${table.version}) to ${out}`);
      } finally {
        await engine.close();
        await store.close();
      }
    });

  withLake(lake.command('optimize [table]'))
    .description('compact small files (dataChange=false: readers and appends are not disturbed); all tables when none is named')
    .option('--min-file-mb <mb>', 'files below this size are compacted', '64')
    .option(
      '--max-deleted-rows-ratio <ratio>',
      'files whose deletion vector deletes more than this share of their rows are rewritten without those rows',
      String(DEFAULT_MAX_DELETED_ROWS_RATIO),
    )
    .action(async (name: string | undefined, opts: LakeOptions & { minFileMb: string; maxDeletedRowsRatio: string }) => {
      const minFileMb = nonNegative('--min-file-mb', opts.minFileMb, 'a size in MiB > 0', false);
      const maxDeletedRowsRatio = Number(opts.maxDeletedRowsRatio);
      if (!(maxDeletedRowsRatio >= 0 && maxDeletedRowsRatio <= 1))
        throw new ConfigError('--max-deleted-rows-ratio', `${opts.maxDeletedRowsRatio} is not a number from 0 to 1`);
      const store = await lakeStore(opts, 'write');
      const engine = await ParquetEngine.create();
      try {
        const roots = name ? [(await openTable(store, name)).root] : await listTableRoots(store);
        for (const root of roots) {
          let r;
          try {
            r = await optimizeTable(engine, await openTable(store, root), { minFileBytes: minFileMb * (1 << 20), maxDeletedRowsRatio });
          } catch (e) {
            // A merge that rewrote the same files won: this table is unchanged, the others still get compacted.
            if (e instanceof DeltaConflictError) {
              console.error(
                `${root.replace('/', '.')}: not compacted, a concurrent commit won (${e.reason}); nothing changed, run optimize again`,
              );
              process.exitCode = 1;
              continue;
            }
            if (!skipRefused(name, root, 'not compacted', e)) throw e;
            continue;
          }
          console.log(
            r.version === undefined
              ? `${root.replace('/', '.')}: nothing to compact`
              : `${root.replace('/', '.')}: ${r.filesRemoved} files (${human(r.bytesBefore)}) -> ${r.filesAdded} (${human(r.bytesAfter)})${r.purged ? `, ${r.purged} purged of deleted rows` : ''}, version ${r.version}`,
          );
        }
      } finally {
        await engine.close();
        await store.close();
      }
    });

  withLake(lake.command('vacuum [table]'))
    .description('delete data files no table version within the retention needs (files removed earlier, and orphans of crashed writes)')
    .requiredOption('--retain <hours>', 'keep files removed less than this many hours ago (time travel and running readers need them)')
    .option('--dry-run', 'list what would be deleted')
    .option('--force', `allow --retain under ${MIN_SAFE_RETAIN_HOURS} h (only with every writer and reader of the lake stopped)`)
    .action(async (name: string | undefined, opts: LakeOptions & { retain: string; dryRun?: boolean; force?: boolean }) => {
      const hours = nonNegative('--retain', opts.retain, 'a number of hours >= 0', true);
      // Delta's own vacuum has the same guard (retentionDurationCheck): a running sink writes its data files
      // just before it commits them, so they look unreferenced for a moment, and a running reader may still
      // read files a newer version removed.
      if (hours < MIN_SAFE_RETAIN_HOURS && !opts.dryRun && !opts.force)
        throw new ConfigError(
          '--retain',
          `${hours} h is under ${MIN_SAFE_RETAIN_HOURS} h: it can delete files a running sink has written but not yet committed, or that a running query still reads. Stop the sinks and readers of this lake and add --force, or retain longer.`,
        );
      const store = await lakeStore(opts, 'write');
      try {
        const roots = name ? [(await openTable(store, name)).root] : await listTableRoots(store);
        for (const root of roots) {
          let r;
          try {
            r = await vacuumTable(await openTable(store, root), { retainHours: hours, dryRun: opts.dryRun });
          } catch (e) {
            if (!skipRefused(name, root, 'not vacuumed', e)) throw e;
            continue;
          }
          console.log(
            `${root.replace('/', '.')}: ${opts.dryRun ? 'would delete' : 'deleted'} ${r.deleted.length} files (${human(r.bytes)})`,
          );
          if (opts.dryRun) for (const path of r.deleted) console.log(`  ${path}`);
        }
      } finally {
        await store.close();
      }
    });
}

/**
 * Over every table (no table named), one that Tide must not write (its protocol was upgraded by another
 * engine, its log is damaged) is named with the reason and skipped, so the others are still maintained;
 * the exit code is 1. A table named on its own fails the command with the whole error.
 */
function skipRefused(named: string | undefined, root: string, what: string, e: unknown): boolean {
  if (named !== undefined || !(e instanceof DeltaProtocolError || e instanceof DeltaLogError)) return false;
  console.error(`${root.replace('/', '.')}: ${what}: ${e.message}`);
  process.exitCode = 1;
  return true;
}

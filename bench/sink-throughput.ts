/**
 * Throughput half of bench/sink-lake.ts: the sink's real write paths on a real Delta table in a
 * LocalStore, each timed against DuckDB writing the same rows straight to one zstd Parquet file
 * (the raw I/O floor), in the same run and the same DuckDB instance, batch by batch.
 *
 *  - bronze append: `appendBronze` (ParquetEngine.writeColumns: events → a DuckDB COPY that pulls them column by column → partitioned Parquet + stats → Delta commit
 *    with txn offsets), `rows` events in batches of `batchRows`;
 *    baseline: `COPY (SELECT * FROM <the same rows, staged>) TO … (FORMAT parquet, COMPRESSION zstd)`.
 *  - silver load: `reduceToChanges` + `mergeSilver` of insert-only batches (no file is a candidate);
 *    baseline as for bronze.
 *  - silver merge at each update ratio: a batch of `mergeBatch` changes, that fraction updates of
 *    existing keys picked uniformly at random, the rest inserts of new keys; `reduceToChanges` +
 *    `mergeSilver` (prune by key stats, find touched files, copy-on-write rewrite, remove + add).
 *    Baseline: a blind rewrite of what the merge wrote: `COPY (SELECT * FROM read_parquet(<the
 *    files the merge removed>) UNION ALL BY NAME <the inserted rows>) TO …` (same rows, same bytes
 *    in, no join, no log).
 * Tide's seconds are split by timing two of its steps again on their own over the same events:
 * building the changes in JS (reduceToChanges; bronze has no such step: it reads the events column
 * by column) and staging them into DuckDB (stageChanges, the route silver stages through; for bronze
 * stageBronze, the route Tide took before its COPY pulled the rows from the events itself: bronze's
 * breakdown is then all "write and commit"). Both are part of Tide's cost and not of the baseline's (its rows are already in
 * DuckDB). A second baseline adds them to the raw COPY (`baselineFromJs`: the rows from JS to
 * Parquet with nothing else), so `ratioFromJs` shows what the log, stats and merge logic add.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DeltaTable } from '../src/lake/delta/delta-table.ts';
import type { AddAction } from '../src/lake/delta/actions.ts';
import { ParquetEngine } from '../src/lake/parquet/parquet-engine.ts';
import { LocalStore } from '../src/lake/storage/local-store.ts';
import { appendBronze, bronzeRowColumns, stageBronze } from '../src/sink/bronze-writer.ts';
import { txnActions } from '../src/sink/offsets.ts';
import { reduceToChanges } from '../src/sink/silver-changes.ts';
import { mergeSilver, stageChanges } from '../src/sink/silver-merge.ts';
import { BRONZE_META, BRONZE_PARTITION, bronzePath, silverPath } from '../src/sink/table-layout.ts';
import type { ChangeEvent } from '../src/sink/change-event.ts';
import {
  BRONZE_SCHEMA,
  median,
  ORDERS_KEY,
  ORDERS_TABLE,
  OrderEventStream,
  resetPeakRss,
  rssMb,
  SILVER_SCHEMA,
} from './sink-bench-support.ts';
import { BenchError, round, say } from './bench-common.ts';

export interface ThroughputOptions {
  rows: number;
  batchRows: number;
  mergeBatch: number;
  ratios: number[];
  repeats: number;
}

const SINK = 'bench';
const lit = (s: string): string => `'${s.replace(/'/g, "''")}'`;

interface Timed {
  seconds: number;
  baselineSeconds: number;
  /** Building the changes in JS (reduceToChanges; 0 for bronze, which stages from the events), timed on its own over the same events. */
  jsSeconds: number;
  /** stageChanges of those changes (JS values → DuckDB), or stageBronze of the events, timed on its own. */
  stagingSeconds: number;
}

/** `stages`: false when Tide's operation has no staging step of its own (bronze: the COPY pulls the rows from the events). */
function summarize(rows: number, t: Timed, stages = true) {
  const fromJs = t.jsSeconds + t.stagingSeconds + t.baselineSeconds;
  return {
    seconds: round(t.seconds, 3),
    rowsPerSecond: Math.round(rows / t.seconds),
    /** DuckDB COPY of the rows already in DuckDB: the raw Parquet I/O. */
    baseline: { seconds: round(t.baselineSeconds, 3), rowsPerSecond: Math.round(rows / t.baselineSeconds) },
    /** Tide throughput / baseline throughput (1 = as fast as raw Parquet; 0.5 = half as fast). */
    ratio: round(t.baselineSeconds / t.seconds, 3),
    /** The same rows built in JS, staged and COPYed, without Delta log, stats or merge: all three steps measured. */
    baselineFromJs: { seconds: round(fromJs, 3), rowsPerSecond: Math.round(rows / fromJs) },
    /** Tide / baselineFromJs: what the Delta log, file stats, partitioning and merge SQL cost on top of getting the rows to Parquet at all. */
    ratioFromJs: round(fromJs / t.seconds, 3),
    /** Tide's seconds: JS row building and staging (each timed on its own), and the rest by subtraction (SQL, Parquet + stats, upload, commit). */
    breakdown: stages
      ? {
          jsSeconds: round(t.jsSeconds, 3),
          stagingSeconds: round(t.stagingSeconds, 3),
          writeAndCommitSeconds: round(t.seconds - t.jsSeconds - t.stagingSeconds, 3),
        }
      : { jsSeconds: 0, stagingSeconds: 0, writeAndCommitSeconds: round(t.seconds, 3) },
  };
}

export async function runThroughput(opts: ThroughputOptions) {
  const dir = await mkdtemp(join(tmpdir(), 'tide-bench-lake-'));
  const scratch = join(dir, 'baseline');
  const store = new LocalStore(join(dir, 'lake'));
  await mkdir(scratch, { recursive: true });
  await mkdir(join(dir, 'duckdb'), { recursive: true });
  const engine = await ParquetEngine.create({ tempDir: join(dir, 'duckdb') });
  const stream = new OrderEventStream();
  let baselineFiles = 0;
  /** Time `COPY (select) TO <scratch file>`, then delete the file. */
  const rawCopy = async (select: string): Promise<number> => {
    const out = join(scratch, `raw-${baselineFiles++}.parquet`);
    const t = performance.now();
    await engine.run(`COPY (${select}) TO ${lit(out)} (FORMAT parquet, COMPRESSION zstd)`);
    const s = (performance.now() - t) / 1000;
    await rm(out, { force: true });
    return s;
  };
  try {
    await engine.run(`SELECT 1`); // DuckDB warm (ICU, thread pool) before the first timing
    const config = { 'delta.checkpointInterval': '10' };
    const bronze = await DeltaTable.create(store, bronzePath(ORDERS_TABLE), {
      name: `bronze.${ORDERS_TABLE}`,
      schema: BRONZE_SCHEMA,
      partitionColumns: [BRONZE_PARTITION],
      configuration: config,
    });
    const silver = await DeltaTable.create(store, silverPath(ORDERS_TABLE), {
      name: `silver.${ORDERS_TABLE}`,
      schema: SILVER_SCHEMA,
      configuration: { ...config, 'tide.primaryKey': ORDERS_KEY.join(',') },
    });
    const rowColumns = bronzeRowColumns(BRONZE_SCHEMA);
    const bronzeOrdered = { columns: [...rowColumns, ...BRONZE_META] };
    const offsetsOf = (events: ChangeEvent[]) => txnActions(SINK, events);

    // --- bronze append and silver load, batch by batch over the same events
    const bronzeT: Timed = { seconds: 0, baselineSeconds: 0, jsSeconds: 0, stagingSeconds: 0 };
    const loadT: Timed = { seconds: 0, baselineSeconds: 0, jsSeconds: 0, stagingSeconds: 0 };
    const peaks: Record<string, number> = {};
    resetPeakRss();
    say(`bronze + silver load: ${opts.rows.toLocaleString('en')} orders in batches of ${opts.batchRows.toLocaleString('en')} ...`);
    for (let from = 1; from <= opts.rows; from += opts.batchRows) {
      const n = Math.min(opts.batchRows, opts.rows - from + 1);
      const events = stream.events(Array.from({ length: n }, (_, i) => [from + i, 0] as [number, number]));

      // bronze: baseline (staged rows → one Parquet file), staging alone (for the JS+raw baseline: the
      // rows from JS to Parquet through a staged table), then Tide, which stages nothing: its COPY pulls
      // the rows straight from the events (ParquetEngine.writeColumns), so its seconds are all write and commit.
      let t = performance.now();
      const staged = await stageBronze(engine, bronzeOrdered, rowColumns, events, BigInt(Date.now()) * 1000n);
      bronzeT.stagingSeconds += (performance.now() - t) / 1000;
      bronzeT.baselineSeconds += await rawCopy(`SELECT * EXCLUDE (${BRONZE_PARTITION}) FROM ${staged}`);
      await engine.drop(staged);
      t = performance.now();
      await appendBronze(engine, bronze, BRONZE_SCHEMA, events, offsetsOf(events));
      bronzeT.seconds += (performance.now() - t) / 1000;

      // silver, insert-only
      t = performance.now();
      const silverChanges = reduceToChanges(events, ORDERS_KEY, []).changes;
      loadT.jsSeconds += (performance.now() - t) / 1000;
      t = performance.now();
      const stagedSilver = await stageChanges(engine, SILVER_SCHEMA, silverChanges);
      loadT.stagingSeconds += (performance.now() - t) / 1000;
      loadT.baselineSeconds += await rawCopy(`SELECT * EXCLUDE (_deleted, _unchanged) FROM ${stagedSilver}`);
      await engine.drop(stagedSilver);
      t = performance.now();
      const batch = reduceToChanges(events, ORDERS_KEY, []);
      await mergeSilver(engine, silver, SILVER_SCHEMA, ORDERS_KEY, batch, offsetsOf(events));
      loadT.seconds += (performance.now() - t) / 1000;
    }
    peaks.load = rssMb().peak;
    const bronzeFiles = bronze.files();
    const silverFilesAfterLoad = silver.files();
    const bronzeResult = {
      ...summarize(opts.rows, bronzeT, false),
      commits: bronze.version,
      files: bronzeFiles.length,
      bytes: bronzeFiles.reduce((a, f) => a + f.size, 0),
    };
    const loadResult = {
      ...summarize(opts.rows, loadT),
      commits: silver.version,
      files: silverFilesAfterLoad.length,
      bytes: silverFilesAfterLoad.reduce((a, f) => a + f.size, 0),
    };
    say(`bronze: ${bronzeResult.rowsPerSecond.toLocaleString('en')} rows/s (ratio ${bronzeResult.ratio})`);
    say(`silver load: ${loadResult.rowsPerSecond.toLocaleString('en')} rows/s (ratio ${loadResult.ratio})`);

    // --- silver merges at each update ratio
    let maxId = opts.rows;
    const versions = new Map<number, number>();
    const merges = [];
    for (const ratio of opts.ratios) {
      resetPeakRss();
      const runs = [];
      for (let rep = 0; rep < opts.repeats; rep++) {
        const updates = Math.round(opts.mergeBatch * ratio);
        const inserts = opts.mergeBatch - updates;
        const keys = new Set<number>();
        while (keys.size < updates) keys.add(1 + Math.floor(Math.random() * maxId));
        const changes: [number, number][] = [...keys].map((id) => {
          const v = (versions.get(id) ?? 0) + 1;
          versions.set(id, v);
          return [id, v];
        });
        for (let i = 1; i <= inserts; i++) changes.push([maxId + i, 0]);
        changes.sort(() => Math.random() - 0.5); // updates and inserts interleaved, as traffic commits them
        const events = stream.events(changes);
        const before = silver.files();
        const tableRowsBefore = rowsIn(before);

        let t = performance.now();
        const allChanges = reduceToChanges(events, ORDERS_KEY, []).changes;
        const jsSeconds = (performance.now() - t) / 1000;
        const insertChanges = allChanges.filter((c) => Number(c.key[0]) > maxId);
        t = performance.now();
        const stagedAll = await stageChanges(engine, SILVER_SCHEMA, allChanges);
        const stagingSeconds = (performance.now() - t) / 1000;
        await engine.drop(stagedAll);

        t = performance.now();
        const batch = reduceToChanges(events, ORDERS_KEY, []);
        const merged = await mergeSilver(engine, silver, SILVER_SCHEMA, ORDERS_KEY, batch, offsetsOf(events));
        const seconds = (performance.now() - t) / 1000;
        maxId += inserts;

        const after = new Set(silver.files().map((f) => f.path));
        const removed = before.filter((f) => !after.has(f.path));
        if (removed.length !== merged.rewrittenFiles)
          throw new BenchError(
            'silver merge',
            `the commit removed ${removed.length} files but mergeSilver reports ${merged.rewrittenFiles}`,
          );
        const stagedInserts = await stageChanges(engine, SILVER_SCHEMA, insertChanges);
        const old = await Promise.all(removed.map((f) => store.localFile(`${silver.root}/${decodeURIComponent(f.path)}`)));
        const oldSql = old.length ? `SELECT * FROM read_parquet([${old.map(lit).join(', ')}]) UNION ALL BY NAME ` : '';
        const baselineSeconds = await rawCopy(`${oldSql}SELECT * EXCLUDE (_deleted, _unchanged) FROM ${stagedInserts}`);
        await engine.drop(stagedInserts);
        const added = silver.files().filter((f) => !before.some((b) => b.path === f.path));
        runs.push({
          seconds: round(seconds, 3),
          baselineSeconds: round(baselineSeconds, 3),
          jsSeconds: round(jsSeconds, 3),
          stagingSeconds: round(stagingSeconds, 3),
          changedRows: batch.changes.length,
          updates,
          inserts,
          tableRowsBefore,
          filesBefore: before.length,
          rewrittenFiles: merged.rewrittenFiles,
          rowsRewritten: rowsIn(removed),
          bytesRewritten: removed.reduce((a, f) => a + f.size, 0),
          addedFiles: merged.addedFiles,
          rowsWritten: rowsIn(added),
        });
        say(
          `merge ${ratio * 100}% updates #${rep + 1}: ${round(seconds)} s, ${merged.rewrittenFiles}/${before.length} files rewritten; baseline ${round(baselineSeconds)} s`,
        );
      }
      // The figures of the median run (by Tide's time): its baseline ran right after it, so the pair shares the machine's state.
      const mid = [...runs].sort((x, y) => x.seconds - y.seconds)[Math.floor(runs.length / 2)]!;
      merges.push({
        updateRatio: ratio,
        batchChanges: opts.mergeBatch,
        ...summarize(opts.mergeBatch, {
          seconds: mid.seconds,
          baselineSeconds: mid.baselineSeconds,
          jsSeconds: mid.jsSeconds,
          stagingSeconds: mid.stagingSeconds,
        }),
        medianRun: runs.indexOf(mid),
        baselineRowsPerSecond: Math.round(median(runs.map((r) => r.rowsWritten / r.baselineSeconds))),
        changedRowsPerSecond: Math.round(opts.mergeBatch / mid.seconds),
        rowsWrittenPerSecond: Math.round(median(runs.map((r) => r.rowsWritten / r.seconds))),
        medianOf: runs.length,
        runs,
        peakRssMB: rssMb().peak,
      });
    }
    // The work was real: every order is in silver once, every event in bronze once.
    if (rowsIn(silver.files()) !== maxId)
      throw new BenchError('silver merge', `silver holds ${rowsIn(silver.files())} rows after the merges, expected ${maxId} orders`);
    if (rowsIn(bronze.files()) !== opts.rows)
      throw new BenchError('bronze append', `bronze holds ${rowsIn(bronze.files())} rows, expected ${opts.rows} events`);
    return {
      lake: 'LocalStore (temp dir on the local disk)',
      rows: opts.rows,
      batchRows: opts.batchRows,
      bronze: { ...bronzeResult },
      silverLoad: loadResult,
      merges,
      peakRssMB: { load: peaks.load, merges: Math.max(...merges.map((m) => m.peakRssMB)) },
    };
  } finally {
    await engine.close();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
}

function rowsIn(files: AddAction[]): number {
  return files.reduce((a, f) => a + (f.stats ? Number((JSON.parse(f.stats) as { numRecords?: number }).numRecords ?? 0) : 0), 0);
}

/**
 * Silver merge benchmark (issue 12 item 1): does a merge's cost grow with the changes or with the
 * table, copy-on-write (rewrite every file that holds a changed key) against deletion vectors (mark
 * the changed rows deleted, append their new versions)?
 *
 *   npx tsx bench/silver-merge.ts [--sizes 1000000,10000000] [--updates 10000] [--repeats 3]
 *                                 [--ratio-rows 1000000] [--ratios 0.01,0.1,0.5] [--ratio-repeats 1]
 *                                 [--designs deletion-vectors+index,deletion-vectors,copy-on-write] [--no-cow-large]
 *
 *  1. Per size: a silver `orders` table of N rows (250k-row files, as the sink writes them, built by
 *     DuckDB straight to Parquet), plain and with `delta.enableDeletionVectors` (with and without the
 *     key index, silver-key-index.ts; its first merge builds it and is reported apart); then
 *     `--repeats` merges of `--updates` uniformly random updates each (full after-images), timed per
 *     commit (mergeSilver: staging, key lookup, writing, the Delta commit). Copy-on-write at the largest
 *     size runs once (it rewrites the table).
 *  2. Throughput at `--ratio-rows` (several sizes: comma-separated): `--ratio-repeats` merges (into the
 *     same table, one after the other) of 1% / 10% / 50% random updates, changes/s, each against DuckDB
 *     writing the same changed rows to one zstd Parquet file right before it (baseline, same run): from
 *     a staged table (COPY alone) and from JS rows (stage + COPY, what the sink's input costs anyway);
 *     the cell is the median run. `--sizes ''` skips part 1, `--designs` picks designs.
 *
 * The real code (`mergeSilver`) on a local directory. Not part of the test suite; needs no stack.
 * Results: a table on stdout, JSON in bench/results/silver-merge-<date>.json, with the load average.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DeltaTable } from '../src/lake/delta/delta-table.ts';
import { ParquetEngine } from '../src/lake/parquet/parquet-engine.ts';
import { LocalStore } from '../src/lake/storage/local-store.ts';
import type { KeyChange } from '../src/sink/silver-changes.ts';
import { changeColumns, changeRows, mergeSilver, SILVER_TARGET_FILE_ROWS } from '../src/sink/silver-merge.ts';
import { machine, provenance, round, say } from './bench-common.ts';
import { arg, BASE_MS, buildDeltaTable, list, loadavg, ordersColumnsSql, randomKeys, writeResult } from './merge-bench-support.ts';
import { median, orderRow, SILVER_SCHEMA } from './sink-bench-support.ts';

const SIZES = list(arg('sizes', '1000000,10000000')).map(Number);
const UPDATES = Number(arg('updates', '10000'));
const REPEATS = Number(arg('repeats', '3'));
const RATIO_ROWS = list(arg('ratio-rows', '1000000')).map(Number);
const RATIOS = list(arg('ratios', '0.01,0.1,0.5')).map(Number);
const RATIO_REPEATS = Number(arg('ratio-repeats', '1'));
const COW_LARGE = !process.argv.includes('--no-cow-large');

const dir = mkdtempSync(join(tmpdir(), 'tide-bench-silver-'));
const store = new LocalStore(dir);
let lsn = 1_000_000_000n;

/** A silver table of `rows` orders written by DuckDB straight to Parquet (as the sink's first load would leave it). */
async function buildTable(engine: ParquetEngine, root: string, rows: number, dv: boolean): Promise<DeltaTable> {
  const micros = `(${BASE_MS}::BIGINT + i * 1000) * 1000`;
  const select =
    `SELECT ${ordersColumnsSql('i')}, 1::BIGINT AS _commit_lsn, i::BIGINT AS _event_index, make_timestamp(${micros}) AS _commit_ts ` +
    `FROM range(${rows}) t(i) ORDER BY i`;
  return buildDeltaTable(engine, store, root, SILVER_SCHEMA, select, dv, SILVER_TARGET_FILE_ROWS);
}

/** `n` distinct uniformly random keys of [0, rows), as full-row updates at the next commit LSN. */
function randomUpdates(rows: number, n: number): KeyChange[] {
  const commitLsn = ++lsn;
  const now = Date.now();
  let index = 0;
  return randomKeys(rows, n).map((id) => ({
    key: [BigInt(id)],
    deleted: false,
    row: orderRow(id, Number(commitLsn % 1000n) + 1, now),
    unchanged: [],
    commitLsn,
    eventIndex: index++,
    commitTsMs: now,
  }));
}

type Design = 'deletion-vectors+index' | 'deletion-vectors' | 'copy-on-write';
const ALL_DESIGNS: Design[] = ['deletion-vectors+index', 'deletion-vectors', 'copy-on-write'];
const DESIGNS = list(arg('designs', ALL_DESIGNS.join(','))) as Design[];
for (const d of DESIGNS) if (!ALL_DESIGNS.includes(d)) throw new Error(`--designs: unknown design ${d} (${ALL_DESIGNS.join(', ')})`);

async function timedMerge(engine: ParquetEngine, table: DeltaTable, changes: KeyChange[], design: Design) {
  const keyIndex = design === 'deletion-vectors+index' ? { maxRows: 100_000_000 } : undefined;
  const t0 = performance.now();
  const r = await mergeSilver(engine, table, SILVER_SCHEMA, ['id'], { changes }, [], undefined, undefined, keyIndex);
  const seconds = (performance.now() - t0) / 1000;
  return { seconds: round(seconds, 3), rewrittenFiles: r.rewrittenFiles, vectorFiles: r.vectorFiles, addedFiles: r.addedFiles };
}

/** Baseline: DuckDB writing the changed rows to one zstd Parquet file, from a staged table and from JS rows. */
async function duckdbBaseline(engine: ParquetEngine, changes: KeyChange[]) {
  const out = join(dir, `baseline-${lsn}.parquet`);
  const t0 = performance.now();
  const staged = await engine.stage({ columns: changeColumns(SILVER_SCHEMA) }, changeRows(SILVER_SCHEMA, changes));
  const t1 = performance.now();
  const cols = SILVER_SCHEMA.columns.map((c) => `"${c.name}"`).join(', ');
  await engine.run(`COPY (SELECT ${cols} FROM ${staged} ORDER BY id) TO '${out}' (FORMAT parquet, COMPRESSION zstd)`);
  const t2 = performance.now();
  await engine.drop(staged);
  rmSync(out, { force: true });
  return { copySeconds: round((t2 - t1) / 1000, 3), stageAndCopySeconds: round((t2 - t0) / 1000, 3) };
}

async function main() {
  const m = machine();
  say(`machine: ${m.nproc} cores, ${m.memoryGiB} GiB, ${m.cpuModel}, load ${m.loadavgAtStart.join(' ')}`);
  const engine = await ParquetEngine.create({ memoryLimit: '2GB' });
  const perCommit: Record<string, unknown>[] = [];
  const throughput: Record<string, unknown>[] = [];
  try {
    for (const size of SIZES) {
      for (const design of DESIGNS) {
        if (design === 'copy-on-write' && size === Math.max(...SIZES) && !COW_LARGE) continue;
        const root = `silver/${design}-${size}`;
        say(`${root}: building ${size.toLocaleString()} rows`);
        const table = await buildTable(engine, root, size, design !== 'copy-on-write');
        // With the index, the first merge also builds it (one scan): timed on its own, not in the median.
        const indexed = design === 'deletion-vectors+index';
        const repeats = design === 'copy-on-write' && size >= 10_000_000 ? 1 : REPEATS + (indexed ? 1 : 0);
        const runs = [];
        for (let i = 0; i < repeats; i++) {
          const run = { ...(await timedMerge(engine, table, randomUpdates(size, UPDATES), design)), load: loadavg()[0] };
          say(`${root}: merge ${i + 1}/${repeats} of ${UPDATES} updates: ${run.seconds} s (${JSON.stringify(run)})`);
          runs.push(run);
        }
        const steady = indexed ? runs.slice(1) : runs;
        perCommit.push({
          design,
          tableRows: size,
          updates: UPDATES,
          medianSeconds: median(steady.map((r) => r.seconds)),
          ...(indexed ? { firstMergeWithBuildSeconds: runs[0]!.seconds } : {}),
          runs,
        });
        rmSync(join(dir, root), { recursive: true, force: true });
      }
    }
    for (const ratioRows of RATIO_ROWS) {
      for (const ratio of RATIOS) {
        for (const design of DESIGNS) {
          const root = `silver/ratio-${design}-${ratioRows}-${ratio}`;
          const table = await buildTable(engine, root, ratioRows, design !== 'copy-on-write');
          // The index is built by a first (small) merge, as a running sink has it; the timed merges then use it.
          if (design === 'deletion-vectors+index') await timedMerge(engine, table, randomUpdates(ratioRows, 10), design);
          const runs = [];
          for (let i = 0; i < RATIO_REPEATS; i++) {
            const changes = randomUpdates(ratioRows, Math.round(ratioRows * ratio));
            const base = await duckdbBaseline(engine, changes);
            const run = await timedMerge(engine, table, changes, design);
            runs.push({
              seconds: run.seconds,
              baseline: base,
              ratioVsCopy: round(base.copySeconds / run.seconds, 3),
              ratioVsStageAndCopy: round(base.stageAndCopySeconds / run.seconds, 3),
              load: loadavg()[0],
              rewrittenFiles: run.rewrittenFiles,
              vectorFiles: run.vectorFiles,
              addedFiles: run.addedFiles,
            });
            say(`${root}: run ${i + 1}/${RATIO_REPEATS}: ${JSON.stringify(runs.at(-1))}`);
          }
          const changes = Math.round(ratioRows * ratio);
          const seconds = median(runs.map((r) => r.seconds));
          const entry = {
            design,
            ratio,
            tableRows: ratioRows,
            changes,
            seconds,
            changesPerSecond: Math.round(changes / seconds),
            ratioVsCopy: median(runs.map((r) => r.ratioVsCopy)),
            ratioVsStageAndCopy: median(runs.map((r) => r.ratioVsStageAndCopy)),
            ratioVsStageAndCopyRange: [
              Math.min(...runs.map((r) => r.ratioVsStageAndCopy)),
              Math.max(...runs.map((r) => r.ratioVsStageAndCopy)),
            ],
            runs,
          };
          say(`${root}: median of ${runs.length}: ${entry.changesPerSecond} changes/s, x${entry.ratioVsStageAndCopy} of stage+COPY`);
          throughput.push(entry);
          rmSync(join(dir, root), { recursive: true, force: true });
        }
      }
    }
  } finally {
    await engine.close();
    rmSync(dir, { recursive: true, force: true });
  }
  const result = { machine: m, loadavgAtEnd: loadavg(), provenance: provenance(), perCommit, throughput };
  console.log('\nper commit (median of runs):');
  for (const p of perCommit)
    console.log(
      `  ${String(p.design).padEnd(22)} ${String(p.tableRows).padStart(9)} rows  ${p.updates} updates  ${p.medianSeconds} s` +
        (p.firstMergeWithBuildSeconds === undefined ? '' : ` (first merge, building the index: ${p.firstMergeWithBuildSeconds} s)`),
    );
  console.log('\nthroughput:');
  for (const t of throughput)
    console.log(
      `  ${String(t.design).padEnd(22)} ${String(t.tableRows).padStart(9)} rows ${String(t.ratio).padEnd(5)} ${String(t.changesPerSecond).padStart(8)} changes/s  ` +
        `x${t.ratioVsCopy} of DuckDB COPY, x${t.ratioVsStageAndCopy} of stage+COPY (runs ${JSON.stringify(t.ratioVsStageAndCopyRange)})`,
    );
  console.log(`load ${m.loadavgAtStart.join(' ')} at start, ${result.loadavgAtEnd.join(' ')} at end`);
  writeResult('silver-merge', result);
}

await main();

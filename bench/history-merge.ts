/**
 * History (SCD type 2) merge benchmark (issue 12): does a history merge's cost grow with the changes or
 * with the table, copy-on-write (rewrite every file holding a version that closes) against deletion
 * vectors (history-dv-merge.ts: delete the closing versions through their files' vectors, write them
 * again, closed, with the new versions)?
 *
 *   npx tsx bench/history-merge.ts [--sizes 1000000,10000000] [--updates 10000] [--repeats 3]
 *                                  [--designs deletion-vectors,copy-on-write,deletion-vectors-index]
 *
 * Per size N: a `silver.orders_history` of N versions (N/2 keys, each with a closed and a current
 * version, in files of 1M rows sorted by key, as the sink's merges write them), built by DuckDB straight
 * to Parquet, plain and with `delta.enableDeletionVectors`; then `--repeats` merges of `--updates`
 * uniformly random updates each (full after-images, one transaction), each timed in wall seconds and in
 * the process's CPU seconds (user + system, DuckDB's threads included): mergeHistory with staging, the
 * scan, writing, the vectors and the Delta commit. Median of the repeats.
 *
 * `deletion-vectors-index`: the same table as `deletion-vectors`, merged through the history key index
 * (history-key-index.ts); its build (a full read of key, version and `_is_current`) is timed apart, before
 * the repeats. A design may be listed more than once (old and new alternately: A,B,A,B).
 *
 * The real code (`mergeHistory`) on a local directory. Not part of the test suite; needs no stack.
 * Results: a table on stdout, JSON in bench/results/history-merge-<date>.json, with the load average.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DeltaTable } from '../src/lake/delta/delta-table.ts';
import type { LakeSchema } from '../src/lake/lake-schema.ts';
import { ParquetEngine } from '../src/lake/parquet/parquet-engine.ts';
import { LocalStore } from '../src/lake/storage/local-store.ts';
import type { ChangeEvent } from '../src/sink/change-event.ts';
import { historyColumns, historyVersions, mergeHistory } from '../src/sink/history-merge.ts';
import { syncedHistoryIndex } from '../src/sink/history-key-index.ts';
import { machine, provenance, round, say } from './bench-common.ts';
import { arg, buildDeltaTable, historyVersionsSql, loadavg, randomKeys, writeResult } from './merge-bench-support.ts';
import { median, ORDERS_COLUMNS, orderUpdates } from './sink-bench-support.ts';

const SIZES = arg('sizes', '1000000,10000000').split(',').map(Number);
const UPDATES = Number(arg('updates', '10000'));
const REPEATS = Number(arg('repeats', '3'));
const DESIGNS = arg('designs', 'deletion-vectors,copy-on-write').split(',') as Design[];

const SCHEMA: LakeSchema = {
  columns: historyColumns(ORDERS_COLUMNS.map((c) => ({ name: c.name, type: c.type, nullable: c.name !== 'id' }))),
};
const dir = mkdtempSync(join(tmpdir(), 'tide-bench-history-'));
const store = new LocalStore(dir);
let lsn = 1_000_000_000n;

/** A history of `versions` rows: versions/2 keys, each a closed version (LSN 1) and a current one (LSN 2). */
async function buildHistory(engine: ParquetEngine, root: string, versions: number, dv: boolean): Promise<DeltaTable> {
  return buildDeltaTable(engine, store, root, SCHEMA, historyVersionsSql(versions), dv);
}

/** `n` distinct uniformly random keys of [0, keys), as updates in one transaction at the next commit LSN. */
function randomUpdates(keys: number, n: number): ChangeEvent[] {
  return orderUpdates(randomKeys(keys, n), ++lsn);
}

type Design = 'deletion-vectors' | 'copy-on-write' | 'deletion-vectors-index';
const INDEX = { maxRows: 100_000_000 };

async function timedMerge(engine: ParquetEngine, table: DeltaTable, events: ChangeEvent[], indexed: boolean) {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const filesBefore = new Set(table.files().map((f) => f.path));
  await mergeHistory(engine, table, SCHEMA, ['id'], historyVersions(events, ['id'], []), [], undefined, indexed ? INDEX : undefined);
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const after = table.files();
  return {
    seconds: round(seconds, 3),
    cpuSeconds: round((cpu.user + cpu.system) / 1e6, 3),
    removedFiles: [...filesBefore].filter((p) => !after.some((f) => f.path === p)).length,
    vectorFiles: after.filter((f) => filesBefore.has(f.path) && f.deletionVector).length,
    files: after.length,
  };
}

async function main() {
  const m = machine();
  say(`machine: ${m.nproc} cores, ${m.memoryGiB} GiB, ${m.cpuModel}, load ${m.loadavgAtStart.join(' ')}`);
  const engine = await ParquetEngine.create({ memoryLimit: '2GB' });
  const perCommit: Record<string, unknown>[] = [];
  try {
    for (const size of SIZES) {
      for (const design of DESIGNS) {
        const root = `silver/${design}-${size}_history`;
        say(`${root}: building ${size.toLocaleString()} versions`);
        const indexed = design === 'deletion-vectors-index';
        const table = await buildHistory(engine, root, size, design !== 'copy-on-write');
        let indexBuild: { seconds: number; keys: number; megabytes: number } | undefined;
        if (indexed) {
          const t0 = performance.now();
          const keyColumns = SCHEMA.columns.filter((c) => c.name === 'id');
          const index = await syncedHistoryIndex(engine, table, keyColumns, INDEX);
          if (!index) throw new Error(`${root}: the history key index did not build`);
          indexBuild = { seconds: round((performance.now() - t0) / 1000, 3), keys: index.size, megabytes: Math.round(index.bytes / 1e6) };
          say(`${root}: key index built: ${JSON.stringify(indexBuild)}`);
        }
        const runs = [];
        for (let i = 0; i < REPEATS; i++) {
          const run = {
            ...(await timedMerge(engine, table, randomUpdates(Math.ceil(size / 2), UPDATES), indexed)),
            load: loadavg()[0],
          };
          say(`${root}: merge ${i + 1}/${REPEATS} of ${UPDATES} updates: ${run.seconds} s (${JSON.stringify(run)})`);
          runs.push(run);
        }
        perCommit.push({
          design,
          historyVersions: size,
          updates: UPDATES,
          medianSeconds: median(runs.map((r) => r.seconds)),
          medianCpuSeconds: median(runs.map((r) => r.cpuSeconds)),
          ...(indexBuild ? { indexBuild } : {}),
          runs,
        });
        rmSync(join(dir, root), { recursive: true, force: true });
      }
    }
  } finally {
    await engine.close();
    rmSync(dir, { recursive: true, force: true });
  }
  const result = { machine: m, loadavgAtEnd: loadavg(), provenance: provenance(), perCommit };
  console.log('\nper commit (median of runs):');
  for (const p of perCommit)
    console.log(
      `  ${String(p.design).padEnd(18)} ${String(p.historyVersions).padStart(9)} versions  ${p.updates} updates  ${p.medianSeconds} s wall  ${p.medianCpuSeconds} s CPU`,
    );
  console.log(`load ${m.loadavgAtStart.join(' ')} at start, ${result.loadavgAtEnd.join(' ')} at end`);
  writeResult('history-merge', result);
}

await main();

/**
 * How long a background history merge blocks the main thread (session 14): in the sink, flushes (bronze,
 * silver) and the history lane share the one JS thread, so a history merge's longest synchronous stretch
 * is added to the latency of every change waiting then (README "SCD2 history on its own cadence").
 *
 *   npx tsx bench/history-merge-blocking.ts [--versions 4000000] [--updates 400000] [--merges 2] [--label new]
 *
 * A `silver.orders_history` with deletion vectors of `--versions` versions (half the keys, each a closed
 * and a current version, as bench/history-merge.ts builds it), its key index built (not measured); then
 * `--merges` merges of `--updates` uniformly random updates each (full after-images, one transaction), as
 * the lane runs them: `historyVersions`, then `mergeHistory` through the key index (the second merge also
 * syncs the index with the files the first one wrote). While a merge runs, `monitorEventLoopDelay` (10 ms
 * resolution) and a 10 ms interval timer (its lateness, i.e. the longest stretch without a turn of the
 * event loop) are recorded: max and p99 delay, the longest gaps, the merge's wall time.
 *
 * Old against new: run the same file from a checkout of the old commit and of the new one alternately
 * (A,B,A,B) with `--label`. Not part of the test suite; needs no stack. JSON in
 * bench/results/history-merge-blocking-<date>-<label>.json, with the load average.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { DeltaTable } from '../src/lake/delta/delta-table.ts';
import type { LakeSchema } from '../src/lake/lake-schema.ts';
import { ParquetEngine } from '../src/lake/parquet/parquet-engine.ts';
import { LocalStore } from '../src/lake/storage/local-store.ts';
import type { ChangeEvent } from '../src/sink/change-event.ts';
import { historyColumns, historyVersions, mergeHistory } from '../src/sink/history-merge.ts';
import { syncedHistoryIndex } from '../src/sink/history-key-index.ts';
import { machine, provenance, round, say } from './bench-common.ts';
import { arg, buildDeltaTable, historyVersionsSql, loadavg, randomKeys, writeResult } from './merge-bench-support.ts';
import { ORDERS_COLUMNS, orderUpdates } from './sink-bench-support.ts';

const VERSIONS = Number(arg('versions', '4000000'));
const UPDATES = Number(arg('updates', '400000'));
const MERGES = Number(arg('merges', '2'));
const LABEL = arg('label', 'run');

const SCHEMA: LakeSchema = {
  columns: historyColumns(ORDERS_COLUMNS.map((c) => ({ name: c.name, type: c.type, nullable: c.name !== 'id' }))),
};
const INDEX = { maxRows: 100_000_000 };
let lsn = 1_000_000_000n;

function randomUpdates(keys: number, n: number): ChangeEvent[] {
  return orderUpdates(randomKeys(keys, n), ++lsn);
}

/** The event loop's delay while `work` runs: perf_hooks' histogram and a 10 ms timer's lateness. */
async function watched(work: () => Promise<void>) {
  const histogram = monitorEventLoopDelay({ resolution: 10 });
  const gaps: { atMs: number; ms: number }[] = [];
  const t0 = performance.now();
  let last = t0;
  const timer = setInterval(() => {
    const now = performance.now();
    gaps.push({ atMs: round(last - t0, 0), ms: round(now - last - 10, 1) });
    last = now;
  }, 10);
  histogram.enable();
  await work();
  histogram.disable();
  clearInterval(timer);
  const seconds = (performance.now() - t0) / 1000;
  const late = gaps.map((g) => g.ms).sort((a, b) => a - b);
  return {
    seconds: round(seconds, 2),
    loopDelayMaxMs: round(histogram.max / 1e6, 1),
    loopDelayP99Ms: round(histogram.percentile(99) / 1e6, 1),
    loopDelayMeanMs: round(histogram.mean / 1e6, 1),
    timerLateMaxMs: late.at(-1) ?? 0,
    timerLateP99Ms: late[Math.floor(late.length * 0.99)] ?? 0,
    /** Stretches over 100 ms without a turn of the event loop: when (ms into the merge) and how long. */
    longGaps: gaps
      .filter((g) => g.ms > 100)
      .sort((a, b) => b.ms - a.ms)
      .slice(0, 8),
  };
}

async function main() {
  const m = machine();
  say(`${LABEL}: ${m.nproc} cores, load ${m.loadavgAtStart.join(' ')}`);
  const dir = mkdtempSync(join(tmpdir(), 'tide-bench-history-block-'));
  const store = new LocalStore(dir);
  const engine = await ParquetEngine.create({ memoryLimit: '2GB' });
  const merges: Record<string, unknown>[] = [];
  try {
    const select = historyVersionsSql(VERSIONS);
    const table: DeltaTable = await buildDeltaTable(engine, store, 'silver/orders_history', SCHEMA, select, true);
    const keyColumns = SCHEMA.columns.filter((c) => c.name === 'id');
    if (!(await syncedHistoryIndex(engine, table, keyColumns, INDEX))) throw new Error('the history key index did not build');
    say(`${LABEL}: ${VERSIONS.toLocaleString()} versions built and indexed`);
    for (let i = 0; i < MERGES; i++) {
      const events = randomUpdates(Math.ceil(VERSIONS / 2), UPDATES);
      const r = await watched(async () => {
        await mergeHistory(engine, table, SCHEMA, ['id'], await versionsOf(events), [], undefined, INDEX);
      });
      const run = { merge: i + 1, ...r, load: loadavg()[0] };
      say(`${LABEL}: merge ${i + 1}/${MERGES}: ${JSON.stringify(run)}`);
      merges.push(run);
    }
  } finally {
    await engine.close();
    rmSync(dir, { recursive: true, force: true });
  }
  const result = {
    label: LABEL,
    versions: VERSIONS,
    updates: UPDATES,
    machine: m,
    loadavgAtEnd: loadavg(),
    provenance: provenance(),
    merges,
  };
  writeResult(`history-merge-blocking-${LABEL}`, result);
}

/** historyVersions as the checkout has it: the async, chunked one when it exists (new), else the synchronous one (old). */
async function versionsOf(events: ChangeEvent[]) {
  const mod = (await import('../src/sink/history-merge.ts')) as Record<string, unknown>;
  const chunked = mod.historyVersionsInTurns as
    undefined | ((e: ChangeEvent[], k: string[], m: []) => Promise<ReturnType<typeof historyVersions>>);
  return chunked ? await chunked(events, ['id'], []) : historyVersions(events, ['id'], []);
}

await main();

/**
 * Silver merges as a running sink makes them (issue 12, the whole pipeline): where bench/silver-merge.ts
 * merges into a table DuckDB wrote sorted by key, here every flush writes its own file spanning the whole
 * key range and leaves deletion vectors in the older ones, as the order pipeline's flushes do. Each flush
 * holds `--per-flush` changes: half inserts of new keys, half updates of random existing keys.
 *
 *   npx tsx bench/silver-flushes.ts [--flushes 24] [--per-flush 50000] [--start-rows 20000] [--start-files 1] [--shares 1,0.05]
 *     [--name silver-flushes] [--compact 0,500000] [--fanout 8] [--deleted-ratio 0.3]
 *
 * One table per `--shares` value, all with deletion vectors and the key index, and the same changes
 * merged into each, in alternating order flush by flush (ABAB, one window, one DuckDB): the share is the
 * key index's switch (a batch whose hits pass that share of the indexed keys scans instead; see
 * INDEX_LOOKUP_MAX_SHARE in src/sink/silver-merge.ts). Reports each merge's seconds per share and the
 * median by thirds. `--start-files N` writes the starting rows as N files that each span the whole key range
 * (file k holds the keys ≡ k mod N), as a long-running sink's flushes leave a table with millions of rows:
 * then the first flush already touches every file. `--compact` compares compaction settings instead of shares (one
 * table per value of `silver.compaction.max.step.rows`, 0 = off, all at the default share): after each merge the
 * table takes one compaction step (src/sink/silver-compaction.ts), timed apart, and the file count is recorded.
 * `--name` names the result file. Not part of the test suite; needs no stack. JSON in bench/results/silver-flushes-<date>.json.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DeltaTable } from '../src/lake/delta/delta-table.ts';
import { ParquetEngine } from '../src/lake/parquet/parquet-engine.ts';
import { LocalStore } from '../src/lake/storage/local-store.ts';
import type { KeyChange } from '../src/sink/silver-changes.ts';
import { mergeSilver, SILVER_TARGET_FILE_ROWS } from '../src/sink/silver-merge.ts';
import { compactSilver, DEFAULT_COMPACTION_POLICY } from '../src/sink/silver-compaction.ts';
import { machine, provenance, round, say } from './bench-common.ts';
import { arg, BASE_MS, buildDeltaTable, list, loadavg, ordersColumnsSql, randomKeys, writeResult } from './merge-bench-support.ts';
import { median, orderRow, SILVER_SCHEMA } from './sink-bench-support.ts';

const FLUSHES = Number(arg('flushes', '24'));
const PER_FLUSH = Number(arg('per-flush', '50000'));
const START_ROWS = Number(arg('start-rows', '20000'));
const START_FILES = Number(arg('start-files', '1'));
const SHARES = list(arg('shares', '1,0.05')).map(Number);
const NAME = arg('name', 'silver-flushes');
const COMPACT = list(arg('compact', '')).map(Number);
const FANOUT = Number(arg('fanout', String(DEFAULT_COMPACTION_POLICY.fanout)));
const DELETED_RATIO = Number(arg('deleted-ratio', String(DEFAULT_COMPACTION_POLICY.maxDeletedRatio)));
/** What the tables differ in: the key index's share, or (with --compact) the compaction step's bound. */
const VARIANTS = COMPACT.length
  ? COMPACT.map((rows) => ({ label: rows ? `compact ${rows}` : 'no compaction', share: undefined, stepRows: rows }))
  : SHARES.map((share) => ({ label: `share ${share}`, share, stepRows: 0 }));

function flushChanges(rows: number, commitLsn: bigint): KeyChange[] {
  const now = Date.now();
  const ids = [
    ...Array.from({ length: PER_FLUSH / 2 }, (_, i) => rows + i),
    ...randomKeys(rows, Math.min(PER_FLUSH / 2, Math.floor(rows / 2))),
  ];
  ids.sort((a, b) => a - b);
  return ids.map((id, eventIndex) => ({
    key: [BigInt(id)],
    deleted: false,
    row: orderRow(id, Number(commitLsn % 1000n) + 1, now),
    unchanged: [],
    commitLsn,
    eventIndex,
    commitTsMs: now,
  }));
}

async function main() {
  const m = machine();
  say(`machine: ${m.nproc} cores, ${m.memoryGiB} GiB, ${m.cpuModel}, load ${m.loadavgAtStart.join(' ')}`);
  const dir = mkdtempSync(join(tmpdir(), 'tide-bench-silver-flushes-'));
  const store = new LocalStore(dir);
  const engine = await ParquetEngine.create({ memoryLimit: '2GB' });
  const micros = `(${BASE_MS}::BIGINT + i * 1000) * 1000`;
  const select =
    `SELECT ${ordersColumnsSql('i')}, 1::BIGINT AS _commit_lsn, i::BIGINT AS _event_index, make_timestamp(${micros}) AS _commit_ts ` +
    `FROM range(${START_ROWS}) t(i) ORDER BY ${START_FILES > 1 ? `i % ${START_FILES}, ` : ''}i`;
  const startFileRows = START_FILES > 1 ? Math.ceil(START_ROWS / START_FILES) : SILVER_TARGET_FILE_ROWS;
  try {
    const tables: DeltaTable[] = [];
    for (const v of VARIANTS)
      tables.push(await buildDeltaTable(engine, store, `silver/${v.label.replace(/ /g, '-')}`, SILVER_SCHEMA, select, true, startFileRows));
    const seconds: number[][] = VARIANTS.map(() => []);
    const compactMs: number[][] = VARIANTS.map(() => []);
    const flushes: Record<string, unknown>[] = [];
    let rows = START_ROWS;
    let lsn = 1_000_000_000n;
    for (let f = 0; f < FLUSHES; f++) {
      const changes = flushChanges(rows, ++lsn);
      rows += PER_FLUSH / 2;
      const order = VARIANTS.map((_, i) => i);
      if (f % 2) order.reverse();
      const took: Record<string, unknown> = {};
      for (const i of order) {
        const v = VARIANTS[i]!;
        const t0 = performance.now();
        await mergeSilver(engine, tables[i]!, SILVER_SCHEMA, ['id'], { changes }, [], undefined, undefined, {
          maxRows: 100_000_000,
          ...(v.share === undefined ? {} : { lookupMaxShare: v.share }),
        });
        const s = round((performance.now() - t0) / 1000, 3);
        seconds[i]!.push(s);
        took[v.label] = s;
        if (v.stepRows) {
          const step = await compactSilver(engine, tables[i]!, { maxStepRows: v.stepRows, fanout: FANOUT, maxDeletedRatio: DELETED_RATIO });
          compactMs[i]!.push(step?.ms ?? 0);
          if (step)
            took[`${v.label} step`] = { reason: step.plan.reason, filesIn: step.plan.files.length, rows: step.plan.liveRows, ms: step.ms };
        }
        if (COMPACT.length) took[`${v.label} files`] = tables[i]!.files().length;
      }
      flushes.push({ flush: f, keysAfter: rows, changes: changes.length, ...took, load: loadavg()[0] });
      say(`flush ${f + 1}/${FLUSHES}, ${rows.toLocaleString()} keys: ${JSON.stringify(took)}`);
    }
    const third = Math.ceil(FLUSHES / 3);
    const thirds = (xs: number[], at: (ys: number[]) => number) => [0, 1, 2].map((t) => at(xs.slice(t * third, (t + 1) * third)));
    const summary = VARIANTS.map((v, i) => ({
      variant: v.label,
      ...(v.share === undefined ? {} : { share: v.share }),
      medianSecondsByThirds: thirds(seconds[i]!, median),
      totalSeconds: round(
        seconds[i]!.reduce((a, b) => a + b, 0),
        1,
      ),
      ...(v.stepRows
        ? {
            compactionMsMedianByThirds: thirds(compactMs[i]!, median),
            compactionMsMaxByThirds: thirds(compactMs[i]!, (ys) => Math.max(0, ...ys)),
            compactionSteps: compactMs[i]!.filter((ms) => ms > 0).length,
            compactionTotalSeconds: round(compactMs[i]!.reduce((a, b) => a + b, 0) / 1000, 1),
          }
        : {}),
      ...(COMPACT.length ? { filesAtEnd: tables[i]!.files().length } : {}),
    }));
    for (const s of summary) say(`${s.variant}: ${JSON.stringify(s)}`);
    writeResult(NAME, {
      bench: 'silver-flushes',
      at: new Date().toISOString(),
      machine: { ...m, loadavgAtEnd: loadavg() },
      provenance: provenance(),
      settings: {
        flushes: FLUSHES,
        perFlush: PER_FLUSH,
        startRows: START_ROWS,
        startFiles: START_FILES,
        shares: SHARES,
        compact: COMPACT,
        fanout: FANOUT,
        deletedRatio: DELETED_RATIO,
      },
      summary,
      flushes,
    });
  } finally {
    await engine.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();

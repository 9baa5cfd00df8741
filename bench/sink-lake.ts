/**
 * Sink and lake benchmark (issue 4, "Benchmark"): what do the Delta log and the merge logic cost on
 * top of raw Parquet I/O, and how fresh is silver at 5k changes/s compared with Kafka?
 *
 *   npx tsx bench/sink-lake.ts [--rows 1000000] [--batch 100000] [--merge-batch 100000]
 *                              [--ratios 0.01,0.1,0.5] [--repeats 3]
 *                              [--rate 5000] [--seconds 30] [--flush-ms 500]
 *                              [--no-throughput] [--no-freshness] [--keep]
 *
 * One run, every figure against a baseline measured in the same run (the machine is noisy):
 *  1. freshness (bench/sink-freshness.ts), end to end on the local stack: Postgres → source (in
 *     process) → Kafka → sink (in process) → silver, at --rate row changes/s for --seconds;
 *     commit-to-silver latency from the Delta log's commit files; baseline: commit-to-Kafka
 *     latency (LogAppendTime - source.ts_ms) of the same changes. Runs first, so its peak RSS is
 *     the pipeline's own;
 *  2. throughput (bench/sink-throughput.ts), in process, real code on a real Delta table in a
 *     LocalStore temp dir: bronze append (`appendBronze`) and silver merge (`reduceToChanges` +
 *     `mergeSilver`) of synthetic `orders` change events; baseline: DuckDB COPY of the same rows
 *     (for a merge: of the rows the merge rewrote plus its inserts) to one zstd Parquet file;
 *  3. a table on stdout and JSON in bench/results/sink-lake-<date>[-<non-default flags>].json. Databases, slots, topics,
 *     consumer groups, registry subjects and temp dirs are removed at the end (--keep keeps what a
 *     failed freshness run created, for inspection).
 * Ratios: throughput as Tide rows/s ÷ baseline rows/s (1 = as fast as raw Parquet); latency as
 * Tide ms ÷ baseline ms. Not part of the test suite. Needs the local stack (`npm run stack:up`).
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { readStackEnv, PROJECT_ROOT } from '../src/stack/context.ts';
import { rssMb } from './sink-bench-support.ts';
import { BenchError, machine, provenance, round, say } from './bench-common.ts';

const DEFAULTS: Record<string, string> = {
  rows: '1000000',
  batch: '100000',
  'merge-batch': '100000',
  ratios: '0.01,0.1,0.5',
  repeats: '3',
  rate: '5000',
  seconds: '30',
  'flush-ms': '500',
};
const { values: args } = parseArgs({
  options: {
    rows: { type: 'string', default: DEFAULTS.rows },
    batch: { type: 'string', default: DEFAULTS.batch },
    'merge-batch': { type: 'string', default: DEFAULTS['merge-batch'] },
    ratios: { type: 'string', default: DEFAULTS.ratios },
    repeats: { type: 'string', default: DEFAULTS.repeats },
    rate: { type: 'string', default: DEFAULTS.rate },
    seconds: { type: 'string', default: DEFAULTS.seconds },
    'flush-ms': { type: 'string', default: DEFAULTS['flush-ms'] },
    'no-throughput': { type: 'boolean', default: false },
    'no-freshness': { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
  },
});

function positiveInt(flag: string, raw: string | undefined): number {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new BenchError('arguments', `--${flag} must be a positive integer, got ${raw}`);
  return n;
}
const ROWS = positiveInt('rows', args.rows);
const BATCH = positiveInt('batch', args.batch);
const MERGE_BATCH = positiveInt('merge-batch', args['merge-batch']);
const REPEATS = positiveInt('repeats', args.repeats);
const RATE = positiveInt('rate', args.rate);
const SECONDS = positiveInt('seconds', args.seconds);
const FLUSH_MS = positiveInt('flush-ms', args['flush-ms']);
const RATIOS_ARG = args.ratios ?? DEFAULTS.ratios!;
const RATIOS = RATIOS_ARG.split(',').map(Number);
if (RATIOS.some((r) => !(r >= 0 && r <= 1))) throw new BenchError('arguments', `--ratios must be fractions in [0, 1], got ${args.ratios}`);

for (const [k, v] of Object.entries(readStackEnv())) process.env[k] ??= v;
if (!process.env.DATABASE_URL)
  throw new BenchError('stack', 'DATABASE_URL is not set: run `npm run stack:up` first (it writes .stack/env)');
// The sink and source log every flush at info; the benchmark prints its own progress. Set before src/log.ts
// loads: the phases are imported below, when they run (a phase skipped is never loaded).
process.env.TIDE_LOG_LEVEL ??= 'warn';

const n = (x: number) => x.toLocaleString('en');

async function main() {
  const m = machine();
  say(`machine: ${m.nproc} cores, ${m.memoryGiB} GiB, ${m.cpuModel}, load ${m.loadavgAtStart.join(' ')}`);
  // Freshness first: its peak RSS then holds only what the pipeline needs, not the throughput phase's leftovers.
  const freshness = args['no-freshness']
    ? undefined
    : await (
        await import('./sink-freshness.ts')
      ).runFreshness({ rate: RATE, seconds: SECONDS, flushMs: FLUSH_MS, warmup: 20_000, keep: args.keep });
  const throughput = args['no-throughput']
    ? undefined
    : await (
        await import('./sink-throughput.ts')
      ).runThroughput({ rows: ROWS, batchRows: BATCH, mergeBatch: MERGE_BATCH, ratios: RATIOS, repeats: REPEATS });
  const result = {
    benchmark: 'sink-lake',
    date: new Date().toISOString(),
    machine: m,
    code: provenance(),
    ratioMeaning: 'throughput: Tide rows/s / baseline rows/s (1 = raw Parquet speed); latency: Tide ms / baseline ms',
    throughput,
    freshness,
    processPeakRssMB: rssMb().peak,
    loadavgAtEnd: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number),
  };

  const rows: [string, string][] = [
    [
      'machine',
      `${m.nproc} cores, ${m.memoryGiB} GiB, ${m.cpuModel}, load ${m.loadavgAtStart.join(' ')} at start, ${result.loadavgAtEnd.join(' ')} at end`,
    ],
  ];
  if (throughput) {
    const t = throughput;
    type Fig = (typeof t.merges)[number] | typeof t.bronze;
    const cells = (x: Fig, unit: string) =>
      `${n(x.rowsPerSecond).padStart(9)} ${unit.padEnd(9)} ${n(x.baseline.rowsPerSecond).padStart(9)}   ${x.ratio.toFixed(3)}   ` +
      `${n(x.baselineFromJs.rowsPerSecond).padStart(9)}   ${x.ratioFromJs.toFixed(3)}   ` +
      `js ${x.breakdown.jsSeconds} + stage ${x.breakdown.stagingSeconds} + write&commit ${x.breakdown.writeAndCommitSeconds} s`;
    rows.push(
      ['', `${'Tide'.padStart(9)} ${''.padEnd(9)} ${'raw'.padStart(9)}   ratio   ${'JS+raw'.padStart(9)}   ratio   Tide's seconds`],
      ['bronze append', cells(t.bronze, 'rows/s')],
      ['silver load (insert-only merge)', cells(t.silverLoad, 'rows/s')],
    );
    for (const mg of t.merges) {
      const r = mg.runs[mg.medianRun]!;
      rows.push([`silver merge, ${round(mg.updateRatio * 100, 1)}% updates`, cells(mg, 'changes/s')]);
      rows.push([
        '',
        `  ${r.rewrittenFiles}/${r.filesBefore} files, ${n(r.rowsRewritten)} rows rewritten for ${n(mg.batchChanges)} changes; ${mg.seconds} s vs raw ${mg.baseline.seconds} s (median run of ${mg.medianOf})`,
      ]);
    }
    rows.push(
      ['', 'raw: DuckDB COPY of the same rows (for a merge: the rows it rewrote plus its inserts) to one zstd Parquet file'],
      ['', 'JS+raw: building and staging the rows (Tide code, timed on their own) + raw; ratio = Tide / that, per row or change'],
      ['peak RSS (throughput)', `${t.peakRssMB.load} MB bronze + silver load, ${t.peakRssMB.merges} MB merges`],
    );
  }
  if (freshness) {
    const f = freshness;
    const d = (x: { p50ms: number; p99ms: number; maxMs: number }) => `p50 ${x.p50ms} ms   p99 ${x.p99ms} ms   (max ${x.maxMs})`;
    rows.push(
      [
        'freshness load',
        `${n(f.achievedRowsPerSecond)} changes/s (target ${n(f.targetRowsPerSecond)}) for ${f.seconds} s, ${n(f.records)} records; flush.interval.ms ${FLUSH_MS}; ${f.silverCommits} silver commits`,
      ],
      ['commit → silver', d(f.silver)],
      ['commit → bronze', d(f.bronze)],
      ['commit → Kafka (baseline)', d(f.baselineKafka)],
      ['Kafka → silver (lake adds)', d(f.lakeAddsAfterKafka)],
      ['ratio silver / Kafka', `p50 ${f.ratioP50}   p99 ${f.ratioP99}`],
      [
        'source+sink+writer process',
        `peak RSS ${f.peakRssMB} MB (RSS ${f.rssMB.beforeSink} MB before the sink, ${f.rssMB.afterWarmup} after warm-up, ${f.rssMB.atEnd} at the end); ${f.processCpuCores} cores busy`,
      ],
    );
  }
  const w = Math.max(...rows.map(([k]) => k.length));
  console.log(rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n'));

  const dir = join(PROJECT_ROOT, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  // Runs with other than the default settings get their own file, named after what differs.
  const variant = Object.entries({
    rows: ROWS,
    batch: BATCH,
    'merge-batch': MERGE_BATCH,
    repeats: REPEATS,
    rate: RATE,
    seconds: SECONDS,
    'flush-ms': FLUSH_MS,
  })
    .filter(([k, v]) => String(v) !== DEFAULTS[k])
    .map(([k, v]) => `-${k}${v}`)
    .concat(RATIOS_ARG !== DEFAULTS.ratios ? [`-ratios${RATIOS_ARG.replace(/,/g, '_')}`] : [])
    .concat(args['no-throughput'] ? ['-no-throughput'] : [], args['no-freshness'] ? ['-no-freshness'] : [])
    .join('');
  const out = join(dir, `sink-lake-${result.date.slice(0, 10)}${variant}.json`);
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`\nwrote ${resolve(out)}`);
}

await main();

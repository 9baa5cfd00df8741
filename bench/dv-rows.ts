/**
 * Deleted-row handling benchmark (session 14): what a view over a table with deletion vectors costs the
 * sink's main thread, as gold builds one over silver orders every pass, old code against new, alternately.
 *
 *   npx tsx bench/dv-rows.ts [--files 300] [--file-rows 40000] [--deleted 4000000] [--reps 5] [--rounds 2]
 *                            [--ab old=/path/to/old/src,new=src] [--name dv-rows]
 *
 * The parent makes one fixture in a temp dir: `files` copies of one Parquet file of `file-rows` rows (id,
 * value) and, with the code of the last `--ab` entry, one deletion vector file holding a vector per data
 * file, `deleted` rows in all at random positions. Per round and code (`--ab`: each label's `src`
 * directory, e.g. an old commit's `git archive` inside this worktree so that node_modules resolves), a
 * child process started with --trace-gc opens a ParquetEngine and creates the same view over all files
 * (ParquetEngine.createView with the vectors: what gold-build.ts does) 1 + `reps` times (the first is a
 * warm-up, not counted), each followed by a `count(*)` over the view (checked against files × file-rows −
 * deleted). Per view: wall ms, the main thread's CPU ms (/proc/self/task/<pid>/stat: JS and the native
 * calls it makes, not DuckDB's worker threads), the process's CPU ms, and garbage collection (PerformanceObserver
 * 'gc' entries: count, total and longest pause). Per child: the peak heap (largest heap size before a
 * collection in --trace-gc's lines) and peak RSS. The load average is taken per child.
 * Results: JSON in bench/results/<name>-<date>.json.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { PerformanceObserver } from 'node:perf_hooks';
import { machine, provenance, round, say } from './bench-common.ts';
import { arg, list, loadavg, writeResult } from './merge-bench-support.ts';

const FILES = Number(arg('files', '300'));
const FILE_ROWS = Number(arg('file-rows', '40000'));
const DELETED = Number(arg('deleted', '4000000'));
const REPS = Number(arg('reps', '5'));
const ROUNDS = Number(arg('rounds', '2'));
const ROOT = 'silver/orders';

interface View {
  wallMs: number;
  mainCpuMs: number;
  processCpuMs: number;
  gcCount: number;
  gcMs: number;
  gcMaxMs: number;
  countMs: number;
}

const codes = list(arg('ab', 'new=src')).map((x) => {
  const [label, src] = x.split('=') as [string, string];
  return { label, src };
});

const mod = async <T>(src: string, p: string) => (await import(pathToFileURL(join(resolve(src), p)).href)) as T;

/** The main thread's CPU ms so far (utime + stime of its /proc task, in clock ticks of 10 ms). */
function mainThreadCpuMs(): number {
  const stat = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

async function fixture(dir: string): Promise<void> {
  const src = codes.at(-1)!.src;
  const { ParquetEngine } = await mod<typeof import('../src/lake/parquet/parquet-engine.ts')>(src, 'lake/parquet/parquet-engine.ts');
  const { LocalStore } = await mod<typeof import('../src/lake/storage/local-store.ts')>(src, 'lake/storage/local-store.ts');
  const { writeDeletionVectors } = await mod<typeof import('../src/lake/delta/deletion-vector.ts')>(src, 'lake/delta/deletion-vector.ts');
  const engine = await ParquetEngine.create({ tempDir: join(dir, 'tmp') });
  const first = join(dir, 'lake', ROOT, 'part-0.parquet');
  const { mkdirSync } = await import('node:fs');
  mkdirSync(join(dir, 'lake', ROOT), { recursive: true });
  await engine.run(
    `COPY (SELECT range::BIGINT AS id, (range * 7 % 1000)::DOUBLE AS value FROM range(${FILE_ROWS})) TO '${first}' (FORMAT parquet)`,
  );
  await engine.close();
  for (let i = 1; i < FILES; i++) copyFileSync(first, join(dir, 'lake', ROOT, `part-${i}.parquet`));
  // Random positions, the same count per file (± one); sets so a row is deleted once.
  const perFile = Array.from({ length: FILES }, (_, i) => Math.floor(DELETED / FILES) + (i < DELETED % FILES ? 1 : 0));
  const vectors = perFile.map((n) => {
    const rows = new Set<number>();
    while (rows.size < n) rows.add(Math.floor(Math.random() * FILE_ROWS));
    return { rows: [...rows] };
  });
  const store = new LocalStore(join(dir, 'lake'));
  const dvs = await writeDeletionVectors(store, ROOT, vectors);
  const files = dvs.map((deletionVector, i) => ({ path: `part-${i}.parquet`, partitionValues: {}, deletionVector }));
  writeFileSync(join(dir, 'files.json'), JSON.stringify(files));
}

async function child(src: string, dir: string): Promise<{ views: View[]; peakHeapMb: number; maxRssMb: number }> {
  const { ParquetEngine } = await mod<typeof import('../src/lake/parquet/parquet-engine.ts')>(src, 'lake/parquet/parquet-engine.ts');
  const { LocalStore } = await mod<typeof import('../src/lake/storage/local-store.ts')>(src, 'lake/storage/local-store.ts');
  const files = JSON.parse(readFileSync(join(dir, 'files.json'), 'utf8')) as import('../src/lake/parquet/table-view.ts').ViewFile[];
  const schema = {
    columns: [
      { name: 'id', type: { kind: 'long' as const }, nullable: false },
      { name: 'value', type: { kind: 'double' as const }, nullable: false },
    ],
  };
  const gc: number[] = [];
  const observer = new PerformanceObserver((l) => void gc.push(...l.getEntries().map((e) => e.duration)));
  observer.observe({ entryTypes: ['gc'] });
  const store = new LocalStore(join(dir, 'lake'));
  const engine = await ParquetEngine.create({ tempDir: mkdtempSync(join(dir, 'engine-')) });
  const views: View[] = [];
  const expected = FILES * FILE_ROWS - DELETED;
  try {
    for (let rep = 0; rep <= REPS; rep++) {
      // Entries of the previous view arrive asynchronously: let them land, then start counting.
      await new Promise((r) => setTimeout(r, 50));
      gc.length = 0;
      const cpu = process.cpuUsage();
      const main = mainThreadCpuMs();
      const t = performance.now();
      await engine.createView('bench_dv', store, ROOT, files, schema);
      const wallMs = performance.now() - t;
      const mainCpuMs = mainThreadCpuMs() - main;
      const used = process.cpuUsage(cpu);
      await new Promise((r) => setTimeout(r, 50));
      const pauses = [...gc];
      const c = performance.now();
      const [row] = await engine.query('SELECT count(*) AS n FROM bench_dv');
      const countMs = performance.now() - c;
      if (Number(row!.n) !== expected) throw new Error(`the view has ${String(row!.n)} rows, not ${expected}`);
      if (rep === 0) continue;
      views.push({
        wallMs: round(wallMs, 1),
        mainCpuMs,
        processCpuMs: round((used.user + used.system) / 1000, 1),
        gcCount: pauses.length,
        gcMs: round(
          pauses.reduce((a, b) => a + b, 0),
          1,
        ),
        gcMaxMs: round(Math.max(0, ...pauses), 1),
        countMs: round(countMs, 1),
      });
    }
  } finally {
    observer.disconnect();
    await engine.close();
  }
  return { views, peakHeapMb: 0, maxRssMb: round(process.resourceUsage().maxRSS / 1024, 1) };
}

/** The largest heap size before a collection (MB) in --trace-gc lines ("Mark-Compact 250.3 (260.1) -> …"). */
function peakHeap(stdout: string): number {
  let peak = 0;
  for (const m of stdout.matchAll(/ms: [A-Za-z-]+[^\d]*?([\d.]+) \(([\d.]+)\) ->/g)) peak = Math.max(peak, Number(m[1]));
  return peak;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};

async function main(): Promise<void> {
  if (process.argv.includes('--child')) {
    const result = await child(arg('src', 'src'), arg('dir', ''));
    process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
    process.exit(0);
  }
  const dir = mkdtempSync(join(tmpdir(), 'tide-dv-rows-'));
  try {
    say(`fixture: ${FILES} files of ${FILE_ROWS} rows, ${DELETED} deleted rows at random positions`);
    await fixture(dir);
    const runs: unknown[] = [];
    for (let r = 1; r <= ROUNDS; r++)
      for (const { label, src } of codes) {
        const load = loadavg();
        const p = spawnSync(
          process.execPath,
          ['--trace-gc', '--import', 'tsx', 'bench/dv-rows.ts', '--child', '--src', src, '--dir', dir, ...passArgs()],
          { encoding: 'utf8', maxBuffer: 1 << 28 },
        );
        if (p.status !== 0) throw new Error(`${label} child failed: ${p.stderr}\n${p.stdout.slice(-2000)}`);
        const line = p.stdout.split('\n').find((l) => l.startsWith('RESULT '))!;
        const result = JSON.parse(line.slice(7)) as Awaited<ReturnType<typeof child>>;
        result.peakHeapMb = peakHeap(p.stdout);
        runs.push({ round: r, code: label, src, load, ...result });
        const v = result.views;
        say(
          `round ${r} ${label} (load ${load.join(' ')}): per view (median of ${v.length}) main thread ${median(v.map((x) => x.mainCpuMs))} ms CPU, ` +
            `process ${median(v.map((x) => x.processCpuMs))} ms CPU, wall ${median(v.map((x) => x.wallMs))} ms, ` +
            `GC ${median(v.map((x) => x.gcMs))} ms in ${median(v.map((x) => x.gcCount))} (longest ${Math.max(...v.map((x) => x.gcMaxMs))} ms); ` +
            `count(*) ${median(v.map((x) => x.countMs))} ms; peak heap ${result.peakHeapMb} MB, max RSS ${result.maxRssMb} MB`,
        );
      }
    writeResult(arg('name', 'dv-rows'), {
      machine: machine(),
      provenance: provenance(),
      files: FILES,
      fileRows: FILE_ROWS,
      deleted: DELETED,
      reps: REPS,
      runs,
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function passArgs(): string[] {
  return ['--files', String(FILES), '--file-rows', String(FILE_ROWS), '--deleted', String(DELETED), '--reps', String(REPS)];
}

await main();

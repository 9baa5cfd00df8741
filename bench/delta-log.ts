/**
 * Delta log bookkeeping benchmark (issue 12, session 13): the JS time the sink's main thread spends on
 * checkpoints and log replay, old code against new, alternately.
 *
 *   npx tsx bench/delta-log.ts [--files 300,2000] [--commits 30] [--reps 10] [--rounds 2]
 *                              [--ab old=/path/to/old/src,new=src] [--name delta-log]
 *
 * Per round, code (`--ab`: each label's `src` directory, e.g. an old commit's `git archive` inside this
 * worktree so that node_modules resolves) and table size (`--files`), a child process:
 *  1. makes a table on a local store shaped like silver orders with deletion vectors: commit 1 adds
 *     `files` files (with stats), then each of `commits` commits removes every file and re-adds it with
 *     a new vector, as a flush does (checkpoints every 10 commits, `delta.checkpointInterval`);
 *     no data files: only the log is read and written here;
 *  2. times `reps` explicit checkpoints of that table (`DeltaTable.checkpoint`: writeCheckpoint),
 *  3. `reps` opens (`DeltaTable.open`: the checkpoint read and the commits after it),
 *  4. `reps` gold passes (`GoldRefresher.registerViews` of a report reading the table, with an engine
 *     that only records the views), each after one more commit, as gold builds between flushes.
 * Each phase reports wall ms and the process's CPU ms (main thread and DuckDB's threads together).
 * The load average is taken per child. Results: JSON in bench/results/<name>-<date>.json.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { machine, provenance, round, say } from './bench-common.ts';
import { arg, list, loadavg, writeResult } from './merge-bench-support.ts';

const FILES = list(arg('files', '300,2000')).map(Number);
const COMMITS = Number(arg('commits', '30'));
const REPS = Number(arg('reps', '10'));
const ROUNDS = Number(arg('rounds', '2'));

interface Phase {
  wallMs: number;
  cpuMs: number;
}
interface ChildResult {
  files: number;
  build: Phase;
  checkpoint: Phase;
  open: Phase;
  goldPass: Phase;
  checkpointRows: number;
}

async function timed(fn: () => Promise<void>): Promise<Phase> {
  const cpu = process.cpuUsage();
  const t = performance.now();
  await fn();
  const used = process.cpuUsage(cpu);
  return { wallMs: round(performance.now() - t, 1), cpuMs: round((used.user + used.system) / 1000, 1) };
}

async function child(src: string, files: number): Promise<ChildResult> {
  const mod = async <T>(p: string) => (await import(pathToFileURL(join(resolve(src), p)).href)) as T;
  const { DeltaTable } = await mod<typeof import('../src/lake/delta/delta-table.ts')>('lake/delta/delta-table.ts');
  const { LocalStore } = await mod<typeof import('../src/lake/storage/local-store.ts')>('lake/storage/local-store.ts');
  const { withDeletionVectors, TIDE_PROTOCOL } =
    await mod<typeof import('../src/lake/delta/protocol-check.ts')>('lake/delta/protocol-check.ts');
  const { GoldRefresher } = await mod<typeof import('../src/reports/gold-refresh.ts')>('reports/gold-refresh.ts');
  const dir = mkdtempSync(join(tmpdir(), 'tide-bench-delta-log-'));
  try {
    const store = new LocalStore(dir);
    const root = 'silver/public.orders';
    const table = await DeltaTable.create(store, root, {
      name: 'orders',
      schema: { columns: [{ name: 'id', type: { kind: 'long' }, nullable: false }] },
      configuration: { 'delta.checkpointInterval': '10', 'delta.enableDeletionVectors': 'true' },
      protocol: withDeletionVectors(TIDE_PROTOCOL),
    });
    const now = Date.now();
    const add = (i: number, v: number) => ({
      add: {
        path: `part-${String(i).padStart(5, '0')}-6f1c0d3e-0b7a-4a55-9f5e-${String(i).padStart(12, '0')}.c000.zstd.parquet`,
        partitionValues: {},
        size: 4_000_000 + i,
        modificationTime: now,
        dataChange: true,
        stats: `{"numRecords":250000,"minValues":{"id":${i * 250000},"_tide_commit_ms":${now}},"maxValues":{"id":${i * 250000 + 249999},"_tide_commit_ms":${now}},"nullCount":{"id":0}}`,
        ...(v > 0
          ? {
              deletionVector: {
                storageType: 'u' as const,
                pathOrInlineDv: `ab^-aqEH.-t@S}K{vb[*k^${String(v).padStart(6, '0')}`,
                offset: 1 + i * 40,
                sizeInBytes: 34,
                cardinality: v * 3,
              },
            }
          : {}),
      },
    });
    let flush = 0;
    const reAddAll = async () => {
      flush++;
      const actions = table
        .files()
        .flatMap((f, i) => [{ remove: { path: f.path, deletionTimestamp: Date.now(), dataChange: true } }, add(i, flush)]);
      await table.commit(actions, { operation: 'MERGE' });
    };
    const build = await timed(async () => {
      await table.commit(
        Array.from({ length: files }, (_, i) => add(i, 0)),
        { operation: 'WRITE' },
      );
      for (let c = 0; c < COMMITS; c++) await reAddAll();
    });
    let checkpointRows = 0;
    const checkpoint = await timed(async () => {
      for (let r = 0; r < REPS; r++) checkpointRows = (await table.checkpoint()).size;
    });
    const open = await timed(async () => {
      for (let r = 0; r < REPS; r++) if (!(await DeltaTable.open(store, root))) throw new Error('the table did not open');
    });
    const views: number[] = [];
    const engine = { createView: async (_v: string, _s: unknown, _r: string, f: unknown[]) => void views.push(f.length) };
    const log = { info() {}, error() {}, warn() {}, debug() {} };
    const report = { name: 'bench', file: 'bench.sql', reads: [{ root, view: 'silver_orders', required: true, line: 1 }] };
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- a stub engine and report: only registerViews runs
    const refresher = new GoldRefresher(engine as any, store, log as any, [report as any]);
    let goldCommits: Phase = { wallMs: 0, cpuMs: 0 };
    const goldPass = await timed(async () => {
      for (let r = 0; r < REPS; r++) {
        const c = await timed(reAddAll);
        goldCommits = { wallMs: goldCommits.wallMs + c.wallMs, cpuMs: goldCommits.cpuMs + c.cpuMs };
        // eslint-disable-next-line @typescript-eslint/no-explicit-any -- see above
        await refresher.registerViews(report as any);
      }
    });
    if (views.length !== REPS || views.some((n) => n !== files))
      throw new Error(`gold saw ${views.join(',')} files, not ${files} each pass`);
    // The gold phase minus its commits: the passes alone.
    const passes = { wallMs: round(goldPass.wallMs - goldCommits.wallMs, 1), cpuMs: round(goldPass.cpuMs - goldCommits.cpuMs, 1) };
    return { files, build, checkpoint, open, goldPass: passes, checkpointRows };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  if (process.argv.includes('--child')) {
    const result = await child(arg('src', 'src'), Number(arg('child-files', '300')));
    process.stdout.write(`${JSON.stringify(result)}\n`);
    // The checkpoint DuckDB (new code) closes itself when idle; the child exits without waiting for it.
    process.exit(0);
  }
  const codes = list(arg('ab', 'new=src')).map((x) => {
    const [label, src] = x.split('=') as [string, string];
    return { label, src };
  });
  const runs: unknown[] = [];
  for (let r = 1; r <= ROUNDS; r++)
    for (const files of FILES)
      for (const { label, src } of codes) {
        const load = loadavg();
        const p = spawnSync(
          process.execPath,
          [
            '--import',
            'tsx',
            'bench/delta-log.ts',
            '--child',
            '--src',
            src,
            '--child-files',
            String(files),
            '--commits',
            String(COMMITS),
            '--reps',
            String(REPS),
          ],
          { encoding: 'utf8', maxBuffer: 1 << 26 },
        );
        if (p.status !== 0) throw new Error(`${label} child failed: ${p.stderr}`);
        const result = JSON.parse(p.stdout.trim().split('\n').at(-1)!) as ChildResult;
        runs.push({ round: r, code: label, src, load, ...result });
        say(
          `round ${r} ${label} files ${files} (load ${load.join(' ')}): checkpoint ${result.checkpoint.cpuMs} ms CPU / ${result.checkpoint.wallMs} wall, ` +
            `open ${result.open.cpuMs} / ${result.open.wallMs}, gold passes ${result.goldPass.cpuMs} / ${result.goldPass.wallMs}, ` +
            `build ${result.build.cpuMs} / ${result.build.wallMs} (${REPS} each; ${result.checkpointRows} checkpoint rows)`,
        );
      }
  writeResult(arg('name', 'delta-log'), { machine: machine(), provenance: provenance(), files: FILES, commits: COMMITS, reps: REPS, runs });
}

await main();

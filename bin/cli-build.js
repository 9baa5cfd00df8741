// The precompiled CLI: src/**/*.ts transpiled by esbuild (tsx's own compiler, already installed with it) into
// dist/<digest>/src/**/*.js, one output file per source file, so module boundaries, lazy imports and evaluation
// order are the same as under tsx. Loading plain JS skips tsx's loader hooks, which cost about 1.2 CPU s of
// every start (README → Performance → Source).
//
// Never stale: <digest> is a hash of every src/**/*.ts file's path and content, tsconfig.json, this file and
// esbuild's version. bin/tide.js computes it at each start (a few ms) and runs dist/<digest>/ only if that
// folder exists; otherwise it builds it first (about a second) — so an edit in src/ is always what runs,
// for developers, tests and CI alike. Builds go to a temporary folder renamed into place, so concurrent
// starts never see half a build. `npm ci` builds once (postinstall); `npm run build` does it by hand.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const DIST = join(ROOT, 'dist');
/** Builds kept besides the current one (a long-running `tide sink start` may still import from its own lazily). */
const KEEP = 8;

function sourceFiles() {
  return readdirSync(join(ROOT, 'src'), { recursive: true })
    .filter((f) => f.endsWith('.ts'))
    .map((f) => join('src', f))
    .sort();
}

function esbuildVersion() {
  return JSON.parse(readFileSync(join(ROOT, 'node_modules', 'esbuild', 'package.json'), 'utf8')).version;
}

/** The digest of everything the build depends on (see the top of this file). */
export function sourceDigest(files = sourceFiles()) {
  const hash = createHash('sha256');
  hash.update(`esbuild ${esbuildVersion()}\0`);
  for (const f of ['bin/cli-build.js', 'tsconfig.json', ...files]) {
    hash.update(`${f}\0`);
    hash.update(readFileSync(join(ROOT, f)));
    hash.update('\0');
  }
  return hash.digest('hex').slice(0, 16);
}

/** Transpiles `files` into dist/<digest>/ and returns that folder. */
export async function build(files = sourceFiles(), digest = sourceDigest(files)) {
  const target = join(DIST, digest);
  if (existsSync(target)) return target;
  const { build: esbuild } = await import('esbuild');
  const tmp = join(DIST, `.tmp-${process.pid}-${Date.now()}`);
  mkdirSync(tmp, { recursive: true });
  try {
    await esbuild({
      absWorkingDir: ROOT,
      entryPoints: files,
      outbase: 'src',
      outdir: join(tmp, 'src'),
      // bundle with every import external: the only way esbuild rewrites specifiers ('./x.ts' → './x.js'),
      // and each file still becomes exactly one output file.
      bundle: true,
      format: 'esm',
      platform: 'node',
      target: 'node20',
      logLevel: 'silent',
      plugins: [
        {
          name: 'one-file-per-module',
          setup(b) {
            b.onResolve({ filter: /.*/ }, (a) =>
              a.kind === 'entry-point' ? undefined : { path: a.path.replace(/\.ts$/, '.js'), external: true },
            );
          },
        },
      ],
    });
    try {
      renameSync(tmp, target);
    } catch (err) {
      // Another start built the same digest meanwhile: theirs is identical.
      if (!existsSync(target)) throw err;
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  prune(digest);
  return target;
}

/** Removes all but the newest KEEP builds (and never the current one). */
function prune(current) {
  const builds = readdirSync(DIST)
    .filter((d) => d !== current && /^[0-9a-f]{16}$/.test(d))
    .map((d) => ({ d, at: statSync(join(DIST, d)).mtimeMs }))
    .sort((a, b) => b.at - a.at);
  for (const { d } of builds.slice(KEEP)) rmSync(join(DIST, d), { recursive: true, force: true });
}

/** The CLI's entry in an up-to-date build, building it when there is none. */
export async function cliEntry() {
  const files = sourceFiles();
  const dir = await build(files, sourceDigest(files));
  return join(dir, 'src', 'cli', 'main.js');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const started = performance.now();
  const dir = await build();
  process.stdout.write(`tide: CLI built in ${dir} (${Math.round(performance.now() - started)} ms)\n`);
}

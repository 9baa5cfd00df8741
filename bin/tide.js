#!/usr/bin/env -S node --max-semi-space-size=64
// The flag: a larger young generation (V8's new space here: 34 MB by default, 134 MB with it). The sink
// decodes tens of thousands of change events a flush and keeps them until the flush commits; with the default,
// they outlive scavenges and are copied into the old space, and garbage collection took 25 % of the sink's main
// thread in the 12,000 changes/s pipeline (README "The whole pipeline, sustained"). It must be given at start
// (v8.setFlagsFromString cannot resize the young generation later): `npm run tide` and `npm run demo` pass it too,
// and `node bin/tide.js` takes it from NODE_OPTIONS (README "Running Tide's processes").
// Tide's CLI entry. Runs the precompiled CLI, dist/<digest>/ (bin/cli-build.js), which is always a build of
// the src/ in this checkout: it is built here first when src/ changed. src/ runs through tsx's loader
// instead when TIDE_CLI=tsx (stack traces with .ts paths), or when no build can be made (a read-only
// checkout, a syntax error: then tsx reports it where the module loads).
import { pathToFileURL } from 'node:url';

let entry;
if (process.env.TIDE_CLI !== 'tsx') {
  try {
    entry = await (await import('./cli-build.js')).cliEntry();
  } catch (err) {
    const why = String(err?.message ?? err).split('\n')[0];
    process.stderr.write(`tide: could not precompile src/ (${why}); running it through tsx instead\n`);
  }
}
if (entry) {
  await import(pathToFileURL(entry).href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import('../src/cli/main.ts');
}

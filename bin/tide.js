#!/usr/bin/env node
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

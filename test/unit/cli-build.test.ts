import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);

/**
 * bin/tide.js runs dist/<digest>/ (bin/cli-build.js), never a stale build: tried on a throw-away checkout
 * holding the real bin/ files, tsconfig.json and node_modules, and a tiny src/ that says which file ran.
 */
describe('the precompiled CLI', () => {
  const root = mkdtempSync(join(tmpdir(), 'tide-cli-build-'));
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  mkdirSync(join(root, 'bin'));
  mkdirSync(join(root, 'src', 'cli'), { recursive: true });
  for (const f of ['bin/tide.js', 'bin/cli-build.js', 'tsconfig.json', 'package.json']) copyFileSync(resolve(f), join(root, f));
  symlinkSync(resolve('node_modules'), join(root, 'node_modules'));
  const writeSrc = (word: string) => {
    writeFileSync(join(root, 'src', 'cli', 'word.ts'), `export const word: string = '${word}';\n`);
    writeFileSync(
      join(root, 'src', 'cli', 'main.ts'),
      `import { word } from './word.ts';\nconsole.log(JSON.stringify({ word, file: import.meta.url }));\n`,
    );
  };
  const tide = async (env: NodeJS.ProcessEnv = {}) => {
    const { stdout, stderr } = await run(process.execPath, [join(root, 'bin', 'tide.js')], { env: { ...process.env, ...env } });
    return { ...(JSON.parse(stdout) as { word: string; file: string }), stderr };
  };

  it('runs a build of the current src/, rebuilt after every edit, and src/ through tsx on request', async () => {
    writeSrc('first');
    const first = await tide();
    expect(first).toMatchObject({ word: 'first', stderr: '' });
    expect(first.file).toMatch(/\/dist\/[0-9a-f]{16}\/src\/cli\/main\.js$/);

    writeSrc('second');
    const second = await tide();
    expect(second.word).toBe('second');
    expect(second.file).not.toBe(first.file);

    writeSrc('first'); // back to the first content: its build is still there, and is the one that runs
    expect((await tide()).file).toBe(first.file);
    expect(readdirSync(join(root, 'dist')).filter((d) => !d.startsWith('.'))).toHaveLength(2);

    const viaTsx = await tide({ TIDE_CLI: 'tsx' });
    expect(viaTsx).toMatchObject({ word: 'first', file: `file://${join(root, 'src', 'cli', 'main.ts')}` });
  }, 60_000);

  it('falls back to tsx, saying why, when src/ cannot be built', async () => {
    writeSrc('third');
    writeFileSync(join(root, 'src', 'cli', 'broken.ts'), 'export const = ;\n');
    const { word, stderr } = await tide();
    expect(word).toBe('third');
    expect(stderr).toMatch(/^tide: could not precompile src\/ \(.*\); running it through tsx instead\n$/);
    rmSync(join(root, 'src', 'cli', 'broken.ts'));
  }, 60_000);
});

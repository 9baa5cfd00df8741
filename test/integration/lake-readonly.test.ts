import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { writeConnectorFileAt } from '../support/connector-file.ts';
import { sinkFile } from '../support/lake.ts';

/**
 * A lake directory Tide may not write (issue 10: it was reported as `ENOENT … mkdir` with a stack
 * trace, after consuming). The CLI runs as an unprivileged user (uid/gid 65534, `nobody`), since root
 * writes anywhere; the lake directory is root's with mode 0555. Tide must stop at start with a typed
 * error naming the directory and the fix.
 */
const BIN = resolve('bin/tide.js');
const NOBODY = 65534;
const canDropPrivileges = typeof process.getuid === 'function' && process.getuid() === 0;

function tideAs(args: string[], cwd: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd,
      uid: NOBODY,
      gid: NOBODY,
      env: { ...process.env, HOME: cwd, TMPDIR: cwd },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', fail);
    child.on('close', (code) => {
      clearTimeout(timer);
      done({ code, stdout, stderr });
    });
  });
}

describe.skipIf(!canDropPrivileges)('a read-only lake directory (run as uid 65534; needs root to drop privileges)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tide-readonly-'));
  const work = join(dir, 'work');
  const lake = join(dir, 'lake');
  mkdirSync(work);
  mkdirSync(lake);
  chmodSync(dir, 0o755);
  chmodSync(work, 0o777);
  chmodSync(lake, 0o555);

  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const message = (uri: string, root: string, on: string) =>
    `tide: lake (${uri}): cannot write in the lake directory ${root}: EACCES on ${on}. Make ${root} (or its parent) writable for the user Tide runs as (uid ${NOBODY}), or set lake.uri to a writable directory\n`;

  it('tide sink start stops at once with a ConnectionError naming the directory, before consuming anything', async () => {
    const file = sinkFile('readonly', 't_readonly', join(lake, 'orders'), { topics: 't_readonly.public.orders' });
    const path = join(work, 'sink.json');
    writeConnectorFileAt(path, { name: file.name, config: file.config });
    const r = await tideAs(['sink', 'start', path, '--http-port', '0'], work);
    expect(r.code).toBe(1);
    const uri = `file://${join(lake, 'orders')}`;
    expect(r.stderr.split('\n').filter((l) => l.startsWith('tide: '))).toEqual([
      message(uri, join(lake, 'orders'), join(lake, 'orders')).trimEnd(),
    ]);
    expect(readdirSync(lake)).toEqual([]);
  });

  it('tide lake optimize on it says the same; tide lake tables (reading only) works there', async () => {
    const r = await tideAs(['lake', 'optimize', '--lake', lake], work);
    expect({ code: r.code, stderr: r.stderr.replace(/\.tide-write-probe-[0-9a-f-]+/, '.tide-write-probe-<id>') }).toEqual({
      code: 1,
      stderr: message(`file://${lake}`, lake, join(lake, '.tide-write-probe-<id>')),
    });
    const tables = await tideAs(['lake', 'tables', '--lake', lake], work);
    expect(tables).toMatchObject({ code: 0, stdout: expect.stringContaining('no tables yet') });
  });
});

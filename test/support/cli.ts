import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { resolve } from 'node:path';
import { waitFor } from './kafka.ts';

const BIN = resolve('bin/tide.js');

export interface RunningCli {
  child: ChildProcess;
  /** Everything it printed so far (stdout and stderr, interleaved). */
  output: () => string;
  /** Resolves with the exit code (or the signal's name) when it exits. */
  exited: Promise<number | string>;
  /** Wait until the output matches `re`; fails with the output after `timeoutMs`. */
  waitForOutput: (re: RegExp, timeoutMs?: number) => Promise<void>;
  /** Wait for the exit, at most `timeoutMs`: undefined when it is still running then. */
  exitWithin: (timeoutMs: number) => Promise<number | string | undefined>;
}

/** `tide <args>` as a child process in `cwd`, its output kept in memory. */
export function startCli(args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): RunningCli {
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, TIDE_LOG_LEVEL: 'info', ...env },
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString('utf8')));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString('utf8')));
  const exited = new Promise<number | string>((r) => child.once('exit', (code, signal) => r(code ?? signal ?? 'unknown')));
  return {
    child,
    output: () => out,
    exited,
    waitForOutput: async (re, timeoutMs = 60_000) => {
      try {
        await waitFor(() => re.test(out), `output matching ${re}`, timeoutMs);
      } catch (err) {
        throw new Error(`${(err as Error).message}; output so far:\n${out.slice(-4000)}`);
      }
    },
    exitWithin: (timeoutMs) => Promise.race([exited, new Promise<undefined>((r) => setTimeout(() => r(undefined), timeoutMs).unref())]),
  };
}

/** A TCP port on 127.0.0.1 where nothing listens (taken from the OS, then released). */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

/** The HTTP base URL a `source start` / `sink start` printed (`… metrics http://127.0.0.1:PORT/metrics`). */
export function printedHttpUrl(output: string): string | undefined {
  return /metrics (http:\/\/[^/\s]+\/)metrics/.exec(output)?.[1];
}

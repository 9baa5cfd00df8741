import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';

const BIN = resolve('bin/tide.js');

/**
 * A parsed connector (source or sink) written back as the file a user would write: flat keys, lists
 * comma-separated; the CLI under test reads it.
 */
export function writeConnectorFileAt(path: string, file: { name: string; config: Record<string, unknown> }, indent?: number): string {
  const config = Object.fromEntries(Object.entries(file.config).map(([k, v]) => [k, Array.isArray(v) ? v.join(',') : v]));
  writeFileSync(path, JSON.stringify({ name: file.name, config }, null, indent));
  return path;
}

export interface SinkProcess {
  child: ChildProcess;
  /** Its exit code, or -9 after SIGKILL. */
  exited: Promise<number | null>;
}

/**
 * `tide sink start <connectorPath>` as a child process, its output appended to `logPath`. `crashAt`
 * (e.g. `before-commit:3`) makes it kill itself with SIGKILL at that point (src/sink/fault.ts).
 */
export function spawnSink(connectorPath: string, cwd: string, logPath: string, crashAt?: string): SinkProcess {
  const logFd = openSync(logPath, 'a');
  const env: NodeJS.ProcessEnv = { ...process.env, TIDE_LOG_LEVEL: 'info' };
  if (crashAt) env.TIDE_SINK_CRASH_AT = crashAt;
  else delete env.TIDE_SINK_CRASH_AT;
  const child = spawn(process.execPath, [BIN, 'sink', 'start', connectorPath], { cwd, stdio: ['ignore', logFd, logFd], env });
  const exited = new Promise<number | null>((r) => child.on('exit', (code, signal) => r(signal === 'SIGKILL' ? -9 : code)));
  return { child, exited };
}

import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync, rmSync, existsSync } from 'node:fs';
import { dirname } from 'node:path';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Spawn a long-running process detached from this one, with stdout/stderr
 * appended to `logFile` and its pid written to `pidFile`, so `stack down` from
 * another process can stop it later.
 */
/** `bash -c` script (dash takes only one-digit descriptors): close descriptors 3 and up (listed in /proc on Linux; nothing elsewhere), then exec "$@". */
const CLOSE_INHERITED_FDS = 'for f in /proc/self/fd/*; do n=${f##*/}; [ "$n" -gt 2 ] 2>/dev/null && eval "exec $n>&-"; done; exec "$@"';

export function spawnDetached(opts: {
  command: string;
  args: string[];
  cwd: string;
  logFile: string;
  pidFile: string;
  env?: NodeJS.ProcessEnv;
}): number {
  mkdirSync(dirname(opts.logFile), { recursive: true });
  mkdirSync(dirname(opts.pidFile), { recursive: true });
  const fd = openSync(opts.logFile, 'a');
  // Through bash, which closes every descriptor above 2 and then execs the service (same pid): a child gets
  // every descriptor its parent holds without close-on-exec (Node has no close_fds), e.g. a test runner's
  // pipes. A broker restarted from a test would keep them open for its whole life, and whoever reads their
  // other end would wait for an EOF that never comes.
  const child = spawn('bash', ['-c', CLOSE_INHERITED_FDS, 'bash', opts.command, ...opts.args], {
    cwd: opts.cwd,
    env: { ...process.env, ...opts.env },
    detached: true,
    stdio: ['ignore', fd, fd],
  });
  closeSync(fd); // the child has its own copy
  if (child.pid === undefined) throw new Error(`could not spawn ${opts.command}; see ${opts.logFile}`);
  child.unref();
  writeFileSync(opts.pidFile, String(child.pid));
  return child.pid;
}

export function readPid(pidFile: string): number | undefined {
  if (!existsSync(pidFile)) return undefined;
  const pid = Number.parseInt(readFileSync(pidFile, 'utf8').trim(), 10);
  return Number.isFinite(pid) ? pid : undefined;
}

export function isPidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** SIGTERM the process group, wait up to `graceMs`, then SIGKILL. Removes the pid file. */
export async function stopPid(pidFile: string, graceMs = 20_000): Promise<void> {
  const pid = readPid(pidFile);
  if (pid !== undefined && isPidAlive(pid)) {
    signalGroup(pid, 'SIGTERM');
    const deadline = Date.now() + graceMs;
    while (isPidAlive(pid) && Date.now() < deadline) await sleep(100);
    if (isPidAlive(pid)) signalGroup(pid, 'SIGKILL');
    while (isPidAlive(pid)) await sleep(50);
  }
  rmSync(pidFile, { force: true });
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    try {
      process.kill(pid, signal);
    } catch {
      /* already gone */
    }
  }
}

/** True if something accepts TCP connections on 127.0.0.1:port. */
export function portOpen(port: number, host = '127.0.0.1', timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** Poll `check` until it resolves true or `timeoutMs` passes. */
export async function waitUntil(check: () => Promise<boolean>, timeoutMs: number, intervalMs = 250): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await check()) return true;
    } catch {
      /* not ready yet */
    }
    if (Date.now() >= deadline) return false;
    await sleep(intervalMs);
  }
}

/** Last `lines` lines of a log file, for error messages. */
export function tailFile(path: string, lines = 20): string {
  if (!existsSync(path)) return '(no log yet)';
  return readFileSync(path, 'utf8').split('\n').slice(-lines).join('\n');
}

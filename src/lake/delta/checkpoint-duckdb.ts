import { DuckDBInstance } from '@duckdb/node-api';

/**
 * The DuckDB instance that reads and writes Parquet checkpoints (checkpoint.ts), shared by every
 * table of the process. A new instance per checkpoint cost more than the checkpoint itself for small
 * ones: creating and closing an instance (buffer manager, catalog, thread pool) took 3.6 s of the
 * sink's main thread in a 5-minute pipeline run (closeSync alone), as gold opened tables from their
 * checkpoints on every pass (README "Sink and lake").
 *
 * One thread and a small memory limit: checkpoints are a few MB, and the sink's own engines keep
 * the cores. Each use gets its own connection, so tables checkpoint concurrently. The instance closes
 * itself after IDLE_CLOSE_MS without use (an unref'd timer: it never keeps a process alive), and
 * `closeCheckpointDuckDB` closes it at once (on shutdown); the next use opens a new one.
 */

/** How long an unused instance stays open. */
export const IDLE_CLOSE_MS = 60_000;
/** DuckDB's options for it: one thread, and memory for checkpoints of many thousand files. */
const OPTIONS = { threads: '1', memory_limit: '512MB' };

interface Shared {
  instance: Promise<DuckDBInstance>;
  users: number;
  idle?: NodeJS.Timeout;
  /** closeCheckpointDuckDB was called while in use: it closes when the last user is done. */
  closing?: boolean;
}

let shared: Shared | undefined;

export type RunSql = (sql: string) => Promise<Record<string, unknown>[]>;

/** Run `fn` with a connection of the shared instance (opened on first use); rows come back as JSON values. */
export async function withCheckpointDuckDB<T>(fn: (run: RunSql) => Promise<T>): Promise<T> {
  const s = acquire();
  try {
    const connection = await (await s.instance).connect();
    try {
      return await fn(async (sql) => (await connection.runAndReadAll(sql)).getRowObjectsJson() as Record<string, unknown>[]);
    } finally {
      connection.closeSync();
    }
  } finally {
    release(s);
  }
}

function acquire(): Shared {
  if (!shared) {
    const instance = DuckDBInstance.create(':memory:', OPTIONS);
    // A failed create is not cached: the next use tries again.
    instance.catch(() => {
      if (shared?.instance === instance) shared = undefined;
    });
    shared = { instance, users: 0 };
  }
  clearTimeout(shared.idle);
  shared.idle = undefined;
  shared.users++;
  return shared;
}

function release(s: Shared): void {
  s.users--;
  if (s.users > 0) return;
  if (s.closing || shared !== s) {
    void closeInstance(s);
    return;
  }
  s.idle = setTimeout(() => {
    if (shared === s && s.users === 0) {
      shared = undefined;
      void closeInstance(s);
    }
  }, IDLE_CLOSE_MS);
  s.idle.unref();
}

async function closeInstance(s: Shared): Promise<void> {
  clearTimeout(s.idle);
  try {
    (await s.instance).closeSync();
  } catch {
    // It never opened (the use that created it saw why), or it is closed already.
  }
}

/**
 * Close the shared instance (the sink's shutdown; tests): at once when idle, else when its last use
 * ends. A later checkpoint opens a new one.
 */
export async function closeCheckpointDuckDB(): Promise<void> {
  const s = shared;
  if (!s) return;
  shared = undefined;
  if (s.users > 0) s.closing = true;
  else await closeInstance(s);
}

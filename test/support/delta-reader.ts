import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

/**
 * delta-rs (the `deltalake` PyPI package) as an independent reader of the tables Tide writes:
 * runs scripts/delta_reader.py with the project's venv and returns what it printed.
 */

const repo = fileURLToPath(new URL('../../', import.meta.url));
const python = `${repo}.cache/venv/bin/python`;
const script = `${repo}scripts/delta_reader.py`;

export interface DeltaRsView {
  version: number;
  protocol: { min_reader_version: number; min_writer_version: number; reader_features: string[] | null; writer_features: string[] | null };
  partition_columns: string[];
  configuration: Record<string, string>;
  /** delta-rs's schema JSON ({"type":"struct","fields":[…]}). */
  schema: { type: 'struct'; fields: { name: string; type: unknown; nullable: boolean; metadata: Record<string, unknown> }[] };
  /** Absolute paths of the data files, sorted. */
  files: string[];
  row_count: number;
  columns: string[];
  /** Sorted by all columns; decimals as strings, timestamps ISO UTC with microseconds, binary hex, dates YYYY-MM-DD. */
  rows: unknown[][];
  txn: Record<string, number | null>;
  file_schemas?: Record<string, Record<string, string>>;
}

export function deltaReaderAvailable(): boolean {
  return existsSync(python);
}

/** Read the table at `tableUri` (a local directory or URI) with delta-rs, at `options.version` or the latest. */
export async function readWithDeltaRs(
  tableUri: string,
  options: { version?: number; appIds?: string[]; fileSchemas?: boolean } = {},
): Promise<DeltaRsView> {
  if (!deltaReaderAvailable())
    throw new Error(`the delta-rs reader needs the Python venv ${python}, which is missing: run \`bash scripts/setup-python.sh\``);
  const args = [script, tableUri];
  if (options.version !== undefined) args.push('--version', String(options.version));
  for (const id of options.appIds ?? []) args.push('--app-id', id);
  if (options.fileSchemas) args.push('--file-schemas');
  try {
    const { stdout } = await promisify(execFile)(python, args, { maxBuffer: 256 * 1024 * 1024, timeout: 120_000 });
    return JSON.parse(stdout) as DeltaRsView;
  } catch (e) {
    const err = e as Error & { stderr?: string };
    throw new Error(
      `delta-rs could not read ${tableUri}${options.version !== undefined ? ` at version ${options.version}` : ''}: ${err.stderr?.trim() || err.message}`,
      {
        cause: e,
      },
    );
  }
}

/** Run a Python snippet in the venv (e.g. to have delta-rs write a table for Tide to read); returns stdout. */
export async function runDeltaRsPython(code: string, args: string[] = []): Promise<string> {
  if (!deltaReaderAvailable())
    throw new Error(`delta-rs needs the Python venv ${python}, which is missing: run \`bash scripts/setup-python.sh\``);
  try {
    return (await promisify(execFile)(python, ['-c', code, ...args], { timeout: 120_000 })).stdout;
  } catch (e) {
    const err = e as Error & { stderr?: string };
    throw new Error(`python (delta-rs) failed: ${err.stderr?.trim() || err.message}`, { cause: e });
  }
}

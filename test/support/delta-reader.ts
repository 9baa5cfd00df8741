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
  /** With `history: true`: delta-rs's commit history, newest first (its `version`, and the commitInfo fields). */
  history?: DeltaRsCommit[];
}

export interface DeltaRsCommit {
  version: number;
  operation?: string;
  operationParameters?: Record<string, unknown>;
  timestamp?: number;
  [field: string]: unknown;
}

export interface DeltaRsReadOptions {
  version?: number;
  appIds?: string[];
  fileSchemas?: boolean;
  history?: boolean;
  /** delta-rs storage options for an object-store URI (see `azuriteStorageOptions`); passed in the environment, not argv. */
  storageOptions?: Record<string, string>;
}

/**
 * delta-rs's storage options for an Azure account given by a connection string (the local azurite's
 * from .stack/env). deltalake 1.6.6 (object_store's MicrosoftAzureBuilder) takes `account_name`,
 * `account_key`, `azure_storage_endpoint` and `allow_http`. The endpoint is the connection string's
 * BlobEndpoint as is: azurite's is path-style (`http://127.0.0.1:<port>/devstoreaccount1`), and
 * object_store puts the container after it. (`azure_storage_use_emulator` would instead go to port
 * 10000 unless AZURITE_BLOB_STORAGE_URL is set; the stack's azurite runs on TIDE_AZURITE_PORT.)
 */
export function azuriteStorageOptions(connectionString: string): Record<string, string> {
  const field = (name: string): string => {
    const m = new RegExp(`(?:^|;)\\s*${name}=([^;]+)`, 'i').exec(connectionString);
    if (!m?.[1])
      throw new Error(`the Azure connection string has no ${name}=…; delta-rs needs it (the stack's azurite one is in .stack/env)`);
    return m[1].trim();
  };
  const endpoint = field('BlobEndpoint');
  return {
    account_name: field('AccountName'),
    account_key: field('AccountKey'),
    azure_storage_endpoint: endpoint.replace(/\/+$/, ''),
    allow_http: String(endpoint.startsWith('http:')),
  };
}

/**
 * delta-rs's storage options for an S3-compatible store (the local stack's versitygw, from the
 * TIDE_S3_* settings in .stack/env). deltalake 1.6.6 (object_store's AmazonS3Builder) takes
 * `aws_endpoint`, `aws_access_key_id`, `aws_secret_access_key`, `aws_region`, `aws_allow_http`;
 * path-style requests are its default with a custom endpoint. `aws_conditional_put: etag` makes its
 * own writes use `If-None-Match: *` (object_store's S3ConditionalPut::ETagMatch), as Tide's do.
 */
export function s3StorageOptions(env: Record<string, string | undefined>): Record<string, string> {
  const need = (name: string): string => {
    const v = env[name];
    if (!v) throw new Error(`${name} is not set; delta-rs needs it (npm run stack:up writes it to .stack/env)`);
    return v;
  };
  const endpoint = need('TIDE_S3_ENDPOINT');
  return {
    aws_endpoint: endpoint,
    aws_access_key_id: need('TIDE_S3_ACCESS_KEY_ID'),
    aws_secret_access_key: need('TIDE_S3_SECRET_ACCESS_KEY'),
    aws_region: need('TIDE_S3_REGION'),
    aws_allow_http: String(endpoint.startsWith('http:')),
    aws_conditional_put: 'etag',
  };
}

export function deltaReaderAvailable(): boolean {
  return existsSync(python);
}

/** Read the table at `tableUri` (a local directory or URI) with delta-rs, at `options.version` or the latest. */
export async function readWithDeltaRs(tableUri: string, options: DeltaRsReadOptions = {}): Promise<DeltaRsView> {
  if (!deltaReaderAvailable())
    throw new Error(`the delta-rs reader needs the Python venv ${python}, which is missing: run \`bash scripts/setup-python.sh\``);
  const args = [script, tableUri];
  if (options.version !== undefined) args.push('--version', String(options.version));
  for (const id of options.appIds ?? []) args.push('--app-id', id);
  if (options.fileSchemas) args.push('--file-schemas');
  if (options.history) args.push('--history');
  const env = options.storageOptions
    ? { ...process.env, DELTA_READER_STORAGE_OPTIONS: JSON.stringify(options.storageOptions) }
    : process.env;
  try {
    return JSON.parse(await execVenvPython(args, { timeout: 120_000, env })) as DeltaRsView;
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

/**
 * `python <args>` in the venv. A process that aborted in native code before answering ("terminate called
 * without an active exception", SIGABRT: seen once in CI in a delta-rs read that passes on every rerun) is
 * run once more, with a warning; any other failure, or a second abort, is the caller's error.
 */
export async function execVenvPython(args: string[], opts: { timeout: number; env?: NodeJS.ProcessEnv }): Promise<string> {
  const run = () => promisify(execFile)(python, args, { maxBuffer: 256 * 1024 * 1024, ...opts });
  try {
    return (await run()).stdout;
  } catch (e) {
    const err = e as Error & { stderr?: string; signal?: string };
    if (err.signal !== 'SIGABRT' && !/terminate called/.test(err.stderr ?? '')) throw e;
    console.warn(`python (delta-rs) aborted in native code (${err.stderr?.trim() || err.signal}); running it once more`);
    return (await run()).stdout;
  }
}

/** Run a Python snippet in the venv (e.g. to have delta-rs write a table for Tide to read); returns stdout. */
export async function runDeltaRsPython(code: string, args: string[] = []): Promise<string> {
  if (!deltaReaderAvailable())
    throw new Error(`delta-rs needs the Python venv ${python}, which is missing: run \`bash scripts/setup-python.sh\``);
  try {
    return await execVenvPython(['-c', code, ...args], { timeout: 120_000 });
  } catch (e) {
    const err = e as Error & { stderr?: string };
    throw new Error(`python (delta-rs) failed: ${err.stderr?.trim() || err.message}`, { cause: e });
  }
}

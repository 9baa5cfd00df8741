import { ConfigError, TideError } from '../errors.ts';
import { DeltaTable } from './delta/delta-table.ts';
import type { ObjectStore } from './storage/object-store.ts';

/**
 * What the lake holds: every Delta table under the layer folders, with the facts `tide lake tables`
 * prints. Freshness comes from the tables themselves: the newest `_commit_ts` (the source commit
 * time of the newest change applied), read from the file statistics, so no data file is opened.
 */
export const LAYERS = ['bronze', 'silver', 'gold'] as const;

export interface TableInfo {
  /** e.g. `silver.orders` */
  name: string;
  root: string;
  version: number;
  files: number;
  bytes: number;
  rows: number | null;
  lastCommitMs: number | null;
  /** Newest source commit applied (ms), when the table has a `_commit_ts` column. */
  newestChangeMs: number | null;
}

/** A table named on the command line (or by a caller) has no Delta log in the lake; lists the tables there are. */
export class LakeTableNotFoundError extends TideError {
  constructor(
    readonly table: string,
    readonly lake: string,
    readonly known: string[],
  ) {
    super(
      `no Delta table ${table} in the lake ${lake} (looked for ${lake}/${tableRoot(table)}/_delta_log/). ` +
        `Tables in this lake: ${known.join(', ') || "none yet (is the sink running, and is --lake the sink's lake.uri?)"}`,
    );
    this.name = 'LakeTableNotFoundError';
  }
}

/** Table roots: folders that contain `_delta_log/`. */
export async function listTableRoots(store: ObjectStore): Promise<string[]> {
  const roots = new Set<string>();
  for (const layer of LAYERS) {
    for (const o of await store.list(`${layer}/`)) {
      const i = o.path.indexOf('/_delta_log/');
      if (i > 0) roots.add(o.path.slice(0, i));
    }
  }
  return [...roots].sort();
}

/** `silver.orders` → `silver/orders`; a path is returned as is. */
export function tableRoot(nameOrPath: string): string {
  if (nameOrPath.includes('/')) return nameOrPath.replace(/\/+$/, '');
  const dot = nameOrPath.indexOf('.');
  if (dot < 0)
    throw new ConfigError(
      '<table>',
      `"${nameOrPath}" is not a lake table name: use <layer>.<table>, e.g. silver.orders or gold.daily_billing (\`tide lake tables\` lists them)`,
    );
  return `${nameOrPath.slice(0, dot)}/${nameOrPath.slice(dot + 1)}`;
}

export async function openTable(store: ObjectStore, nameOrPath: string): Promise<DeltaTable> {
  const root = tableRoot(nameOrPath);
  const table = await DeltaTable.open(store, root);
  if (!table) {
    const known = (await listTableRoots(store)).map((r) => r.replace('/', '.'));
    throw new LakeTableNotFoundError(nameOrPath, store.uri, known);
  }
  return table;
}

export async function tableInfo(store: ObjectStore, root: string): Promise<TableInfo | undefined> {
  const table = await DeltaTable.open(store, root);
  if (!table) return undefined;
  const files = table.files();
  let rows: number | null = 0;
  let newest: number | null = null;
  for (const f of files) {
    const stats = f.stats ? (JSON.parse(f.stats) as { numRecords?: number; maxValues?: Record<string, unknown> }) : undefined;
    // A deletion vector's rows are not in the table (numRecords counts the file's rows: PROTOCOL.md "Per-file Statistics").
    if (rows !== null) rows = stats?.numRecords === undefined ? null : rows + stats.numRecords - (f.deletionVector?.cardinality ?? 0);
    const ts = stats?.maxValues?._commit_ts;
    if (typeof ts === 'string') {
      const ms = Date.parse(ts);
      if (!Number.isNaN(ms) && (newest === null || ms > newest)) newest = ms;
    }
  }
  const lastCommit = await store.stat(`${root}/_delta_log/${String(table.version).padStart(20, '0')}.json`);
  return {
    name: root.replace('/', '.'),
    root,
    version: table.version,
    files: files.length,
    bytes: files.reduce((n, f) => n + f.size, 0),
    rows,
    lastCommitMs: lastCommit?.modified ?? null,
    newestChangeMs: newest,
  };
}

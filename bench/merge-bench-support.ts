/**
 * What the merge benchmarks (bench/silver-merge.ts, bench/history-merge.ts) share: their flags, the load
 * average, a Delta table written by DuckDB straight to Parquet (plain or with deletion vectors), random
 * keys to update, and the result file.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AddAction } from '../src/lake/delta/actions.ts';
import { DeltaTable } from '../src/lake/delta/delta-table.ts';
import { TIDE_PROTOCOL, withDeletionVectors } from '../src/lake/delta/protocol-check.ts';
import type { LakeSchema } from '../src/lake/lake-schema.ts';
import type { ParquetEngine } from '../src/lake/parquet/parquet-engine.ts';
import type { ObjectStore } from '../src/lake/storage/object-store.ts';
import { PROJECT_ROOT } from '../src/stack/context.ts';
import { say } from './bench-common.ts';

/** The value of `--name` on the command line, or `def`. */
export const arg = (name: string, def: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : def;
};

/** A comma-separated flag value as a list ('' → none). */
export const list = (raw: string): string[] => raw.split(',').filter((x) => x.trim() !== '');

export const loadavg = (): number[] => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number);

/** Orders start here: `BASE_MS + id * 1000` is an order's time in the tables and rows the benchmarks build. */
export const BASE_MS = Date.UTC(2026, 0, 1);

/**
 * DuckDB SQL for the columns of `public.orders` (ORDERS_COLUMNS) of the order whose key is the integer
 * expression `k`, in version `v` (an expression; 0 as inserted: the version moves status and updated_at).
 */
export function ordersColumnsSql(k: string, v = '0'): string {
  const micros = `(${BASE_MS}::BIGINT + ${k} * 1000) * 1000`;
  return [
    `${k}::BIGINT AS id, (536365 + ${k})::VARCHAR AS transaction_no, make_timestamp(${micros}) AS ordered_at,`,
    `(12346 + ${k} % 4000)::INTEGER AS customer_id, (['placed','paid','shipped','cancelled'])[1 + (${k} + ${v}) % 4] AS status,`,
    `'{"channel":"web","country":"France","gift":false}' AS attributes, make_timestamp(${micros}) AS created_at,`,
    `make_timestamp(${micros} + ${v} * 1000000) AS updated_at`,
  ].join(' ');
}

/**
 * A Delta table at `root` holding the rows of `select` (DuckDB SQL), written by DuckDB straight to
 * Parquet in one commit, as the sink's first load would leave it; `dv`: with `delta.enableDeletionVectors`
 * and the protocol that declares them.
 */
export async function buildDeltaTable(
  engine: ParquetEngine,
  store: ObjectStore,
  root: string,
  schema: LakeSchema,
  select: string,
  dv: boolean,
  targetFileRows?: number,
): Promise<DeltaTable> {
  const table = await DeltaTable.create(store, root, {
    name: root,
    schema,
    configuration: dv ? { 'delta.enableDeletionVectors': 'true' } : {},
    ...(dv ? { protocol: withDeletionVectors(TIDE_PROTOCOL) } : {}),
  });
  const adds = await engine.writeFiles(select, { store, root, schema, targetFileRows });
  await table.commit(
    adds.map((add: AddAction) => ({ add })),
    { operation: 'WRITE' },
  );
  return table;
}

/** `n` distinct keys of [0, keys), uniformly at random. */
export function randomKeys(keys: number, n: number): number[] {
  const ids = new Set<number>();
  while (ids.size < n) ids.add(Math.floor(Math.random() * keys));
  return [...ids];
}

/** Write `result` as JSON to bench/results/<name>-<UTC date and minute>.json. */
export function writeResult(name: string, result: unknown): void {
  const out = join(PROJECT_ROOT, 'bench', 'results');
  mkdirSync(out, { recursive: true });
  const file = join(out, `${name}-${new Date().toISOString().slice(0, 16).replace(/:/g, '')}.json`);
  writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
  say(`wrote ${file}`);
}

/** The SELECT of a history of `versions` rows: versions/2 keys, each a closed version (LSN 1) and a current one (LSN 2). */
export function historyVersionsSql(versions: number): string {
  const micros = `(${BASE_MS}::BIGINT + k * 1000) * 1000`;
  return [
    `SELECT ${ordersColumnsSql('k', 'v')},`,
    `make_timestamp(${micros} + v * 1000000) AS _valid_from,`,
    `CASE WHEN v = 0 THEN make_timestamp(${micros} + 1000000) END AS _valid_to, v = 1 AS _is_current,`,
    `(v + 1)::BIGINT AS _commit_lsn, k::BIGINT AS _event_index`,
    `FROM range(${Math.ceil(versions / 2)}) t(k), range(2) u(v) ORDER BY k, v`,
  ].join(' ');
}

import { createHash } from 'node:crypto';
import { Kafka, logLevel } from 'kafkajs';
import pg from 'pg';
import { parseConnectorFile } from '../../src/config/source-config.ts';
import { sinkConfigSchema, type SinkConfig } from '../../src/config/sink-config.ts';
import type { ConnectorFile } from '../../src/config/source-config.ts';
import { DeltaTable } from '../../src/lake/delta/delta-table.ts';
import type { ObjectStore } from '../../src/lake/storage/object-store.ts';
import { txnAppId } from '../../src/sink/offsets.ts';
import { sinkObserver } from '../../src/ops/sink-metrics.ts';
import { SinkWorker } from '../../src/sink/sink-worker.ts';
import { bronzePath, historyPath, silverPath } from '../../src/sink/table-layout.ts';
import { waitFor } from './kafka.ts';
import { ORDER_REPORTS_DIR } from './order-reports.ts';

export const ORDER_TABLES = ['public.customers', 'public.products', 'public.orders', 'public.order_items'];
/** The primary-key columns of the order app's tables. */
export const ORDER_KEYS: Record<string, string[]> = {
  'public.customers': ['id'],
  'public.products': ['product_no'],
  'public.orders': ['id'],
  'public.order_items': ['id'],
};
export const MASK_SALT = 'test-salt-0123456789';

export function sinkFile(
  name: string,
  topicPrefix: string,
  lakeUri: string,
  extra: Record<string, unknown> = {},
): ConnectorFile<SinkConfig> {
  return parseConnectorFile(
    {
      name,
      config: {
        topics: ORDER_TABLES.map((t) => `${topicPrefix}.${t}`).join(','),
        'kafka.bootstrap.servers': process.env.KAFKA_BROKERS ?? '127.0.0.1:59092',
        'schema.registry.url': process.env.SCHEMA_REGISTRY_URL ?? 'http://127.0.0.1:58081/apis/ccompat/v7',
        'lake.uri': lakeUri,
        'mask.hash.columns': 'public\\.customers\\.email',
        'mask.hash.salt': MASK_SALT,
        'silver.history.tables': 'public\\.orders',
        'flush.interval.ms': 300,
        'gold.refresh.interval.ms': 0,
        'gold.reports.dir': ORDER_REPORTS_DIR,
        'dead.letter.topic': `${name}.dlq`,
        ...extra,
      },
    },
    sinkConfigSchema,
    `test:${name}`,
  );
}

export interface RunningSink {
  worker: SinkWorker;
  done: Promise<void>;
  stop: () => Promise<void>;
}

export function startSink(file: ConnectorFile<SinkConfig>, store?: ObjectStore): RunningSink {
  const abort = new AbortController();
  const worker = new SinkWorker(file, { store, observer: sinkObserver(file.name) });
  const done = worker.run(abort.signal);
  done.catch(() => undefined);
  return {
    worker,
    done,
    stop: async () => {
      abort.abort();
      await done;
    },
  };
}

/** The high watermark of every partition of `topics`. */
export async function highWatermarks(topics: string[]): Promise<{ topic: string; partition: number; high: bigint }[]> {
  const kafka = new Kafka({ brokers: (process.env.KAFKA_BROKERS ?? '127.0.0.1:59092').split(','), logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  try {
    const out = [];
    for (const topic of topics)
      for (const p of await admin.fetchTopicOffsets(topic)) out.push({ topic, partition: p.partition, high: BigInt(p.high) });
    return out;
  } finally {
    await admin.disconnect();
  }
}

/** Wait until bronze and silver of every table have committed every message Kafka holds now (read from the Delta logs). */
export async function waitForLake(
  store: ObjectStore,
  sinkName: string,
  topicPrefix: string,
  timeoutMs = 120_000,
  /** Also wait for silver.orders_history (kept in sinkFile's default config; history-lane.ts may merge it later than silver). */
  history = true,
): Promise<void> {
  const marks = await highWatermarks(ORDER_TABLES.map((t) => `${topicPrefix}.${t}`));
  await waitFor(
    async () => {
      for (const t of ORDER_TABLES) {
        const roots = [bronzePath(t), silverPath(t), ...(history && t === 'public.orders' ? [historyPath(t)] : [])];
        for (const root of roots) {
          const table = await DeltaTable.open(store, root);
          for (const m of marks.filter((x) => x.topic === `${topicPrefix}.${t}` && x.high > 0n)) {
            const v = table?.txnVersion(txnAppId(sinkName, m.topic, m.partition));
            if (v === undefined || BigInt(v) < m.high - 1n) return false;
          }
        }
      }
      return true;
    },
    'the lake to commit every message in Kafka',
    timeoutMs,
  );
}

/**
 * A table's rows from Postgres as canonical text (the form the comparison uses on both sides):
 * timestamps as UTC `YYYY-MM-DD HH:MM:SS.ffffff`, numerics as Postgres prints them, jsonb as text.
 */
export async function postgresRows(dbUrl: string, table: string): Promise<Record<string, string | null>[]> {
  const c = new pg.Client({ connectionString: dbUrl });
  await c.connect();
  try {
    const [schema, name] = table.split('.');
    const cols = await c.query<{ column_name: string; data_type: string }>(
      `SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position`,
      [schema, name],
    );
    const select = cols.rows
      .map((r) =>
        r.data_type === 'timestamp with time zone'
          ? `to_char("${r.column_name}" AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') AS "${r.column_name}"`
          : `"${r.column_name}"::text AS "${r.column_name}"`,
      )
      .join(', ');
    return (await c.query<Record<string, string | null>>(`SELECT ${select} FROM ${table}`)).rows;
  } finally {
    await c.end();
  }
}

/** One value as canonical text (see postgresRows). */
export function canonical(v: unknown): string | null {
  if (v === null || v === undefined) return null;
  if (typeof v === 'string') {
    const ts = /^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(?:Z|[+-]00(?::?00)?)?$/.exec(v);
    if (ts) return `${ts[1]} ${ts[2]}.${(ts[3] ?? '').padEnd(6, '0').slice(0, 6)}`;
    return v;
  }
  return String(v);
}

export interface TableDiff {
  missing: string[];
  extra: string[];
  different: { key: string; column: string; expected: string | null; actual: string | null }[];
  expectedChecksum: string;
  actualChecksum: string;
}

/**
 * Compare two tables row for row by key over `columns`: a checksum over each whole table, and on a
 * difference the keys that are missing, extra or different (with the first differing values).
 */
export function diffTables(
  expected: Record<string, unknown>[],
  actual: Record<string, unknown>[],
  key: string[],
  columns: string[],
): TableDiff {
  const index = (rows: Record<string, unknown>[]) => {
    const m = new Map<string, string[]>();
    for (const r of rows)
      m.set(
        key.map((k) => canonical(r[k])).join('|'),
        columns.map((c) => canonical(r[c]) ?? '\u0000NULL'),
      );
    return m;
  };
  const e = index(expected);
  const a = index(actual);
  const checksum = (m: Map<string, string[]>) => {
    const h = createHash('sha256');
    for (const k of [...m.keys()].sort()) h.update(`${k}\u0001${m.get(k)!.join('\u0002')}\n`);
    return h.digest('hex');
  };
  const diff: TableDiff = { missing: [], extra: [], different: [], expectedChecksum: checksum(e), actualChecksum: checksum(a) };
  for (const [k, row] of e) {
    const other = a.get(k);
    if (!other) diff.missing.push(k);
    else {
      const i = row.findIndex((v, j) => v !== other[j]);
      if (i >= 0) diff.different.push({ key: k, column: columns[i]!, expected: row[i]!, actual: other[i]! });
    }
  }
  for (const k of a.keys()) if (!e.has(k)) diff.extra.push(k);
  return diff;
}

export function describeDiff(table: string, d: TableDiff): string {
  if (d.expectedChecksum === d.actualChecksum) return `${table}: equal (checksum ${d.expectedChecksum.slice(0, 12)})`;
  return [
    `${table}: checksums differ (${d.expectedChecksum.slice(0, 12)} vs ${d.actualChecksum.slice(0, 12)})`,
    `  missing keys (${d.missing.length}): ${d.missing.slice(0, 20).join(', ')}`,
    `  extra keys (${d.extra.length}): ${d.extra.slice(0, 20).join(', ')}`,
    `  different (${d.different.length}): ${d.different
      .slice(0, 10)
      .map((x) => `${x.key}.${x.column}: ${x.expected} != ${x.actual}`)
      .join('; ')}`,
  ].join('\n');
}

/**
 * Check silver.<table>_history (SCD type 2) against bronze and Postgres: per key, the versions are
 * exactly bronze's c/r/u events in commit order, each valid until the key's next change; the current
 * versions equal the rows in Postgres (expected rows given in canonical form, keyed like `key`).
 */
export function checkHistory(
  history: { columns: string[]; rows: unknown[][] },
  bronze: { columns: string[]; rows: unknown[][] },
  expected: Record<string, unknown>[],
  key: string,
): string[] {
  const problems: string[] = [];
  const h = (r: unknown[], c: string) => r[history.columns.indexOf(c)];
  const b = (r: unknown[], c: string) => r[bronze.columns.indexOf(c)];
  const pos = (lsn: unknown, idx: unknown) => `${String(lsn).padStart(20, '0')}:${String(idx).padStart(10, '0')}`;
  const byKey = new Map<string, unknown[][]>();
  for (const r of history.rows) {
    const k = String(h(r, key));
    if (!byKey.has(k)) byKey.set(k, []);
    byKey.get(k)!.push(r);
  }
  const events = new Map<string, unknown[][]>();
  for (const r of bronze.rows) {
    const k = String(b(r, key));
    if (!events.has(k)) events.set(k, []);
    events.get(k)!.push(r);
  }
  for (const [k, evs] of events) {
    evs.sort((x, y) => (pos(b(x, '_commit_lsn'), b(x, '_event_index')) < pos(b(y, '_commit_lsn'), b(y, '_event_index')) ? -1 : 1));
    const versions = (byKey.get(k) ?? []).sort((x, y) =>
      pos(h(x, '_commit_lsn'), h(x, '_event_index')) < pos(h(y, '_commit_lsn'), h(y, '_event_index')) ? -1 : 1,
    );
    const upserts = evs.filter((e) => b(e, '_op') !== 'd');
    if (versions.length !== upserts.length) {
      problems.push(`key ${k}: ${versions.length} versions in history, ${upserts.length} c/r/u events in bronze`);
      continue;
    }
    versions.forEach((v, i) => {
      const e = upserts[i]!;
      if (pos(h(v, '_commit_lsn'), h(v, '_event_index')) !== pos(b(e, '_commit_lsn'), b(e, '_event_index')))
        problems.push(`key ${k}: version ${i} is not event ${i}`);
      const next = evs[evs.indexOf(e) + 1];
      const validTo = canonical(h(v, '_valid_to'));
      const want = next ? canonical(b(next, '_commit_ts')) : null;
      if (validTo !== want) problems.push(`key ${k}: version ${i} valid to ${validTo}, expected ${want}`);
      if (Boolean(h(v, '_is_current')) !== (want === null)) problems.push(`key ${k}: version ${i} _is_current is wrong`);
    });
  }
  const current = history.rows.filter((r) => h(r, '_is_current') === true);
  const exp = new Map(expected.map((r) => [String(r[key]), r]));
  if (current.length !== exp.size) problems.push(`${current.length} current versions, ${exp.size} rows in Postgres`);
  for (const r of current) {
    const want = exp.get(String(h(r, key)));
    if (!want) problems.push(`key ${String(h(r, key))} is current in history but not in Postgres`);
    else
      for (const [c, v] of Object.entries(want))
        if (canonical(h(r, c)) !== canonical(v)) problems.push(`key ${String(h(r, key))}.${c}: ${canonical(h(r, c))} != ${canonical(v)}`);
  }
  return problems;
}

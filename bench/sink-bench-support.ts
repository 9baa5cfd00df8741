/**
 * Shared pieces of the sink and lake benchmark (bench/sink-lake.ts): synthetic change events shaped
 * like the order app's `orders` table, the lake schemas the sink derives from them, and the
 * measurement helpers (percentiles, peak RSS). Re-exports bench-common.ts' helpers for the sink benches.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { round } from './bench-common.ts';
import type { LakeColumn, LakeSchema } from '../src/lake/lake-schema.ts';
import type { ChangeEvent } from '../src/sink/change-event.ts';
import type { SinkColumn } from '../src/sink/lake-columns.ts';
import { bronzeColumns } from '../src/sink/bronze-writer.ts';
import { SILVER_META } from '../src/sink/table-layout.ts';

/** Nearest-rank percentile of an ascending array (NaN when empty). */
export function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

export function median(xs: number[]): number {
  return percentile(
    [...xs].sort((a, b) => a - b),
    50,
  );
}

// ---------------------------------------------------------------------------------------------- memory

/** This process's resident set now and its peak (VmHWM) since start or the last `resetPeakRss`, in MB. */
export function rssMb(): { rss: number; peak: number } {
  const text = readFileSync('/proc/self/status', 'utf8');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN);
  return { rss: round(kb('VmRSS') / 1024, 1), peak: round(kb('VmHWM') / 1024, 1) };
}

/**
 * Reset VmHWM to the current RSS (Linux >= 4.0: writing 5 to /proc/<pid>/clear_refs), so each
 * phase reports its own peak. Returns false where the kernel refuses it; then peaks are cumulative.
 */
export function resetPeakRss(): boolean {
  try {
    writeFileSync('/proc/self/clear_refs', '5');
    return true;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------- provenance

// ---------------------------------------------------------------------------------------------- orders events

const ts: LakeColumn['type'] = { kind: 'timestamp' };
const identity = (v: unknown): unknown => v;

/**
 * The lake columns of `public.orders` as the sink reads them off the source's Avro schema
 * (prisma/migrations: id bigserial, transaction_no text, ordered_at timestamptz, customer_id int,
 * status enum → string, attributes jsonb → string, created_at/updated_at timestamptz).
 */
export const ORDERS_COLUMNS: SinkColumn[] = (
  [
    { name: 'id', type: { kind: 'long' }, nullable: false },
    { name: 'transaction_no', type: { kind: 'string' }, nullable: false },
    { name: 'ordered_at', type: ts, nullable: false },
    { name: 'customer_id', type: { kind: 'integer' }, nullable: true },
    { name: 'status', type: { kind: 'string' }, nullable: false },
    { name: 'attributes', type: { kind: 'string' }, nullable: false },
    { name: 'created_at', type: ts, nullable: false },
    { name: 'updated_at', type: ts, nullable: false },
  ] satisfies LakeColumn[]
).map((c) => ({ ...c, avroName: c.name, convert: identity }));
export const ORDERS_KEY = ['id'];
export const ORDERS_TABLE = 'public.orders';
export const ORDERS_TOPIC = 'bench.public.orders';

/** Bronze's schema for orders, as TableSink creates it (bronzeColumns). */
export const BRONZE_SCHEMA: LakeSchema = { columns: bronzeColumns(ORDERS_COLUMNS) };
/** Silver's schema for orders, as TableSink creates it: key columns not null, the rest nullable, then SILVER_META. */
export const SILVER_SCHEMA: LakeSchema = {
  columns: [
    ...ORDERS_COLUMNS.map((c) => ({ name: c.name, type: c.type, nullable: ORDERS_KEY.includes(c.name) ? false : true })),
    ...SILVER_META,
  ],
};

const STATUSES = ['placed', 'paid', 'shipped', 'cancelled'];
const COUNTRIES = ['United Kingdom', 'France', 'Germany', 'EIRE', 'Spain', 'Netherlands'];
const BASE_MS = Date.UTC(2026, 0, 1);
const PARTITIONS = 3;

/** The after image of order `id`; `version` > 0 is the version-th update (new status, attributes, updated_at). */
export function orderRow(id: number, version: number, nowMs: number): Record<string, unknown> {
  const orderedMicros = BigInt(BASE_MS + id * 1000) * 1000n;
  const attributes = JSON.stringify({
    channel: id % 3 === 0 ? 'web' : 'store',
    country: COUNTRIES[id % COUNTRIES.length],
    gift: id % 11 === 0,
    ...(version ? { note: `update ${version}`, priority: (id + version) % 5 } : {}),
  });
  return {
    id,
    transaction_no: String(536_365 + id),
    ordered_at: orderedMicros,
    customer_id: 12_346 + (id % 4_000),
    status: STATUSES[(id + version) % STATUSES.length],
    attributes,
    created_at: orderedMicros,
    updated_at: version ? BigInt(nowMs) * 1000n : orderedMicros,
  };
}

/**
 * A stream of change events in commit order, as the source would emit them: transactions of
 * `txSize` events share a commit LSN (event index 0..n-1) and commit time; events go to partition
 * id % 3 with increasing offsets per partition.
 */
export class OrderEventStream {
  private lsn = 0x1_0000_0000n;
  private readonly offsets = new Array<bigint>(PARTITIONS).fill(0n);
  private txId = 1000;

  constructor(private readonly txSize = 100) {}

  /** Events for `changes`: [id, version] pairs, version 0 = insert, > 0 = update. */
  events(changes: [number, number][]): ChangeEvent[] {
    const out: ChangeEvent[] = [];
    const nowMs = Date.now();
    for (let i = 0; i < changes.length; i++) {
      if (i % this.txSize === 0) {
        this.lsn += 0x10000n;
        this.txId++;
      }
      const [id, version] = changes[i]!;
      const partition = id % PARTITIONS;
      const offset = this.offsets[partition]!;
      this.offsets[partition] = offset + 1n;
      const after = orderRow(id, version, nowMs);
      out.push({
        topic: ORDERS_TOPIC,
        partition,
        offset,
        table: ORDERS_TABLE,
        op: version ? 'u' : 'c',
        before: null, // REPLICA IDENTITY DEFAULT: updates carry no before image
        after,
        unchangedToast: [],
        commitLsn: this.lsn,
        eventIndex: i % this.txSize,
        txId: this.txId,
        commitTsMs: nowMs,
        eventTsMs: nowMs,
        snapshot: false,
        columns: ORDERS_COLUMNS,
        valueSchemaId: 1,
        keyColumns: ORDERS_KEY,
      });
    }
    return out;
  }
}

/** Updates of the orders rows of `ids`, in one transaction at `commitLsn` (the history merge benches' batches). */
export function orderUpdates(ids: number[], commitLsn: bigint): ChangeEvent[] {
  const now = Date.now();
  return ids.map((id, index) => ({
    topic: 'bench.public.orders',
    partition: 0,
    offset: 0n,
    table: 'public.orders',
    op: 'u' as const,
    before: null,
    after: { ...orderRow(id, Number(commitLsn % 1000n) + 1, now), id: BigInt(id) },
    unchangedToast: [],
    commitLsn,
    eventIndex: index,
    txId: null,
    commitTsMs: now,
    eventTsMs: null,
    snapshot: false,
    columns: [],
    valueSchemaId: 1,
    keyColumns: ['id'],
  }));
}

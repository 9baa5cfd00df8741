import type pg from 'pg';
import type { Logger } from '../log.ts';
import type { RawRow, SnapshotMarker, TableCodec } from '../events/envelope.ts';
import type { EventPublisher } from './publisher.ts';
import type { OffsetStore, SourceOffsets } from './offset-store.ts';
import { parseLsn } from './lsn.ts';
import { quoteIdent } from './plan.ts';
import { snapshotEndMessages } from '../events/snapshot-end.ts';

/**
 * The initial snapshot: every captured row as an `op=r` event.
 *
 * - Consistent with the stream: on first start it reads inside the snapshot
 *   the slot exported when it was created, so the stream (from the slot's
 *   consistent point) holds exactly the changes the snapshot did not see.
 * - Primary-key chunks of `fetchSize` rows (keyset pagination), so memory is
 *   bounded whatever the table size.
 * - Resumable: after each chunk is acknowledged by Kafka, the last key is
 *   saved. A restarted snapshot reads on from there in a fresh snapshot; rows
 *   changed meanwhile come again through the stream, which the slot kept.
 */
export interface SnapshotArgs {
  client: pg.Client;
  exportedSnapshot: string | undefined;
  codecs: TableCodec[];
  publisher: EventPublisher;
  offsets: SourceOffsets & { snapshot: NonNullable<SourceOffsets['snapshot']> };
  store: OffsetStore;
  fetchSize: number;
  /** The end offset of each partition of a table's topic (events/snapshot-end.ts: where the markers go, and whether). */
  partitionEnds: (topic: string) => Promise<bigint[]>;
  connectorName: string;
  db: string;
  log: Logger;
  signal: AbortSignal;
  /** Counts the snapshot's read events (op r) by table, for metrics. */
  events?: { add(table: string, op: string, n?: number): void };
  onProgress: (p: { table: string; rows: number; totalRows: number; rowsPerSecond: number; etaSeconds: number | null }) => void;
}

// Raw text for every column, exactly as the stream delivers it (see pgoutput-plugin.ts).
const RAW_TEXT = { getTypeParser: () => (text: string) => text };

/**
 * source.snapshot of the i-th row (0-based) of a table with `n` rows, as Debezium's relational snapshot marks its
 * records (io.debezium.connector.SnapshotRecord): `first` on the snapshot's first record, `last` on its last,
 * `first_in_data_collection` / `last_in_data_collection` on the first and last record of every other table,
 * `true` in between.
 */
export function snapshotMarker(p: {
  firstOverall: boolean;
  lastOverall: boolean;
  firstInTable: boolean;
  lastInTable: boolean;
}): SnapshotMarker {
  if (p.lastOverall) return 'last';
  if (p.firstOverall) return 'first';
  if (p.lastInTable) return 'last_in_data_collection';
  if (p.firstInTable) return 'first_in_data_collection';
  return 'true';
}

/**
 * The commit LSN of every initial-snapshot event: one below the slot's consistent point. The stream delivers
 * exactly the transactions whose commit record starts at or after the consistent point, so every streamed
 * change sorts after every snapshot row, also one committed exactly at the consistent point.
 */
export function snapshotCommitLsn(consistentLsn: string): bigint {
  return parseLsn(consistentLsn) - 1n;
}

export async function runSnapshot(a: SnapshotArgs): Promise<'done' | 'interrupted'> {
  const progress = a.offsets.snapshot;
  const commitLsn = snapshotCommitLsn(progress.consistentLsn);
  // Resumed after a crash: the chunk that was being published when it happened may be in Kafka with indexes up to
  // the reservation; a resumed read (a fresh snapshot, rows may have come or gone) must not reuse them.
  progress.nextIndex = Math.max(progress.nextIndex, progress.reservedIndex ?? 0);
  await a.client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  try {
    if (a.exportedSnapshot) await a.client.query(`SET TRANSACTION SNAPSHOT '${a.exportedSnapshot.replace(/'/g, "''")}'`);
    const estimates = await a.client.query<{ qualified: string; rows: string }>(
      `SELECT n.nspname || '.' || c.relname AS qualified, greatest(c.reltuples, 0)::bigint AS rows
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = ANY($1::oid[])`,
      [a.codecs.map((c) => c.table.oid)],
    );
    const totalRows = estimates.rows.reduce((n, r) => n + Number(r.rows), 0);
    const started = performance.now();
    let rowsThisRun = 0;
    const doneBefore = Object.values(progress.tables).reduce((n, t) => n + t.rows, 0);
    const fromTable = (t: TableCodec['table']) => `${quoteIdent(t.schema)}.${quoteIdent(t.name)}`;
    /** Whether a table after `index` holds a row: if none does, the current table's last row is the snapshot's last. */
    const laterRows = async (index: number): Promise<boolean> => {
      for (const later of a.codecs.slice(index + 1)) {
        if (progress.tables[later.table.qualified]?.done) continue;
        const { rows } = await a.client.query(`SELECT 1 FROM ${fromTable(later.table)} LIMIT 1`);
        if (rows.length > 0) return true;
      }
      return false;
    };

    for (const [tableIndex, codec] of a.codecs.entries()) {
      const t = codec.table;
      const state = (progress.tables[t.qualified] ??= { done: false, rows: 0 });
      if (state.done) continue;
      // A re-snapshot (the topic holds records from before): consumers may hold keys the snapshot will not read
      // again, and its end gets markers. A topic that never held a record has no consumer to reconcile. Decided
      // once, before the table's first row, and kept for a resumed snapshot.
      state.markEnd ??= (await a.partitionEnds(codec.topic)).some((end) => end > 0n);
      const cols = codec.columnNames().map(quoteIdent).join(', ');
      const keys = t.keyColumns.map(quoteIdent);
      const keyIdx = t.keyColumns.map((k) => codec.columnNames().indexOf(k));
      for (;;) {
        if (a.signal.aborted) {
          await a.client.query('ROLLBACK');
          return 'interrupted';
        }
        const after = state.lastKey ? `WHERE (${keys.join(', ')}) > (${state.lastKey.map((_, i) => `$${i + 1}`).join(', ')})` : '';
        // One row more than a chunk: it tells whether this chunk holds the table's last row (for source.snapshot).
        const res = await a.client.query<string[]>({
          text: `SELECT ${cols} FROM ${fromTable(t)} ${after} ORDER BY ${keys.join(', ')} LIMIT ${a.fetchSize + 1}`,
          values: state.lastKey ?? [],
          rowMode: 'array',
          types: RAW_TEXT,
        });
        const chunk = res.rows.slice(0, a.fetchSize);
        const tableEnds = res.rows.length <= a.fetchSize;
        const snapshotEnds = tableEnds && chunk.length > 0 && !(await laterRows(tableIndex));
        const names = codec.columnNames();
        progress.reservedIndex = progress.nextIndex + chunk.length;
        a.store.write(a.offsets);
        for (const [i, values] of chunk.entries()) {
          const row: RawRow = {};
          for (let c = 0; c < names.length; c++) row[names[c]!] = values[c] ?? null;
          const index = progress.nextIndex++;
          const marker = snapshotMarker({
            firstOverall: doneBefore + rowsThisRun + i === 0,
            lastOverall: snapshotEnds && i === chunk.length - 1,
            firstInTable: state.rows === 0,
            lastInTable: tableEnds && i === chunk.length - 1,
          });
          await a.publisher.add({
            topic: codec.topic,
            key: codec.encodeKey(row),
            value: codec.encodeValue(
              'r',
              null,
              row,
              {
                name: a.connectorName,
                db: a.db,
                schema: t.schema,
                table: t.name,
                tsMs: Date.now(),
                snapshot: marker,
                txId: null,
                lsn: null,
                commitLsn,
                eventIndex: index,
              },
              index + 1,
              state.rows + 1,
            ),
          });
          state.rows++;
        }
        const last = chunk[chunk.length - 1];
        if (last) state.lastKey = keyIdx.map((i) => last[i] ?? null);
        if (tableEnds) {
          state.done = true;
          // Behind the table's last rows on every partition (the publisher keeps each partition's order): a consumer
          // that has read all of them has every row of the snapshot, and can drop the keys it did not see again
          // (issue 11 item 14). An empty table gets them too: every key downstream is then gone.
          if (state.markEnd) {
            const partitions = (await a.partitionEnds(codec.topic)).length;
            const end = { table: t.qualified, commitLsn, partitions, tsMs: Date.now() };
            for (const m of snapshotEndMessages(codec.topic, end)) await a.publisher.add(m);
          }
        }
        // The chunk is durable in Kafka before we remember it as done.
        await a.publisher.flush();
        a.store.write(a.offsets);
        rowsThisRun += chunk.length;
        a.events?.add(t.qualified, 'r', chunk.length);
        const elapsed = (performance.now() - started) / 1000;
        const rate = rowsThisRun / Math.max(elapsed, 1e-3);
        const doneRows = doneBefore + rowsThisRun;
        a.onProgress({
          table: t.qualified,
          rows: doneRows,
          totalRows,
          rowsPerSecond: rate,
          etaSeconds: totalRows > doneRows && rate > 0 ? (totalRows - doneRows) / rate : null,
        });
        if (state.done) break;
      }
      a.log.info({ table: t.qualified, rows: state.rows }, 'snapshot of table finished');
    }
    await a.client.query('COMMIT');
    progress.status = 'done';
    a.store.write(a.offsets);
    return 'done';
  } catch (err) {
    await a.client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

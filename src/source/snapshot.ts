import type pg from 'pg';
import type { Logger } from '../log.ts';
import type { RawRow, TableCodec } from '../events/envelope.ts';
import type { EventPublisher } from './publisher.ts';
import type { OffsetStore, SourceOffsets } from './offset-store.ts';
import { parseLsn } from './lsn.ts';
import { quoteIdent } from './plan.ts';

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

export async function runSnapshot(a: SnapshotArgs): Promise<'done' | 'interrupted'> {
  const progress = a.offsets.snapshot;
  const commitLsn = parseLsn(progress.consistentLsn);
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

    for (const codec of a.codecs) {
      const t = codec.table;
      const state = (progress.tables[t.qualified] ??= { done: false, rows: 0 });
      if (state.done) continue;
      const cols = codec.columnNames().map(quoteIdent).join(', ');
      const keys = t.keyColumns.map(quoteIdent);
      const keyIdx = t.keyColumns.map((k) => codec.columnNames().indexOf(k));
      for (;;) {
        if (a.signal.aborted) {
          await a.client.query('ROLLBACK');
          return 'interrupted';
        }
        const after = state.lastKey ? `WHERE (${keys.join(', ')}) > (${state.lastKey.map((_, i) => `$${i + 1}`).join(', ')})` : '';
        const res = await a.client.query<string[]>({
          text: `SELECT ${cols} FROM ${quoteIdent(t.schema)}.${quoteIdent(t.name)} ${after} ORDER BY ${keys.join(', ')} LIMIT ${a.fetchSize}`,
          values: state.lastKey ?? [],
          rowMode: 'array',
          types: RAW_TEXT,
        });
        const names = codec.columnNames();
        for (const values of res.rows) {
          const row: RawRow = {};
          for (let i = 0; i < names.length; i++) row[names[i]!] = values[i] ?? null;
          const index = progress.nextIndex++;
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
                snapshot: 'true',
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
        const last = res.rows[res.rows.length - 1];
        if (last) state.lastKey = keyIdx.map((i) => last[i] ?? null);
        if (res.rows.length < a.fetchSize) state.done = true;
        // The chunk is durable in Kafka before we remember it as done.
        await a.publisher.flush();
        a.store.write(a.offsets);
        rowsThisRun += res.rows.length;
        a.events?.add(t.qualified, 'r', res.rows.length);
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

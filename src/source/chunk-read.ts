import type pg from 'pg';
import type { SourceConfig } from '../config/source-config.ts';
import type { RawRow, TableCodec } from '../events/envelope.ts';
import type { OutgoingMessage } from '../events/kafka-producer.ts';
import { lockUnchanged } from './chunk-schema.ts';
import { quoteIdent } from './plan.ts';

/**
 * One chunk of an incremental snapshot, as Postgres gives it and as Kafka gets it (incremental-snapshot.ts
 * runs the chunks; snapshot-window.ts reconciles each with the stream).
 */

/** Every value as Postgres' text: the codec decodes it exactly as it decodes pgoutput's text columns. */
const RAW_TEXT = { getTypeParser: () => (text: string) => text };

/** Postgres' estimate of the table's rows (pg_class.reltuples), null until it was first vacuumed or analyzed. */
export async function estimatedRows(client: pg.Client, oid: number): Promise<number | null> {
  const { rows } = await client.query<{ n: string | null }>(
    `SELECT CASE WHEN reltuples < 0 THEN NULL ELSE reltuples::bigint END AS n FROM pg_class WHERE oid = $1`,
    [oid],
  );
  return rows[0]?.n == null ? null : Number(rows[0].n);
}

export interface ChunkRead {
  /** Up to `fetch` + 1 rows (one more tells whether the table has more), values as text, in key order. */
  rows: string[][];
  /** pg_current_snapshot() of the read. */
  snapshotText: string;
  /** False when the table changed since the codec's schema was read: no rows were read, read again. */
  sameTable: boolean;
}

/**
 * The chunk after `from.lastKey` (and within `from.where`) in one short REPEATABLE READ READ ONLY
 * transaction: its rows and its snapshot, from the same MVCC snapshot.
 */
export async function readChunk(
  client: pg.Client,
  codec: TableCodec,
  from: { lastKey?: (string | null)[]; where?: string },
  fetch: number,
): Promise<ChunkRead> {
  const t = codec.table;
  const names = codec.columnNames();
  const keys = t.keyColumns.map(quoteIdent);
  const conditions = [
    ...(from.lastKey ? [`(${keys.join(', ')}) > (${from.lastKey.map((_, i) => `$${i + 1}`).join(', ')})`] : []),
    ...(from.where ? [`(${from.where})`] : []),
  ];
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  try {
    const sameTable = await lockUnchanged(client, codec);
    const snapshotText = (await client.query<{ s: string }>('SELECT pg_current_snapshot()::text AS s')).rows[0]!.s;
    const rows = !sameTable
      ? []
      : (
          await client.query<string[]>({
            text: `SELECT ${names.map(quoteIdent).join(', ')} FROM ${quoteIdent(t.schema)}.${quoteIdent(t.name)}${conditions.length ? ` WHERE ${conditions.join(' AND ')}` : ''} ORDER BY ${keys.join(', ')} LIMIT ${fetch + 1}`,
            values: from.lastKey ?? [],
            rowMode: 'array',
            types: RAW_TEXT,
          })
        ).rows;
    await client.query('COMMIT');
    return { rows, snapshotText, sameTable };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

/** The first `fetch` rows as column → text. */
export function chunkRows(names: string[], rows: string[][], fetch: number): RawRow[] {
  return rows.slice(0, fetch).map((values) => {
    const row: RawRow = {};
    for (let c = 0; c < names.length; c++) row[names[c]!] = values[c] ?? null;
    return row;
  });
}

/** The chunk's Kafka messages: op r, source.snapshot incremental, at `commitLsn`, event_index 0… in order. */
export function* chunkMessages(
  codec: TableCodec,
  rows: RawRow[],
  commitLsn: bigint,
  config: Pick<SourceConfig, 'topic.prefix' | 'database.dbname'>,
): Generator<OutgoingMessage> {
  const t = codec.table;
  for (const [i, row] of rows.entries())
    yield {
      topic: codec.topic,
      key: codec.encodeKey(row),
      value: codec.encodeValue(
        'r',
        null,
        row,
        {
          name: config['topic.prefix'],
          db: config['database.dbname'],
          schema: t.schema,
          table: t.name,
          tsMs: Date.now(),
          snapshot: 'incremental',
          txId: null,
          lsn: commitLsn,
          commitLsn,
          eventIndex: i,
        },
        i + 1,
        i + 1,
      ),
    };
}

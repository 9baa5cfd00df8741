import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeltaTable } from '../../src/lake/delta/delta-table.ts';
import { LocalStore } from '../../src/lake/storage/local-store.ts';
import { txnAppId } from '../../src/sink/offsets.ts';
import { bronzePath, historyPath, silverPath } from '../../src/sink/table-layout.ts';
import { createTestDatabase } from '../support/db.ts';
import { ConnectWorker, debeziumMissing } from '../support/debezium-connect.ts';
import { readWithDeltaRs, type DeltaRsView } from '../support/delta-reader.ts';
import { waitFor } from '../support/kafka.ts';
import { describeDiff, diffTables, highWatermarks, sinkFile, startSink, type RunningSink } from '../support/lake.ts';

/**
 * `input.format: debezium` on topics the real Debezium PostgreSQL connector (3.6.1.Final, from Maven Central, in a
 * Kafka Connect standalone worker) wrote, never hand-written ones. One worker, three connectors on the same tables,
 * one per converter: Avro through Apicurio's converter in Confluent's wire format (decimals precise, times adaptive),
 * JsonConverter with schemas (decimals as strings, times connect), JsonConverter without schemas (decimals as
 * strings). Each feeds its own Tide sink and lake. Debezium snapshots the type zoo, then streams updates (one that
 * leaves a TOASTed value out: Debezium's placeholder), deletes with tombstones, a primary-key change, interleaved
 * transactions and a truncate; the connector and one sink are restarted on the way. Silver must equal Postgres
 * (read by delta-rs), the history and bronze must hold each change once.
 */
const skip = debeziumMissing();
if (skip) console.warn(`sink-debezium.test.ts skipped: ${skip}`);

const BIG_NOTE = 'n'.repeat(10_000);
type Format = 'avro' | 'json' | 'plain';
const FORMATS: Format[] = ['avro', 'json', 'plain'];

describe.skipIf(!!skip)('sink reads Debezium topics (input.format debezium)', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let sql: pg.Client;
  let connect: ConnectWorker;
  const run = Date.now().toString(36);
  const prefix = (f: Format) => `dbz${f}${run}`;
  const lakes = {} as Record<Format, string>;
  const sinks = {} as Record<Format, RunningSink>;
  const sinkName = (f: Format) => `dbz-${f}-${run}`;
  const topics = (f: Format) => ['zoo.items', 'zoo.logs'].map((t) => `${prefix(f)}.${t}`);

  function startSinkFor(f: Format): RunningSink {
    return startSink(
      sinkFile(sinkName(f), prefix(f), lakes[f], {
        topics: topics(f).join(','),
        'input.format': 'debezium',
        'silver.history.tables': 'zoo\\.items',
        'mask.hash.columns': '',
      }),
      new LocalStore(lakes[f]),
    );
  }

  function connectorConfig(f: Format): Record<string, string> {
    const u = new URL(db.url);
    const registry = `${new URL(process.env.SCHEMA_REGISTRY_URL!).origin}/apis/registry/v2`;
    const base: Record<string, string> = {
      'connector.class': 'io.debezium.connector.postgresql.PostgresConnector',
      'database.hostname': u.hostname,
      'database.port': u.port,
      'database.user': decodeURIComponent(u.username),
      'database.password': decodeURIComponent(u.password),
      'database.dbname': db.name,
      'plugin.name': 'pgoutput',
      'topic.prefix': prefix(f),
      'slot.name': `dbz_${f}_${run}`,
      'publication.name': `dbz_${f}_${run}`,
      'publication.autocreate.mode': 'filtered',
      'table.include.list': 'zoo\\.(items|logs|marks)',
      // Debezium skips truncates by default; the sink maps them.
      'skipped.operations': 'none',
      'topic.creation.default.replication.factor': '1',
      'topic.creation.default.partitions': '3',
    };
    if (f === 'avro') {
      const avro: Record<string, string> = {};
      for (const k of ['key', 'value']) {
        avro[`${k}.converter`] = 'io.apicurio.registry.utils.converter.AvroConverter';
        avro[`${k}.converter.apicurio.registry.url`] = registry;
        avro[`${k}.converter.apicurio.registry.auto-register`] = 'true';
        avro[`${k}.converter.apicurio.registry.find-latest`] = 'true';
        // Confluent's wire format: magic byte, 4-byte id (Apicurio's content id, what its ccompat API serves), no headers.
        avro[`${k}.converter.apicurio.registry.as-confluent`] = 'true';
        avro[`${k}.converter.apicurio.registry.use-id`] = 'contentId';
        avro[`${k}.converter.apicurio.registry.headers.enabled`] = 'false';
      }
      return { ...base, ...avro };
    }
    const schemas = f === 'json' ? 'true' : 'false';
    return {
      ...base,
      'decimal.handling.mode': 'string',
      ...(f === 'json' ? { 'time.precision.mode': 'connect' } : {}),
      'key.converter': 'org.apache.kafka.connect.json.JsonConverter',
      'value.converter': 'org.apache.kafka.connect.json.JsonConverter',
      'key.converter.schemas.enable': schemas,
      'value.converter.schemas.enable': schemas,
    };
  }

  /** Wait until every connector confirmed the WAL written so far (so Kafka has it) and every sink committed Kafka's end. */
  async function settle(): Promise<void> {
    // Debezium confirms an LSN to its slot only when it processes an event, so a mark row is written behind the changes.
    const { rows } = await sql.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
    const target = rows[0]!.lsn;
    await sql.query('INSERT INTO zoo.marks DEFAULT VALUES');
    await waitFor(
      async () => {
        const r = await sql.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_replication_slots WHERE slot_name LIKE $1 AND confirmed_flush_lsn >= $2::pg_lsn`,
          [`dbz\\_%\\_${run}`, target],
        );
        return r.rows[0]!.n === FORMATS.length;
      },
      'Debezium to confirm the WAL written so far',
      120_000,
    );
    for (const f of FORMATS) {
      const marks = await highWatermarks(topics(f));
      const store = new LocalStore(lakes[f]);
      await waitFor(
        async () => {
          for (const m of marks.filter((x) => x.high > 0n)) {
            const table = await DeltaTable.open(store, bronzePath(m.topic.slice(prefix(f).length + 1)));
            const v = table?.txnVersion(txnAppId(sinkName(f), m.topic, m.partition));
            if (v === undefined || BigInt(v) < m.high - 1n) return false;
          }
          return true;
        },
        `the ${f} sink to commit every message in Kafka`,
        120_000,
      );
    }
  }

  /** zoo.items from Postgres in the lake's representation per format (see README "Reading Debezium topics"). */
  async function expectedItems(f: Format): Promise<Record<string, string | null>[]> {
    const typed = [
      'id::text AS id',
      'amount::text AS amount',
      'big::text AS big',
      `to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') AS ts`,
      `to_char(lts, 'YYYY-MM-DD HH24:MI:SS.US') AS lts`,
      'd::text AS d',
      '(extract(epoch FROM t) * 1000000)::bigint::text AS t',
      `encode(b, 'hex') AS b`,
      'j::text AS j',
      'u::text AS u',
      `array_to_string(tags, ',', '') AS tags`,
      'note',
      'f::text AS f',
    ];
    const plain = ['id::text AS id', 'amount::text AS amount', 'big::text AS big', 'note', 'u::text AS u', 'j::text AS j'];
    return (await sql.query<Record<string, string | null>>(`SELECT ${(f === 'plain' ? plain : typed).join(', ')} FROM zoo.items`)).rows;
  }

  /** delta-rs's view of a table; the lake does not change after beforeAll, so each table is read once. */
  const reads = new Map<string, Promise<DeltaRsView>>();
  const read = (f: Format, root: string): Promise<DeltaRsView> => {
    const path = join(lakes[f], root);
    if (!reads.has(path)) reads.set(path, readWithDeltaRs(path));
    return reads.get(path)!;
  };
  const rowsOf = (v: DeltaRsView) =>
    v.rows.map((r) => Object.fromEntries(v.columns.map((c, i) => [c, Array.isArray(r[i]) ? (r[i] as unknown[]).join(',') : r[i]])));

  beforeAll(async () => {
    db = await createTestDatabase('sink_debezium');
    sql = new pg.Client({ connectionString: db.url });
    await sql.connect();
    await sql.query(`
      CREATE SCHEMA zoo;
      CREATE TABLE zoo.items (
        id int PRIMARY KEY, amount numeric(12,2), big numeric, ts timestamptz, lts timestamp, d date, t time,
        b bytea, j jsonb, u uuid, tags text[], note text, f float8);
      ALTER TABLE zoo.items ALTER COLUMN note SET STORAGE EXTERNAL; -- stored out of line uncompressed: TOASTed
      CREATE TABLE zoo.logs (id int PRIMARY KEY, msg text);
      CREATE TABLE zoo.marks (id serial PRIMARY KEY);
      INSERT INTO zoo.items
        SELECT i, i * 1.25, 123456789012345678901234567890.123456789 + i, timestamptz '2024-03-01 10:00:00.123456+02' + i * interval '1 day',
               timestamp '2024-03-01 10:00:00.5' + i * interval '1 minute', date '2024-03-01' + i, time '13:14:15.123' + i * interval '1 second',
               decode(lpad(to_hex(i), 4, '0'), 'hex'), jsonb_build_object('i', i, 'tags', jsonb_build_array('a', i)),
               ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd38' || lpad(to_hex(i), 4, '0'))::uuid, ARRAY['x' || i, NULL, 'y'],
               CASE WHEN i % 3 = 0 THEN repeat('n', 10000) ELSE 'short ' || i END, i / 8.0
        FROM generate_series(1, 30) i;
      INSERT INTO zoo.items (id) VALUES (31); -- every column NULL
      INSERT INTO zoo.logs SELECT i, 'before ' || i FROM generate_series(1, 10) i;
    `);
    connect = await ConnectWorker.start(process.env.KAFKA_BROKERS!);
    for (const f of FORMATS) {
      lakes[f] = mkdtempSync(join(tmpdir(), `tide-lake-dbz-${f}-`));
      await connect.create(`dbz-${f}-${run}`, connectorConfig(f));
      sinks[f] = startSinkFor(f);
    }
    await settle(); // the snapshot is in

    // Streaming: updates, one that leaves the TOASTed note out (Debezium's placeholder), deletes (+ tombstones),
    // a primary-key change, inserts, and two interleaved transactions.
    await sql.query(`UPDATE zoo.items SET amount = amount + 100 WHERE id IN (3, 6)`); // notes TOASTed, unchanged
    await sql.query(`UPDATE zoo.items SET note = 'changed', f = -0.5, ts = now() WHERE id = 1`);
    await sql.query(`DELETE FROM zoo.items WHERE id IN (2, 5)`);
    await sql.query(`UPDATE zoo.items SET id = 100 WHERE id = 4`);
    await sql.query(`INSERT INTO zoo.items (id, amount, note) VALUES (200, 1.00, 'new'), (2, 9.99, 'back again')`);
    const other = new pg.Client({ connectionString: db.url });
    await other.connect();
    await sql.query('BEGIN');
    await sql.query(`UPDATE zoo.items SET note = 'tx1' WHERE id = 7`);
    await other.query(`UPDATE zoo.items SET note = 'tx2' WHERE id = 8`);
    await sql.query(`UPDATE zoo.items SET note = 'tx1 again' WHERE id = 9`);
    await sql.query('COMMIT');
    await other.end();
    await sql.query(`TRUNCATE zoo.logs`);
    await sql.query(`INSERT INTO zoo.logs VALUES (11, 'after truncate')`);
    await settle();

    // A restart of the Avro sink and of the JSON connector, with changes in between.
    await sinks.avro.stop();
    await sql.query(`UPDATE zoo.items SET amount = 0.01, note = 'after restart' WHERE id = 10`);
    await sql.query(`DELETE FROM zoo.items WHERE id = 11`);
    await connect.restart(`dbz-json-${run}`);
    await sql.query(`UPDATE zoo.items SET big = -1.5 WHERE id = 12`);
    sinks.avro = startSinkFor('avro');
    await settle();
  }, 600_000);

  afterAll(async () => {
    for (const s of Object.values(sinks)) await s?.stop();
    for (const f of FORMATS) await connect?.remove(`dbz-${f}-${run}`);
    await connect?.stop();
    if (sql) {
      await sql.query(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE $1 AND NOT active`, [
        `dbz\\_%\\_${run}`,
      ]);
      await sql.end();
    }
    await db?.drop();
  });

  for (const f of FORMATS) {
    it(`${f}: silver.zoo.items equals Postgres row for row (delta-rs)`, async () => {
      const expected = await expectedItems(f);
      const actual = rowsOf(await read(f, silverPath('zoo.items')));
      const diff = diffTables(expected, actual, ['id'], Object.keys(expected[0]!));
      expect(diff.expectedChecksum, describeDiff(`${f} zoo.items`, diff)).toBe(diff.actualChecksum);
      expect(expected.length).toBe(30); // 31 − 3 deleted − 1 moved + 2 inserted + 1 moved in
    });
  }

  it('the TOASTed note of an update that left it out keeps its value (Debezium wrote its placeholder)', async () => {
    for (const f of FORMATS) {
      const bronze = rowsOf(await read(f, bronzePath('zoo.items')));
      const updates = bronze.filter((r) => r._op === 'u' && (r.id === 3 || r.id === '3'));
      // The placeholder arrived (bronze keeps it as NULL, like Tide's unchanged_toast), and silver kept the note.
      expect(
        updates.map((r) => r.note),
        f,
      ).toEqual([null]);
      const silver = rowsOf(await read(f, silverPath('zoo.items')));
      expect(silver.find((r) => String(r.id) === '3')?.note, f).toBe(BIG_NOTE);
    }
  });

  it('bronze holds every Debezium event once: snapshot reads, c/u/d, the truncate; tombstones write nothing', async () => {
    for (const f of FORMATS) {
      const items = rowsOf(await read(f, bronzePath('zoo.items')));
      const offsets = new Set(items.map((r) => `${String(r._kafka_partition)}:${String(r._kafka_offset)}`));
      expect(offsets.size, `${f}: an offset twice in bronze`).toBe(items.length);
      const ops = (o: string) => items.filter((r) => r._op === o).length;
      expect(ops('r'), f).toBe(31);
      expect(ops('d'), f).toBeGreaterThanOrEqual(4); // 2, 5, 11, and 4 moved to 100 (more if the connector re-sent after its restart)
      expect(ops('c'), f).toBeGreaterThanOrEqual(3); // 200, 2, and 100
      const logs = rowsOf(await read(f, bronzePath('zoo.logs')));
      expect(logs.filter((r) => r._op === 't').length, f).toBeGreaterThanOrEqual(1);
      // Tombstones (null values) are counted by Kafka's offsets but write no row: bronze has fewer rows than offsets.
      const marks = await highWatermarks(topics(f).slice(0, 1));
      expect(items.length, f).toBeLessThan(marks.reduce((n, m) => n + Number(m.high), 0));
    }
  });

  it('a truncate empties silver; rows written after it stay', async () => {
    for (const f of FORMATS) {
      const logs = rowsOf(await read(f, silverPath('zoo.logs')));
      expect(
        logs.map((r) => [String(r.id), r.msg]),
        f,
      ).toEqual([['11', 'after truncate']]);
    }
  });

  it('history: one current version per key equal to silver, each change once (also after the connector re-sent), deletes closed', async () => {
    for (const f of FORMATS) {
      const history = rowsOf(await read(f, historyPath('zoo.items')));
      const silver = rowsOf(await read(f, silverPath('zoo.items')));
      const current = history.filter((r) => r._is_current === true);
      expect(current.map((r) => String(r.id)).sort(), f).toEqual(silver.map((r) => String(r.id)).sort());
      const positions = history.map((r) => `${String(r.id)}@${String(r._commit_lsn)}/${String(r._event_index)}`);
      expect(new Set(positions).size, `${f}: a version twice in the history`).toBe(positions.length);
      const versions = (id: number) => history.filter((r) => String(r.id) === String(id)).length;
      expect(versions(10), f).toBe(2); // snapshot, update after the sink's restart
      expect(versions(12), f).toBe(2); // snapshot, update after the connector's restart
      expect(versions(7), f).toBe(2); // snapshot, interleaved transaction
      expect(
        history.filter((r) => String(r.id) === '5').every((r) => r._is_current === false),
        f,
      ).toBe(true); // deleted
    }
  });
});

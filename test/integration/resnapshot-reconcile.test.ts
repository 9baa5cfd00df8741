import { execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPrisma, type PrismaClient } from '../../src/app/db.ts';
import { replay } from '../../src/app/replay.ts';
import { PlatformaticProducer } from '../../src/events/kafka-producer.ts';
import { snapshotEndMessages } from '../../src/events/snapshot-end.ts';
import { DeltaTable } from '../../src/lake/delta/delta-table.ts';
import { LocalStore } from '../../src/lake/storage/local-store.ts';
import { RECONCILED_AT } from '../../src/sink/snapshot-reconcile.ts';
import { goldPath, historyPath, silverPath } from '../../src/sink/table-layout.ts';
import { spawnSink, writeConnectorFileAt } from '../support/connector-file.ts';
import { createTestDatabase } from '../support/db.ts';
import { readWithDeltaRs } from '../support/delta-reader.ts';
import { postgresTwin } from '../support/order-reports.ts';
import { consumeAll, plaintextConnection, waitFor } from '../support/kafka.ts';
import { useSourceFixture } from '../support/source-fixture.ts';
import {
  describeDiff,
  diffTables,
  highWatermarks,
  ORDER_KEYS,
  ORDER_TABLES,
  postgresRows,
  sinkFile,
  startSink,
  waitForLake,
} from '../support/lake.ts';
import { txnAppId } from '../../src/sink/offsets.ts';
import { sourceConfig, startSource, waitForSourceCaughtUp, writeConnectorFile, type RunningSource } from '../support/source.ts';

const BIN = resolve('bin/tide.js');

/**
 * Issue 11 item 14: rows deleted in Postgres while the source was stopped and its slot then dropped by
 * `tide source resnapshot` never reach the WAL Tide reads. After the fresh snapshot, silver equals Postgres,
 * history has those keys closed (one current version per key, none for a deleted one), and gold no longer
 * counts them; also when the sink is killed (kill -9) in the middle of reconciling, and when the
 * end-of-snapshot markers arrive again.
 */
describe('a re-snapshot reconciles silver, history and gold with Postgres', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let sql: pg.Client;
  let prisma: PrismaClient;
  let source: RunningSource | undefined;
  let child: ChildProcess | undefined;
  const workDir = mkdtempSync(join(tmpdir(), 'tide-resnap-'));
  const stateDir = join(workDir, '.tide');
  const lakeDir = join(workDir, 'lake');
  const store = new LocalStore(lakeDir);
  const sinkName = `resnap-${Date.now().toString(36)}`;
  const sinkPath = join(workDir, 'orders-lake.json');
  let src: ReturnType<typeof sourceConfig>;
  let srcPath: string;
  const deleted = { orders: [] as string[], customers: [] as string[] };

  const startChild = (crashAt?: string): Promise<number | null> => {
    const sink = spawnSink(sinkPath, workDir, join(workDir, 'sink.log'), crashAt);
    child = sink.child;
    return sink.exited;
  };
  const sinkLog = () => readFileSync(join(workDir, 'sink.log'), 'utf8');

  /** Every lake table of the order app has committed the markers of the snapshot at `commitLsn` and reconciled. */
  const reconciledAt = async (root: string): Promise<string | undefined> =>
    (await DeltaTable.open(store, root))?.metadata.configuration[RECONCILED_AT];

  beforeAll(async () => {
    db = await createTestDatabase('resnapshot_reconcile');
    sql = new pg.Client({ connectionString: db.url });
    await sql.connect();
    prisma = createPrisma(db.url, 4);
    await replay(prisma, { limit: 400, concurrency: 4 });
    src = sourceConfig(db.url, 'resnap', { 'table.include.list': 'public\\.(customers|products|orders|order_items)' });
    srcPath = writeConnectorFile(workDir, src);
    const file = sinkFile(sinkName, src.config['topic.prefix'], lakeDir, { 'flush.interval.ms': 200, 'gold.refresh.interval.ms': 500 });
    writeConnectorFileAt(sinkPath, { name: sinkName, config: file.config }, 2);
  }, 180_000);

  afterAll(async () => {
    child?.kill('SIGKILL');
    await source?.stop();
    await prisma?.$disconnect();
    await sql?.end();
    await db?.drop();
  });

  it('drops the keys Postgres lost while the slot was gone, also across kill -9 in the reconcile, and ignores replayed markers', async () => {
    // 1. The first snapshot and the lake in step with it.
    source = await startSource(src, stateDir);
    let exited = startChild();
    await waitForSourceCaughtUp(sql, src.config['slot.name']);
    await waitForLake(store, sinkName, src.config['topic.prefix']);
    const roots = [...ORDER_TABLES.map(silverPath), historyPath('public.orders')];
    const allReconciled = async (): Promise<string[] | false> => {
      const at = await Promise.all(roots.map(reconciledAt));
      return at.every((x) => x !== undefined) && (at as string[]);
    };
    // The first snapshot went to new topics: no markers, nothing to reconcile.
    expect(await Promise.all(roots.map(reconciledAt))).toEqual(roots.map(() => undefined));
    await source.stop();
    source = undefined;
    child!.kill('SIGTERM');
    expect(await exited).toBe(0);

    // 2. While the source is stopped: deletes (a customer with everything of theirs, other orders with their
    //    items by cascade), an update and an insert. `tide source resnapshot` drops the slot: the deletes never
    //    reach Tide as changes.
    const victim = (
      await sql.query<{ id: string }>(
        `SELECT customer_id::text AS id FROM orders WHERE customer_id IS NOT NULL GROUP BY 1 ORDER BY count(*) DESC LIMIT 1`,
      )
    ).rows[0]!.id;
    deleted.customers.push(victim);
    deleted.orders.push(
      ...(await sql.query<{ id: string }>(`SELECT id::text FROM orders WHERE customer_id = $1`, [victim])).rows.map((r) => r.id),
    );
    await sql.query(`DELETE FROM orders WHERE customer_id = $1`, [victim]);
    await sql.query(`DELETE FROM customers WHERE id = $1`, [victim]);
    const more = await sql.query<{ id: string }>(
      `DELETE FROM orders WHERE id IN (SELECT id FROM orders ORDER BY id DESC LIMIT 7) RETURNING id::text`,
    );
    deleted.orders.push(...more.rows.map((r) => r.id));
    await sql.query(`UPDATE orders SET status = 'cancelled', updated_at = now() WHERE id = (SELECT min(id) FROM orders)`);
    expect(deleted.orders.length).toBeGreaterThan(7);

    const run = await new Promise<{ code: number; out: string }>((done) =>
      execFile(
        process.execPath,
        [BIN, 'source', 'resnapshot', srcPath, '--yes', '--state-dir', stateDir],
        { cwd: workDir },
        (err, stdout, stderr) => done({ code: err ? Number(err.code ?? -1) : 0, out: stdout + stderr }),
      ),
    );
    expect(run.code, run.out).toBe(0);
    expect(run.out).toContain('keys that the snapshot does not read again are deleted');

    // 3. The sink is killed in the middle of the reconcile: delete markers and files written, commit not.
    exited = startChild('reconcile-commit:1');
    source = await startSource(src, stateDir);
    await waitForSourceCaughtUp(sql, src.config['slot.name']);
    expect(await Promise.race([exited, new Promise((r) => setTimeout(() => r('timeout'), 120_000))]), sinkLog().slice(-3000)).toBe(-9);
    expect(sinkLog()).toContain('killing myself at reconcile-commit');
    // Once more, at the second reconcile of the restarted sink (it first finishes what the crash left).
    expect(await startChild('reconcile-commit:2'), sinkLog().slice(-3000)).toBe(-9);
    exited = startChild();
    await waitForLake(store, sinkName, src.config['topic.prefix']);
    await waitFor(async () => (await allReconciled()) !== false, 'every silver table and the history to reconcile the re-snapshot');
    const snapshotLsn = (await reconciledAt(silverPath('public.orders')))!;
    for (const root of roots) expect(await reconciledAt(root), root).toBe(snapshotLsn);

    // 4. Silver equals Postgres.
    const check = async () => {
      for (const table of ORDER_TABLES) {
        const expected = await postgresRows(db.url, table);
        const silver = await readWithDeltaRs(join(lakeDir, silverPath(table)));
        const rows = silver.rows.map((r) => Object.fromEntries(silver.columns.map((c, i) => [c, r[i]])));
        const columns = Object.keys(expected[0] ?? {}).filter((c) => !(table === 'public.customers' && c === 'email'));
        const d = diffTables(expected, rows, ORDER_KEYS[table]!, columns);
        expect(d.expectedChecksum === d.actualChecksum, describeDiff(table, d)).toBe(true);
      }
      // History: every key has exactly one current version, exactly the keys Postgres has; deleted keys are closed.
      const history = await readWithDeltaRs(join(lakeDir, historyPath('public.orders')));
      const col = (r: unknown[], c: string) => r[history.columns.indexOf(c)];
      const current = history.rows.filter((r) => col(r, '_is_current') === true).map((r) => String(col(r, 'id')));
      expect(new Set(current).size, 'one current version per key').toBe(current.length);
      const pgIds = (await sql.query<{ id: string }>('SELECT id::text FROM orders')).rows.map((r) => r.id);
      expect([...current].sort()).toEqual([...pgIds].sort());
      for (const id of deleted.orders) {
        const versions = history.rows.filter((r) => String(col(r, 'id')) === id);
        expect(versions.length, `order ${id} keeps its versions in history`).toBeGreaterThan(0);
        for (const v of versions) expect(col(v, '_valid_to'), `order ${id}: every version closed`).not.toBeNull();
      }
    };
    await check();

    // 5. Gold no longer counts them: customer_last_update has Postgres' customers, with Postgres' last order.
    const expectedGold = (
      await sql.query<{ customer_id: string; last_order_at: string | null }>(postgresTwin('customer_last_update.postgres.sql'))
    ).rows;
    await waitFor(async () => {
      const gold = await readWithDeltaRs(join(lakeDir, goldPath('customer_last_update'))).catch(() => undefined);
      if (!gold) return false;
      const ids = gold.rows.map((r) => String(r[gold.columns.indexOf('customer_id')]));
      return ids.length === expectedGold.length && !ids.includes(deleted.customers[0]!);
    }, 'gold.customer_last_update to drop the deleted customer');
    const gold = await readWithDeltaRs(join(lakeDir, goldPath('customer_last_update')));
    expect(gold.rows.map((r) => String(r[gold.columns.indexOf('customer_id')])).sort()).toEqual(
      expectedGold.map((r) => String(r.customer_id)).sort(),
    );

    // 6. The markers again (as a source that crashed before it saved the table as done sends them): nothing changes.
    const filesBefore = await Promise.all(
      roots.map(async (root) =>
        (await DeltaTable.open(store, root))!
          .files()
          .map((f) => f.path)
          .sort(),
      ),
    );
    const producer = new PlatformaticProducer(plaintextConnection());
    try {
      const topics = ORDER_TABLES.map((t) => `${src.config['topic.prefix']}.${t}`);
      await producer.ensureTopics(topics.map((topic) => ({ topic, partitions: 3 })));
      for (const [i, topic] of topics.entries())
        await producer.send(
          snapshotEndMessages(topic, { table: ORDER_TABLES[i]!, commitLsn: BigInt(snapshotLsn), partitions: 3, tsMs: Date.now() }),
        );
    } finally {
      await producer.close();
    }
    await waitForLake(store, sinkName, src.config['topic.prefix']);
    for (const [i, root] of roots.entries()) {
      const t = (await DeltaTable.open(store, root))!;
      expect(t.metadata.configuration[RECONCILED_AT], root).toBe(snapshotLsn);
      // The offsets moved past the markers, nothing else: no file removed or added.
      expect(
        t
          .files()
          .map((f) => f.path)
          .sort(),
        root,
      ).toEqual(filesBefore[i]);
    }
    await check();
    child!.kill('SIGTERM');
    expect(await exited).toBe(0);
  }, 600_000);
});

/**
 * A full incremental snapshot (`tide source snapshot --table`, no --where) reconciles too: rows deleted where
 * the stream did not carry the delete (here: the publication left deletes out for a moment) leave silver and are
 * closed in history once the snapshot's markers are in. A --where snapshot reads a part only and sends none.
 */
describe('a full incremental snapshot reconciles silver and history with Postgres', () => {
  const fx = useSourceFixture(
    'incr_reconcile',
    ['CREATE TABLE items (id int PRIMARY KEY, v text NOT NULL)', `INSERT INTO items SELECT g, 'a' FROM generate_series(1, 40) g`],
    { 'topic.partitions': 3 },
  );
  const lakeDir = mkdtempSync(join(tmpdir(), 'tide-incr-reconcile-'));
  const store = new LocalStore(lakeDir);
  const sinkName = `incr-reconcile-${Date.now().toString(36)}`;

  it('deletes the keys the snapshot did not read; a --where snapshot deletes nothing', async () => {
    const topic = fx.topic('public.items');
    const file = sinkFile(sinkName, fx.src.config['topic.prefix'], lakeDir, { topics: topic, 'silver.history.tables': 'public\\.items' });
    fx.sink = startSink(file, store);
    const silverIds = async () => {
      const view = await readWithDeltaRs(join(lakeDir, silverPath('public.items')));
      return view.rows.map((r) => Number(r[view.columns.indexOf('id')])).sort((a, b) => a - b);
    };
    const pgIds = async () => (await fx.sql.query<{ id: number }>('SELECT id FROM items ORDER BY id')).rows.map((r) => r.id);
    const snapshot = async (...extra: string[]) => {
      const path = writeConnectorFile(lakeDir, fx.src);
      const run = await new Promise<{ code: number; out: string }>((done) =>
        execFile(process.execPath, [BIN, 'source', 'snapshot', path, '--table', 'public.items', ...extra], (err, stdout, stderr) =>
          done({ code: err ? Number(err.code ?? -1) : 0, out: stdout + stderr }),
        ),
      );
      expect(run.code, run.out).toBe(0);
    };
    const finished = (): { where?: string }[] =>
      (
        JSON.parse(readFileSync(join(fx.source!.stateDir, `${fx.src.name}.offsets.json`), 'utf8')) as {
          incremental?: { finished: { where?: string }[] };
        }
      ).incremental?.finished ?? [];
    const silverCaughtUp = async () => {
      await waitForSourceCaughtUp(fx.sql, fx.src.config['slot.name']);
      const marks = await highWatermarks([topic]);
      await waitFor(async () => {
        const t = await DeltaTable.open(store, silverPath('public.items'));
        return marks.every((m) => m.high === 0n || BigInt(t?.txnVersion(txnAppId(sinkName, topic, m.partition)) ?? -1) >= m.high - 1n);
      }, 'silver.items to commit every message');
    };
    await waitFor(async () => (await DeltaTable.open(store, silverPath('public.items'))) !== undefined, 'silver.items');
    await waitFor(async () => (await silverIds()).length === 40, 'silver to hold the 40 rows');

    // Deletes the stream does not carry: pgoutput skips them while the publication leaves deletes out.
    const pub = fx.src.config['publication.name'];
    await fx.sql.query(`ALTER PUBLICATION "${pub}" SET (publish = 'insert, update, truncate')`);
    await fx.sql.query('DELETE FROM items WHERE id <= 6');
    await fx.sql.query(`ALTER PUBLICATION "${pub}" SET (publish = 'insert, update, delete, truncate')`);
    await fx.sql.query(`UPDATE items SET v = 'b' WHERE id = 40`);

    // A --where snapshot: no markers, the deleted keys stay.
    await snapshot('--where', 'id > 30');
    await waitFor(async () => finished().some((f) => f.where === 'id > 30'), 'the --where snapshot to finish', 120_000);
    await silverCaughtUp();
    expect(await silverIds()).toHaveLength(40);
    const whereEnds = (await consumeAll([topic], 120_000, true)).filter((e) => e.value === null && e.key === null);
    expect(whereEnds).toHaveLength(0);

    // The full snapshot: markers on every partition, the 6 keys leave silver and their versions close.
    await snapshot();
    await waitFor(
      async () => (await DeltaTable.open(store, silverPath('public.items')))?.metadata.configuration[RECONCILED_AT] !== undefined,
      'silver.items to reconcile the snapshot',
      120_000,
    );
    const ends = (await consumeAll([topic], 120_000, true)).filter((e) => e.value === null && e.key === null);
    expect(ends.map((e) => e.partition).sort()).toEqual([0, 1, 2]);
    expect(await silverIds()).toEqual(await pgIds());
    await waitFor(
      async () => (await DeltaTable.open(store, historyPath('public.items')))?.metadata.configuration[RECONCILED_AT] !== undefined,
      'history to reconcile the snapshot',
    );
    const history = await readWithDeltaRs(join(lakeDir, historyPath('public.items')));
    const col = (r: unknown[], c: string) => r[history.columns.indexOf(c)];
    const current = history.rows.filter((r) => col(r, '_is_current') === true).map((r) => Number(col(r, 'id')));
    expect(current.sort((a, b) => a - b)).toEqual(await pgIds());
  }, 300_000);
});

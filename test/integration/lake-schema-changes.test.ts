import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { DeltaTable } from '../../src/lake/delta/delta-table.ts';
import { LocalStore } from '../../src/lake/storage/local-store.ts';
import { txnAppId } from '../../src/sink/offsets.ts';
import { historyPath, silverPath } from '../../src/sink/table-layout.ts';
import { createTestDatabase } from '../support/db.ts';
import { readWithDeltaRs } from '../support/delta-reader.ts';
import { waitFor } from '../support/kafka.ts';
import { highWatermarks, sinkFile, startSink, type RunningSink } from '../support/lake.ts';
import { dropSlot, sourceConfig, startSource, waitForSourceCaughtUp, type RunningSource } from '../support/source.ts';

/**
 * Schema changes seen from the lake (issue 11): source and sink on the real stack, silver and history read
 * back with delta-rs.
 *  - item 5: a stored generated column is left out of snapshot, stream, schema and lake alike. Before, the
 *    snapshot's schema carried it, the stream's did not, and silver held NULL in every row changed after
 *    the snapshot.
 *  - item 9: after RENAME COLUMN, existing rows carry their values under the new name in silver and
 *    history. Before, `new` was NULL in every row not written after the rename.
 */
const registry = process.env.SCHEMA_REGISTRY_URL!;

describe('schema changes in the lake', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let sql: pg.Client;
  let file: ReturnType<typeof sourceConfig>;
  let source: RunningSource | undefined;
  let sink: RunningSink | undefined;
  let lakeDir: string;
  let store: LocalStore;
  const sinkName = `lake-schema-${Date.now().toString(36)}`;
  const topic = (t: string) => `${file.config['topic.prefix']}.public.${t}`;

  beforeAll(async () => {
    db = await createTestDatabase('lake_schema');
    sql = new pg.Client({ connectionString: db.url });
    await sql.connect();
    await sql.query(`CREATE TABLE items (id int PRIMARY KEY, price numeric(10,2) NOT NULL, qty int NOT NULL,
                       total numeric(12,2) GENERATED ALWAYS AS (price * qty) STORED, note text)`);
    await sql.query(`INSERT INTO items (id, price, qty, note) SELECT i, i * 1.5, i, 'n' || i FROM generate_series(1, 5) i`);
    await sql.query(`CREATE TABLE people (id int PRIMARY KEY, nick text, age int)`);
    await sql.query(`INSERT INTO people SELECT i, 'nick' || i, 20 + i FROM generate_series(1, 6) i`);
    file = sourceConfig(db.url, 'lakeschema', { 'table.include.list': 'public\\.(items|people)' });
    source = await startSource(file);
    lakeDir = mkdtempSync(join(tmpdir(), 'tide-lake-schema-'));
    store = new LocalStore(lakeDir);
    sink = startSink(
      sinkFile(sinkName, file.config['topic.prefix'], lakeDir, {
        topics: `${topic('items')},${topic('people')}`,
        'silver.history.tables': 'public\\.people',
      }),
      store,
    );
  }, 180_000);

  afterAll(async () => {
    await sink?.stop().catch(() => undefined);
    await source?.stop().catch(() => undefined);
    await sql?.end();
    if (file) await dropSlot(db.url, file.config['slot.name']);
    await db?.drop();
  });

  /** Wait until the source confirmed everything and silver (and history, when given) committed every message of `t`'s topic. */
  async function settle(t: string, roots: string[]): Promise<void> {
    await waitForSourceCaughtUp(sql, file.config['slot.name']);
    const marks = await highWatermarks([topic(t)]);
    await waitFor(
      async () => {
        for (const root of roots) {
          const table = await DeltaTable.open(store, root);
          for (const m of marks.filter((x) => x.high > 0n)) {
            const v = table?.txnVersion(txnAppId(sinkName, m.topic, m.partition));
            if (v === undefined || BigInt(v) < m.high - 1n) return false;
          }
        }
        return true;
      },
      `the lake to commit every message of ${topic(t)}`,
      120_000,
    );
  }

  const rowsOf = (view: Awaited<ReturnType<typeof readWithDeltaRs>>, columns: string[]) =>
    view.rows.map((r) => Object.fromEntries(columns.map((c) => [c, r[view.columns.indexOf(c)]])));

  it('item 5: a stored generated column is left out of snapshot, stream, every schema version and silver', async () => {
    await sql.query(`UPDATE items SET qty = qty + 10 WHERE id IN (1, 2)`);
    await sql.query(`INSERT INTO items (id, price, qty, note) VALUES (6, 2.00, 3, 'six')`);
    await settle('items', [silverPath('public.items')]);

    const view = await readWithDeltaRs(join(lakeDir, silverPath('public.items')));
    expect(view.columns.filter((c) => !c.startsWith('_'))).toEqual(['id', 'price', 'qty', 'note']);
    const expected = (await sql.query(`SELECT id, price::text AS price, qty, note FROM items ORDER BY id`)).rows;
    expect(rowsOf(view, ['id', 'price', 'qty', 'note']).sort((a, b) => Number(a.id) - Number(b.id))).toEqual(expected);

    // Snapshot and stream registered one and the same schema, without the generated column.
    const versions = (await (await fetch(`${registry}/subjects/${topic('items')}-value/versions`)).json()) as number[];
    expect(versions).toHaveLength(1);
    const latest = (await (await fetch(`${registry}/subjects/${topic('items')}-value/versions/latest`)).json()) as { schema: string };
    expect(latest.schema).not.toContain('"total"');
  });
  it('item 9: after RENAME COLUMN, existing rows carry their values under the new name in silver and history', async () => {
    await settle('people', [silverPath('public.people'), historyPath('public.people')]);
    await sql.query(`UPDATE people SET age = age + 1 WHERE id = 1`); // a second version in history
    await settle('people', [silverPath('public.people'), historyPath('public.people')]);
    await sql.query(`ALTER TABLE people RENAME COLUMN nick TO handle`);
    await sql.query(`UPDATE people SET handle = 'renamed2' WHERE id = 2`);
    await sql.query(`INSERT INTO people VALUES (7, 'handle7', 27)`);
    await settle('people', [silverPath('public.people'), historyPath('public.people')]);

    // The registry's new version names the old column as an alias of the new one, and accepted it as compatible.
    const latest = JSON.parse(
      ((await (await fetch(`${registry}/subjects/${topic('people')}-value/versions/latest`)).json()) as { schema: string }).schema,
    ) as { fields: { name: string; type: unknown }[] };
    const after = (latest.fields.find((f) => f.name === 'after')!.type as unknown[])[1] as {
      fields: { name: string; aliases?: string[] }[];
    };
    expect(after.fields.find((f) => f.name === 'handle')!.aliases).toEqual(['nick']);

    const silver = await readWithDeltaRs(join(lakeDir, silverPath('public.people')));
    const expected = (await sql.query(`SELECT id, handle, age FROM people ORDER BY id`)).rows;
    expect(rowsOf(silver, ['id', 'handle', 'age']).sort((a, b) => Number(a.id) - Number(b.id))).toEqual(expected);

    // History: every version, also those closed before the rename, shows the value under the new name.
    const history = await readWithDeltaRs(join(lakeDir, historyPath('public.people')));
    const versions = rowsOf(history, ['id', 'handle', 'age', '_is_current']);
    expect(versions.filter((v) => v.handle === null)).toEqual([]);
    expect(
      versions
        .filter((v) => v.id === 1)
        .map((v) => [v.handle, v.age, v._is_current])
        .sort(),
    ).toEqual([
      ['nick1', 21, false],
      ['nick1', 22, true],
    ]);
    expect(
      versions
        .filter((v) => v.id === 2)
        .map((v) => [v.handle, v._is_current])
        .sort(),
    ).toEqual([
      ['nick2', false],
      ['renamed2', true],
    ]);
  });
  it("item 9: the stack's registry (Apicurio, BACKWARD) accepts a renamed required field with its alias, and refuses it without", async () => {
    const subject = `${topic('alias_probe')}-key`;
    const record = (field: object) => JSON.stringify({ type: 'record', name: 'Key', fields: [field] });
    const post = async (path: string, schema: string) =>
      (await (
        await fetch(`${registry}${path}`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/vnd.schemaregistry.v1+json' },
          body: JSON.stringify({ schema }),
        })
      ).json()) as { id?: number; is_compatible?: boolean };
    expect((await post(`/subjects/${subject}/versions`, record({ name: 'nick', type: 'int' }))).id).toBeGreaterThan(0);
    const check = `/compatibility/subjects/${subject}/versions/latest`;
    expect((await post(check, record({ name: 'handle', type: 'int', aliases: ['nick'] }))).is_compatible).toBe(true);
    expect((await post(check, record({ name: 'handle', type: 'int' }))).is_compatible).toBe(false);
  });
});

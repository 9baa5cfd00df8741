import pg from 'pg';
import { afterAll, beforeAll } from 'vitest';
import { DeltaTable } from '../../src/lake/delta/delta-table.ts';
import type { ObjectStore } from '../../src/lake/storage/object-store.ts';
import { txnAppId } from '../../src/sink/offsets.ts';
import { createTestDatabase } from './db.ts';
import { waitFor } from './kafka.ts';
import { highWatermarks, type RunningSink } from './lake.ts';
import { dropSlot, sourceConfig, startSource, waitForSourceCaughtUp, type RunningSource } from './source.ts';

/** What `useSourceFixture` gives a describe block; filled in its beforeAll. */
export interface SourceFixture {
  db: Awaited<ReturnType<typeof createTestDatabase>>;
  sql: pg.Client;
  src: ReturnType<typeof sourceConfig>;
  source: RunningSource | undefined;
  /** A sink the test starts; stopped in afterAll if still running. */
  sink: RunningSink | undefined;
  /** The topic of `table` (e.g. `public.items`). */
  topic(table: string): string;
  /**
   * Wait until the source has confirmed every change so far and the Delta table at `root` has committed
   * partition 0 of `topic` up to `offset` (default: the partition's last offset).
   */
  waitForCommitted(store: ObjectStore, sinkName: string, root: string, topic: string, offset?: bigint): Promise<void>;
}

/**
 * A test database with `ddl` applied and a Tide source streaming from it (one partition a topic unless
 * `extra` says otherwise), set up in beforeAll and torn down in afterAll: sink, source, slot, database.
 */
export function useSourceFixture(label: string, ddl: string[], extra: Record<string, unknown>): SourceFixture {
  const fx = { source: undefined, sink: undefined } as SourceFixture;
  beforeAll(async () => {
    fx.db = await createTestDatabase(label);
    fx.sql = new pg.Client({ connectionString: fx.db.url });
    await fx.sql.connect();
    for (const statement of ddl) await fx.sql.query(statement);
    fx.src = sourceConfig(fx.db.url, label, { 'topic.partitions': 1, ...extra });
    fx.source = await startSource(fx.src);
  }, 120_000);
  afterAll(async () => {
    await fx.sink?.stop().catch(() => undefined);
    await fx.source?.stop();
    await fx.sql?.end();
    if (fx.db) {
      if (fx.src) await dropSlot(fx.db.url, fx.src.config['slot.name']);
      await fx.db.drop();
    }
  });
  fx.topic = (table) => `${fx.src.config['topic.prefix']}.${table}`;
  fx.waitForCommitted = async (store, sinkName, root, topic, offset) => {
    await waitForSourceCaughtUp(fx.sql, fx.src.config['slot.name']);
    const target = offset ?? (await highWatermarks([topic]))[0]!.high - 1n;
    await waitFor(
      async () => {
        const v = (await DeltaTable.open(store, root))?.txnVersion(txnAppId(sinkName, topic, 0));
        return v !== undefined && BigInt(v) >= target;
      },
      `${root} to commit up to offset ${target}`,
      90_000,
    );
  };
  return fx;
}

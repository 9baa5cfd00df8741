import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeltaTable } from '../../src/lake/delta/delta-table.ts';
import { TIDE_PROTOCOL, withDeletionVectors } from '../../src/lake/delta/protocol-check.ts';
import type { CompactionPolicy } from '../../src/lake/maintenance/compaction-plan.ts';
import { ParquetEngine } from '../../src/lake/parquet/parquet-engine.ts';
import { LocalStore } from '../../src/lake/storage/local-store.ts';
import type { KeyChange } from '../../src/sink/silver-changes.ts';
import { compactSilver } from '../../src/sink/silver-compaction.ts';
import { keyIndexOf, SilverKeyIndex } from '../../src/sink/silver-key-index.ts';
import { mergeSilver } from '../../src/sink/silver-merge.ts';
import { silverPath } from '../../src/sink/table-layout.ts';
import { deltaReaderAvailable, readWithDeltaRs } from '../support/delta-reader.ts';
import { asRows, MODEL_SCHEMA, silverModel } from '../support/silver-model.ts';
import { expectSilverEqualsPostgres } from '../support/lake-checks.ts';
import { useOrderPipeline } from '../support/order-pipeline.ts';
import { SparkDelta, sparkMissing } from '../support/spark.ts';

/**
 * Compaction between flushes of silver tables with deletion vectors (silver-compaction.ts): real Delta
 * tables on disk, DuckDB, delta-rs, and the real pipeline (Postgres → source → Kafka → sink) read by delta-rs
 * and Spark. The steps keep every guarantee of the merges: the rows equal the source's, replays stay no-ops,
 * the key index stays exact, checkpoints carry the result, and a step that loses a race is skipped.
 */
const skipDeltaRs = deltaReaderAvailable() ? undefined : 'the delta-rs venv is missing: run `bash scripts/setup-python.sh`';
if (skipDeltaRs) console.warn(`silver-compaction: skipped: ${skipDeltaRs}`);
const skipSpark = sparkMissing();
if (skipSpark) console.warn(`silver-compaction: Spark checks skipped: ${skipSpark}`);

const schema = MODEL_SCHEMA;
const INDEX = { maxRows: 1_000_000, lookupMaxShare: 1 };
/** Small enough that a few dozen flushes of a few dozen changes go through several tiers and purges. */
const POLICY: CompactionPolicy = { fanout: 3, maxStepRows: 400, maxDeletedRatio: 0.2 };
const dir = mkdtempSync(join(tmpdir(), 'tide-silver-compaction-'));
const store = new LocalStore(dir);
let engine: ParquetEngine;

const { model, upsert, remove, expected, lastLsn } = silverModel();
async function tideRows(table: DeltaTable): Promise<unknown[][]> {
  await engine.createView('compaction_check', store, table.root, table.files(), schema);
  return (await engine.query('SELECT id, name, note FROM compaction_check ORDER BY id')).map((r) => [Number(r.id), r.name, r.note]);
}
function createDvTable(root: string): Promise<DeltaTable> {
  return DeltaTable.create(store, root, {
    name: root.replace('/', '.').replace(/-/g, '_'),
    schema,
    configuration: { 'delta.enableDeletionVectors': 'true', 'delta.checkpointInterval': '5' },
    protocol: withDeletionVectors(TIDE_PROTOCOL),
  });
}
const parquetFiles = (root: string) => readdirSync(join(dir, root)).filter((n) => n.endsWith('.parquet'));

describe.skipIf(skipDeltaRs)('silver compaction between flushes', () => {
  beforeAll(async () => {
    engine = await ParquetEngine.create();
  });
  afterAll(async () => {
    await engine?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('keeps the file count bounded through many flushes of updates, deletes, TOAST and replays; rows and key index stay exact', async () => {
    const table = await createDvTable('silver/compacted');
    model.clear();
    let seed = 7;
    const rand = (n: number) => Math.floor(((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 4294967296) * n);
    const applied = new Map<number, number>();
    let nextId = 0;
    const steps: string[] = [];
    for (let flush = 0; flush < 40; flush++) {
      const changes: KeyChange[] = [];
      const ids = new Set<number>();
      for (let i = 0; i < 20; i++) ids.add(nextId++); // new keys
      while (ids.size < 40 && model.size > 40) ids.add(rand(nextId)); // random existing (or deleted) keys
      const before = new Map(model);
      for (const id of ids) {
        const r = rand(10);
        if (r === 0 && applied.has(id)) {
          // A replay of an older version: a no-op.
          changes.push({ ...upsert(id, 'stale', 'stale', applied.get(id)! - 1) });
          if (before.has(id)) model.set(id, before.get(id)!);
          else model.delete(id);
        } else if (r < 3 && model.has(id)) {
          applied.delete(id);
          changes.push(remove(id));
        } else {
          const c =
            r < 5 && model.has(id) ? upsert(id, `n${id}-${lastLsn()}`, undefined) : upsert(id, `n${id}-${lastLsn()}`, `note${lastLsn()}`);
          applied.set(id, Number(c.commitLsn));
          changes.push(c);
        }
      }
      await mergeSilver(engine, table, schema, ['id'], { changes }, [], undefined, undefined, INDEX);
      const step = await compactSilver(engine, table, POLICY);
      if (step) {
        expect(step.conflict).toBeUndefined();
        steps.push(step.plan.reason);
        // The commit is a rearrangement: dataChange false everywhere, no txn.
        const commit = readdirSync(join(dir, table.root, '_delta_log')).filter(
          (n) => n === `${String(step.version).padStart(20, '0')}.json`,
        );
        expect(commit).toHaveLength(1);
      }
      // The index forgot the removed files and reads the new one at its next sync; then it holds every live key once.
      const index = keyIndexOf(table);
      if (!(index instanceof SilverKeyIndex)) throw new Error(`the key index of ${table.label} is ${String(index)}`);
      expect(await index.sync(engine, table)).toMatchObject({ ok: true });
      expect(index.size).toBe(model.size);
      if (flush % 8 === 7) {
        expect(await tideRows(table)).toEqual(expected());
        expect(asRows(await readWithDeltaRs(join(dir, table.root)))).toEqual(expected());
      }
    }
    expect(steps).toContain('merge');
    expect(steps).toContain('purge');
    // 40 flushes wrote 40 files; the tiers keep a handful (fanout - 1 per tier, plus full files).
    expect(table.files().length).toBeLessThan(15);
    // The compaction commits say what they are: OPTIMIZE, dataChange false, no txn.
    const reopened = (await DeltaTable.open(store, table.root))!;
    expect(await tideRows(reopened)).toEqual(expected());
    expect(asRows(await readWithDeltaRs(join(dir, table.root)))).toEqual(expected());
  });

  it('writes an OPTIMIZE commit of dataChange=false removes and adds and no txn', async () => {
    const table = await createDvTable('silver/compacted-commit');
    model.clear();
    for (let f = 0; f < 3; f++)
      await mergeSilver(engine, table, schema, ['id'], { changes: Array.from({ length: 10 }, (_, i) => upsert(f * 10 + i, 'a', 'b')) }, []);
    const step = (await compactSilver(engine, table, POLICY))!;
    expect(step.plan.files).toHaveLength(3);
    const lines = readFileSync(join(dir, table.root, '_delta_log', `${String(step.version).padStart(20, '0')}.json`), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, { dataChange?: boolean; operation?: string }>);
    expect(lines[0]!.commitInfo!.operation).toBe('OPTIMIZE');
    expect(lines.filter((a) => a.remove)).toHaveLength(3);
    expect(lines.filter((a) => a.add)).toHaveLength(1);
    expect(lines.every((a) => (a.add ?? a.remove)?.dataChange !== true)).toBe(true);
    expect(lines.some((a) => a.txn)).toBe(false);
    expect(table.files()).toHaveLength(1);
    expect(await tideRows(table)).toEqual(expected());
  });

  it('a step that loses a race to a commit removing one of its files is skipped, leaves no file, and the next step goes through', async () => {
    const table = await createDvTable('silver/compaction-race');
    model.clear();
    for (let f = 0; f < 3; f++)
      await mergeSilver(engine, table, schema, ['id'], { changes: Array.from({ length: 10 }, (_, i) => upsert(f * 10 + i, 'a', 'b')) }, []);
    // A second worker updates a key of the first file after this table object's snapshot: the step plans on the old one.
    const other = (await DeltaTable.open(store, table.root))!;
    await mergeSilver(engine, other, schema, ['id'], { changes: [upsert(1, 'by other', 'c')] }, []);
    const files = parquetFiles(table.root).length;
    const lost = (await compactSilver(engine, table, POLICY))!;
    expect(lost.conflict).toMatch(/already removed file/);
    expect(lost.version).toBeUndefined();
    expect(parquetFiles(table.root)).toHaveLength(files); // its written file is deleted again
    // The table object saw the winner: the next step plans on it and commits.
    expect(await tideRows(table)).toEqual(expected());
    const next = (await compactSilver(engine, table, POLICY))!;
    expect(next.conflict).toBeUndefined();
    expect(next.version).toBe(table.version);
    // A concurrent commit that only adds (new keys) does not conflict: the step is retried at the next version.
    await mergeSilver(engine, other, schema, ['id'], { changes: [upsert(1000, 'new', 'n')] }, []);
    for (let f = 0; f < 2; f++) await mergeSilver(engine, table, schema, ['id'], { changes: [upsert(2000 + f, 'x', 'y')] }, []);
    await other.refresh();
    await mergeSilver(engine, other, schema, ['id'], { changes: [upsert(3000, 'new', 'n')] }, []);
    const retried = (await compactSilver(engine, table, POLICY))!;
    expect(retried.conflict).toBeUndefined();
    await table.refresh();
    expect(await tideRows(table)).toEqual(expected());
    expect(asRows(await readWithDeltaRs(join(dir, table.root)))).toEqual(expected());
  });
});

/**
 * The sink compacts as it flushes: the order pipeline with deletion vectors and a tiny step bound, so silver's
 * tables go through many compaction commits; delta-rs and Spark read silver equal to Postgres.
 */
describe.skipIf(skipDeltaRs)('the sink compacting silver between flushes, end to end', () => {
  let spark: SparkDelta | undefined;
  let sparkReady: Promise<SparkDelta> | undefined;
  beforeAll(() => {
    sparkReady = skipSpark ? undefined : SparkDelta.start();
    sparkReady?.catch(() => undefined);
  });
  afterAll(async () => {
    await (await sparkReady?.catch(() => undefined))?.stop();
  });
  const fx = useOrderPipeline({
    label: 'silvercompact',
    replay: 300,
    sink: {
      'flush.interval.ms': 200,
      'delta.checkpoint.interval': 4,
      'delta.enableDeletionVectors': '.*',
      'silver.compaction.max.step.rows': 300,
      'silver.compaction.fanout': 2,
      'silver.compaction.max.deleted.ratio': 0.1,
    },
    bursts: 4,
    timeoutMs: 400_000,
  });
  beforeAll(async () => {
    spark = await sparkReady;
  }, 300_000);

  it('silver equals Postgres for delta-rs and Spark after the sink compacted it between flushes', async () => {
    const orders = (await DeltaTable.open(fx.store, silverPath('public.orders')))!;
    const log = readdirSync(join(fx.lakeDir, silverPath('public.orders'), '_delta_log')).filter((n) => n.endsWith('.json'));
    const operations = log.map((n) => {
      const first = JSON.parse(readFileSync(join(fx.lakeDir, silverPath('public.orders'), '_delta_log', n), 'utf8').split('\n')[0]!) as {
        commitInfo?: { operation?: string };
      };
      return first.commitInfo?.operation;
    });
    expect(operations, 'the sink compacted silver.orders').toContain('OPTIMIZE');
    expect(orders.files().length).toBeLessThan(operations.filter((o) => o === 'MERGE').length);
    await expectSilverEqualsPostgres(fx.db.url, (root) => readWithDeltaRs(join(fx.lakeDir, root)), 'compacted, delta-rs');
    if (spark) await expectSilverEqualsPostgres(fx.db.url, (root) => spark!.read(join(fx.lakeDir, root)), 'compacted, Spark');
  }, 600_000);
});

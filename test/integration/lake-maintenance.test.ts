import { existsSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Action } from '../../src/lake/delta/actions.ts';
import { DeltaConflictError } from '../../src/lake/delta/delta-errors.ts';
import { DeltaTable } from '../../src/lake/delta/delta-table.ts';
import { checkpointPath, commitPath, decodeDataPath, lastCheckpointPath } from '../../src/lake/delta/log-paths.ts';
import type { LakeSchema } from '../../src/lake/lake-schema.ts';
import { optimizeTable } from '../../src/lake/maintenance/optimize.ts';
import { vacuumTable } from '../../src/lake/maintenance/vacuum.ts';
import { ParquetEngine } from '../../src/lake/parquet/parquet-engine.ts';
import { LocalStore } from '../../src/lake/storage/local-store.ts';
import type { ObjectStore } from '../../src/lake/storage/object-store.ts';
import { startCli } from '../support/cli.ts';
import { readWithDeltaRs, type DeltaRsView } from '../support/delta-reader.ts';

/**
 * OPTIMIZE and VACUUM on real Delta tables (Tide's DeltaTable and ParquetEngine on the local
 * filesystem), checked against delta-rs as the independent reader: compaction rewrites files with
 * dataChange=false and coexists with concurrent appends; vacuum honours retention (time travel) and
 * removes orphans only once they are older than it; all of it also across checkpoints.
 */

const HOUR = 3_600_000;
const dir = mkdtempSync(join(tmpdir(), 'tide-lake-maint-'));
const store = new LocalStore(dir);
let engine: ParquetEngine;
let writerEngine: ParquetEngine;
let failed = false;

const schema: LakeSchema = {
  columns: [
    { name: 'id', type: { kind: 'long' }, nullable: false },
    { name: 'day', type: { kind: 'string' }, nullable: true },
    { name: 'amount', type: { kind: 'decimal', precision: 12, scale: 2 }, nullable: true },
    { name: 'at', type: { kind: 'timestamp' }, nullable: true },
    { name: 'note', type: { kind: 'string' }, nullable: true },
  ],
};
const DAYS = ['2026-11-01', '2026-11-02'];

/** A row as delta_reader.py prints it (decimals as strings, timestamps ISO UTC with microseconds). */
type Row = { id: number; day: string; amount: string; at: string; note: string | null };

function makeRow(id: number): Row {
  const micros = BigInt(Date.UTC(2026, 10, 1, 8, 0, id % 60)) * 1000n + BigInt(id);
  const iso = `${new Date(Number(micros / 1000n)).toISOString().slice(0, 19)}.${String(micros % 1_000_000n).padStart(6, '0')}Z`;
  return { id, day: DAYS[id % 2]!, amount: `${id * 3}.${String(id % 100).padStart(2, '0')}`, at: iso, note: id % 7 ? `n${id}` : null };
}

/** The staged form of `makeRow` (lake JS values: unscaled decimal and micros as bigint). */
function stagedRow(r: Row): unknown[] {
  const [units, cents] = r.amount.split('.');
  const micros = BigInt(Date.parse(r.at.slice(0, 23) + 'Z')) * 1000n + BigInt(r.at.slice(23, 26));
  return [BigInt(r.id), r.day, BigInt(units!) * 100n + BigInt(cents!), micros, r.note];
}

/** One append commit of `rows` (a file per partition) through `table`; returns the version. */
async function append(eng: ParquetEngine, table: DeltaTable, rows: Row[]): Promise<number> {
  const staged = await eng.stage(schema, rows.map(stagedRow));
  try {
    const adds = await eng.writeFiles(`SELECT * FROM ${staged}`, {
      store: table.store,
      root: table.root,
      schema,
      partitionColumns: ['day'],
    });
    return await table.commit(
      adds.map((add) => ({ add })),
      { operation: 'WRITE', parameters: { mode: 'Append' } },
    );
  } finally {
    await eng.drop(staged);
  }
}

/** A fresh table at `root` with `commits` appends of `perCommit` rows (ids continue from `firstId`). */
async function buildTable(root: string, commits: number, perCommit: number, firstId = 1): Promise<{ table: DeltaTable; rows: Row[] }> {
  const table = await DeltaTable.create(store, root, { name: root, schema, partitionColumns: ['day'] });
  const rows: Row[] = [];
  let id = firstId;
  for (let c = 0; c < commits; c++) {
    const batch = Array.from({ length: perCommit }, () => makeRow(id++));
    await append(engine, table, batch);
    rows.push(...batch);
  }
  return { table, rows };
}

const byId = (a: { id: number }, b: { id: number }) => a.id - b.id;

/** delta-rs's rows as Row objects, ordered by id. */
function rowsOf(view: DeltaRsView): Row[] {
  return view.rows.map((r) => Object.fromEntries(view.columns.map((c, i) => [c, r[i]])) as Row).sort(byId);
}

const tableDir = (root: string) => join(dir, root);

function commitActions(root: string, version: number): Action[] {
  return readFileSync(join(dir, commitPath(root, version)), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Action);
}

/** Data files (not the log, not hidden) under the table, relative to its root. */
async function dataFiles(root: string): Promise<string[]> {
  return (await store.list(`${root}/`))
    .map((o) => o.path.slice(root.length + 1))
    .filter((p) => !p.startsWith('_delta_log/') && !/(^|\/)[._][^/]*$/.test(p))
    .sort();
}

/** Set the files' modification time `ageMs` into the past. */
function ageFiles(root: string, files: string[], ageMs: number): void {
  const then = new Date(Date.now() - ageMs);
  for (const f of files) utimesSync(join(tableDir(root), f), then, then);
}

/**
 * The store, with each commit-file create held until `gate` resolves: the optimize's commit waits
 * until the concurrent appender has committed, so the two really overlap whatever the timing.
 */
function gatedStore(inner: ObjectStore, gate: Promise<void>): ObjectStore {
  return new Proxy(inner, {
    get(target, prop, receiver) {
      if (prop === 'putIfAbsent')
        return async (path: string, data: Buffer | Uint8Array) => {
          if (path.includes('/_delta_log/')) await gate;
          return target.putIfAbsent(path, data);
        };
      const value = Reflect.get(target, prop, receiver) as unknown;
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}

beforeAll(async () => {
  engine = await ParquetEngine.create({ threads: 2 });
  writerEngine = await ParquetEngine.create({ threads: 1 });
});
afterEach((ctx) => {
  if (ctx.task.result?.state === 'fail') failed = true;
});
afterAll(async () => {
  await engine?.close();
  await writerEngine?.close();
  await store.close();
  if (failed) console.error(`lake-maintenance: tables kept for inspection in ${dir}`);
  else rmSync(dir, { recursive: true, force: true });
});

describe('optimize: bin-packing with dataChange=false, coexisting with appends', () => {
  const root = 'silver/compacted';
  let rows: Row[];
  let beforeOptimize: DeltaRsView;

  it('compacts the small files of each partition in one commit; an append that lands first is kept, and delta-rs reads the same rows', async () => {
    const built = await buildTable(root, 8, 6);
    rows = built.rows;
    expect(built.table.version).toBe(8);
    expect(built.table.files()).toHaveLength(16); // 8 commits × 2 partitions
    beforeOptimize = await readWithDeltaRs(tableDir(root));
    expect(rowsOf(beforeOptimize)).toEqual([...rows].sort(byId));

    // The optimizer reads version 8; another writer then commits version 9 before the optimize commits.
    const optimizer = (await DeltaTable.open(store, root))!;
    const appender = (await DeltaTable.open(store, root))!;
    const late = [makeRow(1000), makeRow(1001)];
    expect(await append(writerEngine, appender, late)).toBe(9);
    rows.push(...late);

    const result = await optimizeTable(engine, optimizer, { minFileBytes: 1 << 20 });
    expect(result).toMatchObject({ partitions: 2, filesRemoved: 16, filesAdded: 2, version: 10 });
    expect(result.bytesAfter).toBeLessThan(result.bytesBefore);

    const actions = commitActions(root, 10);
    const info = actions.find((a) => 'commitInfo' in a);
    expect(info).toMatchObject({ commitInfo: { operation: 'OPTIMIZE', readVersion: 8, isBlindAppend: false } });
    const removes = actions.filter((a) => 'remove' in a);
    const adds = actions.filter((a) => 'add' in a);
    expect(removes).toHaveLength(16);
    expect(adds).toHaveLength(2);
    for (const a of [...removes, ...adds]) expect(Object.values(a)[0]).toMatchObject({ dataChange: false });

    // The append's two files stay; the 16 small ones are replaced by 2.
    const fresh = (await DeltaTable.open(store, root))!;
    expect(fresh.version).toBe(10);
    const active = new Set(fresh.files().map((f) => f.path));
    expect(active.size).toBe(4);
    for (const a of commitActions(root, 9)) if ('add' in a) expect(active.has(a.add.path)).toBe(true);

    const after = await readWithDeltaRs(tableDir(root), { history: true });
    expect(after.version).toBe(10);
    expect(rowsOf(after)).toEqual([...rows].sort(byId));
    expect(after.files.map((f) => decodeDataPath(f.slice(tableDir(root).length + 1))).sort()).toEqual(
      [...active].map(decodeDataPath).sort(),
    );
    expect(after.history!.find((h) => h.version === 9)).toMatchObject({ operation: 'WRITE' });
    expect(after.history!.find((h) => h.version === 10)).toMatchObject({ operation: 'OPTIMIZE', readVersion: 8 });
    // Time travel to before the optimize reads the original 16 files.
    const v8 = await readWithDeltaRs(tableDir(root), { version: 8 });
    expect(v8.files).toHaveLength(16);
    expect(v8.rows).toEqual(beforeOptimize.rows);
  });

  it('optimize while another writer keeps appending: every append and the optimize commit land, in one history', async () => {
    const startVersion = (await DeltaTable.open(store, root))!.version;
    // Make small files again on top of the compacted ones.
    const writer = (await DeltaTable.open(store, root))!;
    for (let k = 0; k < 4; k++) {
      const batch = [makeRow(2000 + 2 * k), makeRow(2001 + 2 * k)];
      await append(writerEngine, writer, batch);
      rows.push(...batch);
    }
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const optimizer = (await DeltaTable.open(gatedStore(store, gate), root))!;
    const readVersion = optimizer.version;

    const appendVersions: number[] = [];
    let optimizing = true;
    const appending = (async () => {
      let id = 3000;
      while (optimizing || appendVersions.length < 3) {
        const batch = [makeRow(id++), makeRow(id++)];
        appendVersions.push(await append(writerEngine, writer, batch));
        rows.push(...batch);
        if (appendVersions.length === 3) release(); // the optimize may now try its commit
      }
    })();
    const optimizing$ = optimizeTable(engine, optimizer, { minFileBytes: 1 << 20 }).finally(() => (optimizing = false));
    const [result] = await Promise.all([optimizing$, appending]);

    // The optimize read an older version than the appends that committed meanwhile, and still went in.
    expect(appendVersions.length).toBeGreaterThanOrEqual(3);
    expect(result.version).toBeGreaterThan(readVersion + 3);
    const versions = [...appendVersions, result.version!].sort((a, b) => a - b);
    expect(new Set(versions).size).toBe(versions.length);
    expect(versions.at(-1)! - startVersion).toBe(4 + versions.length); // no gap, nothing lost

    const after = await readWithDeltaRs(tableDir(root), { history: true });
    expect(after.version).toBe(versions.at(-1));
    expect(rowsOf(after)).toEqual([...rows].sort(byId));
    const ops = new Map(after.history!.map((h) => [h.version, h.operation]));
    for (const v of appendVersions) expect(ops.get(v), `version ${v}`).toBe('WRITE');
    expect(ops.get(result.version!)).toBe('OPTIMIZE');
    const opt = commitActions(root, result.version!);
    expect(opt.find((a) => 'commitInfo' in a)).toMatchObject({ commitInfo: { readVersion } });
    for (const a of opt) if ('add' in a || 'remove' in a) expect(Object.values(a)[0]).toMatchObject({ dataChange: false });
  });

  it('two optimizes from the same version: one commits, the other fails with DeltaConflictError and changes nothing', async () => {
    const writer = (await DeltaTable.open(store, root))!;
    for (let k = 0; k < 3; k++) {
      const batch = [makeRow(4000 + 2 * k), makeRow(4001 + 2 * k)];
      await append(writerEngine, writer, batch);
      rows.push(...batch);
    }
    const a = (await DeltaTable.open(store, root))!;
    const b = (await DeltaTable.open(store, root))!;
    const before = await dataFiles(root);
    const first = await optimizeTable(engine, a, { minFileBytes: 1 << 20 });
    const second = await optimizeTable(writerEngine, b, { minFileBytes: 1 << 20 }).catch((e: unknown) => e);
    expect(second).toBeInstanceOf(DeltaConflictError);
    expect((second as Error).message).toContain('already removed file');
    const table = (await DeltaTable.open(store, root))!;
    expect(table.version).toBe(first.version);
    // The loser's files were written but never committed: orphans for vacuum (next test).
    const orphans = (await dataFiles(root)).filter((f) => !before.includes(f) && !table.files().some((x) => decodeDataPath(x.path) === f));
    expect(orphans.length).toBeGreaterThan(0);
    expect(rowsOf(await readWithDeltaRs(tableDir(root)))).toEqual([...rows].sort(byId));
  });

  it('vacuum keeps removed files within the retention (time travel works) and orphans younger than it; deletes both once past it', async () => {
    const table = (await DeltaTable.open(store, root))!;
    const active = new Set(table.files().map((f) => decodeDataPath(f.path)));
    const tombstoned = table
      .tombstones()
      .map((t) => decodeDataPath(t.path))
      .filter((p) => !active.has(p));
    expect(tombstoned.length).toBeGreaterThan(16);
    const orphans = (await dataFiles(root)).filter((f) => !active.has(f) && !tombstoned.includes(f));
    expect(orphans.length).toBeGreaterThan(0);
    // One more orphan, as a crashed writer leaves it, written three hours ago.
    const staged = await engine.stage(schema, [stagedRow(makeRow(1))]);
    const [old] = await engine.writeFiles(`SELECT * FROM ${staged}`, { store, root, schema, partitionColumns: ['day'] });
    await engine.drop(staged);
    const oldOrphan = decodeDataPath(old!.path);
    // The table's files were written long ago (only their removal is recent): then only the
    // tombstones, not the files' age, keep the removed ones.
    ageFiles(root, [oldOrphan, ...active, ...tombstoned], 3 * HOUR);
    const logBefore = (await store.list(`${root}/_delta_log/`)).map((o) => o.path);

    // Within a 1 h retention: only the three-hour-old orphan goes.
    const dry = await vacuumTable(table, { retainHours: 1, dryRun: true });
    expect(dry.deleted).toEqual([oldOrphan]);
    expect(existsSync(join(tableDir(root), oldOrphan))).toBe(true);
    const first = await vacuumTable(table, { retainHours: 1 });
    expect(first.deleted).toEqual([oldOrphan]);
    expect(existsSync(join(tableDir(root), oldOrphan))).toBe(false);
    for (const f of [...tombstoned, ...orphans]) expect(existsSync(join(tableDir(root), f)), f).toBe(true);
    const v8 = await readWithDeltaRs(tableDir(root), { version: 8 });
    expect(v8.rows).toEqual(beforeOptimize.rows);

    // Two hours later the tombstones and the young orphans are past the 1 h retention.
    const later = await vacuumTable(table, { retainHours: 1, now: Date.now() + 2 * HOUR });
    expect([...later.deleted].sort()).toEqual([...tombstoned, ...orphans].sort());
    expect(later.bytes).toBeGreaterThan(0);
    expect(await dataFiles(root)).toEqual([...active].sort());
    expect((await store.list(`${root}/_delta_log/`)).map((o) => o.path)).toEqual(logBefore);

    const latest = await readWithDeltaRs(tableDir(root));
    expect(latest.version).toBe(table.version);
    expect(rowsOf(latest)).toEqual([...rows].sort(byId));
    // Version 8's files are gone now: time travel past the retention fails, as it should.
    await expect(readWithDeltaRs(tableDir(root), { version: 8 })).rejects.toThrow(/delta-rs could not read/);
  });
});

describe('optimize and vacuum across checkpoints', () => {
  const root = 'bronze/checkpointed';

  it('an optimize commit that writes the checkpoint keeps its tombstones there: vacuum from the checkpoint honours the retention; delta-rs reads every step', async () => {
    const { rows } = await buildTable(root, 19, 4); // versions 1..19, checkpoint at 10
    expect(existsSync(join(dir, checkpointPath(root, 10)))).toBe(true);
    const result = await optimizeTable(engine, (await DeltaTable.open(store, root))!, { minFileBytes: 1 << 20 });
    expect(result).toMatchObject({ version: 20, filesRemoved: 38, filesAdded: 2 });
    // Version 20 is a multiple of the default interval (10): the optimize commit wrote the checkpoint.
    expect(existsSync(join(dir, checkpointPath(root, 20)))).toBe(true);
    expect(JSON.parse(readFileSync(join(dir, lastCheckpointPath(root)), 'utf8'))).toMatchObject({ version: 20 });
    const appender = (await DeltaTable.open(store, root))!;
    for (const ids of [
      [9001, 9002],
      [9003, 9004],
    ]) {
      const batch = ids.map(makeRow);
      await append(writerEngine, appender, batch);
      rows.push(...batch);
    }

    // A fresh reader starts from checkpoint 20: the optimize's removes must be tombstones there.
    const fromCheckpoint = (await DeltaTable.open(store, root))!;
    expect(fromCheckpoint.version).toBe(22);
    expect(fromCheckpoint.tombstones().filter((t) => !t.dataChange)).toHaveLength(38);
    ageFiles(root, await dataFiles(root), 3 * HOUR);
    const kept = await vacuumTable(fromCheckpoint, { retainHours: 1 });
    expect(kept.deleted).toEqual([]);
    const v15 = await readWithDeltaRs(tableDir(root), { version: 15 });
    expect(v15.row_count).toBe(15 * 4);
    expect(v15.files).toHaveLength(30);

    const gone = await vacuumTable(fromCheckpoint, { retainHours: 0, now: Date.now() + 1000 });
    expect(gone.deleted).toHaveLength(38);
    const latest = await readWithDeltaRs(tableDir(root));
    expect(latest.version).toBe(22);
    expect(rowsOf(latest)).toEqual([...rows].sort(byId));
    expect(latest.files.map((f) => decodeDataPath(f.slice(tableDir(root).length + 1))).sort()).toEqual(
      fromCheckpoint
        .files()
        .map((f) => decodeDataPath(f.path))
        .sort(),
    );
    await expect(readWithDeltaRs(tableDir(root), { version: 15 })).rejects.toThrow(/delta-rs could not read/);
  });
});

describe('tide lake optimize | vacuum over every table: a table Tide must not write is named and skipped, the others are done', () => {
  const lakeDir = mkdtempSync(join(tmpdir(), 'tide-lake-refused-'));
  const lake = new LocalStore(lakeDir);
  afterAll(async () => {
    await lake.close();
    rmSync(lakeDir, { recursive: true, force: true });
  });

  it('a table whose protocol another engine upgraded (a writer feature Tide lacks) is refused; the tables after it are still compacted and vacuumed; exit code 1', async () => {
    // silver.a sorts first: before the fix, its refusal ended the command and silver.b was never compacted.
    for (const root of ['silver/a', 'silver/b']) {
      const table = await DeltaTable.create(lake, root, { name: root, schema, partitionColumns: ['day'] });
      for (let c = 0; c < 3; c++) await append(engine, table, [makeRow(c * 2 + 1), makeRow(c * 2 + 2)]);
    }
    // What Spark writes for ALTER TABLE … SET TBLPROPERTIES ('delta.feature.identityColumns' = 'supported').
    // Written by hand: Tide's own writer refuses to commit a protocol it does not implement.
    writeFileSync(
      join(lakeDir, commitPath('silver/a', 4)),
      [
        {
          commitInfo: {
            timestamp: Date.now(),
            operation: 'SET TBLPROPERTIES',
            operationParameters: {},
            engineInfo: 'Apache-Spark/4.0.1 Delta-Lake/4.0.1',
          },
        },
        { protocol: { minReaderVersion: 1, minWriterVersion: 7, writerFeatures: ['identityColumns'] } },
      ]
        .map((a) => JSON.stringify(a))
        .join('\n') + '\n',
    );
    const b = (await DeltaTable.open(lake, 'silver/b'))!;

    const optimize = startCli(['lake', 'optimize', '--lake', lakeDir], process.cwd());
    expect(await optimize.exited, optimize.output()).toBe(1);
    expect(optimize.output()).toMatch(
      /silver\.a: not compacted: .*refusing to write: Tide does not implement the writer features identityColumns/,
    );
    expect(optimize.output()).toMatch(/silver\.b: 6 files \(.+\) -> 2 \(.+\), version 4/);
    expect((await DeltaTable.open(lake, 'silver/b'))!.version).toBe(b.version + 1);

    const vacuum = startCli(['lake', 'vacuum', '--retain', '0', '--force', '--lake', lakeDir], process.cwd());
    expect(await vacuum.exited, vacuum.output()).toBe(1);
    expect(vacuum.output()).toMatch(/silver\.a: not vacuumed: .*refusing to write/);
    expect(vacuum.output()).toMatch(/silver\.b: deleted 6 files/);
    // A table named on its own still fails with the whole error.
    const one = startCli(['lake', 'optimize', 'silver.a', '--lake', lakeDir], process.cwd());
    expect(await one.exited, one.output()).toBe(1);
    expect(one.output()).toMatch(/refusing to write: Tide does not implement the writer features identityColumns/);
  }, 120_000);
});

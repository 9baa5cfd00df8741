import { DuckDBConnection, DuckDBInstance } from '@duckdb/node-api';
import { randomUUID } from 'node:crypto';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Action, AddAction } from '../../src/lake/delta/actions.ts';
import { DeltaCheckpointError, DeltaConflictError, DeltaLogError, DeltaProtocolError } from '../../src/lake/delta/delta-errors.ts';
import { DeltaTable } from '../../src/lake/delta/delta-table.ts';
import { commitPath, decodeDataPath, encodeDataPath } from '../../src/lake/delta/log-paths.ts';
import type { LakeColumn, LakeSchema } from '../../src/lake/lake-schema.ts';
import { LocalStore } from '../../src/lake/storage/local-store.ts';
import { readWithDeltaRs, runDeltaRsPython } from '../support/delta-reader.ts';

/**
 * The Delta log Tide writes, on the real filesystem, with real Parquet data files written by
 * DuckDB, read back by Tide and by delta-rs (the `deltalake` PyPI package) as an independent reader.
 */

const dir = mkdtempSync(join(tmpdir(), 'tide-delta-log-'));
const scratch = mkdtempSync(join(tmpdir(), 'tide-delta-files-'));
const store = new LocalStore(dir);
let duck: DuckDBInstance;
let db: DuckDBConnection;
let failed = false;

beforeAll(async () => {
  duck = await DuckDBInstance.create(':memory:');
  db = await duck.connect();
  await db.run("SET TimeZone = 'UTC'");
});
afterEach((ctx) => {
  if (ctx.task.result?.state === 'fail') failed = true;
});
afterAll(async () => {
  db?.closeSync();
  duck?.closeSync();
  await store.close();
  rmSync(scratch, { recursive: true, force: true });
  if (failed) console.error(`delta-log test: tables kept for inspection in ${dir}`);
  else rmSync(dir, { recursive: true, force: true });
});

// ---- the test table: every Delta type Tide supports, partitioned by a string column ----------

const baseColumns: LakeColumn[] = [
  { name: 'id', type: { kind: 'long' }, nullable: false },
  { name: 'name', type: { kind: 'string' }, nullable: true, metadata: { 'tide.masked': 'keep' } },
  { name: 'qty', type: { kind: 'integer' }, nullable: true },
  { name: 'small', type: { kind: 'short' }, nullable: true },
  { name: 'price', type: { kind: 'double' }, nullable: true },
  { name: 'ratio', type: { kind: 'float' }, nullable: true },
  { name: 'active', type: { kind: 'boolean' }, nullable: true },
  { name: 'payload', type: { kind: 'binary' }, nullable: true },
  { name: 'day', type: { kind: 'date' }, nullable: true },
  { name: 'at', type: { kind: 'timestamp' }, nullable: true },
  { name: 'amount', type: { kind: 'decimal', precision: 12, scale: 2 }, nullable: true },
  { name: 'tags', type: { kind: 'array', element: { kind: 'string' } }, nullable: true },
  { name: 'p', type: { kind: 'string' }, nullable: true },
];
const noteColumn: LakeColumn = { name: 'note', type: { kind: 'string' }, nullable: true };
const schemaV1: LakeSchema = { columns: baseColumns };
const schemaV2: LakeSchema = { columns: [...baseColumns, noteColumn] };
const DUCK_TYPES: Record<string, string> = {
  id: 'BIGINT',
  name: 'VARCHAR',
  qty: 'INTEGER',
  small: 'SMALLINT',
  price: 'DOUBLE',
  ratio: 'FLOAT',
  active: 'BOOLEAN',
  payload: 'BLOB',
  day: 'DATE',
  at: 'TIMESTAMPTZ',
  amount: 'DECIMAL(12,2)',
  tags: 'VARCHAR[]',
  note: 'VARCHAR',
};

/** A row as delta_reader.py prints it: decimals as strings, timestamps ISO UTC with µs, binary hex, dates YYYY-MM-DD. */
type Row = Record<string, unknown>;

function makeRow(id: number, p: string | null, withNote: boolean, tag = ''): Row {
  const nulls = id % 5 === 0;
  const row: Row = {
    id,
    name: nulls ? null : `Zoë's order ${id}${tag}`,
    qty: nulls ? null : id * 3 - 7,
    small: nulls ? null : (id % 300) - 150,
    price: nulls ? null : id * 1.5 + 0.25,
    ratio: nulls ? null : id / 8, // exact in float32
    active: nulls ? null : id % 2 === 0,
    payload: nulls ? null : Buffer.from([id % 256, 0, 255, 7]).toString('hex'),
    day: nulls ? null : new Date(Date.UTC(2024, 0, 1 + id)).toISOString().slice(0, 10),
    at: nulls
      ? null
      : `${new Date(Date.UTC(2024, 1, 1, 3, 4, id % 60)).toISOString().slice(0, 19)}.${String(100000 + id).padStart(6, '0')}Z`,
    amount: nulls ? null : `${id * 100 + 12}.${String(id % 100).padStart(2, '0')}`,
    tags: id % 3 === 0 ? null : id % 3 === 1 ? ['x', `t${id}`] : ['y', null],
  };
  if (withNote) row.note = id % 2 ? `note ${id}` : null;
  row.p = p;
  return row;
}

const lit = (s: string) => `'${s.replace(/'/g, "''")}'`;
function sqlValue(column: string, v: unknown): string {
  const type = DUCK_TYPES[column]!;
  if (v === null || v === undefined) return `NULL::${type}`;
  if (column === 'payload') return `from_hex(${lit(String(v))})`;
  if (column === 'at') return `${lit(String(v).replace('T', ' ').replace('Z', '+00'))}::TIMESTAMPTZ`;
  if (column === 'tags') return `[${(v as (string | null)[]).map((t) => (t === null ? 'NULL' : lit(t))).join(', ')}]::VARCHAR[]`;
  if (typeof v === 'string') return `${lit(v)}::${type}`;
  return `${String(v)}::${type}`;
}

const rowsByFile = new Map<string, Row[]>();
let fileSeq = 0;

/** Write `rows` (one partition value) as a zstd Parquet file with DuckDB, store it under the table, and return its add action. */
async function writeDataFile(root: string, rows: Row[], withNote: boolean, dataChange = true): Promise<AddAction> {
  const p = rows[0]!.p as string | null;
  const columns = [...baseColumns.map((c) => c.name).filter((c) => c !== 'p'), ...(withNote ? ['note'] : [])];
  const rel = `p=${p ?? '__HIVE_DEFAULT_PARTITION__'}/part-${String(fileSeq++).padStart(5, '0')}-${randomUUID()}.c000.zstd.parquet`;
  const local = join(scratch, `${randomUUID()}.parquet`);
  const values = rows.map((r) => `(${columns.map((c) => sqlValue(c, r[c])).join(', ')})`).join(',\n');
  await db.run(
    `COPY (SELECT * FROM (VALUES ${values}) AS t(${columns.map((c) => `"${c}"`).join(', ')})) TO ${lit(local)} (FORMAT parquet, COMPRESSION zstd)`,
  );
  await store.putFile(`${root}/${rel}`, local);
  rowsByFile.set(`${root}/${rel}`, rows);
  const ids = rows.map((r) => r.id as number);
  const nullCount = Object.fromEntries(columns.map((c) => [c, rows.filter((r) => r[c] === null || r[c] === undefined).length]));
  return {
    path: encodeDataPath(rel),
    partitionValues: { p },
    size: statSync(local).size,
    modificationTime: Date.now(),
    dataChange,
    stats: JSON.stringify({ numRecords: rows.length, minValues: { id: Math.min(...ids) }, maxValues: { id: Math.max(...ids) }, nullCount }),
  };
}

/** The rows a snapshot's files hold, as JSON strings in one column order, sorted: comparable with delta-rs's view. */
function expectedRows(root: string, files: AddAction[], schema: LakeSchema): string[] {
  return files
    .flatMap((f) => rowsByFile.get(`${root}/${decodeDataPath(f.path)}`)!)
    .map((r) => canonical(r, schema))
    .sort();
}
function canonical(row: Row, schema: LakeSchema): string {
  return JSON.stringify(schema.columns.map((c) => row[c.name] ?? null));
}
function deltaRsRows(view: { columns: string[]; rows: unknown[][] }, schema: LakeSchema): string[] {
  return view.rows.map((r) => canonical(Object.fromEntries(view.columns.map((c, i) => [c, r[i]])), schema)).sort();
}
const absoluteFiles = (root: string, files: AddAction[], base = dir) => files.map((f) => join(base, root, decodeDataPath(f.path))).sort();

// ---- 25 commits: appends, merges (remove + add), compactions, a schema change, txns ------------

const ROOT = 'silver/orders';
const PARTITIONS = ['a', 'b', 'c d', null];
interface State {
  files: AddAction[];
  schema: LakeSchema;
  txn: Record<string, number | undefined>;
}
const history: State[] = [];
const APPS = ['tide-orders.public.orders-0', 'tide-orders.public.orders-1'];
const record = (t: DeltaTable) =>
  (history[t.version] = { files: t.files(), schema: t.schema, txn: Object.fromEntries(APPS.map((a) => [a, t.txnVersion(a)])) });

describe('Delta log on the local filesystem', () => {
  let table: DeltaTable;
  let nextId = 1;

  it('creates a table at reader 1 / writer 2 and commits 25 versions of real Parquet files', async () => {
    table = await DeltaTable.create(store, ROOT, {
      name: 'silver.orders',
      schema: schemaV1,
      partitionColumns: ['p'],
      description: 'orders',
    });
    expect(table.version).toBe(0);
    expect(table.protocol).toEqual({ minReaderVersion: 1, minWriterVersion: 2 });
    record(table);
    let withNote = false;
    for (let v = 1; v <= 25; v++) {
      const actions: Action[] = [];
      let operation = 'WRITE';
      const now = Date.now();
      if (v === 12) {
        actions.push({ metaData: table.evolveSchema(schemaV2) });
        withNote = true;
        operation = 'ADD COLUMNS';
      }
      if (v % 7 === 0) {
        // A merge: rewrite the oldest file with changed names.
        const old = table.files()[0]!;
        const rows = rowsByFile
          .get(`${ROOT}/${decodeDataPath(old.path)}`)!
          .map((r) => makeRow(r.id as number, r.p as string | null, withNote, ` v${v}`));
        actions.push({
          remove: { path: old.path, deletionTimestamp: now, dataChange: true, partitionValues: old.partitionValues, size: old.size },
        });
        actions.push({ add: await writeDataFile(ROOT, rows, withNote) });
        operation = 'MERGE';
      } else if (v % 9 === 0) {
        // A compaction: two files of one partition become one, dataChange=false.
        const byPartition = new Map<string | null, AddAction[]>();
        for (const f of table.files())
          byPartition.set(f.partitionValues.p ?? null, [...(byPartition.get(f.partitionValues.p ?? null) ?? []), f]);
        const pair = [...byPartition.values()].find((fs) => fs.length >= 2)!.slice(0, 2);
        const rows = pair.flatMap((f) => rowsByFile.get(`${ROOT}/${decodeDataPath(f.path)}`)!);
        for (const f of pair)
          actions.push({
            remove: { path: f.path, deletionTimestamp: now, dataChange: false, partitionValues: f.partitionValues, size: f.size },
          });
        actions.push({ add: await writeDataFile(ROOT, rows, withNote, false) });
        operation = 'OPTIMIZE';
      } else {
        const p = PARTITIONS[v % PARTITIONS.length]!;
        const rows = [0, 1, 2].map(() => makeRow(nextId++, p, withNote));
        actions.push(
          { add: await writeDataFile(ROOT, rows, withNote) },
          { txn: { appId: APPS[v % 2]!, version: v * 100, lastUpdated: now } },
        );
      }
      expect(await table.commit(actions, { operation })).toBe(v);
      record(table);
    }
    expect(table.version).toBe(25);
    expect(table.schema).toEqual(schemaV2);
    expect(table.txnVersion(APPS[0]!)).toBe(2400);
    expect(table.txnVersion(APPS[1]!)).toBe(2500);
  });

  it('writes Parquet checkpoints at versions 10 and 20 and points _last_checkpoint at 20', async () => {
    const log = readdirSync(join(dir, ROOT, '_delta_log'));
    expect(log.filter((n) => n.includes('checkpoint'))).toEqual([
      '00000000000000000010.checkpoint.parquet',
      '00000000000000000020.checkpoint.parquet',
      '_last_checkpoint',
    ]);
    expect(log.filter((n) => n.endsWith('.json'))).toHaveLength(26);
    const last = JSON.parse(readFileSync(join(dir, ROOT, '_delta_log/_last_checkpoint'), 'utf8'));
    const checkpoint = join(dir, ROOT, '_delta_log/00000000000000000020.checkpoint.parquet');
    // protocol + metaData + 2 txns + active files (+ the tombstones of the last week)
    const tombstones = (await DeltaTable.open(store, ROOT, { version: 20, ignoreCheckpoints: true }))!.tombstones().length;
    expect(tombstones).toBeGreaterThan(0);
    expect(last).toEqual({
      version: 20,
      size: 4 + history[20]!.files.length + tombstones,
      sizeInBytes: statSync(checkpoint).size,
      numOfAddFiles: history[20]!.files.length,
    });
    const schema = (
      await db.runAndReadAll(`SELECT name, type, converted_type FROM parquet_schema(${lit(checkpoint)})`)
    ).getRowObjectsJson();
    const names = schema.map((r) => r.name);
    for (const c of ['txn', 'add', 'remove', 'metaData', 'protocol', 'partitionValues', 'schemaString', 'minReaderVersion', 'appId'])
      expect(names).toContain(c);
    expect(schema.filter((r) => r.name === 'partitionValues').map((r) => r.converted_type)).toEqual(['MAP', 'MAP']);
  });

  it('re-opening from a checkpoint gives the same snapshot as replaying every JSON commit, at every version', async () => {
    for (let v = 0; v <= 25; v++) {
      const fromCheckpoint = (await DeltaTable.open(store, ROOT, { version: v }))!;
      const fromJson = (await DeltaTable.open(store, ROOT, { version: v, ignoreCheckpoints: true }))!;
      const byPath = (fs: AddAction[]) => [...fs].sort((a, b) => a.path.localeCompare(b.path));
      expect(fromCheckpoint.version).toBe(v);
      expect(byPath(fromCheckpoint.files())).toEqual(byPath(fromJson.files()));
      expect(byPath(fromJson.files())).toEqual(byPath(history[v]!.files));
      expect(fromCheckpoint.metadata).toEqual(fromJson.metadata);
      expect(fromCheckpoint.protocol).toEqual(fromJson.protocol);
      expect(fromCheckpoint.schema).toEqual(history[v]!.schema);
      expect(
        fromCheckpoint
          .tombstones()
          .map((t) => t.path)
          .sort(),
      ).toEqual(
        fromJson
          .tombstones()
          .map((t) => t.path)
          .sort(),
      );
      for (const app of APPS) expect(fromCheckpoint.txnVersion(app)).toBe(history[v]!.txn[app]);
    }
  });

  it('after metadata cleanup (commits before the checkpoint deleted) Tide and delta-rs both read through the checkpoint', async () => {
    const cleaned = `${ROOT}-cleaned`;
    cpSync(join(dir, ROOT), join(dir, cleaned), { recursive: true });
    const stale = (await DeltaTable.open(store, cleaned, { version: 5 }))!;
    for (let v = 0; v < 20; v++) rmSync(join(dir, commitPath(cleaned, v)));
    rmSync(join(dir, cleaned, '_delta_log/00000000000000000010.checkpoint.parquet'));
    const t = (await DeltaTable.open(store, cleaned))!;
    expect(t.version).toBe(25);
    expect(
      t
        .files()
        .map((f) => f.path)
        .sort(),
    ).toEqual(history[25]!.files.map((f) => f.path).sort());
    expect(t.txnVersion(APPS[1]!)).toBe(2500);
    await expect(DeltaTable.open(store, cleaned, { ignoreCheckpoints: true })).rejects.toThrow(DeltaLogError);
    // An instance left at version 5 finds commit 6 gone, and catches up through the checkpoint.
    await stale.refresh();
    expect(stale.version).toBe(25);
    expect(
      stale
        .files()
        .map((f) => f.path)
        .sort(),
    ).toEqual(
      t
        .files()
        .map((f) => f.path)
        .sort(),
    );
    const view = await readWithDeltaRs(join(dir, cleaned), { appIds: APPS });
    expect(view.version).toBe(25);
    expect(view.files).toEqual(absoluteFiles(cleaned, history[25]!.files));
    expect(view.txn).toEqual({ [APPS[0]!]: 2400, [APPS[1]!]: 2500 });
    for (const [path, r] of [...rowsByFile])
      if (path.startsWith(`${ROOT}/`)) rowsByFile.set(`${cleaned}/${path.slice(ROOT.length + 1)}`, r);
    expect(deltaRsRows(view, schemaV2)).toEqual(expectedRows(cleaned, history[25]!.files, schemaV2));
  });

  it('delta-rs reads every version with the same protocol, schema, files and rows', async () => {
    for (let v = 0; v <= 25; v++) {
      const state = history[v]!;
      const view = await readWithDeltaRs(join(dir, ROOT), { version: v, appIds: APPS, fileSchemas: v === 25 });
      expect(view.version).toBe(v);
      expect(view.protocol).toEqual({ min_reader_version: 1, min_writer_version: 2, reader_features: null, writer_features: null });
      expect(view.partition_columns).toEqual(['p']);
      expect(view.schema.fields.map((f) => [f.name, f.type, f.nullable])).toEqual(
        state.schema.columns.map((c) => [
          c.name,
          c.type.kind === 'decimal'
            ? 'decimal(12,2)'
            : c.type.kind === 'array'
              ? { type: 'array', elementType: 'string', containsNull: true }
              : c.type.kind,
          c.nullable,
        ]),
      );
      expect(view.files).toEqual(absoluteFiles(ROOT, state.files));
      expect(view.row_count).toBe(state.files.reduce((n, f) => n + rowsByFile.get(`${ROOT}/${decodeDataPath(f.path)}`)!.length, 0));
      expect(deltaRsRows(view, state.schema)).toEqual(expectedRows(ROOT, state.files, state.schema));
      expect(view.txn).toEqual(Object.fromEntries(APPS.map((a) => [a, state.txn[a] ?? null])));
      if (view.file_schemas) {
        for (const [file, columns] of Object.entries(view.file_schemas)) {
          expect(columns.at, file).toBe('timestamp[us, tz=UTC]');
          expect(columns.amount, file).toBe('decimal128(12, 2)');
          expect(columns).toMatchObject({
            id: 'int64',
            qty: 'int32',
            small: 'int16',
            ratio: 'float',
            payload: 'binary',
            day: 'date32[day]',
          });
        }
      }
    }
  });
});

describe('concurrent writers on one table', () => {
  const op = { operation: 'WRITE', parameters: { mode: 'Append' } };
  const create = (root: string) =>
    DeltaTable.create(new LocalStore(dir), root, {
      name: root,
      schema: schemaV1,
      partitionColumns: ['p'],
      configuration: { 'delta.checkpointInterval': '5' },
    });
  const rows = (n: number, p: string) => Array.from({ length: n }, () => makeRow(9000 + fileSeq * 10 + n--, p, false));

  it('two writers racing for the same version: one wins, the other retries at the next; 16 racing appends all land', async () => {
    const root = 'race/appends';
    const a = await create(root);
    const b = (await DeltaTable.open(new LocalStore(dir), root))!;
    const addsA = [];
    const addsB = [];
    for (let i = 0; i < 8; i++) {
      addsA.push(await writeDataFile(root, rows(2, 'a'), false));
      addsB.push(await writeDataFile(root, rows(2, 'b'), false));
    }
    // Both start from version 0 and aim at version 1 at the same time.
    const first = await Promise.all([
      a.commit([{ add: addsA[0]! }, { txn: { appId: 'writer-a', version: 0 } }], op),
      b.commit([{ add: addsB[0]! }, { txn: { appId: 'writer-b', version: 0 } }], op),
    ]);
    expect([...first].sort()).toEqual([1, 2]);
    const retried = first[0] === 2 ? a : b;
    const info = JSON.parse(readFileSync(join(dir, commitPath(root, 2)), 'utf8').split('\n')[0]!).commitInfo;
    expect(info.readVersion).toBe(0);
    expect(retried.files()).toHaveLength(2);

    const run = async (t: DeltaTable, adds: AddAction[], app: string) => {
      const versions: number[] = [];
      for (const [i, add] of adds.slice(1).entries()) versions.push(await t.commit([{ add }, { txn: { appId: app, version: i + 1 } }], op));
      return versions;
    };
    const [va, vb] = await Promise.all([run(a, addsA, 'writer-a'), run(b, addsB, 'writer-b')]);
    expect([...va, ...vb].sort((x, y) => x - y)).toEqual(Array.from({ length: 14 }, (_, i) => i + 3));
    for (const vs of [va, vb]) expect(vs).toEqual([...vs].sort((x, y) => x - y));

    const reopened = (await DeltaTable.open(store, root))!;
    expect(reopened.version).toBe(16);
    expect(
      reopened
        .files()
        .map((f) => f.path)
        .sort(),
    ).toEqual([...addsA, ...addsB].map((f) => f.path).sort());
    expect([reopened.txnVersion('writer-a'), reopened.txnVersion('writer-b')]).toEqual([7, 7]);
    expect(readdirSync(join(dir, root, '_delta_log')).filter((n) => n.endsWith('.checkpoint.parquet'))).toEqual([
      '00000000000000000005.checkpoint.parquet',
      '00000000000000000010.checkpoint.parquet',
      '00000000000000000015.checkpoint.parquet',
    ]);
    const view = await readWithDeltaRs(join(dir, root), { appIds: ['writer-a', 'writer-b'] });
    expect(view.version).toBe(16);
    expect(view.files).toEqual(absoluteFiles(root, reopened.files()));
    expect(deltaRsRows(view, schemaV1)).toEqual(expectedRows(root, reopened.files(), schemaV1));
    expect(view.txn).toEqual({ 'writer-a': 7, 'writer-b': 7 });
  });

  it('two writers removing the same file at the same version: one commits, the other gets DeltaConflictError', async () => {
    const root = 'race/merges';
    const a = await create(root);
    const f = await writeDataFile(root, rows(3, 'a'), false);
    await a.commit([{ add: f }], op);
    const b = (await DeltaTable.open(new LocalStore(dir), root))!;
    const [fromA, fromB] = [await writeDataFile(root, rows(3, 'a'), false), await writeDataFile(root, rows(3, 'a'), false)];
    const rm = { path: f.path, deletionTimestamp: Date.now(), dataChange: true, partitionValues: f.partitionValues, size: f.size };
    const results = await Promise.allSettled([
      a.commit([{ remove: rm }, { add: fromA }], { operation: 'MERGE' }),
      b.commit([{ remove: rm }, { add: fromB }], { operation: 'MERGE' }),
    ]);
    const won = results.filter((r) => r.status === 'fulfilled');
    const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(won).toHaveLength(1);
    expect(lost).toHaveLength(1);
    expect(lost[0]!.reason).toBeInstanceOf(DeltaConflictError);
    expect(lost[0]!.reason).toMatchObject({ version: 2 });
    expect(String(lost[0]!.reason.message)).toContain(`already removed file ${f.path}`);
    const winnerAdd = results[0]!.status === 'fulfilled' ? fromA : fromB;
    const reopened = (await DeltaTable.open(store, root))!;
    expect(reopened.version).toBe(2);
    expect(reopened.files().map((x) => x.path)).toEqual([winnerAdd.path]);
    expect(existsCommit(root, 3)).toBe(false);
  });
});

const existsCommit = (root: string, v: number) =>
  readdirSync(join(dir, root, '_delta_log')).includes(commitPath('', v).slice('_delta_log/'.length));

describe('protocols and tables Tide did not write', () => {
  const metaData = {
    id: randomUUID(),
    format: { provider: 'parquet', options: {} },
    schemaString: JSON.stringify({ type: 'struct', fields: [{ name: 'a', type: 'long', nullable: true, metadata: {} }] }),
    partitionColumns: [],
    configuration: {},
  };

  it('refuses to write a table at writer version 7 with features it does not implement, naming table, versions and features', async () => {
    const root = 'features/w7';
    const commit0 = [
      { protocol: { minReaderVersion: 1, minWriterVersion: 7, writerFeatures: ['appendOnly', 'generatedColumns', 'identityColumns'] } },
      { metaData },
    ];
    await store.putIfAbsent(commitPath(root, 0), Buffer.from(commit0.map((a) => JSON.stringify(a)).join('\n')));
    const t = (await DeltaTable.open(store, root))!;
    expect(t.files()).toEqual([]);
    const err = await t
      .commit([{ add: { path: 'x.parquet', partitionValues: {}, size: 1, modificationTime: 1, dataChange: true } }], { operation: 'WRITE' })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeltaProtocolError);
    expect((err as Error).message).toBe(
      `Delta table ${store.uri}/${root}: refusing to write: Tide does not implement the writer features generatedColumns, identityColumns (it implements appendOnly, invariants, deletionVectors). ` +
        'Write to a table Tide created, or let Tide create a new one (table protocol: reader version 1, writer version 7, writer features [appendOnly, generatedColumns, identityColumns])',
    );
    expect(existsCommit(root, 1)).toBe(false);
  });

  it('refuses delta-rs tables with reader features beyond deletion vectors (reader 3) and change data feed (writer 4)', async () => {
    await runDeltaRsPython(
      [
        'import sys, pyarrow as pa',
        'from deltalake import DeltaTable',
        "s = pa.schema([('a', pa.int64())])",
        "DeltaTable.create(sys.argv[1], s, configuration={'delta.enableDeletionVectors': 'true'})",
        "DeltaTable.create(sys.argv[2], s, configuration={'delta.enableChangeDataFeed': 'true'})",
      ].join('\n'),
      [join(dir, 'features/dv'), join(dir, 'features/cdf')],
    );
    // delta-rs 1.x declares variantType next to deletionVectors on a new table: Tide reads deletion vectors, not variants.
    await expect(DeltaTable.open(store, 'features/dv')).rejects.toThrow(
      /cannot read: Tide does not implement the reader features variantType \(it implements deletionVectors\)/,
    );
    const cdf = (await DeltaTable.open(store, 'features/cdf'))!;
    await expect(cdf.commit([], { operation: 'WRITE' })).rejects.toThrow(/refusing to write: .*this table needs writer version 4/);
    await expect(DeltaTable.create(store, 'features/cdf', { name: 'x', schema: schemaV1 })).resolves.toMatchObject({ version: 0 });
  });

  it('reads a table delta-rs wrote (with its checkpoint), appends to it, and delta-rs reads the result', async () => {
    const root = 'interop/from-delta-rs';
    await runDeltaRsPython(
      [
        'import sys, pyarrow as pa',
        'from deltalake import DeltaTable, write_deltalake',
        "t = pa.table({'id': pa.array([1, 2, 3], pa.int64()), 'p': ['a', 'b', 'a']})",
        "write_deltalake(sys.argv[1], t, partition_by=['p'])",
        "write_deltalake(sys.argv[1], t, partition_by=['p'], mode='append')",
        'DeltaTable(sys.argv[1]).create_checkpoint()',
        "write_deltalake(sys.argv[1], t, partition_by=['p'], mode='overwrite')",
      ].join('\n'),
      [join(dir, root)],
    );
    const theirs = (await readWithDeltaRs(join(dir, root))).files;
    const t = (await DeltaTable.open(store, root))!;
    expect(t.version).toBe(2);
    expect(t.partitionColumns).toEqual(['p']);
    expect(t.schema.columns.map((c) => [c.name, c.type.kind])).toEqual([
      ['id', 'long'],
      ['p', 'string'],
    ]);
    expect(absoluteFiles(root, t.files())).toEqual(theirs);
    const fromCheckpoint = (await DeltaTable.open(store, root, { version: 1 }))!;
    expect(fromCheckpoint.files()).toHaveLength(4);

    const local = join(scratch, 'interop.parquet');
    await db.run(`COPY (SELECT 42::BIGINT AS id) TO ${lit(local)} (FORMAT parquet, COMPRESSION zstd)`);
    await store.putFile(`${root}/p=z/part-tide.zstd.parquet`, local);
    const add: AddAction = {
      path: 'p=z/part-tide.zstd.parquet',
      partitionValues: { p: 'z' },
      size: statSync(local).size,
      modificationTime: Date.now(),
      dataChange: true,
    };
    expect(await t.commit([{ add }], { operation: 'WRITE' })).toBe(3);
    const view = await readWithDeltaRs(join(dir, root));
    expect(view.version).toBe(3);
    expect(view.files).toEqual([...theirs, join(dir, root, 'p=z/part-tide.zstd.parquet')].sort());
    expect(view.rows).toEqual([
      [1, 'a'],
      [2, 'b'],
      [3, 'a'],
      [42, 'z'],
    ]);
  });
});

describe('checkpoint failure', () => {
  it('a commit whose checkpoint cannot be stored is still committed; the error says so', async () => {
    class FailingCheckpoints extends LocalStore {
      override async putFile(path: string, localFile: string): Promise<void> {
        if (path.endsWith('.checkpoint.parquet')) throw new Error('disk full (simulated)');
        return super.putFile(path, localFile);
      }
    }
    const root = 'checkpoint/failing';
    const t = await DeltaTable.create(new FailingCheckpoints(dir), root, {
      name: 'f',
      schema: schemaV1,
      configuration: { 'delta.checkpointInterval': '2' },
    });
    await t.commit([{ txn: { appId: 'x', version: 1 } }], { operation: 'WRITE' });
    const err = await t.commit([{ txn: { appId: 'x', version: 2 } }], { operation: 'WRITE' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeltaCheckpointError);
    expect(err).toMatchObject({ committedVersion: 2 });
    expect((err as Error).message).toMatch(
      /version 2 was committed, but writing its checkpoint failed: disk full \(simulated\)\. The table is intact/,
    );
    expect(t.version).toBe(2);
    expect((await DeltaTable.open(store, root))!.txnVersion('x')).toBe(2);
    expect(readdirSync(join(dir, root, '_delta_log'))).toEqual([
      '00000000000000000000.json',
      '00000000000000000001.json',
      '00000000000000000002.json',
    ]);
  });
});

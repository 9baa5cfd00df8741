import { spawn } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LakeColumn, LakeSchema } from '../../src/lake/lake-schema.ts';
import { ParquetEngineError, SchemaViolationError, StageValueError } from '../../src/lake/parquet/parquet-errors.ts';
import type { KeyChange } from '../../src/sink/silver-changes.ts';
import { changeColumns, changeRows, stageChanges } from '../../src/sink/silver-merge.ts';
import { SILVER_META } from '../../src/sink/table-layout.ts';
import { duckdbType, ParquetEngine, type DataFile } from '../../src/lake/parquet/parquet-engine.ts';
import { statsJson } from '../../src/lake/parquet/file-stats.ts';
import { PARALLEL_SCAN_MIN_ROWS } from '../../src/lake/parquet/column-scan.ts';
import { execVenvPython } from '../support/delta-reader.ts';
import { writeDeletionVectors } from '../../src/lake/delta/deletion-vector.ts';
import { VIEW_FILE_COLUMN, VIEW_ROW_COLUMN } from '../../src/lake/parquet/table-view.ts';
import type { ObjectInfo, ObjectStore } from '../../src/lake/storage/object-store.ts';

// Real DuckDB, real files: stage → writeFiles → createView, and the files checked with DuckDB's own
// Parquet readers (parquet_schema, parquet_metadata, read_parquet).

/** A minimal local-directory ObjectStore for this file (the shared LocalStore lives in src/lake/storage). */
function dirStore(root: string): ObjectStore {
  const file = (p: string): string => join(root, p);
  const info = async (p: string): Promise<ObjectInfo | undefined> => {
    const s = await stat(file(p)).catch(() => undefined);
    return s?.isFile() ? { path: p, size: s.size, modified: s.mtimeMs } : undefined;
  };
  const walk = async (dir: string): Promise<string[]> => {
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
    const out = await Promise.all(entries.map((e) => (e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)])));
    return out.flat();
  };
  return {
    uri: `file://${root}`,
    get: (p) => readFile(file(p)).catch(() => undefined),
    put: async (p, data) => {
      await mkdir(dirname(file(p)), { recursive: true });
      await writeFile(file(p), data);
    },
    putIfAbsent: async (p, data) => {
      await mkdir(dirname(file(p)), { recursive: true });
      return writeFile(file(p), data, { flag: 'wx' }).then(
        () => true,
        () => false,
      );
    },
    putFile: async (p, local) => {
      await mkdir(dirname(file(p)), { recursive: true });
      await copyFile(local, file(p));
    },
    localFile: async (p) => {
      if (!(await info(p))) throw new Error(`${p} does not exist in ${root}`);
      return file(p);
    },
    list: async (prefix) => {
      const paths = (await walk(root)).map((f) => relative(root, f)).filter((p) => p.startsWith(prefix));
      return (await Promise.all(paths.sort().map(info))).filter((i): i is ObjectInfo => i !== undefined);
    },
    stat: info,
    delete: (p) => unlink(file(p)).catch(() => undefined),
    close: async () => undefined,
  };
}

const c = (name: string, type: LakeColumn['type'], nullable = true): LakeColumn => ({ name, type, nullable });

const ALL_TYPES: LakeSchema = {
  columns: [
    c('id', { kind: 'long' }, false),
    c('s', { kind: 'string' }),
    c('i', { kind: 'integer' }),
    c('sh', { kind: 'short' }),
    c('d', { kind: 'double' }),
    c('f', { kind: 'float' }),
    c('ok', { kind: 'boolean' }),
    c('bin', { kind: 'binary' }),
    c('day', { kind: 'date' }),
    c('ts', { kind: 'timestamp' }),
    c('amount', { kind: 'decimal', precision: 38, scale: 10 }),
    c('price', { kind: 'decimal', precision: 9, scale: 2 }),
    c('longs', { kind: 'array', element: { kind: 'long' } }),
    c('names', { kind: 'array', element: { kind: 'string' } }),
  ],
};

const BIG = 10n ** 38n - 1n;
const ALL_ROWS: unknown[][] = [
  [
    9007199254740993n,
    'héllo 🌊 日本語 é',
    2147483647,
    32767,
    1e308,
    Math.fround(3.14),
    true,
    new Uint8Array([0, 1, 255]),
    2932896,
    253402300799999999n,
    BIG,
    12345n,
    [1n, null, 2n ** 62n],
    ['a', null, '🌊'],
  ],
  [
    -(2n ** 63n),
    '',
    -2147483648,
    -32768,
    -0.5,
    Math.fround(-1e-7),
    false,
    new Uint8Array([]),
    -719162,
    -62135596800000000n,
    -BIG,
    -99999999n,
    [],
    [],
  ],
  [2n, 'x'.repeat(40) + 'é', 0, 0, Number.NaN, 0, null, null, -1, -1n, -5n, 1n, null, null],
  [3n, null, null, null, null, null, null, null, null, null, null, null, null, null],
  [4n, 'Zoë', 7, -1, 2.5, 0.5, true, new Uint8Array([9]), 0, 1_700_000_000_000_001n, 1n, 0n, [-(2n ** 63n)], ['']],
];

let engine: ParquetEngine;
let dir: string;
let store: ObjectStore;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tide-parquet-test-'));
  store = dirStore(join(dir, 'lake'));
  engine = await ParquetEngine.create({ threads: 2 });
});

afterAll(async () => {
  await engine?.close();
  await rm(dir, { recursive: true, force: true });
});

async function writeTable(
  root: string,
  schema: LakeSchema,
  rows: unknown[][],
  opts: { partitionColumns?: string[]; targetFileRows?: number; select?: (t: string) => string } = {},
): Promise<DataFile[]> {
  const staged = await engine.stage(schema, rows);
  try {
    return await engine.writeFiles(opts.select?.(staged) ?? `SELECT * FROM ${staged}`, {
      store,
      root,
      schema,
      partitionColumns: opts.partitionColumns,
      targetFileRows: opts.targetFileRows,
    });
  } finally {
    await engine.drop(staged);
  }
}

const local = (root: string, f: DataFile): Promise<string> => store.localFile(`${root}/${decodeURIComponent(f.path)}`);
const sqlStr = (s: string): string => `'${s.replace(/'/g, "''")}'`;

/** The stats JSON split into its sections (the writer emits them in this order, no whitespace). */
function sections(stats: string): { min: string; max: string; nulls: string } {
  const [head, rest] = stats.split(',"maxValues":{') as [string, string];
  const [max, nulls] = rest.split(',"nullCount":{') as [string, string];
  return { min: head.slice(head.indexOf('"minValues":{') + 13), max, nulls };
}
const hasEntry = (section: string, col: string, json: string): boolean =>
  section.startsWith(`"${col}":${json},`) || section.includes(`,"${col}":${json},`) || section.includes(`"${col}":${json}}`);

describe('round trip', () => {
  it('stages, writes and reads back every lake type, with nulls, arrays, decimals, far dates and 64-bit longs', async () => {
    const files = await writeTable('all_types', ALL_TYPES, ALL_ROWS);
    expect(files).toHaveLength(1);
    await engine.createView('all_types_v', store, 'all_types', files, ALL_TYPES);
    const back = await engine.query('SELECT * FROM all_types_v ORDER BY id');
    const expected = [...ALL_ROWS].sort((a, b) => (BigInt(a[0] as bigint) < BigInt(b[0] as bigint) ? -1 : 1));
    expect(back.map((r) => ALL_TYPES.columns.map((col) => r[col.name]))).toEqual(expected);
    const described = await engine.query('DESCRIBE all_types_v');
    expect(described.map((r) => [r.column_name, r.column_type])).toEqual(ALL_TYPES.columns.map((col) => [col.name, duckdbTypeName(col)]));
  });

  it('writes Parquet with zstd, INT64 micros UTC-adjusted timestamps and DECIMAL', async () => {
    const [file] = await writeTable('physical', ALL_TYPES, ALL_ROWS);
    const path = await local('physical', file!);
    expect(file!.size).toBe((await stat(path)).size);
    const schema = await engine.query(
      `SELECT name, type, logical_type, converted_type, scale, precision FROM parquet_schema(${sqlStr(path)})`,
    );
    const byName = new Map(schema.map((r) => [r.name, r]));
    expect(byName.get('ts')).toMatchObject({ type: 'INT64', converted_type: 'TIMESTAMP_MICROS' });
    expect(String(byName.get('ts')!.logical_type)).toMatch(/isAdjustedToUTC=1.*MICROS=MicroSeconds\(\)/);
    expect(byName.get('amount')).toMatchObject({ type: 'FIXED_LEN_BYTE_ARRAY', converted_type: 'DECIMAL', scale: 10n, precision: 38n });
    expect(byName.get('price')).toMatchObject({ converted_type: 'DECIMAL', scale: 2n, precision: 9n });
    expect(byName.get('day')).toMatchObject({ type: 'INT32', converted_type: 'DATE' });
    expect(byName.get('sh')).toMatchObject({ type: 'INT32', converted_type: 'INT_16' });
    expect(byName.get('id')).toMatchObject({ type: 'INT64' });
    const codecs = await engine.query(`SELECT DISTINCT compression FROM parquet_metadata(${sqlStr(path)})`);
    expect(codecs).toEqual([{ compression: 'ZSTD' }]);
  });

  it('writes stats that match DuckDB aggregates over the file', async () => {
    const [file] = await writeTable('stats', ALL_TYPES, ALL_ROWS);
    const path = sqlStr(await local('stats', file!));
    const stats = file!.stats!;
    expect(JSON.parse(stats).numRecords).toBe(ALL_ROWS.length);
    const { min, max, nulls } = sections(stats);
    for (const col of ALL_TYPES.columns) {
      const q = `"${col.name}"`;
      const [n] = await engine.query(`SELECT count(*) - count(${q}) AS n FROM read_parquet(${path})`);
      expect(hasEntry(nulls, col.name, String(n!.n)), `nullCount ${col.name} in ${stats}`).toBe(true);
    }
    // Exact bounds, as DuckDB renders them independently of the writer's formatting code.
    const [x] = await engine.query(
      `SELECT min(id)::VARCHAR AS id_lo, max(id)::VARCHAR AS id_hi, min(amount)::VARCHAR AS am_lo, max(amount)::VARCHAR AS am_hi,
              min(price)::VARCHAR AS pr_lo, max(price)::VARCHAR AS pr_hi, min(i) AS i_lo, max(i) AS i_hi, min(sh) AS sh_lo, max(sh) AS sh_hi,
              strftime(date_trunc('millisecond', min(ts)), '%Y-%m-%dT%H:%M:%S.%g') || 'Z' AS ts_lo,
              strftime(min(day), '%Y-%m-%d') AS day_lo, strftime(max(day), '%Y-%m-%d') AS day_hi, min(d) AS d_lo, min(s) AS s_lo
       FROM read_parquet(${path})`,
    );
    expect(hasEntry(min, 'id', x!.id_lo as string)).toBe(true);
    expect(hasEntry(max, 'id', x!.id_hi as string)).toBe(true);
    expect(hasEntry(min, 'amount', x!.am_lo as string)).toBe(true);
    expect(hasEntry(max, 'amount', x!.am_hi as string)).toBe(true);
    expect(hasEntry(min, 'price', x!.pr_lo as string)).toBe(true);
    expect(hasEntry(max, 'price', x!.pr_hi as string)).toBe(true);
    expect(hasEntry(min, 'i', String(x!.i_lo))).toBe(true);
    expect(hasEntry(max, 'i', String(x!.i_hi))).toBe(true);
    expect(hasEntry(min, 'sh', String(x!.sh_lo))).toBe(true);
    expect(hasEntry(max, 'sh', String(x!.sh_hi))).toBe(true);
    expect(hasEntry(min, 'ts', JSON.stringify(x!.ts_lo))).toBe(true);
    expect(hasEntry(min, 'day', JSON.stringify(x!.day_lo))).toBe(true);
    expect(hasEntry(max, 'day', JSON.stringify(x!.day_hi))).toBe(true);
    expect(hasEntry(min, 'd', String(x!.d_lo))).toBe(true);
    expect(hasEntry(min, 's', JSON.stringify(x!.s_lo))).toBe(true);
    // NaN is the double max: no JSON form, so no max; the max timestamp rounds up past year 9999: none either.
    expect(max).not.toContain('"d":');
    expect(max).not.toContain('"ts":');
    // The longest string max (41 code points) is cut to 32 with its last code point incremented: still ≥ the real max.
    expect(hasEntry(max, 's', JSON.stringify('x'.repeat(31) + 'y'))).toBe(true);
    // No min/max for binary and arrays, but their nullCount.
    for (const col of ['bin', 'longs', 'names']) {
      expect(min).not.toContain(`"${col}":`);
      expect(nulls).toContain(`"${col}":`);
    }
  });

  it('takes stats from the Parquet writer (COPY RETURN_STATS) only where they equal aggregates over the rows', async () => {
    // copy-stats.ts reads integers, booleans, strings, dates and timestamps from DuckDB's writer and
    // aggregates the rest; either way add.stats must be what min/max/count over the rows give, here
    // for strings DuckDB cuts at 256 bytes or leaves unbounded, sub-millisecond timestamps, a quoted name.
    const schema: LakeSchema = {
      columns: [
        c('id', { kind: 'long' }, false),
        c('s', { kind: 'string' }),
        c('ts', { kind: 'timestamp' }),
        c('day', { kind: 'date' }),
        c('we"ird.name', { kind: 'integer' }),
        c('none', { kind: 'string' }),
        c('ok', { kind: 'boolean' }),
        c('d', { kind: 'double' }),
      ],
    };
    const strings = [
      '',
      'twelve bytes',
      'héllo',
      '🌊🌊🌊',
      'x'.repeat(300),
      'q'.repeat(33),
      '\u{1F30A}'.repeat(40),
      'ÿ'.repeat(200),
      'é'.repeat(2000),
    ];
    for (let k = 0; k < strings.length; k++) {
      const rows = Array.from({ length: 40 }, (_, r) => [
        BigInt(r),
        r % 5 === 0 ? null : strings[(r + k) % strings.length]! + (r % 3 ? '' : r),
        1_733_500_000_123_456n + BigInt(r * 7919 * (k + 1)),
        20000 + r - k * 5000,
        r - 20,
        null,
        r % 7 === k % 7 ? null : r % 2 === 0,
        r / 3,
      ]);
      const [file] = await writeTable(`copy_stats_${k}`, schema, rows);
      const staged = await engine.stage(schema, rows);
      try {
        const q = (n: string) => `"${n.replace(/"/g, '""')}"`;
        const aggs = schema.columns.flatMap((col) => [`count(*) - count(${q(col.name)})`, `min(${q(col.name)})`, `max(${q(col.name)})`]);
        const [row] = await engine.query(`SELECT ${['count(*)', ...aggs].map((a, i) => `${a} AS a${i}`).join(', ')} FROM ${staged}`);
        const v = Object.values(row!);
        const columns = schema.columns.map((column, i) => ({
          column,
          nullCount: Number(v[1 + 3 * i]),
          min: v[2 + 3 * i],
          max: v[3 + 3 * i],
        }));
        expect(file!.stats, `strings from ${k}`).toBe(statsJson(Number(v[0]), columns));
      } finally {
        await engine.drop(staged);
      }
    }
  });

  it('writes nothing for zero rows, and an empty view for zero files', async () => {
    expect(await writeTable('empty', ALL_TYPES, [])).toEqual([]);
    expect(await store.list('empty')).toEqual([]);
    await engine.createView('empty_v', store, 'empty', [], ALL_TYPES);
    expect(await engine.query('SELECT count(*) AS n FROM empty_v')).toEqual([{ n: 0n }]);
    const described = await engine.query('DESCRIBE empty_v');
    expect(described.map((r) => r.column_type)).toEqual(ALL_TYPES.columns.map(duckdbTypeName));
  });
});

const SALES: LakeSchema = {
  columns: [
    c('id', { kind: 'long' }, false),
    c('city', { kind: 'string' }),
    c('day', { kind: 'date' }),
    c('amount', { kind: 'decimal', precision: 12, scale: 2 }),
    c('at', { kind: 'timestamp' }),
  ],
};
const CITIES = ['Lisbon', 'São Paulo', 'a b/c=d?', null, '', "O'Hare %20"];

function salesRows(n: number): unknown[][] {
  return Array.from({ length: n }, (_, i) => [
    BigInt(i),
    CITIES[i % CITIES.length],
    19_000 + (Math.floor(i / CITIES.length) % 2),
    BigInt(i * 101),
    1_640_995_200_000_000n + BigInt(i) * 1_000_001n,
  ]);
}

describe('partitioned writes', () => {
  it('writes one file per partition value combination under URL-encoded Hive dirs, without the partition columns', async () => {
    const rows = salesRows(120);
    const files = await writeTable('sales', SALES, rows, { partitionColumns: ['city', 'day'] });
    // '' and null are both null in Delta's partition values (PROTOCOL.md): one partition.
    expect(files).toHaveLength((CITIES.length - 1) * 2);
    expect(files.reduce((n, f) => n + JSON.parse(f.stats!).numRecords, 0)).toBe(rows.length);
    const values = files.map((f) => `${f.partitionValues.city}|${f.partitionValues.day}`).sort();
    expect(new Set(values)).toEqual(
      new Set(CITIES.flatMap((city) => ['2022-01-08', '2022-01-09'].map((day) => `${city === '' ? null : city}|${day}`))),
    );
    for (const f of files) {
      expect(Object.keys(f.partitionValues)).toEqual(['city', 'day']);
      expect(f.dataChange).toBe(true);
      expect(f.path).toMatch(/^city=[^/]+\/day=2022-01-0[89]\/part-\d{5}-[0-9a-f-]{36}\.c000\.zstd\.parquet$/);
      expect(f.path).not.toMatch(/[ ?'#]/);
      const cols = await engine.query(`SELECT name FROM parquet_schema(${sqlStr(await local('sales', f))}) WHERE name <> 'duckdb_schema'`);
      expect(cols.map((r) => r.name)).toEqual(['id', 'amount', 'at']);
    }
    const spaced = files.find((f) => f.partitionValues.city === 'a b/c=d?')!;
    expect(spaced.path.startsWith('city=a%20b%252Fc%253Dd%253F/day=')).toBe(true);
    expect(files.find((f) => f.partitionValues.city === null)!.path).toMatch(/^city=__HIVE_DEFAULT_PARTITION__\//);

    await engine.createView('sales_v', store, 'sales', files, SALES, ['city', 'day']);
    const back = await engine.query('SELECT * FROM sales_v ORDER BY id');
    expect(back.map((r) => SALES.columns.map((col) => r[col.name]))).toEqual(
      rows.map((r) => [r[0], r[1] === '' ? null : r[1], r[2], r[3], r[4]]),
    );
    const [sums] = await engine.query(
      `SELECT count(*) AS n, sum(amount) AS total FROM sales_v WHERE city = 'São Paulo' AND day = DATE '2022-01-09'`,
    );
    expect(sums).toEqual({
      n: 10n,
      total: rows.filter((r) => r[1] === 'São Paulo' && r[2] === 19_001).reduce((a, r) => a + (r[3] as bigint), 0n),
    });
  });

  it('leaves out the rows deletion vectors delete, in partitioned files of one view, with positions', async () => {
    const rows = salesRows(120);
    const files = await writeTable('sales_dv', SALES, rows, { partitionColumns: ['city', 'day'] });
    // Delete rows 0, 2, 3 of every other file, and every row of one file (all in one vector file, as merges write them).
    const full = files.find((f, i) => i % 2 === 1)!;
    const fullRows = JSON.parse(full.stats!).numRecords as number;
    const targets = files.filter((_, i) => i % 2 === 0);
    const vectors = [...targets.map(() => ({ rows: [0, 2, 3] })), { rows: Array.from({ length: fullRows }, (_, r) => r) }];
    const descriptors = await writeDeletionVectors(store, 'sales_dv', vectors);
    const withDv = files.map((f) => {
      const t = targets.indexOf(f);
      if (t >= 0) return { ...f, deletionVector: descriptors[t]! };
      return f === full ? { ...f, deletionVector: descriptors[targets.length]! } : f;
    });
    await engine.createView('sales_dv_v', store, 'sales_dv', withDv, SALES, ['city', 'day'], { positions: true });
    const all = await engine.query(
      `SELECT id, ${VIEW_FILE_COLUMN} AS f, ${VIEW_ROW_COLUMN} AS r FROM (SELECT * FROM sales_dv_v) ORDER BY id`,
    );
    // What each file holds, by position, read without the view.
    const expected: bigint[] = [];
    for (const [i, f] of files.entries()) {
      const path = await local('sales_dv', f);
      const held = await engine.query(`SELECT id, file_row_number AS r FROM read_parquet(${sqlStr(path)}, file_row_number = true)`);
      const gone = new Set(f === full ? held.map((h) => Number(h.r)) : i % 2 === 0 ? [0, 2, 3] : []);
      for (const h of held) if (!gone.has(Number(h.r))) expected.push(h.id as bigint);
      for (const a of all.filter((x) => x.f === path)) expect(held.find((h) => h.r === a.r)!.id).toBe(a.id);
    }
    expect(all.map((r) => r.id)).toEqual(expected.sort((a, b) => (a < b ? -1 : 1)));
    expect(all.length).toBe(rows.length - targets.length * 3 - fullRows);
    // Replacing the view drops its deleted-rows table; the new view reads the vectors again.
    await engine.createView('sales_dv_v', store, 'sales_dv', files, SALES, ['city', 'day']);
    expect(await engine.query('SELECT count(*) AS n FROM sales_dv_v')).toEqual([{ n: BigInt(rows.length) }]);
  });

  it('splits a partition into files of at most targetFileRows, keeping every row once', async () => {
    const schema: LakeSchema = { columns: [c('id', { kind: 'long' }, false), c('p', { kind: 'integer' })] };
    const rows = Array.from({ length: 2500 }, (_, i) => [BigInt(i), i < 2300 ? 1 : 2]);
    const files = await writeTable('split', schema, rows, {
      partitionColumns: ['p'],
      targetFileRows: 1000,
      select: (t) => `SELECT * FROM ${t} ORDER BY id`,
    });
    const counts = files.map((f) => [f.partitionValues.p, JSON.parse(f.stats!).numRecords]);
    expect(counts).toEqual([
      ['1', 1000],
      ['1', 1000],
      ['1', 300],
      ['2', 200],
    ]);
    // Ordered input stays ordered across the split: each file holds the next id range.
    expect(files.map((f) => [JSON.parse(f.stats!).minValues.id, JSON.parse(f.stats!).maxValues.id])).toEqual([
      [0, 999],
      [1000, 1999],
      [2000, 2299],
      [2300, 2499],
    ]);
    await engine.createView('split_v', store, 'split', files, schema, ['p']);
    expect(await engine.query('SELECT count(DISTINCT id) AS n, sum(p) AS s FROM split_v')).toEqual([{ n: 2500n, s: 2700n }]);
  });

  it('splits an unpartitioned ordered result into consecutive key ranges', async () => {
    const schema: LakeSchema = { columns: [c('id', { kind: 'long' }, false), c('v', { kind: 'string' })] };
    const ids = Array.from({ length: 3500 }, (_, i) => (i * 7919) % 3500); // a permutation of 0..3499
    const files = await writeTable(
      'ordered',
      schema,
      ids.map((i) => [BigInt(i), `v${i}`]),
      { targetFileRows: 1000, select: (t) => `SELECT * FROM ${t} ORDER BY id` },
    );
    expect(files.map((f) => JSON.parse(f.stats!))).toMatchObject([
      { numRecords: 1000, minValues: { id: 0 }, maxValues: { id: 999 } },
      { numRecords: 1000, minValues: { id: 1000 }, maxValues: { id: 1999 } },
      { numRecords: 1000, minValues: { id: 2000 }, maxValues: { id: 2999 } },
      { numRecords: 500, minValues: { id: 3000 }, maxValues: { id: 3499 } },
    ]);
    expect(files.every((f) => Object.keys(f.partitionValues).length === 0 && !f.path.includes('/'))).toBe(true);
  });
});

describe('column-by-column staging (column-chunk.ts)', () => {
  // Values cover every route of the direct writer: int64 from numbers (two int32 halves, negative and
  // past 2^32) and from bigints; strings inline (ASCII, non-ASCII up to 12 UTF-8 bytes) and out of line
  // (13 bytes, non-ASCII past 12 bytes, long, past 64 KiB); NULLs scattered over several 2,048-row chunks.
  const SCHEMA: LakeSchema = {
    columns: [
      c('id', { kind: 'long' }, false),
      c('n', { kind: 'long' }),
      c('ts', { kind: 'timestamp' }),
      c('s', { kind: 'string' }),
      c('i', { kind: 'integer' }),
      c('sh', { kind: 'short' }),
      c('d', { kind: 'double' }),
      c('f', { kind: 'float' }),
      c('ok', { kind: 'boolean' }),
      c('day', { kind: 'date' }),
    ],
  };
  const NUMBERS = [
    0,
    -1,
    1,
    2 ** 32,
    -(2 ** 32),
    2 ** 32 - 1,
    -(2 ** 32) - 1,
    Number.MAX_SAFE_INTEGER,
    Number.MIN_SAFE_INTEGER,
    1_733_500_000_123_456,
  ];
  const STRINGS = [
    '',
    'a',
    'twelve bytes',
    'thirteen byte',
    'héllo',
    'ééééee',
    'éééééé7',
    '日本語日本語',
    '🌊🌊🌊',
    'x'.repeat(300),
    '\u{1F30A}'.repeat(40),
    'a\ud800b',
  ];
  const rowAt = (r: number): unknown[] => [
    BigInt(r),
    r % 7 === 3 ? null : r % 2 ? BigInt(NUMBERS[r % NUMBERS.length]!) : NUMBERS[r % NUMBERS.length]!,
    r % 11 === 5 ? null : NUMBERS[(r + 3) % NUMBERS.length]!,
    r % 13 === 1 ? null : r % 1000 === 77 ? `${r}${'é'.repeat(40_000)}` : `${STRINGS[r % STRINGS.length]}${r % 3 ? '' : r}`,
    r % 5 === 0 ? null : r - 5000,
    r % 17 === 2 ? null : (r % 65536) - 32768,
    r % 19 === 4 ? null : r / 7,
    r % 23 === 6 ? null : Math.fround(r / 3),
    r % 29 === 8 ? null : r % 2 === 0,
    r % 31 === 9 ? null : r - 10000,
  ];
  const ROWS = Array.from({ length: 5000 }, (_, r) => rowAt(r));

  it('stages a chunk whose long strings pass the 64 MiB hand-over to DuckDB: every string back exactly', async () => {
    const schema: LakeSchema = { columns: [c('id', { kind: 'long' }, false), c('s', { kind: 'string' })] };
    // 2,100 rows of ~40 KB (UTF-8): the first chunk's 2,048 strings are 80 MiB, handed over in two pieces.
    const text = (r: number) => (r % 100 === 7 ? null : `${r}:${'é'.repeat(20_000)}${r % 3 ? '🌊' : 'a\ud800'}${r}`);
    const staged = await engine.stageColumns(schema, 2100, [(r) => r, text]);
    try {
      const back = await engine.query(`SELECT id, md5(s) AS h, strlen(s) AS n FROM ${staged} ORDER BY id`);
      const expected = Array.from({ length: 2100 }, (_, r) => {
        const t = text(r);
        const bytes = t === null ? null : Buffer.from(t, 'utf8');
        return { id: BigInt(r), h: bytes && createHash('md5').update(bytes).digest('hex'), n: bytes && BigInt(bytes.length) };
      });
      expect(back).toEqual(expected);
    } finally {
      await engine.drop(staged);
    }
  });

  it('reads back every value it staged, from rows and from column readers alike', async () => {
    const fromRows = await engine.stage(SCHEMA, ROWS);
    const fromCells = await engine.stageColumns(
      SCHEMA,
      ROWS.length,
      SCHEMA.columns.map((_, col) => (r: number) => ROWS[r]![col]),
    );
    try {
      const norm = (v: unknown, col: number) =>
        v === null ? null : col <= 2 ? BigInt(v as number | bigint) : col === 3 ? String(v).replace(/\ud800/g, '\ufffd') : v;
      const expected = ROWS.map((r) => r.map(norm));
      for (const t of [fromRows, fromCells]) {
        const back = await engine.query(`SELECT * FROM ${t} ORDER BY id`);
        expect(back.map((r) => SCHEMA.columns.map((col) => r[col.name]))).toEqual(expected);
      }
      // String comparisons DuckDB makes on inline strings compare whole slots: equal values must be equal there too.
      const [joined] = await engine.query(`SELECT count(*) AS n FROM ${fromRows} a JOIN ${fromCells} b ON a.s = b.s AND a.id = b.id`);
      expect(joined!.n).toBe(BigInt(ROWS.filter((r) => r[3] !== null).length));
    } finally {
      await engine.drop(fromRows);
      await engine.drop(fromCells);
    }
  });

  it('names the row, column and reason of a value that does not fit, as the per-value route did', async () => {
    const cases: [number, unknown, string][] = [
      [1, 2 ** 53, 'stage: row 4097, column n (long): value 9007199254740992 is not an integer bigint (or a safe-integer number)'],
      [1, 2n ** 63n, 'stage: row 4097, column n (long): value 9223372036854775808n is outside the 64-bit integer range'],
      [3, 5, 'stage: row 4097, column s (string): value 5 is not a string'],
      [4, 1.5, 'stage: row 4097, column i (integer): value 1.5 is not an integer number'],
      [5, 40000, 'stage: row 4097, column sh (short): value 40000 is outside the 16-bit integer range'],
      [8, 1, 'stage: row 4097, column ok (boolean): value 1 is not a boolean'],
    ];
    for (const [col, value, message] of cases) {
      const rows = ROWS.map((r, i) => (i === 4097 ? r.map((v, k) => (k === col ? value : v)) : r));
      const err = await engine.stage(SCHEMA, rows).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StageValueError);
      expect((err as Error).message).toBe(message);
    }
    const tables = await engine.query(`SELECT table_name FROM duckdb_tables() WHERE table_name LIKE 'tide_stage%'`);
    expect(tables).toEqual([]);
  });

  it('stages LIST columns: a chunk of empty arrays in one copy, any other chunk value by value', async () => {
    const schema: LakeSchema = { columns: [c('id', { kind: 'long' }, false), c('l', { kind: 'array', element: { kind: 'string' } })] };
    // Chunk 1 (rows 0–2047): all empty; chunk 2: empty but one non-empty; chunk 3: empty but one NULL; chunk 4: all empty.
    const value = (r: number): string[] | null => (r === 3000 ? ['a', 'bé', 'x'.repeat(40)] : r === 4500 ? null : []);
    const n = 4 * 2048 - 7;
    const staged = await engine.stageColumns(schema, n, [(r) => r, value]);
    try {
      const back = await engine.query(`SELECT id, l FROM ${staged} ORDER BY id`);
      expect(back.map((r) => [Number(r.id), r.l])).toEqual(Array.from({ length: n }, (_, r) => [r, value(r)]));
      const [lens] = await engine.query(`SELECT sum(len(l)) AS total, count(*) FILTER (WHERE len(l) = 0) AS empty FROM ${staged}`);
      expect(lens).toEqual({ total: 3n, empty: BigInt(n - 2) });
    } finally {
      await engine.drop(staged);
    }
  });

  it('stageChanges stages the same values as changeRows through stage (deletes, TOAST columns, positions)', async () => {
    const schema: LakeSchema = {
      columns: [c('id', { kind: 'long' }, false), c('doc', { kind: 'string' }), ...SILVER_META],
    };
    const changes: KeyChange[] = Array.from({ length: 5000 }, (_, i) => ({
      key: [BigInt(i)],
      deleted: i % 97 === 5,
      row: i % 97 === 5 ? { id: BigInt(i) } : { id: BigInt(i), doc: i % 50 === 3 ? undefined : `doc ${i}` },
      unchanged: i % 50 === 3 ? ['doc'] : [],
      commitLsn: 1_000_000_000_000n + BigInt(i >> 4),
      eventIndex: i % 16,
      commitTsMs: 1_733_500_000_123 + i,
    }));
    const viaRows = await engine.stage({ columns: changeColumns(schema) }, changeRows(schema, changes));
    const viaCells = await stageChanges(engine, schema, changes);
    try {
      const [a, b] = [
        await engine.query(`SELECT * FROM ${viaRows} ORDER BY id`),
        await engine.query(`SELECT * FROM ${viaCells} ORDER BY id`),
      ];
      expect(b).toEqual(a);
      expect(a.filter((r) => (r._unchanged as unknown[]).length)).toHaveLength(100);
    } finally {
      await engine.drop(viaRows);
      await engine.drop(viaCells);
    }
  });

  it('writeFiles with maxRows copies the result straight to one file: the same rows and stats as the work table', async () => {
    const staged = await engine.stage(SCHEMA, ROWS);
    try {
      const select = `SELECT * FROM ${staged} ORDER BY id DESC`;
      const direct = await engine.writeFiles(select, { store, root: 'max_rows', schema: SCHEMA, maxRows: ROWS.length });
      const generic = await engine.writeFiles(select, { store, root: 'max_rows_generic', schema: SCHEMA });
      expect(direct).toHaveLength(1);
      expect(direct[0]!.path).toMatch(/^part-00000-[0-9a-f-]{36}\.c000\.zstd\.parquet$/);
      expect(direct[0]!.partitionValues).toEqual({});
      expect(direct[0]!.stats).toBe(generic[0]!.stats);
      const [a, b] = [await local('max_rows', direct[0]!), await local('max_rows_generic', generic[0]!)];
      const diff = await engine.query(
        `SELECT count(*) AS n FROM (SELECT *, row_number() OVER () AS k FROM read_parquet(${sqlStr(a)}) EXCEPT ALL SELECT *, row_number() OVER () AS k FROM read_parquet(${sqlStr(b)}))`,
      );
      expect(diff).toEqual([{ n: 0n }]);
      // No rows: no file, nothing uploaded.
      const none = await engine.writeFiles(`${select} LIMIT 0`, { store, root: 'max_rows_none', schema: SCHEMA, maxRows: 10 });
      expect(none).toEqual([]);
      expect(await store.list('max_rows_none')).toEqual([]);
      // NULLs in a non-nullable column are refused on this route too.
      const strict: LakeSchema = { columns: SCHEMA.columns.map((col) => (col.name === 'n' ? { ...col, nullable: false } : col)) };
      const err = await engine
        .writeFiles(select, { store, root: 'max_rows_strict', schema: strict, maxRows: ROWS.length })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SchemaViolationError);
      expect(await store.list('max_rows_strict')).toEqual([]);
      // More rows than a file holds: the work table splits them as before.
      const split = await engine.writeFiles(select, {
        store,
        root: 'max_rows_split',
        schema: SCHEMA,
        maxRows: ROWS.length,
        targetFileRows: 2000,
      });
      expect(split.map((f) => JSON.parse(f.stats!).numRecords)).toEqual([2000, 2000, 1000]);
    } finally {
      await engine.drop(staged);
    }
  });

  it('writeStaged copies a one-partition table straight to one file, and gives several partitions to writeFiles', async () => {
    const schema: LakeSchema = { columns: [...SCHEMA.columns, c('p', { kind: 'date' }, false)] };
    const one = ROWS.map((r) => [...r, 20_000]);
    const staged = await engine.stage(schema, one);
    const direct = await engine.writeStaged(staged, one.length, { store, root: 'staged_one', schema, partitionColumns: ['p'] });
    const generic = await engine.writeFiles(`SELECT * FROM ${staged}`, { store, root: 'staged_generic', schema, partitionColumns: ['p'] });
    await engine.drop(staged);
    expect(direct).toHaveLength(1);
    expect(direct[0]!.partitionValues).toEqual({ p: '2024-10-04' });
    expect(direct[0]!.path).toMatch(/^p=2024-10-04\/part-00000-[0-9a-f-]{36}\.c000\.zstd\.parquet$/);
    // The same stats and the same rows, in the same order, as the work-table route.
    expect(direct[0]!.stats).toBe(generic[0]!.stats);
    const [a, b] = [await local('staged_one', direct[0]!), await local('staged_generic', generic[0]!)];
    const diff = await engine.query(
      `SELECT count(*) AS n FROM (SELECT *, row_number() OVER () AS k FROM read_parquet(${sqlStr(a)}) EXCEPT ALL SELECT *, row_number() OVER () AS k FROM read_parquet(${sqlStr(b)}))`,
    );
    expect(diff).toEqual([{ n: 0n }]);

    const two = ROWS.map((r, i) => [...r, i < 2500 ? 20_000 : 20_001]);
    const staged2 = await engine.stage(schema, two);
    const split = await engine.writeStaged(staged2, two.length, { store, root: 'staged_two', schema, partitionColumns: ['p'] });
    await engine.drop(staged2);
    expect(split.map((f) => [f.partitionValues.p, JSON.parse(f.stats!).numRecords])).toEqual([
      ['2024-10-04', 2500],
      ['2024-10-05', 2500],
    ]);
  });

  it('writeColumns copies one partition to Parquet straight from the column readers: the same rows, order and stats as writeStaged', async () => {
    const sameFile = async (rootA: string, a: DataFile, rootB: string, b: DataFile) => {
      expect(a.stats).toBe(b.stats);
      expect(a.partitionValues).toEqual(b.partitionValues);
      const [x, y] = [await local(rootA, a), await local(rootB, b)];
      const diff = await engine.query(
        `SELECT count(*) AS n FROM (SELECT *, row_number() OVER () AS k FROM read_parquet(${sqlStr(x)}) EXCEPT ALL SELECT *, row_number() OVER () AS k FROM read_parquet(${sqlStr(y)}))`,
      );
      expect(diff).toEqual([{ n: 0n }]);
    };
    const viaStaged = async (root: string, schema: LakeSchema, rows: unknown[][], partitionColumns: string[]) => {
      const staged = await engine.stage(schema, rows);
      try {
        return await engine.writeStaged(staged, rows.length, { store, root, schema, partitionColumns });
      } finally {
        await engine.drop(staged);
      }
    };
    const cells = (schema: LakeSchema, rows: unknown[][]) => schema.columns.map((_, col) => (r: number) => rows[r]![col]);

    // Every filler of column-chunk.ts over several chunks, one partition (a date): one file, no table staged.
    const schema: LakeSchema = { columns: [...SCHEMA.columns, c('p', { kind: 'date' }, false)] };
    const one = ROWS.map((r) => [...r, 20_000]);
    const direct = await engine.writeColumns(schema, one.length, cells(schema, one), {
      store,
      root: 'columns_one',
      schema,
      partitionColumns: ['p'],
    });
    expect(direct).toHaveLength(1);
    expect(direct[0]!.path).toMatch(/^p=2024-10-04\/part-00000-[0-9a-f-]{36}\.c000\.zstd\.parquet$/);
    await sameFile('columns_one', direct[0]!, 'columns_staged', (await viaStaged('columns_staged', schema, one, ['p']))[0]!);
    expect(await engine.query(`SELECT table_name FROM duckdb_tables() WHERE table_name LIKE 'tide_%'`)).toEqual([]);

    // Every lake type (decimals, binary, lists, NaN, far dates): stats DuckDB's writer gives no exact bounds for come from the file.
    const all = await engine.writeColumns(ALL_TYPES, ALL_ROWS.length, cells(ALL_TYPES, ALL_ROWS), {
      store,
      root: 'columns_all',
      schema: ALL_TYPES,
    });
    await sameFile('columns_all', all[0]!, 'columns_all_staged', (await viaStaged('columns_all_staged', ALL_TYPES, ALL_ROWS, []))[0]!);

    // A string partition column: its value as writeFiles renders it ('' is null there, refused when not nullable).
    const byString: LakeSchema = { columns: [...SCHEMA.columns, c('q', { kind: 'string' })] };
    const named = ROWS.map((r) => [...r, 'a/b=é']);
    const q = await engine.writeColumns(byString, named.length, cells(byString, named), {
      store,
      root: 'columns_q',
      schema: byString,
      partitionColumns: ['q'],
    });
    const qStaged = (await viaStaged('columns_q_staged', byString, named, ['q']))[0]!;
    await sameFile('columns_q', q[0]!, 'columns_q_staged', qStaged);
    expect(q[0]!.path.split('/')[0]).toBe(qStaged.path.split('/')[0]);
    const strict: LakeSchema = { columns: [...SCHEMA.columns, c('q', { kind: 'string' }, false)] };
    for (const bad of ['', null]) {
      const rows = ROWS.map((r) => [...r, bad]);
      const err = await engine
        .writeColumns(strict, rows.length, cells(strict, rows), { store, root: 'columns_strict', schema: strict, partitionColumns: ['q'] })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SchemaViolationError);
    }
    expect(await store.list('columns_strict')).toEqual([]);

    // Several partitions, or more rows than a file holds: staged and split as writeStaged does.
    const two = ROWS.map((r, i) => [...r, i < 2500 ? 20_000 : 20_001]);
    const split = await engine.writeColumns(schema, two.length, cells(schema, two), {
      store,
      root: 'columns_two',
      schema,
      partitionColumns: ['p'],
    });
    expect(split.map((f) => [f.partitionValues.p, JSON.parse(f.stats!).numRecords])).toEqual([
      ['2024-10-04', 2500],
      ['2024-10-05', 2500],
    ]);
    const big = await engine.writeColumns(schema, one.length, cells(schema, one), {
      store,
      root: 'columns_big',
      schema,
      partitionColumns: ['p'],
      targetFileRows: 2000,
    });
    expect(big.map((f) => JSON.parse(f.stats!).numRecords)).toEqual([2000, 2000, 1000]);

    // A value that does not fit: the same StageValueError as staging gives, nothing uploaded, the scan closed.
    const wrong = one.map((r, i) => (i === 4097 ? r.map((v, k) => (k === 4 ? 1.5 : v)) : r));
    const err = await engine
      .writeColumns(schema, wrong.length, cells(schema, wrong), { store, root: 'columns_wrong', schema, partitionColumns: ['p'] })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StageValueError);
    expect((err as Error).message).toBe('stage: row 4097, column i (integer): value 1.5 is not an integer number');
    expect(await store.list('columns_wrong')).toEqual([]);
    // The engine is usable afterwards.
    expect(
      await engine.writeColumns(schema, one.length, cells(schema, one), { store, root: 'columns_after', schema, partitionColumns: ['p'] }),
    ).toHaveLength(1);
  });

  it('writeColumns of a batch past PARALLEL_SCAN_MIN_ROWS scans it in two segments: each row once, each row group one segment in order, stats as writeStaged', async () => {
    const schema: LakeSchema = { columns: [...SCHEMA.columns, c('p', { kind: 'date' }, false)] };
    const n = 70_000;
    expect(n).toBeGreaterThanOrEqual(PARALLEL_SCAN_MIN_ROWS);
    const rows = Array.from({ length: n }, (_, r) => [...rowAt(r), 20_000]);
    const cells = schema.columns.map((_, col) => (r: number) => rows[r]![col]);
    const [direct, ...more] = await engine.writeColumns(schema, n, cells, {
      store,
      root: 'columns_parallel',
      schema,
      partitionColumns: ['p'],
    });
    expect(more).toEqual([]);
    const staged = await engine.stage(schema, rows);
    const [viaStaged] = await engine.writeStaged(staged, n, { store, root: 'columns_parallel_staged', schema, partitionColumns: ['p'] });
    await engine.drop(staged);
    expect(direct!.stats).toBe(viaStaged!.stats);
    const [x, y] = [sqlStr(await local('columns_parallel', direct!)), sqlStr(await local('columns_parallel_staged', viaStaged!))];
    // The same rows, each as often as staged (EXCEPT ALL both ways: a multiset comparison).
    for (const [a, b] of [
      [x, y],
      [y, x],
    ])
      expect(await engine.query(`SELECT count(*) AS n FROM (FROM read_parquet(${a}) EXCEPT ALL FROM read_parquet(${b}))`)).toEqual([
        { n: 0n },
      ]);
    // Segments of 36,864 rows (18 chunks) and the rest, one row group each.
    const groups = await engine.query(
      `SELECT DISTINCT row_group_id, row_group_num_rows AS rows FROM parquet_metadata(${x}) ORDER BY row_group_num_rows DESC`,
    );
    expect(groups.map((g) => g.rows)).toEqual([36_864n, 33_136n]);
    // Within a row group the rows are in the readers' order (ids consecutive); the groups' order is the threads'.
    const [jumps] = await engine.query(
      `SELECT count(*) FILTER (WHERE id <> prev + 1) AS n FROM (SELECT id, lag(id) OVER (ORDER BY file_row_number) AS prev FROM read_parquet(${x}, file_row_number = true))`,
    );
    expect(jumps!.n).toBeLessThanOrEqual(1n);

    // A value that does not fit in the second segment: that StageValueError, nothing uploaded, the setting back.
    const wrong = rows.map((r, i) => (i === 40_001 ? r.map((v, k) => (k === 4 ? 1.5 : v)) : r));
    const err = await engine
      .writeColumns(
        schema,
        n,
        schema.columns.map((_, col) => (r: number) => wrong[r]![col]),
        {
          store,
          root: 'columns_parallel_wrong',
          schema,
          partitionColumns: ['p'],
        },
      )
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StageValueError);
    expect((err as Error).message).toBe('stage: row 40001, column i (integer): value 1.5 is not an integer number');
    expect(await store.list('columns_parallel_wrong')).toEqual([]);
    expect(await engine.query(`SELECT current_setting('preserve_insertion_order') AS v`)).toEqual([{ v: true }]);
  });
});

describe('schema evolution', () => {
  it('reads files written before a column was added with NULL for it', async () => {
    const v1: LakeSchema = { columns: [c('id', { kind: 'long' }, false), c('name', { kind: 'string' })] };
    const v2: LakeSchema = {
      columns: [...v1.columns, c('email', { kind: 'string' }), c('score', { kind: 'decimal', precision: 10, scale: 3 })],
    };
    const old = await writeTable('evolve', v1, [
      [1n, 'ann'],
      [2n, 'bob'],
    ]);
    const recent = await writeTable('evolve', v2, [[3n, 'cy', 'cy@example.com', 1500n]]);
    await engine.createView('evolve_v', store, 'evolve', [...old, ...recent], v2);
    expect(await engine.query('SELECT * FROM evolve_v ORDER BY id')).toEqual([
      { id: 1n, name: 'ann', email: null, score: null },
      { id: 2n, name: 'bob', email: null, score: null },
      { id: 3n, name: 'cy', email: 'cy@example.com', score: 1500n },
    ]);
    // Only old files: the new columns exist in no file at all, and still read as NULL.
    await engine.createView('evolve_old', store, 'evolve', old, v2);
    expect(await engine.query('SELECT email, score FROM evolve_old')).toEqual([
      { email: null, score: null },
      { email: null, score: null },
    ]);
  });
});

describe('errors', () => {
  it('names the row and column of a value that does not fit, and leaves no table behind', async () => {
    const schema: LakeSchema = { columns: [c('id', { kind: 'long' }), c('n', { kind: 'integer' })] };
    const rows = [...Array.from({ length: 3000 }, (_, i) => [BigInt(i), i]), [1n, 2 ** 31]];
    const err = await engine.stage(schema, rows).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StageValueError);
    expect((err as Error).message).toBe('stage: row 3000, column n (integer): value 2147483648 is outside the 32-bit integer range');
    const tables = await engine.query(`SELECT table_name FROM duckdb_tables() WHERE table_name LIKE 'tide_%'`);
    expect(tables).toEqual([]);
    await expect(engine.stage(schema, [[1n]])).rejects.toThrow(
      'stage row 0: has 1 values, the schema has 2 columns (id, n): pass one value per column, in schema order',
    );
  });

  it('refuses NULLs in a non-nullable column before uploading anything', async () => {
    const loose: LakeSchema = { columns: [c('id', { kind: 'long' }), c('name', { kind: 'string' })] };
    const strict: LakeSchema = { columns: [c('id', { kind: 'long' }, false), c('name', { kind: 'string' })] };
    const staged = await engine.stage(loose, [
      [1n, 'a'],
      [null, 'b'],
    ]);
    try {
      const err = await engine.writeFiles(`SELECT * FROM ${staged}`, { store, root: 'strict', schema: strict }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SchemaViolationError);
      expect((err as Error).message).toBe('strict: column id: is not nullable (long), but 1 of 2 rows are NULL');
      expect(await store.list('strict')).toEqual([]);
      const missing = await engine
        .writeFiles(`SELECT id FROM ${staged}`, { store, root: 'strict', schema: strict })
        .catch((e: unknown) => e);
      expect(missing).toBeInstanceOf(ParquetEngineError);
      expect((missing as Error).message).toMatch(/^writeFiles strict: .*"name"/s);
    } finally {
      await engine.drop(staged);
    }
    expect(await engine.query(`SELECT table_name FROM duckdb_tables() WHERE table_name LIKE 'tide_%'`)).toEqual([]);
  });
});

describe('engine lifecycle', () => {
  it('serialises concurrent callers on its one connection', async () => {
    const schema: LakeSchema = { columns: [c('id', { kind: 'long' }, false), c('v', { kind: 'string' })] };
    const results = await Promise.all(
      [0, 1, 2, 3].map(async (k) => {
        const rows = Array.from({ length: 5000 + k }, (_, i) => [BigInt(i), `t${k}-${i}`]);
        const files = await writeTable(`concurrent_${k}`, schema, rows);
        await engine.createView(`concurrent_v${k}`, store, `concurrent_${k}`, files, schema);
        return engine.query(`SELECT count(*) AS n, min(v) AS lo FROM concurrent_v${k}`);
      }),
    );
    expect(results).toEqual([0, 1, 2, 3].map((k) => [{ n: BigInt(5000 + k), lo: `t${k}-0` }]));
  });

  it('removes temp dirs left by engines whose process died, and keeps live ones', async () => {
    const child = spawn(process.execPath, ['-e', '0']);
    const deadPid = child.pid!;
    await new Promise((resolve) => child.on('exit', resolve));
    const dead = join(tmpdir(), `tide-parquet-${deadPid}-test`);
    const live = join(tmpdir(), `tide-parquet-${process.ppid}-test`);
    await mkdir(dead, { recursive: true });
    await mkdir(live, { recursive: true });
    await writeFile(join(dead, 'w-0-left-behind.parquet'), 'x');
    try {
      const other = await ParquetEngine.create({ threads: 1 });
      await other.close();
      expect(existsSync(dead)).toBe(false);
      expect(existsSync(live)).toBe(true);
    } finally {
      await rm(dead, { recursive: true, force: true });
      await rm(live, { recursive: true, force: true });
    }
  });

  it('closes once, removes its temp dir and refuses use afterwards', async () => {
    const own = await ParquetEngine.create({ threads: 1, memoryLimit: '256MB' });
    const [{ temp }] = (await own.query(`SELECT current_setting('temp_directory') AS temp, current_setting('TimeZone') AS tz`)) as [
      { temp: string },
    ];
    expect(await own.query(`SELECT current_setting('TimeZone') AS tz, current_setting('threads') AS threads`)).toEqual([
      { tz: 'UTC', threads: 1n },
    ]);
    const staged = await own.stage({ columns: [c('x', { kind: 'integer' })] }, [[1]]);
    await own.writeFiles(`SELECT * FROM ${staged}`, { store, root: 'closing', schema: { columns: [c('x', { kind: 'integer' })] } });
    await Promise.all([own.close(), own.close()]);
    expect(existsSync(dirname(temp))).toBe(false);
    await expect(own.query('SELECT 1')).rejects.toThrow(
      'ParquetEngine.query: the engine is closed; create a new one with ParquetEngine.create()',
    );
  });
});

const ORDERS: LakeSchema = {
  columns: [
    c('order_id', { kind: 'long' }, false),
    c('customer_id', { kind: 'long' }),
    c('status', { kind: 'string' }),
    c('country', { kind: 'string' }),
    c('amount', { kind: 'decimal', precision: 12, scale: 2 }),
    c('quantity', { kind: 'integer' }),
    c('unit_price', { kind: 'double' }),
    c('created_at', { kind: 'timestamp' }),
    c('order_date', { kind: 'date' }),
    c('note', { kind: 'string' }),
  ],
};

function ordersRows(n: number): unknown[][] {
  const statuses = ['new', 'paid', 'shipped', 'cancelled'];
  const countries = ['PT', 'BR', 'DE', 'US', 'JP'];
  return Array.from({ length: n }, (_, i) => [
    BigInt(i),
    BigInt(i % 9973),
    statuses[i % 4],
    countries[i % 5],
    BigInt((i * 7919) % 10_000_000),
    1 + (i % 20),
    (i % 1000) / 4,
    1_700_000_000_000_000n + BigInt(i) * 1_000_003n,
    19_700 + (i % 400),
    i % 3 === 0 ? null : `note ${i}`,
  ]);
}

const rate = (rows: number, ms: number): string => `${Math.round((rows / ms) * 1000).toLocaleString('en-US')} rows/s (${ms.toFixed(0)} ms)`;

describe('measurement (printed, not asserted)', () => {
  it('stages and writes 500k orders rows; Appender data chunks vs an NDJSON temp file read by DuckDB', async () => {
    const n = 500_000;
    const rows = ordersRows(n);

    let t0 = performance.now();
    const staged = await engine.stage(ORDERS, rows);
    const stageMs = performance.now() - t0;

    // The alternative: rows as NDJSON (64-bit values as strings, decimals as text), loaded with read_json.
    t0 = performance.now();
    const ndjson = join(dir, 'orders.ndjson');
    const lines = rows.map((r) =>
      JSON.stringify({
        o: String(r[0]),
        c: String(r[1]),
        s: r[2],
        k: r[3],
        a: (Number(r[4]) / 100).toFixed(2),
        q: r[5],
        p: r[6],
        t: String(r[7]),
        d: r[8],
        n: r[9],
      }),
    );
    await writeFile(ndjson, lines.join('\n'));
    await engine.run(
      `CREATE TEMP TABLE orders_json AS SELECT o::BIGINT AS order_id, c::BIGINT AS customer_id, s AS status, k AS country, a::DECIMAL(12,2) AS amount, q AS quantity, p AS unit_price,
         make_timestamptz(t::BIGINT) AS created_at, DATE '1970-01-01' + d AS order_date, n AS note
       FROM read_json(${sqlStr(ndjson)}, format = 'newline_delimited',
         columns = {o: 'VARCHAR', c: 'VARCHAR', s: 'VARCHAR', k: 'VARCHAR', a: 'VARCHAR', q: 'INTEGER', p: 'DOUBLE', t: 'VARCHAR', d: 'INTEGER', n: 'VARCHAR'})`,
    );
    const jsonMs = performance.now() - t0;
    try {
      // Both paths load the same data.
      const diff = await engine.query(
        `SELECT (SELECT count(*) FROM (SELECT * FROM ${staged} EXCEPT ALL SELECT * FROM orders_json)) AS a, (SELECT count(*) FROM (SELECT * FROM orders_json EXCEPT ALL SELECT * FROM ${staged})) AS b`,
      );
      expect(diff).toEqual([{ a: 0n, b: 0n }]);

      t0 = performance.now();
      const files = await engine.writeFiles(`SELECT * FROM ${staged}`, { store, root: 'orders', schema: ORDERS });
      const writeMs = performance.now() - t0;
      expect(files).toHaveLength(1);
      expect(JSON.parse(files[0]!.stats!).numRecords).toBe(n);

      // Stats: an aggregate over the rows (what writeFiles does) vs reading parquet_metadata() of the file.
      const aggs = ORDERS.columns.map((col) => `min("${col.name}"), max("${col.name}"), count(*) - count("${col.name}")`).join(', ');
      t0 = performance.now();
      await engine.query(`SELECT count(*), ${aggs} FROM ${staged}`);
      const aggMs = performance.now() - t0;
      const path = sqlStr(await local('orders', files[0]!));
      t0 = performance.now();
      await engine.query(
        `SELECT path_in_schema, min(stats_min_value), max(stats_max_value), sum(stats_null_count) FROM parquet_metadata(${path}) GROUP BY ALL`,
      );
      const metaMs = performance.now() - t0;

      console.log(
        [
          `parquet engine, ${n.toLocaleString('en-US')} orders rows × ${ORDERS.columns.length} columns:`,
          `  stage, Appender data chunks (kept):  ${rate(n, stageMs)}`,
          `  stage, NDJSON file + read_json:      ${rate(n, jsonMs)}`,
          `  writeFiles (zstd, stats, upload):    ${rate(n, writeMs)}, ${(files[0]!.size / 1e6).toFixed(1)} MB`,
          `  stage + write:                       ${rate(n, stageMs + writeMs)}`,
          `  stats by SQL aggregate: ${aggMs.toFixed(0)} ms; by parquet_metadata(): ${metaMs.toFixed(0)} ms`,
        ].join('\n'),
      );
    } finally {
      await engine.drop(staged);
      await engine.drop('orders_json');
      await unlink(ndjson).catch(() => undefined);
    }
  });
});

// delta-rs (the `deltalake` PyPI package) as an independent reader of the files, paths, partition values and stats.
const PYTHON = fileURLToPath(new URL('../../.cache/venv/bin/python', import.meta.url));
const DELTA_RS_CHECK = `
import sys, json, datetime, pyarrow as pa
from deltalake import DeltaTable
dt = DeltaTable(sys.argv[1])
t = dt.to_pyarrow_table()
adds = pa.table(dt.get_add_actions(flatten=True)).to_pylist()
s = lambda v: None if v is None else (v.isoformat() if hasattr(v, 'isoformat') else str(v))
ts = datetime.datetime.fromisoformat(sys.argv[2])
print(json.dumps({
  'rows': t.num_rows,
  'ids': sorted(str(v) for v in t.column('id').to_pylist()),
  'cities': sorted(s(v) for v in t.column('city').to_pylist()),
  'adds': [{k: s(v) for k, v in a.items() if k.startswith(('min.', 'max.', 'null_count.', 'num_records', 'partition.'))} for a in adds],
  'ts_hits': dt.to_pyarrow_table(filters=[('ts', '=', ts)]).num_rows,
  'city_hits': dt.to_pyarrow_table(filters=[('city', '=', 'a b/c=d?')]).num_rows,
}))
`;

describe('independent reader', () => {
  it.skipIf(!existsSync(PYTHON))('delta-rs reads the files, decodes the paths and parses every stat exactly', async () => {
    const schema: LakeSchema = { columns: [...ALL_TYPES.columns, c('city', { kind: 'string' }), c('pday', { kind: 'date' })] };
    const cities = ['São Paulo %20', 'a b/c=d?', 'São Paulo %20', 'a b/c=d?', 'Zürich'];
    const rows = ALL_ROWS.map((r, i) => [...r, cities[i], 19_000 + (i % 2)]);
    const files = await writeTable('deltars', schema, rows, { partitionColumns: ['city', 'pday'] });
    const dtype = (t: LakeColumn['type']): unknown =>
      t.kind === 'decimal'
        ? `decimal(${t.precision},${t.scale})`
        : t.kind === 'array'
          ? { type: 'array', elementType: dtype(t.element), containsNull: true }
          : t.kind;
    const schemaString = JSON.stringify({
      type: 'struct',
      fields: schema.columns.map((col) => ({ name: col.name, type: dtype(col.type), nullable: col.nullable, metadata: {} })),
    });
    const log = [
      { protocol: { minReaderVersion: 1, minWriterVersion: 2 } },
      {
        metaData: {
          id: randomUUID(),
          format: { provider: 'parquet', options: {} },
          schemaString,
          partitionColumns: ['city', 'pday'],
          configuration: {},
          createdTime: Date.now(),
        },
      },
      ...files.map((add) => ({ add })),
    ];
    await store.put('deltars/_delta_log/00000000000000000000.json', Buffer.from(log.map((a) => JSON.stringify(a)).join('\n') + '\n'));
    // A timestamp with microseconds (…20.000001): its file's max stat is rounded up, so a filter on it still finds the row.
    const stdout = await execVenvPython(['-c', DELTA_RS_CHECK, join(dir, 'lake', 'deltars'), '2023-11-14T22:13:20.000001+00:00'], {
      timeout: 60_000,
    });
    const seen = JSON.parse(stdout) as {
      rows: number;
      ids: string[];
      cities: string[];
      adds: Record<string, string | null>[];
      ts_hits: number;
      city_hits: number;
    };
    expect(seen.rows).toBe(rows.length);
    expect(seen.ids).toEqual(rows.map((r) => String(r[0])).sort());
    expect(seen.cities).toEqual(rows.map((r) => r[14] as string).sort());
    expect(seen.ts_hits).toBe(1);
    expect(seen.city_hits).toBe(2);
    const byCity = (city: string): Record<string, string | null> => seen.adds.find((a) => a['partition.city'] === city)!;
    expect(byCity('São Paulo %20')).toMatchObject({
      num_records: '2',
      'partition.pday': '2022-01-08',
      'min.id': '2',
      'max.id': '9007199254740993',
      'min.amount': '-5E-10',
      'max.amount': '9999999999999999999999999999.9999999999',
      'min.day': '1969-12-31',
      'max.day': '9999-12-31',
      'min.ts': '1969-12-31T23:59:59.999000+00:00',
      'max.ts': null,
      'min.s': 'héllo 🌊 日本語 é',
      'max.s': 'x'.repeat(31) + 'y',
      'null_count.ok': '1',
    });
    expect(byCity('a b/c=d?')).toMatchObject({
      num_records: '2',
      'partition.pday': '2022-01-09',
      'min.id': '-9223372036854775808',
      'min.amount': '-9999999999999999999999999999.9999999999',
      'min.ts': '0001-01-01T00:00:00+00:00',
      'null_count.s': '1',
    });
    expect(byCity('Zürich')).toMatchObject({ 'min.ts': '2023-11-14T22:13:20+00:00', 'max.ts': '2023-11-14T22:13:20.001000+00:00' });
  });
});

/** DuckDB's DESCRIBE spelling of a lake column's type. */
function duckdbTypeName(col: LakeColumn): string {
  return duckdbType(col.type).replace('TIMESTAMPTZ', 'TIMESTAMP WITH TIME ZONE');
}

import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeltaTable } from '../../src/lake/delta/delta-table.ts';
import type { LakeColumn, LakeSchema, LakeType } from '../../src/lake/lake-schema.ts';
import { ParquetEngine } from '../../src/lake/parquet/parquet-engine.ts';
import { LocalStore } from '../../src/lake/storage/local-store.ts';
import type { KeyChange } from '../../src/sink/silver-changes.ts';
import { mergeSilver } from '../../src/sink/silver-merge.ts';
import { SILVER_META } from '../../src/sink/table-layout.ts';
import { readWithDeltaRs } from '../support/delta-reader.ts';

/**
 * Merges find the right files for every key type (issue 11, item 15). Silver is written in five batches
 * of ten keys, so it has five files with disjoint key ranges and the merge prunes by their statistics;
 * then one batch updates ten keys and deletes ten, spread over every file. delta-rs must then read exactly
 * the 40 remaining keys, once each, ten of them updated. Before the fix, `date` and `timestamp` keys never
 * matched a file (updates became duplicates, deletes did nothing), whole-number `decimal` keys were
 * compared unscaled against scaled statistics, and strings in UTF-16 order against code-point statistics.
 */
const dir = mkdtempSync(join(tmpdir(), 'tide-silver-keys-'));
const store = new LocalStore(dir);
let engine: ParquetEngine;

interface KeyType {
  name: string;
  type: LakeType;
  /** The i-th key (1-based), increasing with i in the type's order. */
  key(i: number): unknown;
}

// Strings whose UTF-16 order differs from their code-point order: U+FF21 sorts before U+1F600 by code
// point, after it by UTF-16 code unit (a surrogate pair starts with 0xD83D).
const strings = (i: number) => `${String.fromCodePoint(0xff00 + Math.floor((i - 1) / 10))}${String(i).padStart(2, '0')}`;
const astral = (i: number) => (i % 10 === 0 ? `${String.fromCodePoint(0x1f600 + i)}` : strings(i));

const KEY_TYPES: KeyType[] = [
  { name: 'long', type: { kind: 'long' }, key: (i) => BigInt(i) * 1_000_000_007n },
  { name: 'integer', type: { kind: 'integer' }, key: (i) => i * 7 },
  { name: 'short', type: { kind: 'short' }, key: (i) => i },
  { name: 'decimal_12_2', type: { kind: 'decimal', precision: 12, scale: 2 }, key: (i) => BigInt(i) * 100n },
  { name: 'decimal_14_4', type: { kind: 'decimal', precision: 14, scale: 4 }, key: (i) => BigInt(i) * 12_345n },
  { name: 'date', type: { kind: 'date' }, key: (i) => 19_000 + i * 3 },
  { name: 'timestamp', type: { kind: 'timestamp' }, key: (i) => 1_700_000_000_000_000n + BigInt(i) * 1_000_123n },
  { name: 'double', type: { kind: 'double' }, key: (i) => i + 0.25 },
  { name: 'string', type: { kind: 'string' }, key: strings },
  { name: 'string_astral', type: { kind: 'string' }, key: astral },
];

function schemaFor(keys: LakeColumn[]): LakeSchema {
  return { columns: [...keys, { name: 'v', type: { kind: 'string' }, nullable: true }, ...SILVER_META] };
}

let lsn = 1000n;
function change(keyColumns: string[], key: unknown[], v: string | undefined): KeyChange {
  lsn += 10n;
  const row: Record<string, unknown> = Object.fromEntries(keyColumns.map((k, j) => [k, key[j]]));
  if (v !== undefined) row.v = v;
  return { key, deleted: v === undefined, row, unchanged: [], commitLsn: lsn, eventIndex: 0, commitTsMs: 1_700_000_000_000 };
}

/** Five files of ten keys, then 10 updates (i % 5 == 3) and 10 deletes (i % 5 == 0); returns the table's root. */
async function run(root: string, keyColumns: LakeColumn[], keyOf: (i: number) => unknown[]) {
  const schema = schemaFor(keyColumns);
  const names = keyColumns.map((c) => c.name);
  const table = await DeltaTable.create(store, root, { name: root.replace('/', '.'), schema });
  for (let b = 0; b < 5; b++) {
    const changes = Array.from({ length: 10 }, (_, j) => change(names, keyOf(b * 10 + j + 1), 'v1'));
    await mergeSilver(engine, table, schema, names, { changes }, []);
  }
  expect(table.files()).toHaveLength(5);
  const changes: KeyChange[] = [];
  for (let i = 1; i <= 50; i++) {
    if (i % 5 === 3) changes.push(change(names, keyOf(i), 'v2'));
    if (i % 5 === 0) changes.push(change(names, keyOf(i), undefined));
  }
  const result = await mergeSilver(engine, table, schema, names, { changes }, []);
  return { result, view: await readWithDeltaRs(join(dir, root)) };
}

function summary(view: Awaited<ReturnType<typeof readWithDeltaRs>>, keyNames: string[]) {
  const v = view.columns.indexOf('v');
  const keyIdx = keyNames.map((k) => view.columns.indexOf(k));
  const keys = view.rows.map((r) => JSON.stringify(keyIdx.map((i) => r[i])));
  return {
    rows: view.rows.length,
    distinctKeys: new Set(keys).size,
    updated: view.rows.filter((r) => r[v] === 'v2').length,
    untouched: view.rows.filter((r) => r[v] === 'v1').length,
  };
}

const expected = { rows: 40, distinctKeys: 40, updated: 10, untouched: 30 };

describe('silver merge finds the files of every key type (single and composite keys)', () => {
  beforeAll(async () => {
    engine = await ParquetEngine.create();
  });
  afterAll(async () => {
    await engine?.close();
  });

  for (const kt of KEY_TYPES) {
    it(`single ${kt.name} key: 10 updates and 10 deletes over 5 files`, async () => {
      const col: LakeColumn = { name: 'k', type: kt.type, nullable: false };
      const { result, view } = await run(`silver/single_${kt.name}`, [col], (i) => [kt.key(i)]);
      expect(summary(view, ['k'])).toEqual(expected);
      // Every file held a changed key, so every file was rewritten: none was pruned wrongly (or skipped).
      expect(result.rewrittenFiles).toBe(5);
    });
  }

  for (const kt of KEY_TYPES) {
    it(`composite (${kt.name}, long) key: 10 updates and 10 deletes over 5 files`, async () => {
      const cols: LakeColumn[] = [
        { name: 'k', type: kt.type, nullable: false },
        { name: 'n', type: { kind: 'long' }, nullable: false },
      ];
      const { view } = await run(`silver/composite_${kt.name}`, cols, (i) => [kt.key(i), BigInt(i % 3)]);
      expect(summary(view, ['k', 'n'])).toEqual(expected);
    });
  }

  it('string keys compare in code-point order, as the statistics do (U+FF21 < U+1F600 < U+FF5A only by code point)', async () => {
    const col: LakeColumn = { name: 'k', type: { kind: 'string' }, nullable: false };
    const schema = schemaFor([col]);
    const table = await DeltaTable.create(store, 'silver/codepoints', { name: 'silver.codepoints', schema });
    const smile = String.fromCodePoint(0x1f600);
    await mergeSilver(engine, table, schema, ['k'], { changes: ['\uff21', smile, '\uff5a'].map((k) => change(['k'], [k], 'v1')) }, []);
    await mergeSilver(engine, table, schema, ['k'], { changes: ['a', 'b'].map((k) => change(['k'], [k], 'v1')) }, []);
    await mergeSilver(engine, table, schema, ['k'], { changes: [change(['k'], [smile], 'v2')] }, []);
    expect(summary(await readWithDeltaRs(join(dir, 'silver/codepoints')), ['k'])).toEqual({
      rows: 5,
      distinctKeys: 5,
      updated: 1,
      untouched: 4,
    });
  });

  it('prunes: a batch that changes keys of one file rewrites that file only', async () => {
    const col: LakeColumn = { name: 'k', type: { kind: 'date' }, nullable: false };
    const schema = schemaFor([col]);
    const table = await DeltaTable.create(store, 'silver/prune_date', { name: 'silver.prune_date', schema });
    for (let b = 0; b < 5; b++)
      await mergeSilver(
        engine,
        table,
        schema,
        ['k'],
        { changes: Array.from({ length: 10 }, (_, j) => change(['k'], [19_000 + b * 10 + j], 'v1')) },
        [],
      );
    const r = await mergeSilver(
      engine,
      table,
      schema,
      ['k'],
      { changes: [change(['k'], [19_021], 'v2'), change(['k'], [19_025], undefined)] },
      [],
    );
    expect(r.rewrittenFiles).toBe(1);
    expect(summary(await readWithDeltaRs(join(dir, 'silver/prune_date')), ['k'])).toEqual({
      rows: 49,
      distinctKeys: 49,
      updated: 1,
      untouched: 48,
    });
  });
});

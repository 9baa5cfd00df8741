import { describe, expect, it } from 'vitest';
import { type Action, actionKind, type MetaDataAction, parseCommitText, serializeCommit } from '../../src/lake/delta/actions.ts';
import { commitPath, decodeDataPath, encodeDataPath, joinPath, parseLogFileName } from '../../src/lake/delta/log-paths.ts';
import { appendOnly, readProblem, writeProblem } from '../../src/lake/delta/protocol-check.ts';
import { checkpointInterval, tombstoneRetentionMs, writeStatsAsJson } from '../../src/lake/delta/table-properties.ts';

const actions: Action[] = [
  {
    commitInfo: {
      timestamp: 1700000000000,
      operation: 'WRITE',
      operationParameters: { mode: 'Append' },
      engineInfo: 'Tide/0.1.0',
      isBlindAppend: true,
    },
  },
  { protocol: { minReaderVersion: 1, minWriterVersion: 2 } },
  {
    metaData: {
      id: '5b8f1c36-3a7f-4a55-9f5e-1d2c3b4a5f60',
      name: 'silver.orders',
      format: { provider: 'parquet', options: {} },
      schemaString: '{"type":"struct","fields":[]}',
      partitionColumns: ['d'],
      createdTime: 1700000000000,
      configuration: { 'delta.checkpointInterval': '5' },
    },
  },
  {
    add: {
      path: 'd=2024-01-01/part-1%20a.parquet',
      partitionValues: { d: '2024-01-01' },
      size: 1234,
      modificationTime: 1700000000001,
      dataChange: true,
      stats: '{"numRecords":3,"minValues":{"id":1},"maxValues":{"id":3},"nullCount":{"id":0}}',
    },
  },
  { add: { path: 'd=__null/x.parquet', partitionValues: { d: null }, size: 1, modificationTime: 2, dataChange: false } },
  {
    remove: {
      path: 'old.parquet',
      deletionTimestamp: 1700000000002,
      dataChange: true,
      extendedFileMetadata: true,
      partitionValues: { d: '2023-12-31' },
      size: 99,
    },
  },
  { txn: { appId: 'tide-orders.public.orders-0', version: 41, lastUpdated: 1700000000003 } },
];

describe('Delta actions', () => {
  it('serialise one action per line and parse back to the same actions', () => {
    const text = serializeCommit(actions);
    expect(text.split('\n')).toHaveLength(actions.length + 1);
    expect(text.endsWith('\n')).toBe(true);
    expect(text.split('\n')[3]).toBe(
      '{"add":{"path":"d=2024-01-01/part-1%20a.parquet","partitionValues":{"d":"2024-01-01"},"size":1234,"modificationTime":1700000000001,"dataChange":true,' +
        '"stats":"{\\"numRecords\\":3,\\"minValues\\":{\\"id\\":1},\\"maxValues\\":{\\"id\\":3},\\"nullCount\\":{\\"id\\":0}}"}}',
    );
    expect(parseCommitText(text)).toEqual(actions);
    expect(actions.map(actionKind)).toEqual(['commitInfo', 'protocol', 'metaData', 'add', 'add', 'remove', 'txn']);
  });

  it('reads what delta-rs writes: null optional fields, extra fields, unknown actions are skipped', () => {
    const text = [
      '{"commitInfo":{"timestamp":1,"operation":"WRITE","operationParameters":{"mode":"Append"},"clientVersion":"delta-rs.py-1.6.6","operationMetrics":{"num_added_files":1}}}',
      '{"metaData":{"id":"e845","name":null,"description":null,"format":{"provider":"parquet","options":{}},"schemaString":"{}","partitionColumns":[],"createdTime":5,"configuration":{}}}',
      '{"add":{"path":"p.parquet","partitionValues":{},"size":484,"modificationTime":7,"dataChange":true,"stats":null,"tags":null,"baseRowId":null,"deletionVector":null}}',
      '{"cdc":{"path":"_change_data/c.parquet","partitionValues":{},"size":1,"dataChange":false}}',
      '{"domainMetadata":{"domain":"x","configuration":"{}","removed":false}}',
      '',
    ].join('\n');
    const parsed = parseCommitText(text);
    expect(parsed).toHaveLength(3);
    expect(parsed[0]).toMatchObject({ commitInfo: { clientVersion: 'delta-rs.py-1.6.6', operationMetrics: { num_added_files: 1 } } });
    expect(parsed[1]).toStrictEqual({
      metaData: {
        id: 'e845',
        format: { provider: 'parquet', options: {} },
        schemaString: '{}',
        partitionColumns: [],
        createdTime: 5,
        configuration: {},
      },
    });
    expect(parsed[2]).toStrictEqual({ add: { path: 'p.parquet', partitionValues: {}, size: 484, modificationTime: 7, dataChange: true } });
  });

  it('names the line and field of an invalid action', () => {
    expect(() => parseCommitText('{"protocol":{"minReaderVersion":1,"minWriterVersion":2}}\n{"add":{"path":"x"')).toThrow(
      /^line 2: is not valid JSON/,
    );
    expect(() => parseCommitText('{"add":{"path":"x","partitionValues":{},"size":"12","modificationTime":1,"dataChange":true}}')).toThrow(
      /line 1: invalid add action: add\.size: /,
    );
    expect(() => parseCommitText('{"add":{"path":"x"},"remove":{"path":"y"}}')).toThrow(
      'line 1: must hold exactly one action, found add, remove',
    );
    expect(() => parseCommitText('[1]')).toThrow('line 1: is not a JSON object');
  });
});

describe('log paths', () => {
  it('names commits and checkpoints with 20-digit versions', () => {
    expect(commitPath('silver/orders', 42)).toBe('silver/orders/_delta_log/00000000000000000042.json');
    expect(commitPath('', 0)).toBe('_delta_log/00000000000000000000.json');
    expect(joinPath('a/', '/b', '', 'c')).toBe('a/b/c');
    expect(parseLogFileName('00000000000000000010.json')).toEqual({ kind: 'commit', version: 10 });
    expect(parseLogFileName('00000000000000000010.checkpoint.parquet')).toEqual({ kind: 'checkpoint', version: 10 });
    expect(parseLogFileName('00000000000000000010.checkpoint.0000000002.0000000003.parquet')).toEqual({
      kind: 'checkpoint',
      version: 10,
      part: 2,
      parts: 3,
    });
    for (const other of [
      '_last_checkpoint',
      '00000000000000000010.crc',
      '00000000000000000010.checkpoint.80a083e8-7026-4e79-81be-64bd76c43a11.json',
      '.0.json.tmp',
      '10.json',
    ])
      expect(parseLogFileName(other)).toEqual({ kind: 'other' });
  });

  it('percent-encodes data file paths segment by segment, keeping "=" and "/", and decodes them back', () => {
    const cases: [string, string][] = [
      ['_commit_date=2024-01-01/part-00000-1f2e.c000.zstd.parquet', '_commit_date=2024-01-01/part-00000-1f2e.c000.zstd.parquet'],
      ['city=New York/a b.parquet', 'city=New%20York/a%20b.parquet'],
      ['k=a%20b/x.parquet', 'k=a%2520b/x.parquet'],
      ['k=ü:€/f#?.parquet', 'k=%C3%BC%3A%E2%82%AC/f%23%3F.parquet'],
    ];
    for (const [file, encoded] of cases) {
      expect(encodeDataPath(file)).toBe(encoded);
      expect(decodeDataPath(encoded)).toBe(file);
    }
    expect(decodeDataPath('100%.parquet')).toBe('100%.parquet');
  });
});

describe('protocol support', () => {
  it('reads reader version 1 and 3 with deletionVectors only, writes writer 1–2 and 7 with appendOnly/invariants/deletionVectors only', () => {
    expect(readProblem({ minReaderVersion: 1, minWriterVersion: 7 })).toBeUndefined();
    expect(readProblem({ minReaderVersion: 3, minWriterVersion: 7, readerFeatures: ['deletionVectors'] })).toBeUndefined();
    expect(readProblem({ minReaderVersion: 3, minWriterVersion: 7, readerFeatures: ['deletionVectors', 'columnMapping'] })).toMatch(
      /reader features columnMapping/,
    );
    expect(readProblem({ minReaderVersion: 2, minWriterVersion: 5 })).toMatch(/reader version 2/);
    expect(
      writeProblem({ minReaderVersion: 3, minWriterVersion: 7, readerFeatures: ['deletionVectors'], writerFeatures: ['deletionVectors'] }),
    ).toBeUndefined();
    expect(writeProblem({ minReaderVersion: 1, minWriterVersion: 2 })).toBeUndefined();
    expect(writeProblem({ minReaderVersion: 1, minWriterVersion: 1 })).toBeUndefined();
    expect(writeProblem({ minReaderVersion: 1, minWriterVersion: 7, writerFeatures: ['appendOnly', 'invariants'] })).toBeUndefined();
    expect(writeProblem({ minReaderVersion: 1, minWriterVersion: 7, writerFeatures: ['appendOnly', 'rowTracking'] })).toMatch(
      /writer features rowTracking/,
    );
    expect(writeProblem({ minReaderVersion: 1, minWriterVersion: 4 })).toMatch(/needs writer version 4/);
    expect(writeProblem({ minReaderVersion: 2, minWriterVersion: 5 })).toMatch(/reader version 2/);
  });

  it('applies delta.appendOnly at writer 2–6, and at writer 7 only with the appendOnly feature', () => {
    const md = (v: string | undefined): MetaDataAction => ({
      id: 'x',
      format: { provider: 'parquet', options: {} },
      schemaString: '',
      partitionColumns: [],
      configuration: v === undefined ? {} : { 'delta.appendOnly': v },
    });
    expect(appendOnly({ minReaderVersion: 1, minWriterVersion: 2 }, md('true'))).toBe(true);
    expect(appendOnly({ minReaderVersion: 1, minWriterVersion: 2 }, md('false'))).toBe(false);
    expect(appendOnly({ minReaderVersion: 1, minWriterVersion: 2 }, md(undefined))).toBe(false);
    expect(appendOnly({ minReaderVersion: 1, minWriterVersion: 1 }, md('true'))).toBe(false);
    expect(appendOnly({ minReaderVersion: 1, minWriterVersion: 7, writerFeatures: ['invariants'] }, md('true'))).toBe(false);
    expect(appendOnly({ minReaderVersion: 1, minWriterVersion: 7, writerFeatures: ['appendOnly'] }, md('TRUE'))).toBe(true);
  });
});

describe('table properties', () => {
  it('checkpoint interval, stats and tombstone retention, naming a bad key', () => {
    expect(checkpointInterval({})).toBe(10);
    expect(checkpointInterval({ 'delta.checkpointInterval': '3' })).toBe(3);
    expect(() => checkpointInterval({ 'delta.checkpointInterval': '0' })).toThrow(
      'table property delta.checkpointInterval = "0": expected a positive integer',
    );
    expect(writeStatsAsJson({})).toBe(true);
    expect(writeStatsAsJson({ 'delta.checkpoint.writeStatsAsJson': 'false' })).toBe(false);
    expect(tombstoneRetentionMs({})).toBe(7 * 86_400_000);
    expect(tombstoneRetentionMs({ 'delta.deletedFileRetentionDuration': 'interval 1 week' })).toBe(7 * 86_400_000);
    expect(tombstoneRetentionMs({ 'delta.deletedFileRetentionDuration': 'interval 36 hours' })).toBe(36 * 3_600_000);
    expect(tombstoneRetentionMs({ 'delta.deletedFileRetentionDuration': '2 days' })).toBe(2 * 86_400_000);
    expect(() => tombstoneRetentionMs({ 'delta.deletedFileRetentionDuration': 'forever' })).toThrow(
      /delta\.deletedFileRetentionDuration = "forever"/,
    );
  });
});

import { describe, expect, it } from 'vitest';
import type { Action, AddAction, MetaDataAction } from '../../src/lake/delta/actions.ts';
import { Snapshot } from '../../src/lake/delta/snapshot.ts';

const metaData = (id: string, schema = 'v1'): MetaDataAction => ({
  id,
  format: { provider: 'parquet', options: {} },
  schemaString: schema,
  partitionColumns: [],
  configuration: {},
});
const add = (path: string, extra: Partial<AddAction> = {}): Action => ({
  add: { path, partitionValues: {}, size: 10, modificationTime: 1, dataChange: true, ...extra },
});
const remove = (path: string, deletionTimestamp?: number): Action => ({
  remove: { path, dataChange: true, ...(deletionTimestamp ? { deletionTimestamp } : {}) },
});

function replay(commits: Action[][]): Snapshot {
  const s = new Snapshot();
  commits.forEach((c, v) => s.applyCommit(v, c));
  return s;
}

describe('snapshot replay (Action Reconciliation)', () => {
  it('keeps the latest protocol and metaData', () => {
    const s = replay([
      [{ protocol: { minReaderVersion: 1, minWriterVersion: 2 } }, { metaData: metaData('t', 'v1') }],
      [add('a')],
      [{ metaData: metaData('t', 'v2') }],
      [{ protocol: { minReaderVersion: 1, minWriterVersion: 7, writerFeatures: ['appendOnly'] } }],
    ]);
    expect(s.version).toBe(3);
    expect(s.metadata?.schemaString).toBe('v2');
    expect(s.protocol).toEqual({ minReaderVersion: 1, minWriterVersion: 7, writerFeatures: ['appendOnly'] });
  });

  it('active files are adds minus removes by path; a re-add after a remove revives the file with its newest metadata', () => {
    const s = replay([[add('a'), add('b'), add('c')], [remove('b', 100), add('d')], [remove('a', 200)], [add('b', { size: 77 })]]);
    expect(s.files().map((f) => f.path)).toEqual(['c', 'd', 'b']);
    expect(s.files().find((f) => f.path === 'b')?.size).toBe(77);
    expect(s.tombstones()).toEqual([{ path: 'a', dataChange: true, deletionTimestamp: 200 }]);
    expect(s.hasFile('b')).toBe(true);
    expect(s.hasFile('a')).toBe(false);
  });

  it('matches paths after percent-decoding, and returns each add path as the log spells it', () => {
    const s = replay([[add('x=1/a%20b.parquet'), add('plain.parquet')], [remove('x=1/a b.parquet', 5)], [remove('pl%61in.parquet', 6)]]);
    expect(s.files()).toEqual([]);
    const t = replay([[add('c%3Ad.parquet')]]);
    expect(t.files()[0]!.path).toBe('c%3Ad.parquet');
    expect(t.hasFile('c:d.parquet')).toBe(true);
  });

  it('the latest txn per appId wins, even when its version goes down', () => {
    const s = replay([
      [{ txn: { appId: 'p0', version: 10 } }, { txn: { appId: 'p1', version: 3 } }],
      [{ txn: { appId: 'p0', version: 12 } }],
      [{ txn: { appId: 'p1', version: 2 } }],
    ]);
    expect(s.txnVersion('p0')).toBe(12);
    expect(s.txnVersion('p1')).toBe(2);
    expect(s.txnVersion('p2')).toBeUndefined();
  });

  it('refuses a gap or a repeated version', () => {
    const s = replay([[add('a')]]);
    expect(() => s.applyCommit(2, [add('b')])).toThrow('commit 2 cannot follow version 0');
    expect(() => s.applyCommit(0, [add('b')])).toThrow('commit 0 cannot follow version 0');
  });

  it('checkpoint actions hold protocol, metaData, txns, active adds and unexpired tombstones only; replaying them gives the same state', () => {
    const commits: Action[][] = [
      [
        { commitInfo: { timestamp: 1, operation: 'CREATE TABLE', operationParameters: {} } },
        { protocol: { minReaderVersion: 1, minWriterVersion: 2 } },
        { metaData: metaData('t') },
      ],
      [add('a'), add('b'), { txn: { appId: 'p0', version: 1 } }],
      [remove('a', 1_000), add('c'), { txn: { appId: 'p0', version: 2 } }],
      [remove('b', 9_000)],
    ];
    const s = replay(commits);
    const cp = s.checkpointActions(10_000, 5_000);
    expect(cp).toEqual([
      { protocol: { minReaderVersion: 1, minWriterVersion: 2 } },
      { metaData: metaData('t') },
      { txn: { appId: 'p0', version: 2 } },
      add('c'),
      remove('b', 9_000),
    ]);
    const restored = Snapshot.fromCheckpoint(s.version, cp);
    expect(restored.version).toBe(3);
    expect(restored.files()).toEqual(s.files());
    expect(restored.txnVersion('p0')).toBe(2);
    expect(restored.metadata).toEqual(s.metadata);
    expect(restored.lastCommitInfo).toBeUndefined();
    restored.applyCommit(4, [add('d')]);
    expect(restored.files().map((f) => f.path)).toEqual(['c', 'd']);
  });

  it('clone is independent of the original', () => {
    const s = replay([[add('a')]]);
    const c = s.clone();
    c.applyCommit(1, [remove('a', 1)]);
    expect(s.files()).toHaveLength(1);
    expect(s.version).toBe(0);
    expect(c.files()).toHaveLength(0);
  });
});

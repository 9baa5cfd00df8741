import { describe, expect, it } from 'vitest';
import { type Action, type AddAction, parseCommitText, serializeCommit } from '../../src/lake/delta/actions.ts';
import { findConflict, isBlindAppend, validateCommit } from '../../src/lake/delta/commit-rules.ts';
import { DeltaConflictError, DeltaLogError, DeltaProtocolError } from '../../src/lake/delta/delta-errors.ts';
import { DeltaTable, MAX_COMMIT_ATTEMPTS } from '../../src/lake/delta/delta-table.ts';
import { commitPath } from '../../src/lake/delta/log-paths.ts';
import { Snapshot } from '../../src/lake/delta/snapshot.ts';
import type { LakeSchema } from '../../src/lake/lake-schema.ts';
import type { ObjectInfo, ObjectStore } from '../../src/lake/storage/object-store.ts';

/** An in-memory ObjectStore: unit tests only (the integration tests use the real LocalStore). */
class MemoryStore implements ObjectStore {
  readonly uri = 'memory://lake';
  readonly objects = new Map<string, { data: Buffer; modified: number }>();
  /** Called before each putIfAbsent, to let a test play another writer. */
  beforePutIfAbsent: ((path: string) => void) | undefined;
  async get(path: string) {
    return this.objects.get(path)?.data;
  }
  async put(path: string, data: Buffer | Uint8Array) {
    this.objects.set(path, { data: Buffer.from(data), modified: Date.now() });
  }
  async putIfAbsent(path: string, data: Buffer | Uint8Array) {
    this.beforePutIfAbsent?.(path);
    if (this.objects.has(path)) return false;
    await this.put(path, data);
    return true;
  }
  async putFile(): Promise<void> {
    throw new Error('MemoryStore has no local files');
  }
  async localFile(): Promise<string> {
    throw new Error('MemoryStore has no local files');
  }
  async list(prefix: string): Promise<ObjectInfo[]> {
    return [...this.objects.keys()]
      .filter((p) => p.startsWith(prefix))
      .sort()
      .map((p) => ({ path: p, size: this.objects.get(p)!.data.length, modified: this.objects.get(p)!.modified }));
  }
  async stat(path: string) {
    const o = this.objects.get(path);
    return o && { path, size: o.data.length, modified: o.modified };
  }
  async delete(path: string) {
    this.objects.delete(path);
  }
  async close() {}
  /** Write a commit as another writer would. */
  commit(root: string, version: number, actions: Action[]) {
    this.objects.set(commitPath(root, version), { data: Buffer.from(serializeCommit(actions)), modified: Date.now() });
  }
  commitText(root: string, version: number): string {
    return this.objects.get(commitPath(root, version))!.data.toString();
  }
}

const schema: LakeSchema = {
  columns: [
    { name: 'id', type: { kind: 'long' }, nullable: false },
    { name: 'd', type: { kind: 'date' }, nullable: true },
  ],
};
const noCheckpoints = { 'delta.checkpointInterval': '1000' };
const file = (path: string, extra: Partial<AddAction> = {}): AddAction => ({
  path,
  partitionValues: {},
  size: 1,
  modificationTime: 1,
  dataChange: true,
  ...extra,
});
const add = (path: string, extra: Partial<AddAction> = {}): Action => ({ add: file(path, extra) });
const remove = (path: string, dataChange = true): Action => ({ remove: { path, deletionTimestamp: 5, dataChange } });
const txn = (appId: string, version: number): Action => ({ txn: { appId, version } });
const op = { operation: 'WRITE', parameters: { mode: 'Append' } };

async function newTable(store = new MemoryStore(), configuration: Record<string, string> = noCheckpoints) {
  const table = await DeltaTable.create(store, 'silver/t', { name: 'silver.t', schema, configuration });
  return { store, table };
}

describe('conflict rules: may a commit that lost its version be retried?', () => {
  const cases: [string, Action[], Action[], RegExp | undefined][] = [
    ['blind append vs blind append', [add('w1')], [add('o1')], undefined],
    ['blind append vs merge that removes other files', [add('w1')], [remove('f1'), add('o1')], undefined],
    [
      'compaction (dataChange=false) of other files vs merge',
      [remove('f2', false), remove('f3', false), add('c', { dataChange: false })],
      [remove('f1'), add('o1')],
      undefined,
    ],
    ['merge of other files vs compaction', [remove('f1'), add('w1')], [remove('f2', false), add('c', { dataChange: false })], undefined],
    ['different txn appIds', [add('w'), txn('p0', 5)], [add('o'), txn('p1', 7)], undefined],
    ['both remove the same file', [remove('f1'), add('w1')], [remove('f1'), add('o1')], /already removed file f1/],
    [
      'compaction removed the file the merge rewrites',
      [remove('f1', false), add('c', { dataChange: false })],
      [remove('f1'), add('o1')],
      /already removed file f1/,
    ],
    ['same file, encoded differently', [remove('a%20b')], [remove('a b')], /already removed file a%20b/],
    ['same txn appId', [add('w'), txn('p0', 5)], [add('o'), txn('p0', 6)], /set txn p0 \(version 5\), which this commit also sets/],
    [
      'winner changed metadata',
      [{ metaData: { id: 'x', format: { provider: 'parquet', options: {} }, schemaString: '', partitionColumns: [], configuration: {} } }],
      [add('o')],
      /changed the table metadata/,
    ],
    [
      'winner changed protocol',
      [{ protocol: { minReaderVersion: 1, minWriterVersion: 7, writerFeatures: ['appendOnly'] } }],
      [add('o')],
      /changed the table protocol/,
    ],
    ['same added path', [add('x')], [add('x')], /added file x, which this commit also adds/],
  ];
  it.each(cases)('%s', (_name, winner, ours, expected) => {
    const reason = findConflict(winner, ours);
    if (expected) expect(reason).toMatch(expected);
    else expect(reason).toBeUndefined();
  });

  it('isBlindAppend: only adds (and txns)', () => {
    expect(isBlindAppend([add('a'), txn('p', 1)])).toBe(true);
    expect(isBlindAppend([add('a'), remove('b')])).toBe(false);
  });
});

describe('commit validation', () => {
  const snapshot = () => {
    const s = new Snapshot();
    s.applyCommit(0, [
      { protocol: { minReaderVersion: 1, minWriterVersion: 2 } },
      {
        metaData: {
          id: 't',
          format: { provider: 'parquet', options: {} },
          schemaString: JSON.stringify({
            type: 'struct',
            fields: [
              { name: 'id', type: 'long', nullable: false, metadata: {} },
              { name: 'p', type: 'string', nullable: true, metadata: {} },
            ],
          }),
          partitionColumns: ['p'],
          configuration: { 'delta.appendOnly': 'true' },
        },
      },
      add('p=a/f1', { partitionValues: { p: 'a' } }),
    ]);
    return s;
  };
  const check = (actions: Action[]) => () => validateCommit('memory://lake/t', snapshot(), actions);

  it('accepts a valid append with partition values', () => {
    expect(
      check([add('p=b/f2', { partitionValues: { p: 'b' } }), add('p=__HIVE/f3', { partitionValues: { p: null } }), txn('a', 1)]),
    ).not.toThrow();
  });
  it('refuses duplicate actions that would reconcile with each other', () => {
    const pv = { partitionValues: { p: 'b' } };
    expect(check([add('x', pv), add('x', pv)])).toThrow('file x is added twice in one commit');
    expect(check([txn('a', 1), txn('a', 2)])).toThrow('one txn action per appId, a appears twice');
    expect(check([add('p=a/f1', { partitionValues: { p: 'a' } }), { remove: { path: 'p=a/f1', dataChange: false } }])).toThrow(
      'is both added and removed',
    );
    expect(check([{ commitInfo: { timestamp: 1, operation: 'x', operationParameters: {} } }])).toThrow(
      'commit() writes the commitInfo action itself',
    );
  });
  it('requires exactly the partition columns in every add', () => {
    expect(check([add('y')])).toThrow(/add y: partitionValues must hold exactly the partition columns \[p\]; missing p/);
    expect(check([add('y', { partitionValues: { p: 'a', q: 'b' } })])).toThrow(/not partition columns: q/);
  });
  it('a remove must name an active file (DeltaConflictError otherwise)', () => {
    expect(check([{ remove: { path: 'gone', dataChange: false } }])).toThrow(DeltaConflictError);
    expect(check([{ remove: { path: 'gone', dataChange: false } }])).toThrow('file gone is not in the table at version 0');
  });
  it('append-only tables refuse data-changing removes but allow rearranging (dataChange=false)', () => {
    expect(check([{ remove: { path: 'p=a/f1', dataChange: true } }])).toThrow(DeltaProtocolError);
    expect(check([{ remove: { path: 'p=a/f1', dataChange: true } }])).toThrow(
      /append-only \(delta.appendOnly=true\) and this commit removes data \(file p=a\/f1/,
    );
    expect(
      check([{ remove: { path: 'p=a/f1', dataChange: false } }, add('p=a/c', { partitionValues: { p: 'a' }, dataChange: false })]),
    ).not.toThrow();
  });
  it('refuses a metaData with column invariants, or partition columns missing from its schema', () => {
    const base = snapshot().metadata!;
    const withInvariant = JSON.stringify({
      type: 'struct',
      fields: [
        { name: 'id', type: 'long', nullable: false, metadata: { 'delta.invariants': '{"expression":{"expression":"id > 0"}}' } },
        { name: 'p', type: 'string', nullable: true, metadata: {} },
      ],
    });
    expect(check([{ metaData: { ...base, schemaString: withInvariant } }])).toThrow(
      /column id has a column invariant .*which Tide cannot evaluate/,
    );
    expect(check([{ metaData: { ...base, partitionColumns: ['nope'] } }])).toThrow('partition columns nope are not in the schema');
    expect(check([{ protocol: { minReaderVersion: 1, minWriterVersion: 5 } }])).toThrow(DeltaProtocolError);
  });
});

describe('DeltaTable over an in-memory store', () => {
  it('create writes commit 0: commitInfo, protocol 1/2 without features, Spark-style metaData', async () => {
    const { store, table } = await newTable();
    expect(table.version).toBe(0);
    const lines = store
      .commitText('silver/t', 0)
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines.map((l) => Object.keys(l)[0])).toEqual(['commitInfo', 'protocol', 'metaData']);
    expect(lines[1]).toEqual({ protocol: { minReaderVersion: 1, minWriterVersion: 2 } });
    expect(lines[2].metaData).toMatchObject({
      name: 'silver.t',
      format: { provider: 'parquet', options: {} },
      partitionColumns: [],
      configuration: noCheckpoints,
      schemaString:
        '{"type":"struct","fields":[{"name":"id","type":"long","nullable":false,"metadata":{}},{"name":"d","type":"date","nullable":true,"metadata":{}}]}',
    });
    expect(lines[2].metaData.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(lines[0].commitInfo).toMatchObject({ operation: 'CREATE TABLE', engineInfo: 'Tide/0.1.0' });
    expect(table.schema).toEqual(schema);
  });

  it('open of a root without a log is undefined; create of an existing table returns it as it is', async () => {
    const store = new MemoryStore();
    expect(await DeltaTable.open(store, 'silver/t')).toBeUndefined();
    const first = await DeltaTable.create(store, 'silver/t', { name: 'a', schema, configuration: noCheckpoints });
    const other = { columns: [...schema.columns, { name: 'x', type: { kind: 'string' as const }, nullable: true }] };
    const second = await DeltaTable.create(store, 'silver/t', { name: 'b', schema: other });
    expect(second.metadata.id).toBe(first.metadata.id);
    expect(second.schema).toEqual(schema);
  });

  it('when another writer creates the table first, create returns theirs', async () => {
    const store = new MemoryStore();
    store.beforePutIfAbsent = (path) => {
      store.beforePutIfAbsent = undefined;
      store.commit('silver/t', 0, [
        { protocol: { minReaderVersion: 1, minWriterVersion: 2 } },
        {
          metaData: {
            id: 'theirs',
            format: { provider: 'parquet', options: {} },
            schemaString: JSON.stringify({ type: 'struct', fields: [] }),
            partitionColumns: [],
            configuration: {},
          },
        },
      ]);
      expect(path).toBe('silver/t/_delta_log/00000000000000000000.json');
    };
    const table = await DeltaTable.create(store, 'silver/t', { name: 'mine', schema });
    expect(table.metadata.id).toBe('theirs');
  });

  it('commit appends commitInfo (blind append, read version), updates the snapshot, and returns the version', async () => {
    const { store, table } = await newTable();
    expect(await table.commit([add('a'), txn('p0', 7)], op)).toBe(1);
    expect(table.files().map((f) => f.path)).toEqual(['a']);
    expect(table.txnVersion('p0')).toBe(7);
    const [info] = parseCommitText(store.commitText('silver/t', 1));
    expect(info).toMatchObject({
      commitInfo: {
        operation: 'WRITE',
        operationParameters: { mode: 'Append' },
        isBlindAppend: true,
        readVersion: 0,
        engineInfo: 'Tide/0.1.0',
      },
    });
    await table.commit([remove('a')], { operation: 'DELETE' });
    const [, removed] = parseCommitText(store.commitText('silver/t', 2));
    expect(removed).toMatchObject({ remove: { path: 'a', dataChange: true } });
    expect(parseCommitText(store.commitText('silver/t', 2))[0]).toMatchObject({ commitInfo: { isBlindAppend: false } });
  });

  it('two writers race for one version: a blind append retries at the next version and both files stay', async () => {
    const { store, table: a } = await newTable();
    const b = (await DeltaTable.open(store, 'silver/t'))!;
    expect(await a.commit([add('from-a'), txn('pa', 1)], op)).toBe(1);
    expect(await b.commit([add('from-b'), txn('pb', 1)], op)).toBe(2);
    expect(b.files().map((f) => f.path)).toEqual(['from-a', 'from-b']);
    expect(parseCommitText(store.commitText('silver/t', 2))[0]).toMatchObject({ commitInfo: { readVersion: 0 } });
    await a.refresh();
    expect(a.version).toBe(2);
    expect(a.txnVersion('pb')).toBe(1);
  });

  it('two writers removing the same file: the loser gets DeltaConflictError and its snapshot shows the winner', async () => {
    const { store, table: a } = await newTable();
    await a.commit([add('f1'), add('f2')], op);
    const b = (await DeltaTable.open(store, 'silver/t'))!;
    await a.commit([remove('f1'), add('f1-rewritten')], { operation: 'MERGE' });
    const err = await b.commit([remove('f1'), add('f1-other')], { operation: 'MERGE' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeltaConflictError);
    expect(err).toMatchObject({ version: 2, table: 'memory://lake/silver/t' });
    expect((err as Error).message).toMatch(/commit lost version 2 .* already removed file f1, which this commit removes/);
    expect(b.version).toBe(2);
    expect(
      b
        .files()
        .map((f) => f.path)
        .sort(),
    ).toEqual(['f1-rewritten', 'f2']);
    expect(store.objects.has(commitPath('silver/t', 3))).toBe(false);
  });

  it('two writers committing the same txn appId conflict', async () => {
    const { store, table: a } = await newTable();
    const b = (await DeltaTable.open(store, 'silver/t'))!;
    await a.commit([add('x'), txn('sink-topic-0', 10)], op);
    await expect(b.commit([add('y'), txn('sink-topic-0', 10)], op)).rejects.toThrow(/set txn sink-topic-0 \(version 10\)/);
  });

  it('retries are bounded', async () => {
    const { store, table } = await newTable();
    let others = 0;
    store.beforePutIfAbsent = (path) => {
      const version = Number(/(\d{20})\.json$/.exec(path)![1]);
      store.commit('silver/t', version, [add(`other-${++others}`)]);
    };
    await expect(table.commit([add('mine')], op)).rejects.toThrow(`other writers committed first ${MAX_COMMIT_ATTEMPTS} times in a row`);
    expect(others).toBe(MAX_COMMIT_ATTEMPTS);
    expect(table.version).toBe(MAX_COMMIT_ATTEMPTS);
  });

  it('commits on one instance run one after another', async () => {
    const { table } = await newTable();
    const versions = await Promise.all(Array.from({ length: 5 }, (_, i) => table.commit([add(`f${i}`)], op)));
    expect(versions).toEqual([1, 2, 3, 4, 5]);
    expect(table.files()).toHaveLength(5);
  });

  it('refuses to read reader version 3 and to write writer version 7 with unknown features', async () => {
    const store = new MemoryStore();
    const md = {
      id: 'x',
      format: { provider: 'parquet', options: {} },
      schemaString: JSON.stringify({ type: 'struct', fields: [] }),
      partitionColumns: [],
      configuration: {},
    };
    store.commit('dv', 0, [
      { protocol: { minReaderVersion: 3, minWriterVersion: 7, readerFeatures: ['columnMapping'], writerFeatures: ['columnMapping'] } },
      { metaData: md },
    ]);
    const read = await DeltaTable.open(store, 'dv').catch((e: unknown) => e);
    expect(read).toBeInstanceOf(DeltaProtocolError);
    expect((read as Error).message).toMatchInlineSnapshot(
      `"Delta table memory://lake/dv: cannot read: Tide does not implement the reader features columnMapping (it implements deletionVectors). Read it with an engine that supports the protocol (Spark, delta-rs) (table protocol: reader version 3, writer version 7, reader features [columnMapping], writer features [columnMapping])"`,
    );
    store.commit('rt', 0, [
      { protocol: { minReaderVersion: 1, minWriterVersion: 7, writerFeatures: ['appendOnly', 'rowTracking'] } },
      { metaData: md },
    ]);
    const rt = (await DeltaTable.open(store, 'rt'))!;
    expect(rt.files()).toEqual([]);
    await expect(rt.commit([add('x')], op)).rejects.toThrow(DeltaProtocolError);
    await expect(rt.commit([add('x')], op)).rejects.toThrow(/refusing to write: Tide does not implement the writer features rowTracking/);
  });

  it('names the commit file that cannot be parsed', async () => {
    const { store, table } = await newTable();
    store.objects.set(commitPath('silver/t', 1), { data: Buffer.from('{"add":{"path":"x","size":1}\n'), modified: 0 });
    const err = await table.refresh().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeltaLogError);
    expect((err as Error).message).toMatch(
      /commit silver\/t\/_delta_log\/00000000000000000001\.json cannot be parsed \(line 1: is not valid JSON/,
    );
    expect(table.version).toBe(0);
  });

  it('a refresh that fails at a later commit applies none of the commits it read (refresh is in place)', async () => {
    const { store, table } = await newTable();
    const other = (await DeltaTable.open(store, 'silver/t'))!;
    await other.commit([add('a')], op);
    store.objects.set(commitPath('silver/t', 2), { data: Buffer.from('{"add":{"path":"x","size":1}\n'), modified: 0 });
    await expect(table.refresh()).rejects.toThrow(/00000000000000000002\.json cannot be parsed/);
    expect(table.version).toBe(0);
    expect(table.files()).toEqual([]);
    // A new protocol Tide cannot read, two commits on: refused before commit 1 is applied too.
    store.objects.set(commitPath('silver/t', 2), {
      data: Buffer.from(
        `${JSON.stringify({ protocol: { minReaderVersion: 3, minWriterVersion: 7, readerFeatures: ['columnMapping'], writerFeatures: ['columnMapping'] } })}\n`,
      ),
      modified: 0,
    });
    await expect(table.refresh()).rejects.toThrow(/cannot read: Tide does not implement the reader features columnMapping/);
    expect(table.version).toBe(0);
    expect(table.files()).toEqual([]);
    store.objects.delete(commitPath('silver/t', 2));
    await table.refresh();
    expect(table.version).toBe(1);
    expect(table.files().map((f) => f.path)).toEqual(['a']);
  });

  it('time travel: open at a version; a missing version or a log without version 0 is an error', async () => {
    const { store, table } = await newTable();
    await table.commit([add('a')], op);
    await table.commit([add('b')], op);
    const v1 = (await DeltaTable.open(store, 'silver/t', { version: 1 }))!;
    expect(v1.files().map((f) => f.path)).toEqual(['a']);
    await expect(DeltaTable.open(store, 'silver/t', { version: 9 })).rejects.toThrow('version 9 does not exist (latest is 2)');
    store.objects.delete(commitPath('silver/t', 0));
    await expect(DeltaTable.open(store, 'silver/t')).rejects.toThrow(
      /the log has no version 0 and no usable checkpoint \(earliest commit: 1\)/,
    );
  });

  it('evolveSchema keeps id, partition columns and configuration; the commit changes the schema', async () => {
    const { table } = await newTable();
    const wider = { columns: [...schema.columns, { name: 'note', type: { kind: 'string' as const }, nullable: true }] };
    const md = table.evolveSchema(wider);
    expect(md).toMatchObject({ id: table.metadata.id, configuration: noCheckpoints, partitionColumns: [] });
    await table.commit([{ metaData: md }], { operation: 'ADD COLUMNS' });
    expect(table.schema).toEqual(wider);
  });
});

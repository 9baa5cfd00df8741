import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ObjectStore } from '../../src/lake/storage/object-store.ts';

/**
 * What every ObjectStore must do, run against each real store (the local filesystem,
 * Azure Blob Storage on azurite). The Delta writer relies on exactly this: above all
 * that putIfAbsent lets one writer of many create a commit file.
 */
export interface ContractSubject {
  /** A fresh, empty store for this suite (its own directory or prefix). */
  open(): Promise<ObjectStore>;
  /** Remove what the suite wrote. Called only when every test passed, so a failure's leftovers stay for inspection. */
  cleanup?(store: ObjectStore): Promise<void>;
}

const text = (s: string) => Buffer.from(s, 'utf8');

export function objectStoreContract(name: string, subject: ContractSubject): void {
  describe(`ObjectStore contract: ${name}`, () => {
    let store: ObjectStore;
    let failed = false;
    const scratch = mkdtempSync(join(tmpdir(), 'tide-store-contract-'));

    beforeAll(async () => {
      store = await subject.open();
    });
    afterEach((ctx) => {
      if (ctx.task.result?.state === 'fail') failed = true;
    });
    afterAll(async () => {
      if (!store) return;
      if (!failed) await subject.cleanup?.(store);
      await store.close();
      rmSync(scratch, { recursive: true, force: true });
    });

    it('get of a missing object is undefined', async () => {
      expect(await store.get('missing/nothing-here.json')).toBeUndefined();
    });

    it('put then get returns the bytes; a second put replaces them', async () => {
      await store.put('put/a.json', text('{"v":1}'));
      expect((await store.get('put/a.json'))?.toString()).toBe('{"v":1}');
      await store.put('put/a.json', new Uint8Array(text('{"v":2,"longer":true}')));
      expect((await store.get('put/a.json'))?.toString()).toBe('{"v":2,"longer":true}');
    });

    it("putIfAbsent creates once: true, then false, and the first writer's bytes stay", async () => {
      const path = '_delta_log/00000000000000000000.json';
      expect(await store.putIfAbsent(path, text('first'))).toBe(true);
      expect(await store.putIfAbsent(path, text('second'))).toBe(false);
      expect((await store.get(path))?.toString()).toBe('first');
    });

    it('10 concurrent putIfAbsent of one path: exactly one returns true, and its bytes are stored', async () => {
      const path = '_delta_log/00000000000000000001.json';
      const results = await Promise.all(Array.from({ length: 10 }, (_, i) => store.putIfAbsent(path, text(`writer ${i}`))));
      const winners = results.flatMap((ok, i) => (ok ? [i] : []));
      expect(winners).toHaveLength(1);
      expect((await store.get(path))?.toString()).toBe(`writer ${winners[0]}`);
    });

    it('putFile uploads a 5 MB local file byte for byte', async () => {
      const bytes = randomBytes(5 * 1024 * 1024 + 123);
      const local = join(scratch, 'big.parquet');
      writeFileSync(local, bytes);
      await store.putFile('data/part-00000-big.parquet', local);
      const back = await store.get('data/part-00000-big.parquet');
      expect(back?.length).toBe(bytes.length);
      expect(back?.equals(bytes)).toBe(true);
      expect((await store.stat('data/part-00000-big.parquet'))?.size).toBe(bytes.length);
    });

    it('localFile is a local file with the bytes, and follows an overwrite', async () => {
      await store.put('local/x.json', text('version one'));
      const first = await store.localFile('local/x.json');
      expect(readFileSync(first, 'utf8')).toBe('version one');
      expect(await store.localFile('local/x.json')).toBe(first);
      await store.put('local/x.json', text('version two, longer'));
      expect(readFileSync(await store.localFile('local/x.json'), 'utf8')).toBe('version two, longer');
    });

    it('localFile of a missing object rejects, naming the path', async () => {
      await expect(store.localFile('local/missing.parquet')).rejects.toThrow('local/missing.parquet');
    });

    it('list returns the objects under a prefix, sorted, with sizes and times', async () => {
      const before = Date.now();
      for (const [path, body] of [
        ['ls/b.json', 'bb'],
        ['ls/sub/z.json', 'zzzz'],
        ['ls/a.json', 'a'],
        ['ls/c.json', 'ccc'],
        ['lsx.json', 'x'],
      ] as const) {
        await store.put(path, text(body));
      }
      const listed = await store.list('ls/');
      expect(listed.map((o) => [o.path, o.size])).toEqual([
        ['ls/a.json', 1],
        ['ls/b.json', 2],
        ['ls/c.json', 3],
        ['ls/sub/z.json', 4],
      ]);
      for (const o of listed) {
        expect(o.modified).toBeGreaterThan(before - 60_000);
        expect(o.modified).toBeLessThan(Date.now() + 60_000);
      }
      // A prefix is a string prefix, not only a directory.
      expect((await store.list('ls')).map((o) => o.path)).toEqual(['ls/a.json', 'ls/b.json', 'ls/c.json', 'ls/sub/z.json', 'lsx.json']);
      expect(await store.list('no-such-prefix/')).toEqual([]);
    });

    it('stat gives path, size and modification time; a missing object is undefined', async () => {
      const before = Date.now();
      await store.put('stat/s.json', text('12345'));
      const info = await store.stat('stat/s.json');
      expect(info).toMatchObject({ path: 'stat/s.json', size: 5 });
      expect(info!.modified).toBeGreaterThan(before - 60_000);
      expect(info!.modified).toBeLessThan(Date.now() + 60_000);
      expect(await store.stat('stat/missing.json')).toBeUndefined();
    });

    it('delete removes an object; deleting a missing one is not an error', async () => {
      await store.put('del/d.json', text('d'));
      await store.delete('del/d.json');
      expect(await store.get('del/d.json')).toBeUndefined();
      expect(await store.stat('del/d.json')).toBeUndefined();
      await expect(store.delete('del/d.json')).resolves.toBeUndefined();
      await expect(store.delete('del/never-existed.json')).resolves.toBeUndefined();
    });

    it('paths with spaces, "=" (Hive partitions) and a literal "%20" are kept exactly and stay distinct', async () => {
      const paths = [
        'odd/_commit_date=2026-11-24/part-00000-1f2e.c000.zstd.parquet',
        'odd/name with spaces.json',
        'odd/name%20with%20spaces.json',
        'odd/k=a b%2Fc/x.json',
      ];
      for (const [i, path] of paths.entries()) await store.put(path, text(`body ${i}`));
      for (const [i, path] of paths.entries()) {
        expect((await store.get(path))?.toString()).toBe(`body ${i}`);
        expect((await store.stat(path))?.path).toBe(path);
        expect(readFileSync(await store.localFile(path), 'utf8')).toBe(`body ${i}`);
      }
      expect((await store.list('odd/')).map((o) => o.path)).toEqual([...paths].sort());
      expect(await store.putIfAbsent(paths[2]!, text('again'))).toBe(false);
      expect(await store.putIfAbsent('odd/_commit_date=2026-11-25/new file%20.json', text('new'))).toBe(true);
      await store.delete(paths[1]!);
      expect(await store.get(paths[1]!)).toBeUndefined();
      expect((await store.get(paths[2]!))?.toString()).toBe('body 2');
    });
  });
}

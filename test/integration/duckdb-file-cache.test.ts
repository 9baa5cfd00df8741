import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LakeSchema } from '../../src/lake/lake-schema.ts';
import { ParquetEngine, type DataFile } from '../../src/lake/parquet/parquet-engine.ts';
import { LocalStore } from '../../src/lake/storage/local-store.ts';

/**
 * The notification sink's RSS grew by ~200 MiB in 15 minutes (README → Performance → "The notification
 * platform"): DuckDB's external file cache kept a copy of every bronze file a gold build had read, and
 * freed them only once the engine reached `duckdb.memory.limit` (2 GB by default). A sink appends a file
 * per flush and its incremental reports read the newest ones again and again, so the cache grew with every
 * flush. Real DuckDB, real Parquet files on disk, read the way a gold build reads bronze after each flush;
 * `duckdb_memory()` is DuckDB's own account of what it holds, by tag.
 */
const schema: LakeSchema = {
  columns: [
    { name: 'id', type: { kind: 'long' }, nullable: false },
    { name: 'note', type: { kind: 'string' }, nullable: true },
  ],
};

describe('DuckDB keeps no copy of the Parquet files it reads', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tide-duckdb-file-cache-'));
  const store = new LocalStore(dir);
  let engine: ParquetEngine;
  beforeAll(async () => {
    engine = await ParquetEngine.create({ memoryLimit: '2GB' });
  });
  afterAll(async () => {
    await engine?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function held(tag: string): Promise<number> {
    const rows = await engine.query(`SELECT memory_usage_bytes AS b FROM duckdb_memory() WHERE tag = '${tag}'`);
    return Number(rows[0]?.b ?? 0);
  }

  it('after 20 flushes, each followed by a read of every file so far, the external file cache holds 0 bytes', async () => {
    const files: DataFile[] = [];
    const ROWS = 5000;
    for (let flush = 0; flush < 20; flush++) {
      files.push(
        ...(await engine.writeFiles(
          `SELECT range AS id, 'notification ' || range || ' ' || md5(range::VARCHAR) AS note FROM range(${flush * ROWS}, ${(flush + 1) * ROWS})`,
          { store, root: 'bronze/notifications', schema },
        )),
      );
      await engine.createView('bronze_v', store, 'bronze/notifications', files, schema);
      const [r] = await engine.query(`SELECT count(*)::INT AS n, count(DISTINCT note)::INT AS notes, max(id)::INT AS top FROM bronze_v`);
      expect(r).toEqual({ n: (flush + 1) * ROWS, notes: (flush + 1) * ROWS, top: (flush + 1) * ROWS - 1 });
    }
    expect(files.length).toBe(20);
    expect(await held('EXTERNAL_FILE_CACHE'), "bytes of the files' data DuckDB keeps after reading them").toBe(0);
  });
});

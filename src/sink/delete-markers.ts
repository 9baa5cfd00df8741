import { DeltaTable } from '../lake/delta/delta-table.ts';
import type { LakeColumn, LakeSchema } from '../lake/lake-schema.ts';
import type { ParquetEngine } from '../lake/parquet/parquet-engine.ts';
import type { ObjectStore } from '../lake/storage/object-store.ts';
import { vacuumTable } from '../lake/maintenance/vacuum.ts';
import type { KeyChange } from './silver-changes.ts';
import { lakeTableName } from './table-layout.ts';

/**
 * Delete markers: silver keeps no row for a deleted key, so without a trace of the delete a source replay
 * (the source re-sends everything after its confirmed position when it restarts) would bring back an older
 * insert of that key until the replayed delete arrives (issue 11, item 13). Each delete's key and position
 * is appended to a small Delta table beside the lake's layers, `_tide/deletes/<table>`, and the merge drops
 * an insert of a key that silver does not hold when a marker at or after its position exists.
 *
 * Readers of silver still see plain rows only: the markers live outside silver (a hidden top-level folder
 * that `lake tables`, the layers' readers and their vacuums never look at). They are kept for
 * MARKER_RETENTION_MS, far longer than any replay reaches back (a replay starts at the slot's confirmed
 * position, minutes behind), and compacted when their files pile up.
 */
export const MARKER_RETENTION_MS = 7 * 24 * 3_600_000;
const COMPACT_AT_FILES = 50;

export const deleteMarkersPath = (qualifiedTable: string): string => `_tide/deletes/${lakeTableName(qualifiedTable)}`;

const META: LakeColumn[] = [
  { name: '_commit_lsn', type: { kind: 'long' }, nullable: false },
  { name: '_event_index', type: { kind: 'long' }, nullable: false },
  { name: '_deleted_at', type: { kind: 'timestamp' }, nullable: false },
];

export class DeleteMarkers {
  private constructor(
    private table: DeltaTable | undefined,
    private readonly store: ObjectStore,
    private readonly root: string,
    private readonly schema: LakeSchema,
  ) {}

  static async open(store: ObjectStore, qualifiedTable: string, keyColumns: LakeColumn[]): Promise<DeleteMarkers> {
    const root = deleteMarkersPath(qualifiedTable);
    const schema = { columns: [...keyColumns.map((c) => ({ ...c, nullable: false })), ...META] };
    return new DeleteMarkers(await DeltaTable.open(store, root), store, root, schema);
  }

  /** A view `name` over the markers (key columns, _commit_lsn, _event_index), empty when there are none. */
  async createView(engine: ParquetEngine, name: string): Promise<void> {
    await this.table?.refresh();
    await engine.createView(name, this.store, this.root, this.table?.files() ?? [], this.schema);
  }

  /** Append a marker for each delete (blind append: concurrent sink workers never conflict). */
  async record(engine: ParquetEngine, deletes: KeyChange[], keyColumns: string[]): Promise<void> {
    if (!deletes.length) return;
    const now = BigInt(Date.now()) * 1000n;
    const rows = deletes.map((d) => [...keyColumns.map((_, i) => d.key[i]), d.commitLsn, BigInt(d.eventIndex), now]);
    const staged = await engine.stage(this.schema, rows);
    try {
      const cols = this.schema.columns.map((c) => `"${c.name.replace(/"/g, '""')}"`).join(', ');
      await this.append(engine, `SELECT ${cols} FROM ${staged}`, keyColumns);
    } finally {
      await engine.drop(staged);
    }
  }

  /** Append the markers a query produces (the key columns, _commit_lsn, _event_index, _deleted_at, in that order). */
  async recordSelect(engine: ParquetEngine, select: string, keyColumns: string[]): Promise<void> {
    await this.append(engine, select, keyColumns);
  }

  private async append(engine: ParquetEngine, select: string, keyColumns: string[]): Promise<void> {
    this.table ??= await DeltaTable.create(this.store, this.root, {
      name: `_tide.deletes.${this.root.slice(this.root.lastIndexOf('/') + 1)}`,
      schema: this.schema,
      description: 'Delete markers of a silver table (Tide): keeps replayed older inserts of deleted keys out of silver',
    });
    const adds = await engine.writeFiles(select, { store: this.store, root: this.root, schema: this.schema });
    if (!adds.length) return;
    await this.table.commit(
      adds.map((add) => ({ add })),
      { operation: 'WRITE', parameters: { mode: 'Append' } },
    );
    if (this.table.files().length >= COMPACT_AT_FILES) await this.compact(engine, keyColumns);
  }

  /** One file with the newest marker per key, markers past the retention dropped; replaced files deleted after an hour. */
  async compact(engine: ParquetEngine, keyColumns: string[], now = Date.now()): Promise<void> {
    const table = this.table;
    if (!table) return;
    const files = table.files();
    await engine.createView('tide_markers_compact', this.store, this.root, files, this.schema);
    const keys = keyColumns.map((k) => `"${k.replace(/"/g, '""')}"`).join(', ');
    const cols = this.schema.columns.map((c) => `"${c.name.replace(/"/g, '""')}"`).join(', ');
    const cutoff = BigInt(now - MARKER_RETENTION_MS) * 1000n;
    const select =
      `SELECT ${cols} FROM tide_markers_compact WHERE epoch_us(_deleted_at) >= ${cutoff} ` +
      `QUALIFY row_number() OVER (PARTITION BY ${keys} ORDER BY _commit_lsn DESC, _event_index DESC) = 1`;
    const adds = await engine.writeFiles(select, { store: this.store, root: this.root, schema: this.schema });
    const removes = files.map((f) => ({
      remove: { path: f.path, deletionTimestamp: now, dataChange: true, partitionValues: f.partitionValues, size: f.size },
    }));
    await table.commit([...removes, ...adds.map((add) => ({ add }))], { operation: 'OPTIMIZE', parameters: {} });
    await vacuumTable(table, { retainHours: 1, now });
  }
}

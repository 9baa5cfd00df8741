import type { Action, AddAction, TxnAction } from '../lake/delta/actions.ts';
import { DeltaConflictError } from '../lake/delta/delta-errors.ts';
import { DeltaTable } from '../lake/delta/delta-table.ts';
import type { LakeColumn, LakeSchema } from '../lake/lake-schema.ts';
import type { ParquetEngine } from '../lake/parquet/parquet-engine.ts';
import type { ObjectStore } from '../lake/storage/object-store.ts';
import type { Logger } from '../log.ts';
import type { EventRecord } from './event-input.ts';
import { dayOf } from './event-time.ts';
import { faultPoint } from './fault.ts';
import { candidateFiles } from './key-pruning.ts';
import { txnActions, txnAppId } from './offsets.ts';
import { sameType, typeText } from './table-layout.ts';

/**
 * The lake tables of one event topic (input.format events):
 *
 *   bronze/<topic>   every event, append-only, partitioned by `_event_date` = the UTC date of timestamp.field,
 *                    so a late or out-of-order event lands in the partition of its own time
 *   silver/<topic>   with pk.fields: the latest event per key, by (timestamp.field, Kafka offset, Kafka partition)
 *
 * Exactly once as for Tide's own topics (offsets.ts): each commit carries a txn action per partition, and a
 * table skips every offset at or below its own version, so a replay after a crash duplicates nothing.
 */
export interface EventTablesContext {
  name: string;
  engine: ParquetEngine;
  store: ObjectStore;
  log: Logger;
  checkpointInterval: number;
  bronzeEnabled: boolean;
  keyFields: string[];
}

const ts = { kind: 'timestamp' } as const;
export const EVENT_BRONZE_META: LakeColumn[] = [
  { name: '_kafka_partition', type: { kind: 'integer' }, nullable: false },
  { name: '_kafka_offset', type: { kind: 'long' }, nullable: false },
  { name: '_ingested_at', type: ts, nullable: false },
  { name: '_event_date', type: { kind: 'date' }, nullable: false },
];
export const EVENT_PARTITION = '_event_date';
export const EVENT_SILVER_META: LakeColumn[] = [
  { name: '_event_time', type: ts, nullable: false },
  { name: '_kafka_partition', type: { kind: 'integer' }, nullable: false },
  { name: '_kafka_offset', type: { kind: 'long' }, nullable: false },
];
/** Silver files are rewritten whole when one of their keys changes: keep them moderate. */
const SILVER_FILE_ROWS = 250_000;
const MAX_ATTEMPTS = 5;

const q = (name: string): string => `"${name.replace(/"/g, '""')}"`;
const lit = (s: string): string => `'${s.replace(/'/g, "''")}'`;
type Offset = { topic: string; partition: number; offset: bigint };

export interface EventApplyResult {
  bronzeRows: number;
  silverChanges: number;
  bronzeVersion?: number;
  silverVersion?: number;
  newestMicros?: bigint;
}

export class EventTables {
  bronze: DeltaTable | undefined;
  silver: DeltaTable | undefined;

  constructor(
    private readonly ctx: EventTablesContext,
    /** The lake name (event-input.ts eventTableName). */
    readonly table: string,
  ) {}

  get keepsSilver(): boolean {
    return this.ctx.keyFields.length > 0;
  }

  async open(): Promise<void> {
    if (this.ctx.bronzeEnabled) this.bronze = await DeltaTable.open(this.ctx.store, `bronze/${this.table}`);
    if (this.keepsSilver) this.silver = await DeltaTable.open(this.ctx.store, `silver/${this.table}`);
  }

  layers(): { name: string; table: DeltaTable | undefined }[] {
    return [
      ...(this.ctx.bronzeEnabled ? [{ name: `bronze.${this.table}`, table: this.bronze }] : []),
      ...(this.keepsSilver ? [{ name: `silver.${this.table}`, table: this.silver }] : []),
    ];
  }

  /**
   * The records that cannot be written, with the reason: a field whose type differs from the column the
   * table (or an earlier record of the batch) already has, or, with a silver, a key field that is null.
   */
  rejects(records: EventRecord[]): Map<EventRecord, string> {
    const out = new Map<EventRecord, string>();
    const known = new Map<string, LakeColumn>();
    for (const t of [this.bronze, this.silver]) for (const c of t?.schema.columns ?? []) if (!known.has(c.name)) known.set(c.name, c);
    for (const r of records) {
      for (const c of r.columns) {
        const have = known.get(c.name);
        if (!have) known.set(c.name, c);
        else if (!sameType(have.type, c.type)) {
          out.set(
            r,
            `the field "${c.name}" is ${typeText(c.type)} in this event, but the lake table ${this.table} stores it as ${typeText(have.type)}: ` +
              'an incompatible schema change; write such events to a new topic (or replay them from the dead-letter topic once the table is recreated)',
          );
          break;
        }
      }
      if (out.has(r) || !this.keepsSilver) continue;
      const missing = this.ctx.keyFields.find((k) => r.row[k] === null || r.row[k] === undefined);
      if (missing !== undefined) out.set(r, `the key field "${missing}" (pk.fields) is ${missing in r.row ? 'null' : 'missing'}`);
    }
    return out;
  }

  /** Append to bronze and merge into silver: one commit each, with the offsets of every message of the batch. */
  async apply(records: EventRecord[], offsets: Offset[]): Promise<EventApplyResult> {
    const result: EventApplyResult = { bronzeRows: 0, silverChanges: 0 };
    for (const r of records)
      if (result.newestMicros === undefined || r.timeMicros > result.newestMicros) result.newestMicros = r.timeMicros;
    if (this.ctx.bronzeEnabled) {
      const incoming = incomingColumns(records);
      this.bronze ??= await DeltaTable.create(this.ctx.store, `bronze/${this.table}`, {
        name: `bronze.${this.table}`,
        schema: { columns: [...incoming.map((c) => ({ ...c, nullable: true })), ...EVENT_BRONZE_META] },
        partitionColumns: [EVENT_PARTITION],
        description: `Every event of the topic(s) of ${this.table}, append-only, partitioned by event date (Tide sink ${this.ctx.name})`,
        configuration: { 'delta.checkpointInterval': String(this.ctx.checkpointInterval) },
      });
      const bronze = this.bronze;
      await this.retried(bronze, async () => {
        const pending = pendingOf(bronze, this.ctx.name, records);
        const txns = txnActions(this.ctx.name, pendingOffsetsOf(bronze, this.ctx.name, offsets));
        if (!txns.length) return;
        result.bronzeVersion = await this.appendBronze(bronze, pending, txns);
        result.bronzeRows = pending.length;
      });
    }
    if (this.keepsSilver) {
      const keys = this.ctx.keyFields;
      const incoming = incomingColumns(records);
      if (!this.silver) {
        if (!records.length) return result;
        this.silver = await DeltaTable.create(this.ctx.store, `silver/${this.table}`, {
          name: `silver.${this.table}`,
          schema: { columns: [...incoming.map((c) => ({ ...c, nullable: !keys.includes(c.name) })), ...EVENT_SILVER_META] },
          description: `The latest event per ${keys.join(', ')} of ${this.table} (by event time, then Kafka offset; Tide sink ${this.ctx.name})`,
          configuration: { 'delta.checkpointInterval': String(this.ctx.checkpointInterval), 'tide.primaryKey': keys.join(',') },
        });
      }
      const silver = this.silver;
      await this.retried(silver, async () => {
        const pending = pendingOf(silver, this.ctx.name, records);
        const txns = txnActions(this.ctx.name, pendingOffsetsOf(silver, this.ctx.name, offsets));
        if (!txns.length) return;
        const merged = await this.mergeSilver(silver, pending, txns);
        result.silverVersion = merged.version;
        result.silverChanges = merged.keys;
      });
    }
    return result;
  }

  /** Another writer (a second sink worker) won a commit: re-read the log and plan again from it. */
  private async retried(table: DeltaTable, work: () => Promise<void>): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await work();
      } catch (err) {
        if (!(err instanceof DeltaConflictError) || attempt >= MAX_ATTEMPTS) throw err;
        this.ctx.log.info(
          { table: table.label, err: err.message },
          'another writer committed to the table: re-reading its log and planning again',
        );
        await table.refresh();
      }
    }
  }

  /** The table's schema with the batch's new fields added (a metaData action in the same commit), or as it is. */
  private evolved(table: DeltaTable, incoming: LakeColumn[]): { schema: LakeSchema; action?: Action } {
    const have = new Set(table.schema.columns.map((c) => c.name));
    const added = incoming.filter((c) => !have.has(c.name)).map((c) => ({ ...c, nullable: true }));
    if (!added.length) return { schema: table.schema };
    const schema = { columns: [...table.schema.columns, ...added] };
    return { schema, action: { metaData: table.evolveSchema(schema) } };
  }

  private async appendBronze(table: DeltaTable, records: EventRecord[], txns: TxnAction[]): Promise<number> {
    const { schema, action } = this.evolved(table, incomingColumns(records));
    const now = BigInt(Date.now()) * 1000n;
    const rows = records.map((r) =>
      schema.columns.map((c) => {
        switch (c.name) {
          case '_kafka_partition':
            return r.partition;
          case '_kafka_offset':
            return r.offset;
          case '_ingested_at':
            return now;
          case EVENT_PARTITION:
            return dayOf(r.timeMicros);
          default:
            return r.row[c.name] ?? null;
        }
      }),
    );
    const files = await this.write(table, schema, rows, 'SELECT * FROM {staged}', [EVENT_PARTITION]);
    faultPoint('before-commit');
    return table.commit([...(action ? [action] : []), ...files.map((add) => ({ add })), ...txns.map((txn) => ({ txn }))], {
      operation: 'WRITE',
      parameters: { mode: 'Append', partitionBy: JSON.stringify([EVENT_PARTITION]) },
    });
  }

  /**
   * Copy-on-write: the files that hold a key of the batch (file statistics prune, DuckDB confirms) are
   * rewritten with the latest row per key among their rows and the batch's, and replaced in one commit.
   * Latest = the greatest (event time, Kafka offset, Kafka partition): replays and older late events
   * change nothing, and the result does not depend on the order the batches arrive in.
   */
  private async mergeSilver(table: DeltaTable, records: EventRecord[], txns: TxnAction[]): Promise<{ version: number; keys: number }> {
    const keys = this.ctx.keyFields;
    const { schema, action } = this.evolved(table, incomingColumns(records));
    const rows = records.map((r) =>
      schema.columns.map((c) => {
        if (c.name === '_event_time') return r.timeMicros;
        if (c.name === '_kafka_partition') return r.partition;
        if (c.name === '_kafka_offset') return r.offset;
        return r.row[c.name] ?? null;
      }),
    );
    const names = schema.columns.map((c) => q(c.name)).join(', ');
    const latest = `QUALIFY row_number() OVER (PARTITION BY ${keys.map(q).join(', ')} ORDER BY _event_time DESC, _kafka_offset DESC, _kafka_partition DESC) = 1`;
    const now = Date.now();
    let touched: AddAction[] = [];
    let distinctKeys = 0;
    const staged = await this.ctx.engine.stage(schema, rows);
    try {
      distinctKeys = Number(
        (await this.ctx.engine.query(`SELECT count(*) AS n FROM (SELECT DISTINCT ${keys.map(q).join(', ')} FROM ${staged})`))[0]!.n,
      );
      const keyColumn = keys.length === 1 ? schema.columns.find((c) => c.name === keys[0]) : undefined;
      const files = table.files();
      const candidates = keyColumn
        ? candidateFiles(
            files,
            keyColumn,
            records.map((r) => r.row[keyColumn.name]),
          )
        : files;
      touched = candidates.length ? await this.filesHolding(table, candidates, keys, staged) : [];
      let select = `SELECT ${names} FROM ${staged} ${latest}`;
      if (touched.length) {
        await this.ctx.engine.createView('event_silver_old', table.store, table.root, touched, schema);
        select = `SELECT ${names} FROM (SELECT ${names} FROM event_silver_old UNION ALL SELECT ${names} FROM ${staged}) ${latest}`;
      }
      const adds = await this.ctx.engine.writeFiles(`${select} ORDER BY ${keys.map(q).join(', ')}`, {
        store: table.store,
        root: table.root,
        schema,
        targetFileRows: SILVER_FILE_ROWS,
      });
      const actions: Action[] = [
        ...(action ? [action] : []),
        ...touched.map((f) => ({
          remove: { path: f.path, deletionTimestamp: now, dataChange: true, partitionValues: f.partitionValues, size: f.size },
        })),
        ...adds.map((add) => ({ add })),
        ...txns.map((txn) => ({ txn })),
      ];
      faultPoint('before-commit');
      const version = await table.commit(actions, { operation: 'MERGE', parameters: { predicate: `latest per ${keys.join(', ')}` } });
      return { version, keys: distinctKeys };
    } finally {
      await this.ctx.engine.drop(staged);
    }
  }

  private async write(table: DeltaTable, schema: LakeSchema, rows: unknown[][], select: string, partitionColumns: string[]) {
    const staged = await this.ctx.engine.stage(schema, rows);
    try {
      return await this.ctx.engine.writeFiles(select.replace('{staged}', staged), {
        store: table.store,
        root: table.root,
        schema,
        partitionColumns,
      });
    } finally {
      await this.ctx.engine.drop(staged);
    }
  }

  /** The candidate files that really hold one of the staged keys. */
  private async filesHolding(table: DeltaTable, candidates: AddAction[], keys: string[], staged: string): Promise<AddAction[]> {
    const byLocal = new Map<string, AddAction>();
    for (const f of candidates) byLocal.set(await table.store.localFile(`${table.root}/${decodeURIComponent(f.path)}`), f);
    const on = keys.map((k) => `f.${q(k)} = c.${q(k)}`).join(' AND ');
    const rows = await this.ctx.engine.query(
      `SELECT DISTINCT f.filename FROM read_parquet([${[...byLocal.keys()].map(lit).join(', ')}], filename = true, union_by_name = true) f WHERE EXISTS (SELECT 1 FROM ${staged} c WHERE ${on})`,
    );
    return rows.map((r) => byLocal.get(String(r.filename))!).filter(Boolean);
  }
}

/** The union of the batch's columns, in first-seen order. */
function incomingColumns(records: EventRecord[]): LakeColumn[] {
  const seen = new Map<string, LakeColumn>();
  const schemas = new Set<LakeColumn[]>();
  for (const r of records) {
    if (schemas.has(r.columns)) continue;
    schemas.add(r.columns);
    for (const c of r.columns) if (!seen.has(c.name)) seen.set(c.name, { name: c.name, type: c.type, nullable: c.nullable });
  }
  return [...seen.values()];
}

function pendingOf(table: DeltaTable, sink: string, records: EventRecord[]): EventRecord[] {
  return records.filter((r) => r.offset > BigInt(table.txnVersion(txnAppId(sink, r.topic, r.partition)) ?? -1));
}

function pendingOffsetsOf(table: DeltaTable, sink: string, offsets: Offset[]): Offset[] {
  return offsets.filter((o) => o.offset > BigInt(table.txnVersion(txnAppId(sink, o.topic, o.partition)) ?? -1));
}

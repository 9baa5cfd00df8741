import type pg from 'pg';
import type { SourceConfig } from '../config/source-config.ts';
import type { TableCodec } from '../events/envelope.ts';
import type { EventProducer } from '../events/kafka-producer.ts';
import type { Logger } from '../log.ts';
import type { OffsetStore } from './offset-store.ts';
import { connectPg, pgWhere } from './pg-connection.ts';
import { translatePgError } from './pg-errors.ts';
import type { DatabaseState, SourcePlan } from './plan.ts';
import { explainSlotFailure } from './prerequisites.ts';
import type { EventPublisher } from './publisher.ts';
import { runSnapshot, type SnapshotArgs } from './snapshot.ts';
import type { SourceStatus } from './status-file.ts';

export interface SlotSnapshotContext {
  config: SourceConfig;
  /** The connector's SQL connection (explains a failed CREATE_REPLICATION_SLOT, reads the slot's position). */
  sql: pg.Client;
  state: DatabaseState;
  plan: SourcePlan;
  store: OffsetStore;
  codecs: Map<number, TableCodec>;
  publisher: EventPublisher;
  producer: EventProducer;
  events: SnapshotArgs['events'];
  log: Logger;
  signal: AbortSignal;
  /** The snapshot begins (the connector's state becomes snapshotting). */
  onSnapshotStart: () => void;
  onProgress: (info: NonNullable<SourceStatus['snapshot']>) => void;
}

/**
 * Creates the replication slot when there is none (exporting its snapshot, whose consistent point is saved
 * with the offsets before any row is read), then runs the initial snapshot when the plan has one and it is
 * not done yet. 'interrupted' when the signal stopped the snapshot.
 */
export async function createSlotAndSnapshot(x: SlotSnapshotContext): Promise<'done' | 'interrupted'> {
  const c = x.config;
  let exported: string | undefined;
  let repl: pg.Client | undefined;
  if (!x.state.slotExists) {
    repl = await connectPg(c, { replication: true, log: x.log });
    const slotSql = x.plan.statements.find((s) => s.replication)!.sql;
    x.log.info({ sql: slotSql }, 'creating replication slot');
    const { rows } = await repl.query<{ consistent_point: string; snapshot_name: string | null }>(slotSql).catch(async (err: unknown) => {
      throw await explainSlotFailure(translatePgError(err, pgWhere(c, true)), x.sql);
    });
    exported = rows[0]!.snapshot_name ?? undefined;
    const fresh = {
      slot: c['slot.name'],
      ...(x.plan.snapshot
        ? { snapshot: { status: 'running' as const, consistentLsn: rows[0]!.consistent_point, nextIndex: 0, tables: {} } }
        : {}),
    };
    x.store.write(fresh);
  }
  try {
    const current = x.store.read() ?? { slot: c['slot.name'] };
    if (!x.plan.snapshot || current.snapshot?.status === 'done') return 'done';
    if (!current.snapshot) {
      const { rows } = await x.sql.query<{ lsn: string }>(
        `SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1`,
        [c['slot.name']],
      );
      current.snapshot = { status: 'running', consistentLsn: rows[0]!.lsn, nextIndex: 0, tables: {} };
    }
    x.onSnapshotStart();
    const snapClient = await connectPg(c, { log: x.log });
    try {
      return await runSnapshot({
        client: snapClient,
        exportedSnapshot: exported,
        codecs: x.plan.captured.map((t) => x.codecs.get(t.oid)!),
        publisher: x.publisher,
        offsets: current as typeof current & { snapshot: NonNullable<typeof current.snapshot> },
        store: x.store,
        fetchSize: c['snapshot.fetch.size'],
        partitionEnds: (topic) => x.producer.partitionEnds?.(topic) ?? Promise.resolve([]),
        connectorName: c['topic.prefix'],
        events: x.events,
        db: c['database.dbname'],
        log: x.log,
        signal: x.signal,
        onProgress: (p) => {
          const info = {
            table: p.table,
            rows: p.rows,
            totalRows: p.totalRows,
            rowsPerSecond: Math.round(p.rowsPerSecond),
            etaSeconds: p.etaSeconds === null ? null : Math.round(p.etaSeconds),
          };
          x.onProgress(info);
          x.log.info(info, 'snapshot progress');
        },
      });
    } finally {
      await snapClient.end();
    }
  } finally {
    await repl?.end();
  }
}

import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import type { SourceConfig } from '../config/source-config.ts';
import type { RawRow, TableCodec } from '../events/envelope.ts';
import { sleep, untilAborted } from '../abortable.ts';
import { TideError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { CatalogTable } from './catalog.ts';
import { chunkMessages, chunkRows, estimatedRows, readChunk } from './chunk-read.ts';
import { ChunkSchema } from './chunk-schema.ts';
import type { IncrementalProgress, IncrementalTable, OffsetStore, SourceOffsets } from './offset-store.ts';
import { formatLsn, parseLsn } from './lsn.ts';
import { snapshotEndMessages } from '../events/snapshot-end.ts';
import { endPg } from './pg-connection.ts';
import type { EventPublisher } from './publisher.ts';
import { SchemaPausedError } from './schema-guard.ts';
import { emitWatermark, parseSignal, parseWatermark, SIGNAL_PREFIX, WATERMARK_PREFIX, type SnapshotRequest } from './signals.ts';
import { keyId, parsePgSnapshot, SnapshotWindows } from './snapshot-window.ts';

/**
 * Incremental snapshots: a table read in primary-key chunks while streaming goes on (see snapshot-window.ts
 * for how each chunk is reconciled with the stream). Requested by a signal (`tide source snapshot`), by a table
 * that joined `table.include.list`, or by a table created while the source runs. One table at a time, in the
 * order requested.
 *
 * - No long transaction, no lock beyond plain reads: each chunk is one short REPEATABLE READ READ ONLY
 *   transaction (the chunk's SELECT and its pg_current_snapshot()).
 * - Memory: one chunk of `snapshot.fetch.size` rows.
 * - Resumable: after Kafka acknowledged a chunk, its last key is saved in the offsets file; after a crash
 *   the snapshot reads on from there. A chunk sent again gets the position of its new high watermark, so no
 *   (commit_lsn, event_index) is ever reused.
 * - Events: op `r`, source.snapshot `incremental` (as Debezium marks them), commit_lsn = the high watermark's
 *   LSN - 1 (see publishChunk), event_index 0… within the chunk, no transaction block.
 * - Schema: a chunk's rows are encoded with the table as the catalog has it at the chunk's read, not with the
 *   stream's codec (chunk-schema.ts).
 */
export interface IncrementalStatus {
  table: string;
  where?: string;
  reason: SnapshotRequest['reason'];
  rows: number;
  /** Postgres' estimate of the table's rows (pg_class.reltuples), when known. */
  totalRows: number | null;
  chunks: number;
  startedAt: string;
  queued: string[];
}

export interface IncrementalDeps {
  config: SourceConfig;
  store: OffsetStore;
  publisher: () => EventPublisher | undefined;
  /** Whether the source captures the table (`schema.table`). */
  captures: (qualified: string) => boolean;
  /** A codec for the table as the catalog has it now, its schemas registered (may throw SchemaPausedError). */
  codecFor: (table: CatalogTable) => Promise<TableCodec>;
  /** The end offset of each partition of a topic: a full snapshot's end gets a marker on each (events/snapshot-end.ts). */
  partitionEnds?: (topic: string) => Promise<bigint[]>;
  connect: () => Promise<pg.Client>;
  log: Logger;
  events?: { add(table: string, op: string, n?: number): void };
  /** A failure the source cannot go on from. */
  onError: (err: Error) => void;
}

const FINISHED_KEPT = 10;

export class IncrementalSnapshots {
  readonly windows = new SnapshotWindows(randomBytes(4).toString('hex'));
  private progress: IncrementalProgress;
  private wake: (() => void) | undefined;
  private running: Promise<void> | undefined;
  private client: pg.Client | undefined;
  private totalRows: number | null = null;
  private totalRowsFor: string | undefined;
  private seq = 0;
  /** Aborted by stop(). */
  private readonly stopping = new AbortController();
  /** Rows the last chunk published (set by publishChunk at its high watermark). */
  private published = 0;
  private readonly schema: ChunkSchema;

  constructor(private readonly d: IncrementalDeps) {
    this.progress = d.store.read()?.incremental ?? { queue: [], finished: [] };
    this.schema = new ChunkSchema(d.codecFor);
  }

  /** Queue snapshots (saved at once). `signalPosition`: the signal's, so a replayed signal is not acted on twice. */
  request(requests: SnapshotRequest[], signalPosition?: string): void {
    for (const r of requests) {
      const waiting = this.progress.queue.some((q) => q.table === r.table && q.where === r.where);
      if (!waiting) this.progress.queue.push(r);
      this.d.log.info({ table: r.table, where: r.where, reason: r.reason }, 'incremental snapshot requested');
    }
    if (signalPosition) this.progress.signalPosition = signalPosition;
    this.save();
    this.wake?.();
  }

  /** A logical decoding message from the stream: a watermark of ours, or a signal. */
  onMessage(
    msg: { transactional: boolean; lsn: bigint; prefix: string; content: Buffer },
    commitLsn: bigint | undefined,
  ): Promise<void> | undefined {
    const slot = this.d.config['slot.name'];
    if (msg.prefix === WATERMARK_PREFIX) {
      const w = parseWatermark(msg.content, slot);
      return w
        ? this.windows.onWatermark(w.window, w.kind, msg.lsn, (rows, lsn, columns) => this.publishChunk(rows, lsn, columns))
        : undefined;
    }
    if (msg.prefix !== SIGNAL_PREFIX || !msg.transactional || commitLsn === undefined) return undefined;
    const position = `${commitLsn}:${msg.lsn}`;
    if (this.progress.signalPosition && !after(position, this.progress.signalPosition)) return undefined;
    let requests: SnapshotRequest[];
    try {
      requests = parseSignal(msg.content, slot);
    } catch (err) {
      this.d.log.error({ err: (err as Error).message, lsn: formatLsn(msg.lsn) }, 'signal ignored');
      return undefined;
    }
    const captured = requests.filter((r) => {
      if (this.d.captures(r.table)) return true;
      this.d.log.error({ table: r.table }, 'signal ignored for a table this connector does not capture (check table.include.list)');
      return false;
    });
    this.request(captured, position);
    return undefined;
  }

  /** The codec chunk rows are encoded with now (for naming a table and key in delivery errors). */
  get chunkCodec(): TableCodec | undefined {
    return this.schema.current;
  }

  status(): IncrementalStatus | undefined {
    const c = this.progress.current;
    const queued = this.progress.queue.map((q) => q.table);
    if (!c)
      return queued.length
        ? { table: queued[0]!, reason: this.progress.queue[0]!.reason, rows: 0, totalRows: null, chunks: 0, startedAt: '', queued }
        : undefined;
    return {
      table: c.table,
      ...(c.where ? { where: c.where } : {}),
      reason: c.reason,
      rows: c.rows,
      totalRows: this.totalRows,
      chunks: c.chunks,
      startedAt: c.startedAt,
      queued,
    };
  }

  /**
   * Run the queue until `signal` aborts or stop() is called. The connector's signal aborts only on a clean
   * stop; when the source fails or pauses, stop() is what ends the loop, so the loop waits on its own signal.
   */
  start(signal: AbortSignal): void {
    const stop = AbortSignal.any([signal, this.stopping.signal]);
    this.running = this.loop(stop).catch((err: unknown) => {
      if (!stop.aborted) this.d.onError(err as Error);
      else this.d.log.debug({ err: (err as Error).message }, 'incremental snapshot stopped');
    });
  }

  /**
   * Stop now, also in the middle of a chunk: every wait of the loop (for work, a high watermark the failed
   * stream will never deliver, Kafka's acknowledgement, a retry's pause) ends on the stop signal, and ending
   * the connection fails a query in flight.
   */
  async stop(): Promise<void> {
    this.stopping.abort(new TideError('the source is stopping'));
    this.windows.abandon(new TideError('the source is stopping'));
    this.wake?.();
    const client = this.client;
    this.client = undefined;
    await endPg(client);
    await this.running;
  }

  private save(): void {
    const offsets: SourceOffsets = this.d.store.read() ?? { slot: this.d.config['slot.name'] };
    offsets.incremental = this.progress;
    this.d.store.write(offsets);
  }

  private async loop(signal: AbortSignal): Promise<void> {
    let failures = 0;
    while (!signal.aborted) {
      const current = this.progress.current ?? this.next();
      if (!current) {
        this.windows.follow(undefined);
        await new Promise<void>((r) => {
          this.wake = r;
          if (signal.aborted) r();
        });
        this.wake = undefined;
        continue;
      }
      let codec: TableCodec | undefined;
      try {
        codec = this.d.captures(current.table) ? await this.schema.now(await this.connected(signal), current.table, signal) : undefined;
      } catch (err) {
        if (err instanceof SchemaPausedError || signal.aborted) throw err;
        failures++;
        this.d.log.warn(
          { table: current.table, err: (err as Error).message, attempt: failures },
          'incremental snapshot: reading the table failed; trying again',
        );
        const client = this.client;
        this.client = undefined;
        await endPg(client);
        await sleep(Math.min(30_000, 500 * 2 ** failures), signal);
        continue;
      }
      if (!codec) {
        this.d.log.error({ table: current.table }, 'incremental snapshot dropped: the table no longer exists or is no longer captured');
        this.progress.current = undefined;
        this.save();
        continue;
      }
      this.windows.follow(codec.table.oid);
      try {
        const outcome = await this.chunk(codec, current, signal);
        failures = 0;
        if (outcome === 'retry') await sleep(1000, signal);
      } catch (err) {
        this.windows.abandon(err as Error);
        if (signal.aborted) return;
        if (err instanceof SchemaPausedError) throw err;
        const code = (err as { code?: string }).code;
        if (code && /^(42|22|0A)/.test(code)) {
          // The request itself is wrong (a bad --where, a missing right): trying again cannot help.
          this.d.log.error(
            { table: current.table, where: current.where, err: (err as Error).message },
            'incremental snapshot dropped: its query failed (fix the predicate or the right, then request it again)',
          );
          this.progress.current = undefined;
          this.save();
          continue;
        }
        failures++;
        this.d.log.warn(
          { table: current.table, err: (err as Error).message, attempt: failures },
          'incremental snapshot chunk failed; trying again',
        );
        const client = this.client;
        this.client = undefined;
        await endPg(client);
        await sleep(Math.min(30_000, 500 * 2 ** failures), signal);
      }
    }
  }

  /** The loop's connection to Postgres, opened when needed. */
  private async connected(signal: AbortSignal): Promise<pg.Client> {
    if (!this.client) {
      const fresh = await this.d.connect();
      if (signal.aborted) {
        await endPg(fresh); // stop() came while connecting: nobody else would end it
        throw signal.reason as Error;
      }
      this.client = fresh;
    }
    return this.client;
  }

  private next(): IncrementalTable | undefined {
    const r = this.progress.queue.shift();
    if (!r) return undefined;
    this.progress.current = { ...r, startedAt: new Date().toISOString(), rows: 0, chunks: 0 };
    this.totalRows = null;
    this.save();
    return this.progress.current;
  }

  /** Read and publish one chunk. 'retry': read the same chunk again later. */
  private async chunk(codec: TableCodec, cur: IncrementalTable, signal: AbortSignal): Promise<'ok' | 'retry' | 'done'> {
    const client = await this.connected(signal);
    const t = codec.table;
    if (cur.chunks === 0 || this.totalRowsFor !== cur.table) {
      this.totalRowsFor = cur.table;
      this.totalRows = await estimatedRows(client, t.oid);
    }
    const fetch = this.d.config['snapshot.fetch.size'];
    const names = codec.columnNames();
    const keyIdx = t.keyColumns.map((k) => names.indexOf(k));
    const slot = this.d.config['slot.name'];
    const { id, done } = this.windows.open(this.seq++);
    const low = await emitWatermark(client, { slot, window: id, kind: 'low' });
    const { rows, snapshotText, sameTable } = await readChunk(client, codec, cur, fetch);
    await emitWatermark(client, { slot, window: id, kind: 'high' });
    const snapshot = parsePgSnapshot(snapshotText);
    const read = chunkRows(names, rows, fetch);
    const trusted = sameTable && this.windows.trusts(snapshot);
    if (!sameTable)
      this.d.log.info({ table: t.qualified }, 'incremental snapshot: the table changed since its schema was read; reading the chunk again');
    else if (!trusted)
      this.d.log.warn({ table: t.qualified, xmin: snapshot.xmin }, 'incremental snapshot waits for an old transaction to end');
    this.published = 0;
    this.windows.setChunk(id, {
      rows: trusted ? read : [],
      keys: trusted ? read.map((r) => keyId(codec.encodeKey(r))) : [],
      snapshot,
      columns: names.join(','),
      ...(trusted ? {} : { stale: true }),
    });
    // The high watermark comes through the stream; a stream that failed never delivers it.
    const outcome = await untilAborted(done, signal);
    if (outcome === 'stale' || signal.aborted) return 'retry';
    // The chunk's rows are in Kafka before its last key is remembered.
    await untilAborted(this.d.publisher()!.whenAcked(), signal);
    const last = rows[Math.min(rows.length, fetch) - 1];
    if (last) cur.lastKey = keyIdx.map((i) => last[i] ?? null);
    cur.rows += this.published;
    cur.chunks++;
    cur.openedAt ??= low;
    this.d.events?.add(t.qualified, 'r', this.published);
    const finished = rows.length <= fetch;
    if (finished && !cur.where && cur.openedAt) {
      // A full snapshot of the table is in Kafka: every key Postgres has was read (at a position after the first
      // chunk's low watermark) or changed after it. Its end markers let consumers drop the keys whose last change is
      // older than that low watermark (issue 11 item 14). A --where snapshot reads a part only: no markers.
      const partitions = (await this.d.partitionEnds?.(codec.topic))?.length ?? 0;
      const end = { table: cur.table, commitLsn: parseLsn(cur.openedAt), partitions, tsMs: Date.now() };
      const publisher = this.d.publisher()!;
      for (const m of partitions ? snapshotEndMessages(codec.topic, end) : []) {
        const wait = publisher.push(m);
        if (wait) await wait;
      }
      // Acknowledged before the snapshot is remembered as finished: a crash before that sends them again.
      await untilAborted(publisher.whenAcked(), signal);
    }
    if (finished) {
      this.progress.finished.push({
        table: cur.table,
        ...(cur.where ? { where: cur.where } : {}),
        rows: cur.rows,
        finishedAt: new Date().toISOString(),
        ...(cur.openedAt ? { openedAt: cur.openedAt } : {}),
      });
      this.progress.finished = this.progress.finished.slice(-FINISHED_KEPT);
      this.progress.current = undefined;
      this.d.log.info({ table: cur.table, rows: cur.rows, chunks: cur.chunks }, 'incremental snapshot of table finished');
    } else {
      this.d.log.info({ table: cur.table, rows: cur.rows, totalRows: this.totalRows, chunks: cur.chunks }, 'incremental snapshot progress');
    }
    this.save();
    return finished ? 'done' : 'ok';
  }

  /**
   * At a chunk's high watermark (called by the stream, in stream order): publish the rows that survived.
   * `highLsn` is the watermark's LSN as pgoutput gives it: the end of its WAL record, which is where the next
   * record (perhaps a commit) starts. The rows take the position one byte before it, inside the watermark's own
   * record: after every commit record before it, before every one after, and never a commit's own position.
   */
  private async publishChunk(rows: RawRow[], highLsn: bigint, columns: string): Promise<'published' | 'stale'> {
    const commitLsn = highLsn - 1n;
    const cur = this.progress.current;
    const codec = this.schema.current;
    if (!cur || !codec || codec.table.qualified !== cur.table || codec.columnNames().join(',') !== columns) return 'stale';
    const publisher = this.d.publisher()!;
    for (const m of chunkMessages(codec, rows, commitLsn, this.d.config)) {
      const wait = publisher.push(m);
      if (wait) await wait;
    }
    this.published = rows.length;
    return 'published';
  }
}

/** Whether signal position `a` (`commitLsn:messageLsn`, decimal) comes after `b`. */
function after(a: string, b: string): boolean {
  const [ac, am] = a.split(':').map(BigInt) as [bigint, bigint];
  const [bc, bm] = b.split(':').map(BigInt) as [bigint, bigint];
  return ac !== bc ? ac > bc : am > bm;
}

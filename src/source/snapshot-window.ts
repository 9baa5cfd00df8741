import { TideError } from '../errors.ts';
import type { RawRow } from '../events/envelope.ts';

/**
 * The stream side of an incremental snapshot: DBLog's watermark method (Andreas Andreakis, Ioannis
 * Papapanagiotou, "DBLog: A Watermark Based Change-Data-Capture Framework", 2020), as Debezium's incremental
 * snapshots use it.
 *
 * For every chunk the snapshot writes a low watermark (L), reads the chunk, and writes a high watermark (H).
 * Both are non-transactional `pg_logical_emit_message` records, so pgoutput delivers each at its own WAL
 * position between the transactions: everything committed before L arrives before L, everything committed
 * after H arrives after H. The chunk's rows wait here; a key that a streamed change touches between L and H
 * is dropped from them (the stream carried that key's newer value); at H the rest are published, positioned
 * at H, so they sort after every change streamed before H and before every change after it.
 *
 * One hole the paper's method leaves on Postgres: a transaction's commit record can reach the WAL (before L)
 * while the transaction is not yet visible to a new snapshot (it is still waiting for its WAL flush or for a
 * synchronous standby). Its change was streamed before L, yet the chunk read the value before it. So the
 * chunk's read also takes `pg_current_snapshot()`, and the keys of every streamed transaction that snapshot
 * did not see (its xid is in the snapshot's in-progress list, or at or above its xmax) are dropped as well. For that the keys of the
 * transactions streamed since the incremental snapshot began are kept, per xid, until the snapshots' xmin
 * passes them (every later snapshot sees those transactions).
 */

/** One chunk as the snapshot read it: rows (raw text, as the stream has them), their Avro key bytes, and the read's snapshot. */
export interface Chunk {
  rows: RawRow[];
  /** The rows' keys, as `keyId` makes them (the bytes of the Avro key without its schema-id frame). */
  keys: string[];
  /** pg_current_snapshot() of the read's transaction. */
  snapshot: PgSnapshot;
  /** The codec's columns the rows were read with; the codec at H must have the same, or the chunk is read again. */
  columns: string;
  /** The chunk cannot be trusted (see trusts): it is read again. */
  stale?: boolean;
}

/** What happens at the high watermark: the surviving rows are handed to `publish`, positioned at the watermark. */
export type PublishChunk = (rows: RawRow[], highLsn: bigint, columns: string) => Promise<'published' | 'stale'>;

export interface PgSnapshot {
  xmin: number;
  xmax: number;
  xip: Set<number>;
}

/** `pg_current_snapshot()` text (`xmin:xmax:xip,…`, 64-bit xids) with 32-bit xids, as pgoutput's BEGIN carries them. */
export function parsePgSnapshot(text: string): PgSnapshot {
  const [xmin, xmax, xip] = text.split(':');
  if (xmin === undefined || xmax === undefined) throw new TideError(`pg_current_snapshot() returned ${JSON.stringify(text)}`);
  const x32 = (s: string) => Number(BigInt(s) & 0xffffffffn);
  return { xmin: x32(xmin), xmax: x32(xmax), xip: new Set((xip ?? '').split(',').filter(Boolean).map(x32)) };
}

/**
 * Whether a committed transaction is visible in `snapshot`: older than its xmax and not in progress when it was
 * taken. xmax is one past the newest *completed* xid, so a transaction whose commit record is written but which
 * is not yet visible may be at or above it without being in xip.
 */
export function visibleIn(snapshot: PgSnapshot, xid: number): boolean {
  return xidPrecedes(xid, snapshot.xmax) && !snapshot.xip.has(xid);
}

/** Whether 32-bit xid `a` is older than `b` (modulo-2^32 comparison, as Postgres' TransactionIdPrecedes). */
export function xidPrecedes(a: number, b: number): boolean {
  return ((a - b) | 0) < 0;
}

/** The identity of a key for reconciliation: its Avro bytes without the Confluent frame (schema ids may differ). */
export function keyId(framedKey: Buffer): string {
  return framedKey.toString('latin1', 5);
}

/** Above this many logged keys, the log of streamed keys stops growing; chunks wait until the snapshots' xmin passes what was dropped. */
const MAX_LOGGED_KEYS = 200_000;

interface Window {
  id: string;
  phase: 'registered' | 'open' | 'closed';
  /** Keys streamed between L and H. */
  touched: Set<string>;
  /** The table was truncated between L and H: nothing of the chunk survives. */
  truncated: boolean;
  chunk?: Chunk;
  /** Settles with the outcome once H was handled. */
  done: Promise<'published' | 'stale'>;
  resolve: (r: 'published' | 'stale') => void;
  reject: (err: Error) => void;
  /** Set while H waits for the chunk. */
  chunkArrived?: () => void;
  /** Given up (abandon): its chunk will never come. */
  abandoned?: boolean;
}

export class SnapshotWindows {
  private tableOid: number | undefined;
  private window: Window | undefined;
  /** Keys of the snapshotted table by the xid of the streamed transaction that touched them (null: a truncate). */
  private readonly log = new Map<number, Set<string> | null>();
  private logged = 0;
  /** Newest xid whose keys were not kept (the log was full): chunks read before xmin passes it cannot be trusted. */
  private forgotten: number | undefined;

  constructor(
    /** Identifies this process's windows; watermarks of another run (replayed after a restart) are ignored. */
    private readonly runId: string,
  ) {}

  /** The table whose streamed keys are logged now (undefined: no incremental snapshot runs). */
  follow(tableOid: number | undefined): void {
    if (tableOid === this.tableOid) return;
    this.tableOid = tableOid;
    this.log.clear();
    this.logged = 0;
    this.forgotten = undefined;
  }

  /** A streamed row change (key null: a truncate) of transaction `xid`. Call for every change, in stream order. */
  onChange(xid: number, tableOid: number, framedKey: Buffer | null): void {
    if (tableOid !== this.tableOid) return;
    const w = this.window;
    const key = framedKey ? keyId(framedKey) : null;
    if (w?.phase === 'open') {
      if (key === null) w.truncated = true;
      else w.touched.add(key);
    }
    const keys = this.log.get(xid);
    if (keys === null) return;
    if (key === null) {
      if (keys) this.logged -= keys.size;
      this.log.set(xid, null);
      return;
    }
    if (this.logged >= MAX_LOGGED_KEYS && !keys?.has(key)) {
      if (this.forgotten === undefined || xidPrecedes(this.forgotten, xid)) this.forgotten = xid;
      return;
    }
    if (keys) {
      if (!keys.has(key)) this.logged++;
      keys.add(key);
    } else {
      this.log.set(xid, new Set([key]));
      this.logged++;
    }
  }

  /** Start a chunk's window (before its low watermark is written). Returns the id to put in both watermarks. */
  open(seq: number): { id: string; done: Promise<'published' | 'stale'> } {
    if (this.window && this.window.phase !== 'closed') throw new TideError('an incremental snapshot window is already open');
    let resolve!: Window['resolve'];
    let reject!: Window['reject'];
    const done = new Promise<'published' | 'stale'>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    done.catch(() => undefined);
    const id = `${this.runId}:${seq}`;
    this.window = { id, phase: 'registered', touched: new Set(), truncated: false, done, resolve, reject };
    return { id, done };
  }

  /** The chunk that was read between the watermarks. */
  setChunk(id: string, chunk: Chunk): void {
    const w = this.window;
    if (!w || w.id !== id) return;
    w.chunk = chunk;
    w.chunkArrived?.();
  }

  /**
   * Give up the open window (the read failed, or the connector stops). A high watermark waiting for the
   * window's chunk stops waiting: the stream goes on without publishing it (the chunk is read again).
   */
  abandon(err: Error): void {
    const w = this.window;
    this.window = undefined;
    if (!w) return;
    w.abandoned = true;
    if (w.phase !== 'closed') w.reject(err);
    w.chunkArrived?.();
  }

  /**
   * A watermark from the stream. Returns a promise while the stream must wait: at H, until the chunk is there
   * and its rows are handed to Kafka.
   */
  onWatermark(id: string, kind: 'low' | 'high', lsn: bigint, publish: PublishChunk): Promise<void> | undefined {
    const w = this.window;
    if (!w || w.id !== id) return undefined; // another run's, or a replay of a finished window
    if (kind === 'low') {
      if (w.phase === 'registered') w.phase = 'open';
      return undefined;
    }
    if (w.phase === 'closed') return undefined;
    if (w.phase === 'registered') {
      // The stream resumed past L (a reconnect): what happened inside the window is unknown, so the chunk is read again.
      w.phase = 'closed';
      w.resolve('stale');
      return undefined;
    }
    w.phase = 'closed';
    const finish = async () => {
      if (!w.chunk && !w.abandoned) await new Promise<void>((r) => (w.chunkArrived = r));
      const chunk = w.chunk;
      if (!chunk || w.abandoned) return w.resolve('stale');
      if (chunk.stale) return w.resolve('stale');
      const result = await publish(this.survivors(w, chunk), lsn, chunk.columns);
      this.prune(chunk.snapshot);
      w.resolve(result);
    };
    return finish().catch((err: unknown) => {
      w.reject(err as Error);
      throw err;
    });
  }

  /** Whether the chunk can be trusted: no key of a transaction it did not see was forgotten (the log was full). */
  trusts(snapshot: PgSnapshot): boolean {
    if (this.forgotten === undefined) return true;
    if (xidPrecedes(this.forgotten, snapshot.xmin)) {
      this.forgotten = undefined;
      return true;
    }
    return false;
  }

  private survivors(w: Window, chunk: Chunk): RawRow[] {
    if (w.truncated) return [];
    const invisible = new Set<string>();
    for (const [xid, keys] of this.log) {
      if (visibleIn(chunk.snapshot, xid)) continue;
      if (keys === null) return [];
      for (const k of keys) invisible.add(k);
    }
    return chunk.rows.filter((_, i) => !w.touched.has(chunk.keys[i]!) && !invisible.has(chunk.keys[i]!));
  }

  /** Every later snapshot sees the transactions before `snapshot.xmin`: their keys are no longer needed. */
  private prune(snapshot: PgSnapshot): void {
    for (const [xid, keys] of this.log) {
      if (!xidPrecedes(xid, snapshot.xmin)) continue;
      this.logged -= keys?.size ?? 0;
      this.log.delete(xid);
    }
  }
}

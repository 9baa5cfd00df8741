import type pg from 'pg';
import { TideError } from '../errors.ts';
import { formatLsn, type Lsn } from './lsn.ts';

/**
 * One logical replication connection: START_REPLICATION, then the CopyBoth
 * stream of XLogData and keepalive messages, and standby status updates back
 * (PostgreSQL docs, "Streaming Replication Protocol", protocol-replication.html).
 *
 * This replaces pg-logical-replication's LogicalReplicationService on the hot
 * path. That class formats every message's LSN as a string and, with flow
 * control on, awaits an async event emitter twice per message; with 1M rows
 * that was ~10% of the source's CPU. Here each XLogData message goes to
 * `onData` synchronously. When the handler must wait (Kafka is behind), it
 * returns a promise: the socket is paused, the messages already read are
 * queued (copied: the socket buffer may be reused), and the queue is drained
 * in order once the promise settles. Memory stays bounded by one socket read.
 *
 * Positions sent back are exact: "the location of the last WAL byte + 1",
 * i.e. a commit's end LSN, as the protocol defines it. (The library added 1 to
 * whatever it was given; confirming a commit's end LSN + 1 could skip a
 * transaction whose commit record starts exactly there.)
 */
export interface ReplicationHandler {
  /**
   * One XLogData message starting at WAL position `walStart`; its payload is buf[offset..] and is valid only
   * during the call. Return a promise to stop reading until it settles.
   */
  onData(walStart: number | bigint, buf: Buffer, offset: number): Promise<void> | undefined;
  /** The position to report as written, flushed and applied: what Kafka has acknowledged. */
  confirmedLsn(): Lsn;
  /** The stream failed (connection lost, a handler threw or its promise rejected). */
  onError(err: Error): void;
}

/** The slice of pg's Connection this class uses (pg keeps it on Client#connection). */
interface CopyConnection {
  stream: { pause(): void; resume(): void };
  on(event: 'copyData', listener: (msg: { chunk: Buffer }) => void): void;
  once(event: 'replicationStart', listener: () => void): void;
  sendCopyFromChunk(chunk: Buffer): void;
}

/** Milliseconds between 1970-01-01 and Postgres' epoch 2000-01-01. */
const PG_EPOCH_MS = 946_684_800_000;
const TWO32 = 4294967296;
const TWO21 = 2097152;
const HELD_STATUS_INTERVAL_MS = 10_000;
const STOP_TIMEOUT_MS = 5000;

export class ReplicationStream {
  private client: pg.Client | undefined;
  private connection: CopyConnection | undefined;
  private queue: [number | bigint, Buffer][] = [];
  private head = 0;
  private waiting = false;
  /** While the stream is held, status updates keep the walsender from timing out (wal_sender_timeout, 60 s by default). */
  private heldTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** Settles when the server ends the stream or the connection closes. */
  private ended: Promise<unknown> | undefined;

  constructor(
    /** Opens a replication connection (connectPg with replication); errors after it opened go to `onError`, translated. */
    private readonly connect: (onError: (err: TideError) => void) => Promise<pg.Client>,
    private readonly handler: ReplicationHandler,
    /** Turns a driver error (a failed START_REPLICATION) into Tide's (pg-errors.ts). */
    private readonly translate: (err: unknown) => TideError = (err) =>
      err instanceof TideError ? err : new TideError(`replication stream: ${(err as Error).message}`, { cause: err, retriable: true }),
  ) {}

  /**
   * Connect and start streaming `slot` from `startLsn` with pgoutput `options` (already quoted,
   * e.g. `proto_version '1', publication_names 'p'`). Resolves once the connection is open and the
   * command sent; errors after that go to the handler. With a `gate`, nothing reaches the handler
   * before it resolves (the server meanwhile decodes what it has to send).
   */
  async start(slot: string, startLsn: Lsn, options: string, gate?: Promise<void>): Promise<void> {
    const client = await this.connect((err) => this.fail(err));
    this.client = client;
    const connection = client.connection as unknown as CopyConnection;
    this.connection = connection;
    connection.on('copyData', (msg) => this.onCopyData(msg.chunk));
    // Held: what arrives before the gate opens is queued (the socket is paused once the server has answered).
    if (gate) this.waiting = true;
    const command = `START_REPLICATION SLOT "${slot.replace(/"/g, '""')}" LOGICAL ${formatLsn(startLsn)} (${options})`;
    // Resolve once the server has accepted the command (CopyBothResponse), so a refused start (a slot in use, a
    // missing right) is the caller's error, not a later stream failure.
    let started = false;
    const begun = new Promise<void>((resolve, reject) => {
      connection.once('replicationStart', () => {
        started = true;
        resolve();
      });
      this.ended = client.query(command).then(
        () => {
          if (!started) reject(new TideError('the server ended the replication stream before it began', { retriable: true }));
        },
        (err: Error) => {
          if (!started) reject(this.translate(err));
          else if (!this.stopped) this.fail(err);
        },
      );
    });
    try {
      await begun;
    } catch (err) {
      this.stopped = true;
      this.waiting = false;
      await this.stop();
      throw err;
    }
    if (gate) this.hold(gate);
  }

  /** Report `lsn` as written, flushed and applied (a standby status update). */
  confirm(lsn: Lsn, requestReply = false): void {
    if (!this.connection) return;
    const msg = Buffer.alloc(34);
    msg[0] = 0x72; // 'r'
    msg.writeBigUInt64BE(lsn, 1); // written
    msg.writeBigUInt64BE(lsn, 9); // flushed
    msg.writeBigUInt64BE(lsn, 17); // applied
    msg.writeBigInt64BE(BigInt(Date.now() - PG_EPOCH_MS) * 1000n, 25); // client clock, µs since 2000
    msg[33] = requestReply ? 1 : 0;
    this.connection.sendCopyFromChunk(msg);
  }

  /** Close the connection. Queued messages are dropped: nothing in them was confirmed. */
  async stop(): Promise<void> {
    this.clearHeldTimer();
    this.stopped = true;
    this.queue = [];
    this.head = 0;
    const client = this.client;
    // A paused socket would never see the server's end of the connection.
    this.connection?.stream.resume();
    this.client = undefined;
    this.connection = undefined;
    if (!client) return;
    // Bounded: on a connection that was already lost, pg's end() can wait for an 'end' event that never comes.
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<void>((r) => (timer = setTimeout(r, STOP_TIMEOUT_MS)));
    await Promise.race([
      (async () => {
        await client.end().catch(() => undefined);
        await this.ended;
      })(),
      bound,
    ]);
    clearTimeout(timer);
  }

  private clearHeldTimer(): void {
    if (this.heldTimer) clearInterval(this.heldTimer);
    this.heldTimer = undefined;
  }

  private fail(err: Error): void {
    if (this.stopped) return;
    this.clearHeldTimer();
    this.stopped = true;
    this.queue = [];
    this.head = 0;
    this.handler.onError(this.translate(err));
  }

  private onCopyData(chunk: Buffer): void {
    if (this.stopped) return;
    const type = chunk[0];
    if (type === 0x77 /* 'w' XLogData: Int64 start, Int64 end, Int64 send time, payload */) {
      const hi = chunk.readUInt32BE(1);
      const walStart = hi < TWO21 ? hi * TWO32 + chunk.readUInt32BE(5) : chunk.readBigUInt64BE(1);
      if (this.waiting) {
        this.queue.push([walStart, Buffer.from(chunk.subarray(25))]);
        return;
      }
      this.dispatch(walStart, chunk, 25);
    } else if (type === 0x6b /* 'k' keepalive: Int64 end, Int64 send time, Byte1 reply requested */) {
      if (chunk[17] === 1) this.confirm(this.handler.confirmedLsn());
    }
  }

  private dispatch(walStart: number | bigint, buf: Buffer, offset: number): void {
    let wait: Promise<void> | undefined;
    try {
      wait = this.handler.onData(walStart, buf, offset);
    } catch (err) {
      this.fail(err as Error);
      return;
    }
    if (wait) this.hold(wait);
  }

  private hold(wait: Promise<void>): void {
    this.waiting = true;
    this.connection?.stream.pause();
    if (!this.heldTimer) {
      // A paused socket also holds back the server's keepalives, so report the (unchanged) position ourselves.
      this.heldTimer = setInterval(() => this.confirm(this.handler.confirmedLsn()), HELD_STATUS_INTERVAL_MS);
      this.heldTimer.unref();
    }
    wait.then(
      () => this.drain(),
      (err: Error) => this.fail(err),
    );
  }

  private drain(): void {
    while (this.head < this.queue.length && !this.stopped) {
      const [walStart, payload] = this.queue[this.head++]!;
      let wait: Promise<void> | undefined;
      try {
        wait = this.handler.onData(walStart, payload, 0);
      } catch (err) {
        this.fail(err as Error);
        return;
      }
      if (wait) return this.hold(wait);
    }
    this.queue = [];
    this.head = 0;
    this.waiting = false;
    this.clearHeldTimer();
    if (!this.stopped) this.connection?.stream.resume();
  }
}

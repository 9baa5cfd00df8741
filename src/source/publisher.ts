import type { TableCodec } from '../events/envelope.ts';
import type { EventProducer, OutgoingMessage } from '../events/kafka-producer.ts';
import type { Lsn } from './lsn.ts';
import { MessageTooLargeError, recordBytes } from '../events/message-size.ts';

/**
 * Batches events to Kafka and works out which LSN may be confirmed.
 *
 * - One batch is in flight at a time, so events keep their stream order (the
 *   idempotent producer numbers each partition's batches in sequence).
 * - Full batches wait in a queue of `maxQueuedBatches` (default 1) while one
 *   is in flight; `push`/`add` ask the caller to wait when the queue is full:
 *   that wait pauses the replication stream (backpressure). Memory stays
 *   bounded at (maxQueuedBatches + 2) batches. A deeper queue lets the source
 *   keep encoding while Kafka acknowledges, instead of idling.
 * - A transaction's end LSN becomes confirmable once Kafka acknowledged every
 *   event added before its COMMIT. Nothing is confirmed past an unacknowledged event.
 */
export interface PublisherOptions {
  maxBatch: number;
  lingerMs: number;
  /** Full batches allowed to wait behind the one in flight before the caller must wait. */
  maxQueuedBatches?: number;
  onConfirmable: (lsn: Lsn) => void;
  /** A transaction with this commit time (ms) is now acknowledged by Kafka (commit-to-ack latency). */
  onCommitAcked?: (commitTsMs: number) => void;
  onError: (err: Error) => void;
  /** The connector's max.message.bytes: a larger event stops the source before it is queued (nothing past it is confirmed). */
  maxMessageBytes?: number;
  /** The table and key of an event, for the error that names them. */
  describe?: (message: OutgoingMessage) => { table: string; key: string };
}

export class EventPublisher {
  private buffer: OutgoingMessage[] = [];
  private readonly ready: { batch: OutgoingMessage[]; upTo: number }[] = [];
  private seq = 0;
  private ackedSeq = 0;
  private sending: Promise<void> | undefined;
  private linger: NodeJS.Timeout | undefined;
  private readonly commits: { seq: number; lsn: Lsn; tsMs: number | undefined }[] = [];
  private failure: Error | undefined;
  /** Resolves at the next acknowledgement (or failure): when a queued batch may have left. */
  private space: { promise: Promise<void>; resolve: () => void } | undefined;
  private readonly maxQueued: number;
  /** Events Kafka has acknowledged, in total. */
  delivered = 0;

  constructor(
    private readonly producer: EventProducer,
    private readonly opts: PublisherOptions,
  ) {
    this.maxQueued = Math.max(1, opts.maxQueuedBatches ?? 1);
  }

  async add(message: OutgoingMessage): Promise<void> {
    const wait = this.push(message);
    if (wait) await wait;
  }

  /**
   * Buffer `message`, without a promise on the way: the streaming hot path calls this once per event.
   * Returns a promise only when the caller must stop adding until a batch has left. Throws once delivery has failed.
   */
  push(message: OutgoingMessage): Promise<void> | undefined {
    if (this.failure) throw this.failure;
    const max = this.opts.maxMessageBytes;
    if (max !== undefined && recordBytes(message) > max)
      throw this.named(new MessageTooLargeError(message.topic, '(unknown)', recordBytes(message), max, 'connector', message));
    this.buffer.push(message);
    this.seq++;
    if (this.buffer.length >= this.opts.maxBatch) {
      this.seal();
      if (this.ready.length >= this.maxQueued) return this.waitForSpace();
    } else {
      this.linger ??= setTimeout(() => {
        this.linger = undefined;
        this.seal();
      }, this.opts.lingerMs);
    }
    return undefined;
  }

  /** The transaction that ends at `lsn` is complete: it is confirmable once everything added so far is acknowledged. */
  commit(lsn: Lsn, commitTsMs?: number): void {
    this.commits.push({ seq: this.seq, lsn, tsMs: commitTsMs });
    this.advance();
  }

  /** Send what is buffered and wait until Kafka acknowledged all of it. */
  async flush(): Promise<void> {
    for (;;) {
      if (this.failure) throw this.failure;
      if (this.sending) await this.sending;
      else if (this.buffer.length > 0 || this.ready.length > 0) this.seal();
      else return;
    }
  }

  /**
   * Wait until Kafka acknowledged everything added so far (later events need not be). Unlike flush, it ends
   * under steady traffic: it waits for a sequence number, not for an empty buffer.
   */
  async whenAcked(): Promise<void> {
    const target = this.seq;
    while (this.ackedSeq < target) {
      if (this.failure) throw this.failure;
      if (!this.sending) this.seal();
      await (this.sending ?? this.waitForSpace());
    }
    if (this.failure) throw this.failure;
  }

  get pendingEvents(): number {
    return this.seq - this.ackedSeq;
  }

  /** Close the filling batch (if any) and send the next one if nothing is in flight. */
  private seal(): void {
    if (this.linger) {
      clearTimeout(this.linger);
      this.linger = undefined;
    }
    if (this.buffer.length > 0) {
      this.ready.push({ batch: this.buffer, upTo: this.seq });
      this.buffer = [];
    }
    this.sendNext();
  }

  private sendNext(): void {
    if (this.sending || this.failure) return;
    const next = this.ready.shift();
    if (!next) return;
    this.sending = this.producer.send(next.batch).then(
      () => {
        this.ackedSeq = next.upTo;
        this.delivered += next.batch.length;
        this.sending = undefined;
        this.advance();
        this.sendNext();
        this.wake();
      },
      (caught: Error) => {
        const err = caught instanceof MessageTooLargeError ? this.named(caught) : caught;
        this.sending = undefined;
        this.failure = err;
        this.opts.onError(err);
        this.wake();
      },
    );
  }

  /** The error with the table and key of its message, when the connector can tell them. */
  private named(err: MessageTooLargeError): MessageTooLargeError {
    const d = err.offending && this.opts.describe?.(err.offending);
    return d ? new MessageTooLargeError(d.table, d.key, err.size, err.limit, err.refusedBy) : err;
  }

  private waitForSpace(): Promise<void> {
    if (!this.space) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.space = { promise, resolve };
    }
    return this.space.promise;
  }

  private wake(): void {
    const s = this.space;
    this.space = undefined;
    s?.resolve();
  }

  private advance(): void {
    let confirmable: Lsn | undefined;
    while (this.commits.length > 0 && this.commits[0]!.seq <= this.ackedSeq) {
      const c = this.commits.shift()!;
      confirmable = c.lsn;
      if (c.tsMs !== undefined) this.opts.onCommitAcked?.(c.tsMs);
    }
    if (confirmable !== undefined) this.opts.onConfirmable(confirmable);
  }

  close(): void {
    if (this.linger) clearTimeout(this.linger);
  }
}

/** The table and key of an event, from the codec of its topic (for MessageTooLargeError). */
export function describeEvent(codecs: Iterable<TableCodec>, m: OutgoingMessage): { table: string; key: string } {
  for (const c of codecs) if (c.topic === m.topic) return { table: c.table.qualified, key: c.describeKey(m.key) };
  return { table: m.topic, key: m.key ? `0x${m.key.toString('hex')}` : 'null' };
}

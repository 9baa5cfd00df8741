import type { EventProducer, OutgoingMessage } from '../events/kafka-producer.ts';
import type { Lsn } from './lsn.ts';

/**
 * Batches events to Kafka and works out which LSN may be confirmed.
 *
 * - One batch is in flight at a time while the next one fills, so events keep
 *   their stream order and memory stays bounded (at most two batches).
 * - `add` waits when a full batch is ready and the previous one is still in
 *   flight: that wait pauses the replication stream (backpressure).
 * - A transaction's end LSN becomes confirmable once Kafka acknowledged every
 *   event added before its COMMIT. Nothing is confirmed past an unacknowledged event.
 */
export class EventPublisher {
  private buffer: OutgoingMessage[] = [];
  private seq = 0;
  private ackedSeq = 0;
  private sending: Promise<void> | undefined;
  private linger: NodeJS.Timeout | undefined;
  private readonly commits: { seq: number; lsn: Lsn }[] = [];
  private failure: Error | undefined;
  /** Events Kafka has acknowledged, in total. */
  delivered = 0;

  constructor(
    private readonly producer: EventProducer,
    private readonly opts: { maxBatch: number; lingerMs: number; onConfirmable: (lsn: Lsn) => void; onError: (err: Error) => void },
  ) {}

  async add(message: OutgoingMessage): Promise<void> {
    if (this.failure) throw this.failure;
    this.buffer.push(message);
    this.seq++;
    if (this.buffer.length >= this.opts.maxBatch) {
      if (this.sending) await this.sending; // backpressure: the previous batch must land first
      this.pump(); // a no-op if the previous batch's completion already sent this one
    } else {
      this.linger ??= setTimeout(() => {
        this.linger = undefined;
        this.pump();
      }, this.opts.lingerMs);
    }
  }

  /** The transaction that ends at `lsn` is complete: it is confirmable once everything added so far is acknowledged. */
  commit(lsn: Lsn): void {
    this.commits.push({ seq: this.seq, lsn });
    this.advance();
  }

  /** Send what is buffered and wait until Kafka acknowledged all of it. */
  async flush(): Promise<void> {
    for (;;) {
      if (this.failure) throw this.failure;
      if (this.sending) await this.sending;
      else if (this.buffer.length > 0) this.pump();
      else return;
    }
  }

  get pendingEvents(): number {
    return this.seq - this.ackedSeq;
  }

  private pump(): void {
    if (this.sending || this.buffer.length === 0 || this.failure) return;
    if (this.linger) {
      clearTimeout(this.linger);
      this.linger = undefined;
    }
    const batch = this.buffer;
    const upTo = this.seq;
    this.buffer = [];
    this.sending = this.producer.send(batch).then(
      () => {
        this.ackedSeq = upTo;
        this.delivered += batch.length;
        this.sending = undefined;
        this.advance();
        if (this.buffer.length > 0) this.pump();
      },
      (err: Error) => {
        this.sending = undefined;
        this.failure = err;
        this.opts.onError(err);
      },
    );
  }

  private advance(): void {
    let confirmable: Lsn | undefined;
    while (this.commits.length > 0 && this.commits[0]!.seq <= this.ackedSeq) confirmable = this.commits.shift()!.lsn;
    if (confirmable !== undefined) this.opts.onConfirmable(confirmable);
  }

  close(): void {
    if (this.linger) clearTimeout(this.linger);
  }
}

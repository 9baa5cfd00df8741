import type { Logger } from '../log.ts';
import { withRetries, type RetryPolicy } from '../retry.ts';
import { NEEDS_FETCH, UndecodableMessageError, type ChangeEvent } from './change-event.ts';
import type { RawMessage } from './kafka-intake.ts';
import type { MessageDecoder } from './message-decoder.ts';

/** Messages decoded ahead per turn of the event loop (~5–10 ms of the main thread). */
const PREDECODE_CHUNK = 500;

/**
 * The sink worker's decoding of Tide's own topics: ahead of a flush (predecode), and in it (decode), where a
 * message whose schemas are not cached yet waits for the registry.
 */
export class FlushDecoder {
  private scheduled = false;

  constructor(
    private readonly decoder: MessageDecoder,
    private readonly opts: { policy: RetryPolicy; log: Logger; signal: () => AbortSignal | undefined },
  ) {}

  /**
   * A message's change event: decoded ahead (predecode), else at once when its schemas are known, else with a
   * registry fetch, which a registry that is down or rate-limits waits for (errors.retry.timeout; nothing is
   * dead-lettered for it).
   */
  decode(m: RawMessage): ChangeEvent | undefined | Promise<ChangeEvent | undefined> {
    const pre = m.decoded;
    if (pre) {
      m.decoded = undefined;
      if ('undecodable' in pre) throw pre.undecodable;
      return pre.event;
    }
    if (this.decoder.decodeCached) {
      const e = this.decoder.decodeCached(m);
      if (e !== NEEDS_FETCH) return e;
    }
    return withRetries(
      this.opts.policy,
      {
        what: `reading the schema of ${m.topic}[${m.partition}]@${m.offset} from the registry`,
        log: this.opts.log,
        signal: this.opts.signal(),
      },
      () => this.decoder.decode(m),
    );
  }

  /**
   * Decode buffered messages ahead of their flush, a chunk per turn of the event loop (setImmediate), so that it
   * runs while the current flush waits for DuckDB's threads instead of after it (the main thread was 30–43 % idle
   * during flushes: README "The whole pipeline, sustained"). Only messages whose schemas are known are decoded
   * here (no registry call, no retry); the rest, and any message this missed, are decoded by the flush. The
   * events stay on their messages in the intake's buffer, so order, rebalances (the buffer is dropped) and the
   * flush bounds are the intake's as before. `undecoded` hands out the buffer's next messages (kafka-intake.ts).
   */
  predecode(undecoded: (max: number) => RawMessage[]): void {
    if (this.scheduled || !this.decoder.decodeCached) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      const chunk = undecoded(PREDECODE_CHUNK);
      for (const m of chunk) {
        try {
          const e = this.decoder.decodeCached!(m);
          if (e !== NEEDS_FETCH) m.decoded = { event: e };
        } catch (err) {
          // Anything else is left for the flush, which throws it where it belongs.
          if (err instanceof UndecodableMessageError) m.decoded = { undecodable: err };
        }
      }
      if (chunk.length === PREDECODE_CHUNK) this.predecode(undecoded);
    });
  }
}

import type { ChangeEvent, NEEDS_FETCH } from './change-event.ts';
import type { RawMessage } from './kafka-intake.ts';

/**
 * What the sink's intake calls for each Kafka message: its change event, undefined for a message with nothing to
 * apply (a tombstone), or an UndecodableMessageError (the message goes to the dead-letter topic). One per
 * `input.format` (input-format.ts).
 */
export interface MessageDecoder {
  decode(m: RawMessage): Promise<ChangeEvent | undefined>;
  /**
   * The same, synchronously, when the message's schemas were fetched before; NEEDS_FETCH when not (decode() then
   * fetches them). Optional: the worker uses it to decode without a promise per message and to decode buffered
   * messages while a flush waits for DuckDB (sink-worker.ts).
   */
  decodeCached?(m: RawMessage): ChangeEvent | undefined | typeof NEEDS_FETCH;
}

import type { ChangeEvent } from './change-event.ts';
import type { RawMessage } from './kafka-intake.ts';

/**
 * What the sink's intake calls for each Kafka message: its change event, undefined for a message with nothing to
 * apply (a tombstone), or an UndecodableMessageError (the message goes to the dead-letter topic). One per
 * `input.format` (input-format.ts).
 */
export interface MessageDecoder {
  decode(m: RawMessage): Promise<ChangeEvent | undefined>;
}

import type { AvroSchema } from '../events/avro-types.ts';
import type { FastText } from './pg-text-bytes.ts';

/** What type-mapping.ts and numeric-mapping.ts share: the Avro hint properties, the rate-limited warning, a scalar's shape. */

export type DecimalHandlingMode = 'precise' | 'double' | 'string';

export type Warn = (message: string, details: Record<string, unknown>) => void;

export interface Scalar {
  avroType: AvroSchema;
  /** undefined: the text is the value (strings). */
  parse?: (text: string) => unknown;
  semanticType: string;
  fast?: FastText;
}

/** Debezium-style hint properties, as its Avro converter writes them. */
export function connect(type: string, name: string, extra: Record<string, unknown> = {}): AvroSchema {
  return { type, ...extra, 'connect.version': 1, 'connect.name': name };
}

/**
 * warn() at the 1st, 10th, 100th, ... occurrence: a data problem stays
 * visible without one log line per row at 100k rows/s.
 */
export function occasionally(warn: Warn, message: string, details: Record<string, unknown>): (value: string) => void {
  let count = 0;
  let next = 1;
  return (value) => {
    if (++count === next) {
      next *= 10;
      warn(message, { ...details, value, occurrences: count });
    }
  };
}

import type { SinkConfig } from '../config/sink-config.ts';
import type { SchemaRegistry } from '../events/schema-registry.ts';
import { ChangeEventDecoder } from './change-event.ts';
import { DebeziumDecoder } from './debezium-input.ts';
import type { MessageDecoder } from './message-decoder.ts';

/** The decoder for the connector's `input.format`: Tide's topics (the default) or Debezium's. */
export function decoderFor(config: SinkConfig, registry: SchemaRegistry): MessageDecoder {
  switch (config['input.format']) {
    case 'debezium':
      return new DebeziumDecoder(registry);
    default: {
      const tide = new ChangeEventDecoder(registry);
      return {
        decode: (m) => tide.decode(m.topic, m.partition, m.offset, m.key, m.value),
        decodeCached: (m) => tide.decodeCached(m.topic, m.partition, m.offset, m.key, m.value),
      };
    }
  }
}

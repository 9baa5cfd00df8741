import type { SourceConfig } from '../config/source-config.ts';
import { TableCodec } from '../events/envelope.ts';
import { renamedColumns } from '../events/field-aliases.ts';
import type { SchemaRegistry } from '../events/schema-registry.ts';
import type { Logger } from '../log.ts';
import type { CatalogTable } from './catalog.ts';
import { registerTableSchemas } from './schema-guard.ts';
import type { DecimalHandlingMode, TimestamptzHandlingMode } from './type-mapping.ts';

export interface CodecOptions {
  topicPrefix: string;
  decimalHandlingMode: DecimalHandlingMode;
  timestamptzHandlingMode?: TimestamptzHandlingMode;
  excludedColumns?: (qualifiedColumn: string) => boolean;
  warn: (message: string, details: Record<string, unknown>) => void;
}

/**
 * A table's codec with its schemas registered. Renamed columns (field-aliases.ts) are found against the
 * table's previous codec in this process, or else the registry's latest value schema, and become Avro
 * aliases of their fields.
 */
export async function buildTableCodec(
  table: CatalogTable,
  registry: SchemaRegistry,
  o: CodecOptions,
  previous: TableCodec | undefined,
): Promise<TableCodec> {
  const opts = {
    decimalHandlingMode: o.decimalHandlingMode,
    timestamptzHandlingMode: o.timestamptzHandlingMode,
    excludedColumns: o.excludedColumns,
  };
  let codec = new TableCodec(table, o.topicPrefix, opts, o.warn);
  const before = previous?.valueSchema ?? (await registry.latest(`${codec.topic}-value`));
  const renamedFrom = renamedColumns(before, codec.valueSchema);
  if (renamedFrom.size > 0) codec = new TableCodec(table, o.topicPrefix, { ...opts, renamedFrom }, () => undefined);
  await registerTableSchemas(registry, codec, previous);
  return codec;
}

/** The codec options of a source's configuration; `column.exclude.list` holds anchored regexes on schema.table.column. */
export function codecOptionsOf(config: SourceConfig, log: Logger): CodecOptions {
  const list = config['column.exclude.list'];
  const res = list?.map((p) => new RegExp(`^(?:${p})$`));
  return {
    topicPrefix: config['topic.prefix'],
    decimalHandlingMode: config['decimal.handling.mode'],
    timestamptzHandlingMode: config['timestamptz.handling.mode'],
    excludedColumns: res ? (q) => res.some((r) => r.test(q)) : undefined,
    warn: (m, d) => log.warn(d, m),
  };
}

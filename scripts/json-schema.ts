// Writes the connector files' JSON Schemas (for editors) from the config schemas:
// connectors/source-connector.schema.json and connectors/sink-connector.schema.json.
import { writeFileSync } from 'node:fs';
import { sinkConnectorJsonSchema } from '../src/config/sink-config.ts';
import { sourceConnectorJsonSchema } from '../src/config/source-config.ts';

for (const [file, schema] of [
  ['connectors/source-connector.schema.json', sourceConnectorJsonSchema()],
  ['connectors/sink-connector.schema.json', sinkConnectorJsonSchema()],
] as const) {
  writeFileSync(file, `${JSON.stringify(schema, null, 2)}\n`);
  console.log(`wrote ${file} (regenerate with: npx tsx scripts/json-schema.ts)`);
}

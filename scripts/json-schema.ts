// Writes connectors/source-connector.schema.json (JSON Schema for editors) from the config schema.
import { writeFileSync } from 'node:fs';
import { sourceConnectorJsonSchema } from '../src/config/source-config.ts';

writeFileSync('connectors/source-connector.schema.json', `${JSON.stringify(sourceConnectorJsonSchema(), null, 2)}\n`);
console.log('wrote connectors/source-connector.schema.json (regenerate with: npx tsx scripts/json-schema.ts)');

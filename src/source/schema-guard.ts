import { TideError } from '../errors.ts';
import type { TableCodec } from '../events/envelope.ts';
import type { SchemaRegistry } from '../events/schema-registry.ts';

/**
 * Before any event is published with a new table schema, ask the registry
 * whether it is compatible with what consumers already have. If not, the
 * connector pauses: nothing with the new schema is published and nothing past
 * it is confirmed, so no data is lost while the operator decides.
 */
export class SchemaPausedError extends TideError {
  constructor(
    readonly table: string,
    readonly subject: string,
    readonly problems: string[],
  ) {
    super(
      `table ${table}: the new schema is not compatible with subject ${subject} under the registry's compatibility rule, so the connector paused ` +
        `(nothing after this change was published or confirmed).\n  ${problems.join('\n  ')}\n` +
        `Options:\n` +
        `  1. If the subject's consumers can read the new schema, let it through: tide source schema allow <connector-file> ${table}, ` +
        `restart the connector, and once it streams: tide source schema restore <connector-file> ${table}.\n` +
        `  2. Start a new topic generation: set a new topic.prefix and slot.name and restart (the new slot starts with a snapshot), ` +
        `then drop the old slot: tide slots drop <old slot.name>.`,
    );
    this.name = 'SchemaPausedError';
  }
}

type Field = { name: string; type: unknown; default?: unknown };

/** The fields of the `after` record (the table's columns with their real nullability). */
function valueFields(envelope: object | undefined): Field[] {
  const fields = (envelope as { fields?: { name: string; type: unknown }[] } | undefined)?.fields ?? [];
  const before = fields.find((f) => f.name === 'after')?.type;
  const record = Array.isArray(before) ? (before.find((t) => typeof t === 'object') as { fields?: Field[] } | undefined) : undefined;
  return record?.fields ?? [];
}

/** Name the columns that make the change incompatible: a changed type, a column that joined the primary key, or a new required column without a default. */
export function describeIncompatibility(previous: object | undefined, next: object): string[] {
  const old = new Map(valueFields(previous).map((f) => [f.name, f]));
  const problems: string[] = [];
  const nullable = (t: unknown) => Array.isArray(t) && t.includes('null');
  const nonNull = (t: unknown) => (Array.isArray(t) ? t.filter((b) => b !== 'null') : [t]);
  for (const f of valueFields(next)) {
    const o = old.get(f.name);
    if (!o) {
      if (!('default' in f))
        problems.push(
          `column ${f.name} was added as a primary-key column: old events cannot be read with the new schema, which requires it.`,
        );
    } else if (nullable(o.type) && !nullable(f.type) && JSON.stringify(nonNull(o.type)) === JSON.stringify(nonNull(f.type))) {
      problems.push(`column ${f.name} joined the primary key, so the new schema requires it (old events may hold null).`);
    } else if (JSON.stringify(o.type) !== JSON.stringify(f.type)) {
      problems.push(`column ${f.name} changed type from ${JSON.stringify(o.type)} to ${JSON.stringify(f.type)}.`);
    }
  }
  return problems;
}

/** A key record that gained or changed fields: the primary key changed. */
export function describeKeyChange(previous: object | undefined, next: object): string[] {
  const names = (s: object | undefined) => ((s as { fields?: { name: string }[] } | undefined)?.fields ?? []).map((f) => f.name);
  const before = names(previous);
  const after = names(next);
  if (!previous || JSON.stringify(before) === JSON.stringify(after)) return [];
  return [
    `the primary key changed from (${before.join(', ')}) to (${after.join(', ')}): events are keyed by it, and old keys cannot be read with the new key schema.`,
  ];
}

export async function registerTableSchemas(registry: SchemaRegistry, codec: TableCodec, previous: TableCodec | undefined): Promise<void> {
  const subjects: [string, object, 'key' | 'value'][] = [
    [`${codec.topic}-key`, codec.keySchema, 'key'],
    [`${codec.topic}-value`, codec.valueSchema, 'value'],
  ];
  for (const [subject, schema] of subjects) {
    const { compatible, messages } = await registry.isCompatible(subject, schema);
    if (!compatible) {
      const before = previous ? (subject.endsWith('-key') ? previous.keySchema : previous.valueSchema) : await registry.latest(subject);
      const named = subject.endsWith('-key') ? describeKeyChange(before, schema) : describeIncompatibility(before, schema);
      throw new SchemaPausedError(
        codec.table.qualified,
        subject,
        named.length > 0 ? named : messages.length > 0 ? messages : ['the registry gave no detail'],
      );
    }
  }
  codec.keySchemaId = await registry.register(subjects[0]![0], codec.keySchema);
  codec.valueSchemaId = await registry.register(subjects[1]![0], codec.valueSchema);
}

import type { LakeColumn, LakeSchema, LakeType } from '../lake-schema.ts';

/**
 * LakeSchema ↔ the `schemaString` of a Delta `metaData` action: Spark's JSON schema, as
 * PROTOCOL.md "Schema Serialization Format" describes it (a struct of fields, each with name,
 * type, nullable and metadata; primitive types as names, arrays as
 * `{"type":"array","elementType":…,"containsNull":…}`).
 *
 * Hand-written: no npm package implements Spark's schema JSON, and the format is small.
 */

/** A type Tide cannot represent (struct, map, byte, timestamp_ntz, variant, …) or malformed JSON. */
export class SchemaStringError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SchemaStringError';
  }
}

type SparkType = string | { type: 'array'; elementType: SparkType; containsNull: boolean } | { type: string; [key: string]: unknown };
interface SparkField {
  name: string;
  type: SparkType;
  nullable: boolean;
  metadata: Record<string, unknown>;
}

const PRIMITIVES = ['string', 'long', 'integer', 'short', 'double', 'float', 'boolean', 'binary', 'date', 'timestamp'] as const;

function toSpark(type: LakeType): SparkType {
  switch (type.kind) {
    case 'decimal':
      // Spark prints decimal(p,s) without a space (DecimalType.json); "The precision and scale can be up to 38".
      if (
        !Number.isInteger(type.precision) ||
        type.precision < 1 ||
        type.precision > 38 ||
        !Number.isInteger(type.scale) ||
        type.scale < 0 ||
        type.scale > type.precision
      )
        throw new SchemaStringError(
          `decimal(${type.precision},${type.scale}) is not a valid Delta decimal: precision 1..38, scale 0..precision`,
        );
      return `decimal(${type.precision},${type.scale})`;
    case 'array':
      // LakeSchema's array values may hold null elements (lake-schema.ts), so containsNull is always true.
      return { type: 'array', elementType: toSpark(type.element), containsNull: true };
    default:
      return type.kind;
  }
}

/** The schemaString for a LakeSchema. Column names must be unique regardless of case ("Schema Serialization Format"). */
export function toSchemaString(schema: LakeSchema): string {
  const seen = new Map<string, string>();
  const fields: SparkField[] = schema.columns.map((c) => {
    if (!c.name) throw new SchemaStringError('a column has an empty name');
    const clash = seen.get(c.name.toLowerCase());
    if (clash !== undefined)
      throw new SchemaStringError(
        `columns ${clash} and ${c.name} differ only in case; Delta column names must be unique regardless of case`,
      );
    seen.set(c.name.toLowerCase(), c.name);
    return { name: c.name, type: toSpark(c.type), nullable: c.nullable, metadata: { ...(c.metadata ?? {}) } };
  });
  return JSON.stringify({ type: 'struct', fields });
}

function fromSpark(type: unknown, where: string): LakeType {
  if (typeof type === 'string') {
    if ((PRIMITIVES as readonly string[]).includes(type)) return { kind: type as (typeof PRIMITIVES)[number] };
    const decimal = /^decimal\(\s*(\d+)\s*,\s*(\d+)\s*\)$/.exec(type);
    if (decimal) return { kind: 'decimal', precision: Number(decimal[1]), scale: Number(decimal[2]) };
    // Spark's bare "decimal" is decimal(10,0) (DecimalType.USER_DEFAULT).
    if (type === 'decimal') return { kind: 'decimal', precision: 10, scale: 0 };
    throw new SchemaStringError(
      `${where} has type ${type}, which Tide does not support (supported: ${PRIMITIVES.join(', ')}, decimal(p,s), array)`,
    );
  }
  if (typeof type === 'object' && type !== null && (type as { type?: unknown }).type === 'array') {
    const t = type as { elementType?: unknown };
    if (t.elementType === undefined) throw new SchemaStringError(`${where} is an array without elementType`);
    return { kind: 'array', element: fromSpark(t.elementType, `${where}.element`) };
  }
  const name = typeof type === 'object' && type !== null ? String((type as { type?: unknown }).type) : JSON.stringify(type);
  throw new SchemaStringError(
    `${where} has type ${name}, which Tide does not support (supported: ${PRIMITIVES.join(', ')}, decimal(p,s), array)`,
  );
}

/**
 * The LakeSchema of a schemaString. Column metadata values that are not strings (e.g.
 * `delta.columnMapping.id: 1`) are kept as their JSON text.
 */
export function fromSchemaString(schemaString: string): LakeSchema {
  let root: unknown;
  try {
    root = JSON.parse(schemaString);
  } catch (e) {
    throw new SchemaStringError(`schemaString is not valid JSON: ${(e as Error).message}`);
  }
  const r = root as { type?: unknown; fields?: unknown };
  if (typeof root !== 'object' || root === null || r.type !== 'struct' || !Array.isArray(r.fields))
    throw new SchemaStringError('schemaString must be a JSON object {"type":"struct","fields":[…]}');
  const columns: LakeColumn[] = r.fields.map((f: unknown, i: number) => {
    const field = f as Partial<SparkField>;
    if (typeof field !== 'object' || field === null || typeof field.name !== 'string')
      throw new SchemaStringError(`field ${i} has no name`);
    if (typeof field.nullable !== 'boolean') throw new SchemaStringError(`column ${field.name} has no boolean "nullable"`);
    const column: LakeColumn = { name: field.name, type: fromSpark(field.type, `column ${field.name}`), nullable: field.nullable };
    const meta = field.metadata ?? {};
    if (Object.keys(meta).length) {
      column.metadata = Object.fromEntries(Object.entries(meta).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)]));
    }
    return column;
  });
  return { columns };
}

/** The Delta type name of a LakeType, for messages (`decimal(10,2)`, `array<long>`). */
export function deltaTypeName(type: LakeType): string {
  return type.kind === 'array' ? `array<${deltaTypeName(type.element)}>` : (toSpark(type) as string);
}

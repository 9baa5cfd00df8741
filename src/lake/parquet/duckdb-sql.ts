import type { LakeType } from '../lake-schema.ts';
import { LakeTypeError } from './parquet-errors.ts';

/**
 * How lake types and names are spelled in DuckDB SQL. Parquet physical types follow from these when
 * DuckDB writes a file (Delta PROTOCOL.md, "Delta Data Type to Parquet Type Mappings"): TIMESTAMPTZ is
 * INT64 TIMESTAMP(isAdjustedToUTC=true, MICROS), DECIMAL(p,s) is DECIMAL(p,s), DATE is INT32 DATE.
 */

/** Delta's decimal precision limit (PROTOCOL.md, "Primitive Types": precision and scale up to 38). */
export const MAX_DECIMAL_PRECISION = 38;

export function duckdbType(t: LakeType, column?: string): string {
  switch (t.kind) {
    case 'string':
      return 'VARCHAR';
    case 'long':
      return 'BIGINT';
    case 'integer':
      return 'INTEGER';
    case 'short':
      return 'SMALLINT';
    case 'double':
      return 'DOUBLE';
    case 'float':
      return 'FLOAT';
    case 'boolean':
      return 'BOOLEAN';
    case 'binary':
      return 'BLOB';
    case 'date':
      return 'DATE';
    case 'timestamp':
      return 'TIMESTAMPTZ';
    case 'decimal': {
      checkDecimal(t.precision, t.scale, column);
      return `DECIMAL(${t.precision},${t.scale})`;
    }
    case 'array':
      return `${duckdbType(t.element, column)}[]`;
    default: {
      const never: never = t;
      throw new LakeTypeError(column, `unknown lake type ${JSON.stringify(never)}`);
    }
  }
}

export function checkDecimal(precision: number, scale: number, column?: string): void {
  if (!Number.isInteger(precision) || precision < 1 || precision > MAX_DECIMAL_PRECISION) {
    throw new LakeTypeError(
      column,
      `decimal(${precision},${scale}): precision must be 1..${MAX_DECIMAL_PRECISION} (Delta and Parquet DECIMAL limit); ` +
        'map wider numerics to string or double upstream',
    );
  }
  if (!Number.isInteger(scale) || scale < 0 || scale > precision) {
    throw new LakeTypeError(column, `decimal(${precision},${scale}): scale must be 0..precision`);
  }
}

/** A lake type's readable name for messages, e.g. `decimal(12,2)`, `array<string>`. */
export function lakeTypeName(t: LakeType): string {
  if (t.kind === 'decimal') return `decimal(${t.precision},${t.scale})`;
  if (t.kind === 'array') return `array<${lakeTypeName(t.element)}>`;
  return t.kind;
}

/** A quoted SQL identifier. */
export function ident(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** A quoted SQL string literal. */
export function literal(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
}

import { createHash } from 'node:crypto';
import { maskRuleFor, type MaskRule, type SinkConfig } from '../config/sink-config.ts';
import type { LakeColumn } from '../lake/lake-schema.ts';

/**
 * Column masking between bronze and silver (and so into gold, which reads silver):
 *   hash   → hex SHA-256 of salt + value (same input, same output: joins and distinct counts still work,
 *            the clear value cannot be read back without the salt). The column becomes a string.
 *   redact → strings become "****", other types NULL. The column becomes nullable.
 *   keep   → unchanged.
 * Bronze keeps the clear value: it is the audit trail, and access to it is restricted by the lake's ACLs.
 */
export interface ColumnMask {
  column: string;
  rule: Exclude<MaskRule, 'keep'>;
  apply(value: unknown): unknown;
}

export const REDACTED = '****';

function text(value: unknown): string {
  if (typeof value === 'string') return value;
  if (value instanceof Uint8Array) return Buffer.from(value).toString('hex');
  if (typeof value === 'bigint' || typeof value === 'number' || typeof value === 'boolean') return String(value);
  return JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
}

export function hashValue(salt: string, value: unknown): string {
  return createHash('sha256').update(salt).update(text(value)).digest('hex');
}

/** The masks for one table's columns (empty when nothing is masked). Key columns are never masked: silver is keyed by them. */
export function masksFor(config: SinkConfig, table: string, columns: LakeColumn[], keyColumns: string[]): ColumnMask[] {
  const masks: ColumnMask[] = [];
  for (const c of columns) {
    const rule = maskRuleFor(config, `${table}.${c.name}`);
    if (rule === 'keep') continue;
    if (keyColumns.includes(c.name)) continue;
    if (rule === 'hash') {
      const salt = config['mask.hash.salt'];
      masks.push({ column: c.name, rule, apply: (v) => (v === null ? null : hashValue(salt, v)) });
    } else {
      const isString = c.type.kind === 'string';
      masks.push({ column: c.name, rule, apply: (v) => (v === null ? null : isString ? REDACTED : null) });
    }
  }
  return masks;
}

/** The silver column as masking leaves it: hashed columns are strings, redacted ones nullable; the rule is kept in the column metadata. */
export function maskedColumn(c: LakeColumn, masks: ColumnMask[]): LakeColumn {
  const m = masks.find((x) => x.column === c.name);
  if (!m) return c;
  const type = m.rule === 'hash' ? { kind: 'string' as const } : c.type;
  return { ...c, type, nullable: true, metadata: { ...c.metadata, 'tide.mask': m.rule } };
}

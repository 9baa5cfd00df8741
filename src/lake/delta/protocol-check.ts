import type { MetaDataAction, ProtocolAction } from './actions.ts';
import { DeltaProtocolError } from './delta-errors.ts';
import type { LakeSchema } from '../lake-schema.ts';

/**
 * Which Delta protocols Tide implements (PROTOCOL.md "Reader Version Requirements", "Writer
 * Version Requirements", "Table Features").
 *
 *  - Reading: reader version 1 (no column mapping), or reader version 3 whose readerFeatures are
 *    only `deletionVectors` ("Deletion Vectors": rows a vector names are skipped by every read).
 *  - Writing: writer version ≤ 2, whose requirements are "Append-only Tables" and "Column
 *    Invariants"; or writer version 7 whose writerFeatures are only those two and `deletionVectors`. Writer versions 3–6
 *    bring CHECK constraints, generated columns, change data feed, column mapping and identity
 *    columns, which Tide does not implement.
 *
 * Tide creates tables at reader 1 / writer 2 with no features.
 */
export const TIDE_PROTOCOL: ProtocolAction = { minReaderVersion: 1, minWriterVersion: 2 };

const WRITER_FEATURES = new Set(['appendOnly', 'invariants', 'deletionVectors']);
const READER_FEATURES = new Set(['deletionVectors']);
export const DELETION_VECTORS = 'deletionVectors';

/** Why Tide cannot read a table with this protocol, or undefined when it can. */
export function readProblem(p: ProtocolAction): string | undefined {
  if (p.minReaderVersion === 3) {
    const unknown = (p.readerFeatures ?? []).filter((f) => !READER_FEATURES.has(f));
    if (!unknown.length) return undefined;
    return `Tide does not implement the reader features ${unknown.join(', ')} (it implements ${[...READER_FEATURES].join(', ')})`;
  }
  if (p.minReaderVersion > 1) {
    const features = p.readerFeatures?.length ? ` (reader features: ${p.readerFeatures.join(', ')})` : '';
    return `Tide reads Delta reader versions 1 and 3 (with the feature deletionVectors only); this table needs reader version ${p.minReaderVersion}${features}`;
  }
  return undefined;
}

/** Whether the table declares deletion vectors (reader 3 / writer 7 with the feature in both lists). */
export function declaresDeletionVectors(p: ProtocolAction): boolean {
  return (
    p.minReaderVersion === 3 &&
    p.minWriterVersion === 7 &&
    !!p.readerFeatures?.includes(DELETION_VECTORS) &&
    !!p.writerFeatures?.includes(DELETION_VECTORS)
  );
}

/**
 * The protocol `p` upgraded to declare deletion vectors: reader 3 / writer 7, keeping the features
 * the old versions implied (writer 2 = appendOnly + invariants, "Table Features for New and
 * Existing Tables": a table upgraded to writer 7 lists the legacy features it had).
 */
export function withDeletionVectors(p: ProtocolAction): ProtocolAction {
  const writer = new Set(p.minWriterVersion === 7 ? (p.writerFeatures ?? []) : p.minWriterVersion >= 2 ? ['appendOnly', 'invariants'] : []);
  const reader = new Set(p.minReaderVersion === 3 ? (p.readerFeatures ?? []) : []);
  writer.add(DELETION_VECTORS);
  reader.add(DELETION_VECTORS);
  return { minReaderVersion: 3, minWriterVersion: 7, readerFeatures: [...reader], writerFeatures: [...writer] };
}

/** Why Tide cannot write a table with this protocol, or undefined when it can. */
export function writeProblem(p: ProtocolAction): string | undefined {
  const read = readProblem(p);
  if (read) return `${read} (a writer must be able to read the table)`;
  if (p.minWriterVersion <= 2) return undefined;
  if (p.minWriterVersion === 7) {
    const unknown = (p.writerFeatures ?? []).filter((f) => !WRITER_FEATURES.has(f));
    if (unknown.length)
      return `Tide does not implement the writer features ${unknown.join(', ')} (it implements ${[...WRITER_FEATURES].join(', ')})`;
    return undefined;
  }
  return `Tide writes Delta writer versions 1, 2 and 7 (with features ${[...WRITER_FEATURES].join(', ')} only); this table needs writer version ${p.minWriterVersion}`;
}

export function assertReadable(table: string, p: ProtocolAction): void {
  const problem = readProblem(p);
  if (problem)
    throw new DeltaProtocolError(table, p, `cannot read: ${problem}. Read it with an engine that supports the protocol (Spark, delta-rs)`);
}

export function assertWritable(table: string, p: ProtocolAction): void {
  const problem = writeProblem(p);
  if (problem)
    throw new DeltaProtocolError(table, p, `refusing to write: ${problem}. Write to a table Tide created, or let Tide create a new one`);
}

/** Whether a writer feature's rules apply: always from writer 2 to 6, at writer 7 only when listed. */
function featureActive(p: ProtocolAction, feature: string): boolean {
  if (p.minWriterVersion === 7) return (p.writerFeatures ?? []).includes(feature);
  return p.minWriterVersion >= 2;
}

/** "Append-only Tables": when active and `delta.appendOnly` is true, commits must not remove data (dataChange=true removes). */
export function appendOnly(p: ProtocolAction, metadata: MetaDataAction): boolean {
  return featureActive(p, 'appendOnly') && metadata.configuration['delta.appendOnly']?.toLowerCase() === 'true';
}

/**
 * "Column Invariants": writers must abort a transaction that adds a row violating a column's
 * `delta.invariants` SQL expression. Tide cannot evaluate Spark SQL, so it refuses to write a
 * table whose schema declares one.
 */
export function assertNoInvariants(table: string, p: ProtocolAction, schema: LakeSchema): void {
  if (!featureActive(p, 'invariants')) return;
  const column = schema.columns.find((c) => c.metadata?.['delta.invariants'] !== undefined);
  if (column)
    throw new DeltaProtocolError(
      table,
      p,
      `refusing to write: column ${column.name} has a column invariant (delta.invariants ${column.metadata!['delta.invariants']}), which Tide cannot evaluate. Write with Spark, or drop the invariant`,
    );
}

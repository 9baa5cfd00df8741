import { z } from 'zod';
import { fastAdd, fastRemove } from './action-fast-parse.ts';
import type { DeletionVectorDescriptor } from './deletion-vector.ts';

/**
 * Delta log actions, as PROTOCOL.md "Actions" defines them. In a commit file each action is one
 * line of JSON with a single key naming the action (`{"add":{…}}`); `Action` mirrors that shape.
 * Only the fields Tide reads or writes are modelled; unknown fields and unknown actions are
 * dropped when reading, which PROTOCOL.md "Protocol Evolution" allows ("clients must ignore
 * unrecognized fields"), because anything that changes how a table must be read or written comes
 * with a protocol version or table feature that `protocol-check.ts` refuses.
 */

/** PROTOCOL.md "Protocol Evolution". The feature lists exist only at reader 3 / writer 7. */
export interface ProtocolAction {
  minReaderVersion: number;
  minWriterVersion: number;
  readerFeatures?: string[];
  writerFeatures?: string[];
}

/** PROTOCOL.md "Change Metadata". `schemaString` is Spark's JSON schema (see schema-string.ts). */
export interface MetaDataAction {
  /** A GUID, fixed for the table's life. */
  id: string;
  name?: string;
  description?: string;
  format: { provider: string; options: Record<string, string> };
  schemaString: string;
  partitionColumns: string[];
  /** Milliseconds since the epoch. */
  createdTime?: number;
  configuration: Record<string, string>;
}

/**
 * PROTOCOL.md "Add File and Remove File". `path` is a URI reference relative to the table root
 * (percent-encoded, RFC 2396; see `encodeDataPath`). `partitionValues` holds every partition column,
 * serialised as "Partition Value Serialization" says; null is a null partition value.
 */
export interface AddAction {
  path: string;
  partitionValues: Record<string, string | null>;
  size: number;
  /** Milliseconds since the epoch. */
  modificationTime: number;
  dataChange: boolean;
  /** Per-file statistics as a JSON string (`{"numRecords":…,"minValues":…,"maxValues":…,"nullCount":…}`), kept verbatim. */
  stats?: string;
  tags?: Record<string, string | null>;
  /** PROTOCOL.md "Deletion Vectors": the rows of the data file that are logically deleted. */
  deletionVector?: DeletionVectorDescriptor;
}

/** The file's physical row count from its stats (`numRecords`); undefined when the stats do not say or do not parse. */
export function recordCount(f: Pick<AddAction, 'stats'>): number | undefined {
  try {
    const n = (JSON.parse(f.stats ?? '{}') as { numRecords?: unknown }).numRecords;
    return typeof n === 'number' ? n : undefined;
  } catch {
    return undefined;
  }
}

export interface RemoveAction {
  path: string;
  /** Milliseconds since the epoch; tombstones expire `delta.deletedFileRetentionDuration` after it. */
  deletionTimestamp?: number;
  dataChange: boolean;
  /** True when `partitionValues`, `size` (and `tags`) are present; set by the writer when they are. */
  extendedFileMetadata?: boolean;
  partitionValues?: Record<string, string | null>;
  size?: number;
  stats?: string;
  tags?: Record<string, string | null>;
  /** The deletion vector of the logical file removed (the key is (path, deletionVector.uniqueId)). */
  deletionVector?: DeletionVectorDescriptor;
}

/** PROTOCOL.md "Transaction Identifiers": an application's progress, committed atomically with the data. */
export interface TxnAction {
  appId: string;
  version: number;
  /** Milliseconds since the epoch. */
  lastUpdated?: number;
}

/** PROTOCOL.md "Commit Provenance Information": free-form; these are the fields Tide writes. */
export interface CommitInfoAction {
  timestamp: number;
  operation: string;
  operationParameters: Record<string, unknown>;
  engineInfo?: string;
  isBlindAppend?: boolean;
  /** The table version the writer read before this commit. */
  readVersion?: number;
  [key: string]: unknown;
}

export type Action =
  | { add: AddAction }
  | { remove: RemoveAction }
  | { txn: TxnAction }
  | { metaData: MetaDataAction }
  | { protocol: ProtocolAction }
  | { commitInfo: CommitInfoAction };

export type ActionKind = 'add' | 'remove' | 'txn' | 'metaData' | 'protocol' | 'commitInfo';

export function actionKind(action: Action): ActionKind {
  if ('add' in action) return 'add';
  if ('remove' in action) return 'remove';
  if ('txn' in action) return 'txn';
  if ('metaData' in action) return 'metaData';
  if ('protocol' in action) return 'protocol';
  return 'commitInfo';
}

// Readers must accept `null` for an absent optional field: delta-rs writes `"tags":null`, `"name":null`.
const opt = <T extends z.ZodType>(schema: T) => schema.nullish().transform((v) => v ?? undefined);
const long = z.number().int();
const stringMap = z.record(z.string(), z.string());
const partitionValues = z.record(z.string(), z.string().nullable());

const protocolSchema = z.object({
  minReaderVersion: z.number().int().min(1),
  minWriterVersion: z.number().int().min(1),
  readerFeatures: opt(z.array(z.string())),
  writerFeatures: opt(z.array(z.string())),
});
const metaDataSchema = z.object({
  id: z.string().min(1),
  name: opt(z.string()),
  description: opt(z.string()),
  format: z.object({ provider: z.string(), options: opt(stringMap).transform((o) => o ?? {}) }),
  schemaString: z.string(),
  partitionColumns: z.array(z.string()),
  createdTime: opt(long),
  configuration: opt(stringMap).transform((c) => c ?? {}),
});
const deletionVectorSchema = z.object({
  storageType: z.enum(['u', 'i', 'p']),
  pathOrInlineDv: z.string().min(1),
  offset: opt(z.number().int().min(0)),
  sizeInBytes: z.number().int().min(0),
  cardinality: long.min(0),
});
const addSchema = z.object({
  path: z.string().min(1),
  partitionValues: opt(partitionValues).transform((p) => p ?? {}),
  size: long,
  modificationTime: long,
  dataChange: z.boolean(),
  stats: opt(z.string()),
  tags: opt(partitionValues),
  deletionVector: opt(deletionVectorSchema),
});
const removeSchema = z.object({
  path: z.string().min(1),
  deletionTimestamp: opt(long),
  dataChange: z.boolean(),
  extendedFileMetadata: opt(z.boolean()),
  partitionValues: opt(partitionValues),
  size: opt(long),
  stats: opt(z.string()),
  tags: opt(partitionValues),
  deletionVector: opt(deletionVectorSchema),
});
const txnSchema = z.object({ appId: z.string().min(1), version: long, lastUpdated: opt(long) });
const commitInfoSchema = z.looseObject({
  timestamp: opt(long).transform((t) => t ?? 0),
  operation: opt(z.string()).transform((o) => o ?? ''),
  operationParameters: opt(z.record(z.string(), z.unknown())).transform((p) => p ?? {}),
});

const schemas = {
  add: addSchema,
  remove: removeSchema,
  txn: txnSchema,
  metaData: metaDataSchema,
  protocol: protocolSchema,
  commitInfo: commitInfoSchema,
};

/** Why one action (a commit line or a checkpoint row) is not a valid action. */
export class ActionParseError extends Error {
  constructor(
    /** 1-based line of a commit file, or row of a checkpoint. */
    readonly line: number,
    readonly detail: string,
  ) {
    super(`line ${line}: ${detail}`);
    this.name = 'ActionParseError';
  }
}

/**
 * Parse one JSON object that holds one action (a commit line, or a checkpoint row turned into
 * JSON). Returns undefined for actions Tide does not model (`cdc`, `domainMetadata`, …), which do
 * not change the snapshot Tide reads. Throws ActionParseError (caller adds the file name).
 */
export function parseAction(value: unknown, line: number): Action | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ActionParseError(line, 'is not a JSON object');
  const keys = Object.keys(value).filter((k) => (value as Record<string, unknown>)[k] !== null);
  if (keys.length !== 1) throw new ActionParseError(line, `must hold exactly one action, found ${keys.length ? keys.join(', ') : 'none'}`);
  const kind = keys[0]!;
  if (!(kind in schemas)) return undefined;
  const body = (value as Record<string, unknown>)[kind];
  // The hot path (action-fast-parse.ts): adds and removes checked by hand; zod when it is unsure.
  if (kind === 'add') {
    const add = fastAdd(body);
    if (add) return { add: add as unknown as AddAction };
  } else if (kind === 'remove') {
    const remove = fastRemove(body);
    if (remove) return { remove: remove as unknown as RemoveAction };
  }
  return parseWithSchema(kind as ActionKind, body, line);
}

/**
 * parseAction with zod alone: the reference the fast path must agree with (its unit test), and the
 * path for every action the fast path does not take or is unsure of.
 */
export function parseWithSchema(kind: ActionKind, body: unknown, line: number): Action {
  const parsed = schemas[kind].safeParse(body);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${[kind, ...i.path].join('.')}: ${i.message}`).join('; ');
    throw new ActionParseError(line, `invalid ${kind} action: ${issues}`);
  }
  // Absent and null optional fields both become absent keys, so parsed actions compare and serialise like written ones.
  const data = Object.fromEntries(Object.entries(parsed.data).filter(([, v]) => v !== undefined));
  return { [kind]: data } as Action;
}

/** Parse a commit file's newline-delimited JSON. Blank lines are skipped. */
export function parseCommitText(text: string): Action[] {
  const actions: Action[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!.trim();
    if (!raw) continue;
    let json: unknown;
    try {
      json = JSON.parse(raw);
    } catch (e) {
      throw new ActionParseError(i + 1, `is not valid JSON (${(e as Error).message})`);
    }
    const action = parseAction(json, i + 1);
    if (action) actions.push(action);
  }
  return actions;
}

/** A commit file's content: one action per line, each ending in a newline. */
export function serializeCommit(actions: Action[]): string {
  return actions.map((a) => `${JSON.stringify(a)}\n`).join('');
}

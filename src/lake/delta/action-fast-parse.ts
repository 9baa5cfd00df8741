import type { DeletionVectorDescriptor } from './deletion-vector.ts';

/**
 * The hot path of log replay: add and remove actions, which are nearly every line of a commit and
 * every row of a checkpoint (a silver table with deletion vectors re-adds each of its files with a
 * new vector on every flush, and a checkpoint holds each file's add and its vectors' tombstones).
 * zod's `safeParse` of these took most of the sink's log-replay time in the pipeline's CPU profile
 * (README "Sink and lake": checkpoint rows and commit lines). These functions check the same rules
 * by hand, without zod's per-field wrappers and transforms.
 *
 * They never reject: for a value they are unsure of (a wrong type, a key present with `undefined`, a
 * map that is not a plain object) they return `undefined`, and the caller falls back to zod
 * (actions.ts), which either accepts it or names what is wrong. So what the fast path accepts zod
 * accepts too, and the result is the object zod would give (the unit test delta-action-fast-parse
 * compares the two, key order included). The results are typed by actions.ts, which imports this
 * module (importing its types here would be an import cycle).
 */

const isLong = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v);

/** Undefined when the key is absent; NULL for JSON null; INVALID otherwise unless `check` holds. */
const NULL = Symbol('null');
const INVALID = Symbol('invalid');
type Field<T> = T | undefined | typeof NULL | typeof INVALID;

function optional<T>(o: Record<string, unknown>, key: string, check: (v: unknown) => v is T): Field<T> {
  const v = o[key];
  if (v === undefined) return key in o ? INVALID : undefined; // present but undefined: only zod knows
  if (v === null) return NULL;
  return check(v) ? v : INVALID;
}

const isPlainObject = (v: unknown): v is Record<string, unknown> => {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  return Object.getPrototypeOf(v) === Object.prototype;
};

/** A copy of a `map<string, string>` whose values may be null (partitionValues, tags), or undefined when unsure. */
function stringMap(v: Record<string, unknown>): Record<string, string | null> | undefined {
  const out: Record<string, string | null> = {};
  for (const k in v) {
    if (!Object.hasOwn(v, k)) return undefined;
    const x = v[k];
    if (k === '__proto__' || (x !== null && typeof x !== 'string')) return undefined;
    out[k] = x;
  }
  return out;
}

/** PROTOCOL.md "Deletion Vector Descriptor Schema", as actions.ts's deletionVectorSchema checks it. */
function deletionVector(v: unknown): DeletionVectorDescriptor | undefined {
  if (!isPlainObject(v)) return undefined;
  const { storageType, pathOrInlineDv, sizeInBytes, cardinality } = v;
  if (storageType !== 'u' && storageType !== 'i' && storageType !== 'p') return undefined;
  if (typeof pathOrInlineDv !== 'string' || pathOrInlineDv.length < 1) return undefined;
  if (!isLong(sizeInBytes) || sizeInBytes < 0 || !isLong(cardinality) || cardinality < 0) return undefined;
  const offset = optional(v, 'offset', isLong);
  if (offset === INVALID || (typeof offset === 'number' && offset < 0)) return undefined;
  // zod keeps a nested optional key that was present (null becomes undefined) and omits an absent one.
  if (offset === undefined) return { storageType, pathOrInlineDv, sizeInBytes, cardinality };
  return { storageType, pathOrInlineDv, offset: offset === NULL ? undefined : offset, sizeInBytes, cardinality };
}

const isString = (v: unknown): v is string => typeof v === 'string';
const isBoolean = (v: unknown): v is boolean => typeof v === 'boolean';

/** The optional map field: absent or null gives `absent`, a valid map its copy, INVALID otherwise. */
function optionalMap(o: Record<string, unknown>, key: string): Field<Record<string, string | null>> {
  const v = optional(o, key, isPlainObject);
  if (v === undefined || v === NULL || v === INVALID) return v;
  return stringMap(v) ?? INVALID;
}

function optionalVector(o: Record<string, unknown>): Field<DeletionVectorDescriptor> {
  const v = o.deletionVector;
  if (v === undefined) return 'deletionVector' in o ? INVALID : undefined;
  if (v === null) return NULL;
  return deletionVector(v) ?? INVALID;
}

const set = <T>(out: Record<string, unknown>, key: string, v: Field<T>): void => {
  if (v !== undefined && v !== NULL) out[key] = v;
};

/** An add action's fields (PROTOCOL.md "Add File and Remove File"), or undefined to let zod decide. */
export function fastAdd(v: unknown): Record<string, unknown> | undefined {
  if (!isPlainObject(v)) return undefined;
  const { path, size, modificationTime, dataChange } = v;
  if (typeof path !== 'string' || path.length < 1 || !isLong(size) || !isLong(modificationTime) || typeof dataChange !== 'boolean')
    return undefined;
  const partitionValues = optionalMap(v, 'partitionValues');
  const stats = optional(v, 'stats', isString);
  const tags = optionalMap(v, 'tags');
  const dv = optionalVector(v);
  if (partitionValues === INVALID || stats === INVALID || tags === INVALID || dv === INVALID) return undefined;
  const out: Record<string, unknown> = {
    path,
    partitionValues: partitionValues === undefined || partitionValues === NULL ? {} : partitionValues,
    size,
    modificationTime,
    dataChange,
  };
  set(out, 'stats', stats);
  set(out, 'tags', tags);
  set(out, 'deletionVector', dv);
  return out;
}

/** A remove action's fields, or undefined to let zod decide. */
export function fastRemove(v: unknown): Record<string, unknown> | undefined {
  if (!isPlainObject(v)) return undefined;
  const { path, dataChange } = v;
  if (typeof path !== 'string' || path.length < 1 || typeof dataChange !== 'boolean') return undefined;
  const deletionTimestamp = optional(v, 'deletionTimestamp', isLong);
  const extendedFileMetadata = optional(v, 'extendedFileMetadata', isBoolean);
  const partitionValues = optionalMap(v, 'partitionValues');
  const size = optional(v, 'size', isLong);
  const stats = optional(v, 'stats', isString);
  const tags = optionalMap(v, 'tags');
  const dv = optionalVector(v);
  const fields = [deletionTimestamp, extendedFileMetadata, partitionValues, size, stats, tags, dv];
  if (fields.includes(INVALID)) return undefined;
  const out: Record<string, unknown> = { path };
  set(out, 'deletionTimestamp', deletionTimestamp);
  out.dataChange = dataChange;
  set(out, 'extendedFileMetadata', extendedFileMetadata);
  set(out, 'partitionValues', partitionValues);
  set(out, 'size', size);
  set(out, 'stats', stats);
  set(out, 'tags', tags);
  set(out, 'deletionVector', dv);
  return out;
}

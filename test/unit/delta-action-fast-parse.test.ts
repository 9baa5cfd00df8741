import { isDeepStrictEqual } from 'node:util';
import { describe, expect, it } from 'vitest';
import { fastAdd, fastRemove } from '../../src/lake/delta/action-fast-parse.ts';
import { ActionParseError, parseAction, parseWithSchema } from '../../src/lake/delta/actions.ts';

/**
 * The hand-written add/remove check (action-fast-parse.ts) against zod (parseWithSchema), the
 * reference: for every variant, either the fast path declines (undefined) or it gives exactly zod's
 * result, the same keys in the same order; and whatever zod rejects, parseAction rejects with zod's message.
 */

const dv = { storageType: 'u', pathOrInlineDv: 'ab^-aqEH.-t@S}K{vb[*k^', offset: 1, sizeInBytes: 34, cardinality: 3 };
const addBase = {
  path: 'part-00000-a%20b.parquet',
  partitionValues: { day: '2026-12-07', region: null },
  size: 1024,
  modificationTime: 1765000000000,
  dataChange: true,
  stats: '{"numRecords":10}',
  tags: { INSERTION_TIME: '1765000000000000' },
  deletionVector: dv,
};
const removeBase = {
  path: 'part-00000.parquet',
  deletionTimestamp: 1765000000000,
  dataChange: true,
  extendedFileMetadata: true,
  partitionValues: {},
  size: 1024,
  stats: '{"numRecords":10}',
  tags: { a: 'b' },
  deletionVector: dv,
};

/** Each field replaced by each of these in turn (undefined: the key deleted), and a few whole-object oddities. */
const fieldValues: unknown[] = [
  undefined,
  null,
  '',
  'x',
  0,
  -1,
  1.5,
  2 ** 60,
  Number.NaN,
  true,
  [],
  {},
  { k: 'v' },
  { k: null },
  { k: 1 },
  ['a'],
  new Date(0),
];
const dvVariants: unknown[] = [
  dv,
  { ...dv, offset: undefined },
  { ...dv, offset: null },
  { storageType: 'i', pathOrInlineDv: 'wi5b=000010000siXQKl0rr91000f55c8Xg0@@D72lkbi5=-{L', sizeInBytes: 40, cardinality: 6 },
  { ...dv, storageType: 'x' },
  { ...dv, pathOrInlineDv: '' },
  { ...dv, offset: -1 },
  { ...dv, sizeInBytes: 1.5 },
  { ...dv, cardinality: null },
  { ...dv, extra: 'ignored' },
];

function variants(base: Record<string, unknown>): unknown[] {
  const out: unknown[] = [base, { ...base, unknownField: 1 }, null, [], 'add', 1];
  for (const key of Object.keys(base)) {
    for (const v of key === 'deletionVector' ? [...fieldValues, ...dvVariants] : fieldValues) {
      const copy: Record<string, unknown> = { ...base };
      if (v === undefined) delete copy[key];
      else copy[key] = v;
      out.push(copy);
    }
    const present: Record<string, unknown> = { ...base, [key]: undefined };
    out.push(present);
  }
  const withPrototype = Object.create({ inherited: 'x' }) as Record<string, unknown>;
  withPrototype.k = 'v';
  out.push({ ...base, partitionValues: withPrototype });
  out.push(JSON.parse(`{"path":"p","size":1,"modificationTime":1,"dataChange":true,"partitionValues":{"__proto__":"x"}}`));
  return out;
}

function zod(kind: 'add' | 'remove', body: unknown): { ok: unknown } | { error: string } {
  try {
    return { ok: parseWithSchema(kind, body, 7) };
  } catch (e) {
    if (!(e instanceof ActionParseError)) throw e;
    return { error: e.message };
  }
}

const keysDeep = (v: unknown): unknown =>
  v && typeof v === 'object' && !Array.isArray(v) ? Object.entries(v as Record<string, unknown>).map(([k, x]) => [k, keysDeep(x)]) : v;

describe('add and remove actions without zod (action-fast-parse.ts)', () => {
  for (const [kind, base, fast] of [
    ['add', addBase, fastAdd],
    ['remove', removeBase, fastRemove],
  ] as const) {
    it(`${kind}: accepts only what zod accepts, and gives zod's object, keys in zod's order`, () => {
      let accepted = 0;
      let declined = 0;
      for (const body of variants(base)) {
        const reference = zod(kind, body);
        const quick = fast(body);
        if (quick === undefined) declined++;
        else {
          accepted++;
          expect('ok' in reference, `zod rejects what the fast path accepts: ${JSON.stringify(body)}`).toBe(true);
          const want = (reference as { ok: Record<string, unknown> }).ok[kind];
          expect(isDeepStrictEqual(quick, want), `${JSON.stringify(body)}: ${JSON.stringify(quick)} vs ${JSON.stringify(want)}`).toBe(true);
          expect(keysDeep(quick)).toStrictEqual(keysDeep(want));
        }
        // parseAction (fast path first) agrees with zod: the same action, or zod's error message
        // (a null action is no action to parseAction: it says so before either parser runs).
        if (body === null) continue;
        if ('ok' in reference) expect(parseAction({ [kind]: body }, 7)).toStrictEqual(reference.ok);
        else expect(() => parseAction({ [kind]: body }, 7)).toThrow(reference.error);
      }
      // The variants exercise both ways: the fast path takes the valid ones and leaves the rest to zod.
      expect(accepted).toBeGreaterThan(20);
      expect(declined).toBeGreaterThan(20);
    });
  }

  it('takes the actions Tide writes, as they come back from JSON', () => {
    for (const body of [addBase, removeBase, { ...addBase, deletionVector: { ...dv, offset: null } }]) {
      const json = JSON.parse(JSON.stringify(body)) as unknown;
      expect(body === removeBase ? fastRemove(json) : fastAdd(json)).toBeDefined();
    }
  });
});

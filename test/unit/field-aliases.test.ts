import { describe, expect, it } from 'vitest';
import { renamedColumns } from '../../src/events/field-aliases.ts';

type F = { name: string; type: unknown; 'tide.renamed_from'?: string[] };
const envelope = (fields: F[]) => ({
  type: 'record',
  name: 'Envelope',
  fields: [{ name: 'after', type: ['null', { type: 'record', name: 'Value', fields }] }],
});
const f = (name: string, type: unknown = ['null', 'string'], from?: string[]): F => ({
  name,
  type,
  ...(from ? { 'tide.renamed_from': from } : {}),
});

describe('renamed columns from two value schemas (positional: same place, same type, old name gone, new name new)', () => {
  it('finds a rename and keeps earlier names across renames', () => {
    expect(renamedColumns(envelope([f('id', 'int'), f('nick')]), envelope([f('id', 'int'), f('handle')]))).toEqual(
      new Map([['handle', ['nick']]]),
    );
    expect(renamedColumns(envelope([f('id', 'int'), f('handle', undefined, ['nick'])]), envelope([f('id', 'int'), f('alias')]))).toEqual(
      new Map([['alias', ['handle', 'nick']]]),
    );
    // An unchanged column keeps its earlier names; a rename together with an added column (appended) is still seen.
    expect(
      renamedColumns(envelope([f('id', 'int'), f('handle', undefined, ['nick'])]), envelope([f('id', 'int'), f('handle'), f('extra')])),
    ).toEqual(new Map([['handle', ['nick']]]));
    expect(renamedColumns(envelope([f('a'), f('b')]), envelope([f('a'), f('c'), f('d')]))).toEqual(new Map([['c', ['b']]]));
  });

  it('is not a rename: another type, a drop that shifts positions, a first schema, replaying older WAL', () => {
    expect(renamedColumns(envelope([f('id', 'int'), f('n', ['null', 'int'])]), envelope([f('id', 'int'), f('m')])).size).toBe(0);
    expect(renamedColumns(envelope([f('a'), f('b'), f('c')]), envelope([f('a'), f('d')])).size).toBe(0);
    expect(renamedColumns(undefined, envelope([f('a')])).size).toBe(0);
    // The registry already has handle (renamed from nick); the restart replays WAL from before the rename.
    expect(renamedColumns(envelope([f('id', 'int'), f('handle', undefined, ['nick'])]), envelope([f('id', 'int'), f('nick')])).size).toBe(
      0,
    );
  });
});

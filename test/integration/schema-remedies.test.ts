import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { detectRegistry, subjectLevel } from '../../src/events/registry-compatibility.ts';
import { HttpSchemaRegistry } from '../../src/events/schema-registry.ts';
import { startCli } from '../support/cli.ts';
import { createTestDatabase } from '../support/db.ts';
import { consumeUntil } from '../support/kafka.ts';
import { dropSlot, sourceConfig, startSource, writeConnectorFile, type RunningSource } from '../support/source.ts';

/**
 * Issue 11 item 10: every remedy the schema pause offers, end to end on the stack's real registry
 * (Apicurio 3, Confluent API at /apis/ccompat/v7, global rule BACKWARD).
 */
type Env = { op: string; after: Record<string, unknown> | null };
const registryUrl = process.env.SCHEMA_REGISTRY_URL!;
const JSON_TYPE = { 'content-type': 'application/vnd.schemaregistry.v1+json' };

async function tide(args: string[]): Promise<{ code: number | string; output: string }> {
  const cli = startCli(args, process.cwd());
  const code = await cli.exited;
  return { code, output: cli.output() };
}

describe('the remedies the schema pause offers work on the stack registry', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let sql: pg.Client;
  let file: ReturnType<typeof sourceConfig>;
  let path: string;
  let running: RunningSource | undefined;
  const stateDir = mkdtempSync(join(tmpdir(), 'tide-remedy-'));
  const slots: string[] = [];
  const topic = () => `${file.config['topic.prefix']}.public.evolve`;

  async function pauses(): Promise<string> {
    expect(await running!.done).toBe('paused');
    const error = running!.connector.lastError ?? '';
    running = undefined;
    return error;
  }

  beforeAll(async () => {
    db = await createTestDatabase('schema_remedies');
    sql = new pg.Client({ connectionString: db.url });
    await sql.connect();
    await sql.query('CREATE TABLE evolve (id int PRIMARY KEY, name text NOT NULL)');
    await sql.query(`INSERT INTO evolve VALUES (1, 'one')`);
    file = sourceConfig(db.url, 'remedy', { 'table.include.list': 'public\\.evolve' });
    slots.push(file.config['slot.name']);
    path = writeConnectorFile(stateDir, file);
    running = await startSource(file, stateDir);
    expect(running.connector.state).toBe('streaming');
    await consumeUntil([topic()], (es) => es.length >= 1);
  });

  afterAll(async () => {
    await running?.stop().catch(() => undefined);
    for (const s of slots) await dropSlot(db.url, s);
    await sql?.end();
    await db?.drop();
  });

  it('1: `tide source schema allow` lets an incompatible type change through (the PUT /config NONE the old message offered does not, on Apicurio), `restore` returns the subject to the default', async () => {
    await sql.query('ALTER TABLE evolve ALTER COLUMN name TYPE integer USING length(name)');
    await sql.query(`INSERT INTO evolve VALUES (2, 42)`);
    const error = await pauses();
    expect(error).toContain(`tide source schema allow <connector-file> public.evolve`);
    const subject = `${topic()}-value`;

    // What the old message offered: Apicurio answers NONE, yet deletes the subject's rule and keeps checking under the global BACKWARD.
    const put = await fetch(`${registryUrl}/config/${subject}`, {
      method: 'PUT',
      headers: JSON_TYPE,
      body: JSON.stringify({ compatibility: 'NONE' }),
    });
    expect(JSON.stringify(await put.json())).toContain('"NONE"');
    const again = await startSource(file, stateDir);
    expect(await again.done).toBe('paused');

    const allowed = await tide(['source', 'schema', 'allow', path, 'public.evolve']);
    expect(allowed.output).toContain(`${subject} (Apicurio Registry 3.`);
    expect(allowed.output).toContain('compatibility NONE, was the registry default (BACKWARD)');
    expect(allowed.code).toBe(0);
    const registry = new HttpSchemaRegistry(registryUrl);
    const kind = await detectRegistry(registry);
    expect(kind.kind).toBe('apicurio');
    expect(await subjectLevel(registry, kind, subject)).toBe('NONE');

    running = await startSource(file, stateDir);
    expect(running.connector.state).toBe('streaming');
    const events = await consumeUntil([topic()], (es) => es.some((e) => (e.value as Env | null)?.after?.id === 2));
    expect(events.map((e) => (e.value as Env | null)?.after).find((a) => a?.id === 2)).toEqual({ id: 2, name: 42 });

    const restored = await tide(['source', 'schema', 'restore', path, 'public.evolve']);
    expect(restored.code).toBe(0);
    expect(restored.output).toContain(`${subject} (Apicurio Registry 3.`);
    expect(await subjectLevel(registry, kind, subject)).toBeUndefined();
    // And the default holds again: the incompatible direction is refused.
    const check = await fetch(`${registryUrl}/compatibility/subjects/${subject}/versions/latest`, {
      method: 'POST',
      headers: JSON_TYPE,
      body: JSON.stringify({ schema: JSON.stringify({ type: 'record', name: 'X', fields: [{ name: 'a', type: 'int' }] }) }),
    });
    expect(((await check.json()) as { is_compatible: boolean }).is_compatible).toBe(false);
  });

  it('2: a column added NOT NULL with an expression default no longer pauses: only primary-key columns are required in the schema (item 4)', async () => {
    await sql.query('ALTER TABLE evolve ADD COLUMN qty int NOT NULL DEFAULT (1 + 1)');
    await sql.query(`INSERT INTO evolve VALUES (3, 3, 5)`);
    const events = await consumeUntil([topic()], (es) => es.some((e) => (e.value as Env | null)?.after?.id === 3));
    expect(events.map((e) => (e.value as Env | null)?.after).find((a) => a?.id === 3)).toEqual({ id: 3, name: 3, qty: 5 });
    expect(running!.connector.state).toBe('streaming');
  });

  it('3: a new topic generation (new topic.prefix and slot.name) streams from a snapshot; the old slot is dropped with tide slots drop', async () => {
    await sql.query('ALTER TABLE evolve ALTER COLUMN name TYPE text');
    await sql.query(`INSERT INTO evolve VALUES (4, 'four', 1)`);
    const error = await pauses();
    expect(error).toContain('set a new topic.prefix and slot.name');
    const old = file;
    file = sourceConfig(db.url, 'remedy2', { 'table.include.list': 'public\\.evolve' });
    slots.push(file.config['slot.name']);
    running = await startSource(file, mkdtempSync(join(tmpdir(), 'tide-remedy2-')));
    expect(running.connector.state).toBe('streaming');
    const events = await consumeUntil([topic()], (es) => es.length >= 4);
    expect(events.map((e) => (e.value as Env).after).sort((a, b) => Number(a!.id) - Number(b!.id))).toEqual([
      { id: 1, name: '3', qty: 2 },
      { id: 2, name: '42', qty: 2 },
      { id: 3, name: '3', qty: 5 },
      { id: 4, name: 'four', qty: 1 },
    ]);
    const dropped = await tide(['slots', 'drop', old.config['slot.name'], '--yes', '--url', db.url]);
    expect(dropped.code, dropped.output).toBe(0);
    const { rowCount } = await sql.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [old.config['slot.name']]);
    expect(rowCount).toBe(0);
  });
});

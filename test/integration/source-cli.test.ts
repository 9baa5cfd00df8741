import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { createTestDatabase } from '../support/db.ts';
import { waitFor } from '../support/kafka.ts';
import { dropSlot, sourceConfig, unconfirmedMessages, writeConnectorFile } from '../support/source.ts';

const run = promisify(execFile);
const BIN = resolve('bin/tide.js');

describe('tide source plan | start | status', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let sql: pg.Client;
  let file: ReturnType<typeof sourceConfig>;
  let path: string;
  const dir = mkdtempSync(join(tmpdir(), 'tide-cli-'));
  const tide = (...args: string[]) => run(process.execPath, [BIN, ...args], { cwd: dir });

  beforeAll(async () => {
    db = await createTestDatabase('source_cli');
    sql = new pg.Client({ connectionString: db.url });
    await sql.connect();
    file = sourceConfig(db.url, 'cli', {
      'table.include.list': 'public\\.(orders|order_items)',
      // The running source judges its own slot by these (a warning at any retained WAL, so the test sees one).
      'slot.retained.wal.warning': '0B',
      'slot.watch.interval.ms': 1000,
    });
    path = writeConnectorFile(dir, file);
  });
  afterAll(async () => {
    await sql?.end();
    if (file) await dropSlot(db.url, file.config['slot.name']);
    await db?.drop();
  });

  it('plan prints the SQL, topics and subjects, and changes nothing', async () => {
    const { stdout } = await tide('source', 'plan', path);
    const slot = file.config['slot.name'];
    const prefix = file.config['topic.prefix'];
    expect(stdout).toContain(
      `CREATE PUBLICATION "${file.config['publication.name']}" FOR TABLE "public"."order_items", "public"."orders";`,
    );
    expect(stdout).toContain(`CREATE_REPLICATION_SLOT "${slot}" LOGICAL pgoutput EXPORT_SNAPSHOT;`);
    expect(stdout).toContain(`${prefix}.public.orders  partitions=3`);
    expect(stdout).toContain(`${prefix}.public.orders-value`);
    expect(stdout).toContain(`${prefix}.transaction`);
    expect(stdout).toMatch(/public\.orders: transaction_no, attributes .*REPLICA IDENTITY FULL/);
    expect(stdout).toMatch(/public\.order_items: product_no {2}\(to avoid/); // numeric (storage main) and key columns are not listed
    expect((await sql.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [slot])).rowCount).toBe(0);
    expect((await sql.query('SELECT 1 FROM pg_publication WHERE pubname = $1', [file.config['publication.name']])).rowCount).toBe(0);
  });

  it('start runs in the foreground, status reports it, and SIGTERM stops it cleanly with the LSN confirmed', async () => {
    const log = openSync(join(dir, 'source.log'), 'a');
    const child = spawn(process.execPath, [BIN, 'source', 'start', path], { cwd: dir, stdio: ['ignore', log, log] });
    const status = async () => JSON.parse((await tide('source', 'status', path, '--json')).stdout) as Record<string, unknown>;
    await waitFor(async () => (await status()).state === 'streaming', 'status to say streaming', 60_000);
    await sql.query(`INSERT INTO products VALUES ('X1', 'x', 1.00, now())`);
    await sql.query(`INSERT INTO orders (transaction_no, ordered_at) VALUES ('CLI1', now())`);
    const running = await status();
    expect(running).toMatchObject({ connector: file.name, slot: file.config['slot.name'], slotActive: true });
    expect(typeof running.lagBytes).toBe('number');

    await waitFor(async () => Number((await status()).eventsTotal) >= 1, 'the insert to be published', 30_000);
    child.kill('SIGTERM');
    const code = await new Promise<number | null>((r) => child.once('exit', r));
    expect(code).toBe(0);
    const stopped = await status();
    expect(stopped.state).toBe('stopped (not running)');
    expect(stopped.slotActive).toBe(false);
    // The clean stop flushed and confirmed the insert: the slot has nothing of it left to send.
    expect(await unconfirmedMessages(db.url, file.config['slot.name'], file.config['publication.name'])).not.toContain('I');
    // Its slot watch used the connector file's threshold.
    const lines = readFileSync(join(dir, 'source.log'), 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.find((l) => l.msg === 'replication slot over threshold')).toMatchObject({
      level: 40,
      connector: file.name,
      slot: file.config['slot.name'],
      slotLevel: 'warning',
      problems: [expect.stringMatching(/^retained WAL .* is at or over the warning threshold 0 B$/)],
    });
  });
});

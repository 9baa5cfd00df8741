import { writeConnectorFileAt } from './connector-file.ts';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { parseConnectorFile, sourceConfigSchema, type SourceConfig } from '../../src/config/source-config.ts';
import { sourceObserver } from '../../src/ops/source-metrics.ts';
import { SourceConnector } from '../../src/source/connector.ts';
import type { SourceState } from '../../src/source/source-state.ts';
import { waitFor } from './kafka.ts';

/** A source connector for one test database, with names derived from the test's label. */
export function sourceConfig(
  dbUrl: string,
  label: string,
  extra: Record<string, unknown> = {},
): { name: string; config: SourceConfig; source: string } {
  const u = new URL(dbUrl);
  const id = `${label}_${Date.now().toString(36)}`.toLowerCase().replace(/[^a-z0-9_]/g, '_');
  return parseConnectorFile(
    {
      name: `test-${id}`,
      config: {
        'database.hostname': u.hostname,
        'database.port': u.port,
        'database.user': decodeURIComponent(u.username),
        'database.password': decodeURIComponent(u.password),
        'database.dbname': u.pathname.slice(1),
        'database.sslmode': 'disable',
        'slot.name': `t_${id}`,
        'publication.name': `t_${id}`,
        'topic.prefix': `t_${id}`,
        'topic.partitions': 3,
        'heartbeat.interval.ms': 1000,
        'kafka.bootstrap.servers': process.env.KAFKA_BROKERS ?? '127.0.0.1:59092',
        'schema.registry.url': process.env.SCHEMA_REGISTRY_URL ?? 'http://127.0.0.1:58081/apis/ccompat/v7',
        ...extra,
      },
    },
    sourceConfigSchema,
    `test:${label}`,
  );
}

export interface RunningSource {
  connector: SourceConnector;
  stateDir: string;
  done: Promise<SourceState>;
  stop: () => Promise<SourceState>;
}

/** Start the connector in this process and wait until it streams (or pauses/fails). */
export async function startSource(
  file: ReturnType<typeof sourceConfig>,
  stateDir = mkdtempSync(join(tmpdir(), 'tide-src-')),
): Promise<RunningSource> {
  const abort = new AbortController();
  const connector = new SourceConnector(file, { stateDir, observer: sourceObserver(file.name) });
  const done = connector.run(abort.signal);
  done.catch(() => undefined);
  await Promise.race([
    waitFor(() => connector.state !== 'starting' && connector.state !== 'snapshotting', 'the source to stream', 90_000),
    done,
  ]);
  return {
    connector,
    stateDir,
    done,
    stop: async () => {
      abort.abort();
      return done;
    },
  };
}

export async function dropSlot(dbUrl: string, slot: string): Promise<void> {
  const c = new pg.Client({ connectionString: dbUrl });
  await c.connect();
  await c
    .query('SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active', [slot])
    .catch(() => undefined);
  await c.end();
}

/** Write the connector as a JSON file (Kafka Connect shape), for runs through the CLI. */
export function writeConnectorFile(dir: string, file: ReturnType<typeof sourceConfig>): string {
  return writeConnectorFileAt(join(dir, `${file.name}.json`), file, 2);
}

/**
 * The pgoutput messages an inactive slot would still send (B, R, I, U, D, C…): exactly what the
 * connector has not confirmed. Cluster-wide WAL positions can't tell that, other databases move them.
 */
export async function unconfirmedMessages(dbUrl: string, slot: string, publication: string): Promise<string[]> {
  const c = new pg.Client({ connectionString: dbUrl });
  await c.connect();
  try {
    // The connector has closed its connection, but the walsender releases the slot when its backend
    // exits, a moment later; peeking an active slot is an error.
    const deadline = Date.now() + 10_000;
    while ((await c.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND active', [slot])).rowCount) {
      if (Date.now() > deadline) throw new Error(`slot ${slot} is still active 10 s after the connector stopped`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const { rows } = await c.query<{ data: Buffer }>(
      `SELECT data FROM pg_logical_slot_peek_binary_changes($1, NULL, NULL, 'proto_version', '1', 'publication_names', $2)`,
      [slot, publication],
    );
    return rows.map((r) => String.fromCharCode(r.data[0]!));
  } finally {
    await c.end();
  }
}

/** Wait until the slot has confirmed everything committed so far: every change is then in Kafka (heartbeats move it on). */
export async function waitForSourceCaughtUp(sql: pg.Client, slot: string, timeoutMs = 120_000): Promise<void> {
  const target = (await sql.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0]!.lsn;
  await waitFor(
    async () =>
      (await sql.query(`SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND confirmed_flush_lsn >= $2::pg_lsn`, [slot, target]))
        .rowCount === 1,
    'the source to confirm every change',
    timeoutMs,
  );
}

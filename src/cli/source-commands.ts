import { join } from 'node:path';
import type { Command } from 'commander';
import { loadSourceConfig } from '../config/source-config.ts';
import { Lifecycle } from '../lifecycle.ts';
import { registerConfigSecrets, registerEnvironmentSecrets } from '../log.ts';
import { invalidTopicName, topicNameProblem } from '../events/kafka-errors.ts';
import { ConnectionHealth } from '../ops/connection-health.ts';
import { allReady, DEFAULT_HTTP_HOST, HTTP_HOST_ENV, HTTP_PORT_ENV, resolveHttpPort, startHttpServer } from '../ops/http-server.ts';
import { sourceObserver, sourceReadiness } from '../ops/source-metrics.ts';
import { readTables } from '../source/catalog.ts';
import { SourceConnector } from '../source/connector.ts';
import { connectPg } from '../source/pg-connection.ts';
import { checkPrerequisites, leastPrivilegeSql } from '../source/prerequisites.ts';
import { OffsetStore } from '../source/offset-store.ts';
import { buildPlan } from '../source/plan.ts';
import { readStatus } from '../source/status-file.ts';
import { isPidAlive } from '../stack/process.ts';
import { registerSnapshotCommand } from './snapshot-command.ts';
import { superviseSource } from './source-ops.ts';

const STATE_DIR = '.tide';

export function registerSourceCommands(program: Command): void {
  const source = program.command('source').description('the source connector: Postgres WAL (pgoutput) to Kafka as Avro');

  source
    .command('start <connector.json>')
    .description('run the connector in the foreground; SIGTERM/SIGINT flushes, confirms the LSN and exits')
    .option(
      '--http-port <port>',
      `port of the metrics and health server: /metrics, /healthz, /readyz (env ${HTTP_PORT_ENV}; 0 = any free port)`,
    )
    .option('--http-host <address>', `address the metrics and health server listens on (env ${HTTP_HOST_ENV})`)
    .action(async (path: string, opts: { httpPort?: string; httpHost?: string }) => {
      registerEnvironmentSecrets(process.env);
      const file = loadSourceConfig(path);
      registerConfigSecrets(file.config);
      const health = new ConnectionHealth(file.name);
      const connector = new SourceConnector(file, { stateDir: STATE_DIR, monitor: health, observer: sourceObserver(file.name) });
      const lifecycle = new Lifecycle().handleSignals();
      try {
        lifecycle.onClose('connection metrics', () => health.close());
        const supervision = superviseSource(connector, file, lifecycle);
        const server = await startHttpServer({
          host: opts.httpHost ?? process.env[HTTP_HOST_ENV] ?? DEFAULT_HTTP_HOST,
          port: resolveHttpPort(opts.httpPort),
          ready: allReady([health.readiness(), sourceReadiness({ name: file.name, status: () => connector.status() })]),
          lifecycle,
        });
        console.log(`source ${file.name}: metrics ${server.url}metrics, health ${server.url}healthz, readiness ${server.url}readyz`);
        // Closed first on a signal: the connector flushes, confirms and closes before the slot watch and server go.
        const state = await lifecycle.track('source connector', connector.run(lifecycle.signal));
        if (state === 'paused') process.exitCode = 3;
        const failure = supervision.failure();
        if (failure) process.stderr.write(`tide: ${failure.message}\n`);
      } finally {
        await lifecycle.shutdown();
      }
    });

  source
    .command('plan <connector.json>')
    .description('print the SQL, topics and subjects `start` would create, and what to fix first; changes nothing')
    .action(async (file: string) => {
      const { name, config } = loadSourceConfig(file);
      const client = await connectPg(config);
      try {
        const tables = await readTables(client);
        const pub = await client.query<{ puballtables: boolean }>('SELECT puballtables FROM pg_publication WHERE pubname = $1', [
          config['publication.name'],
        ]);
        const pubTables = await client.query<{ q: string }>(
          `SELECT schemaname || '.' || tablename AS q FROM pg_publication_tables WHERE pubname = $1`,
          [config['publication.name']],
        );
        const slot = await client.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [config['slot.name']]);
        const offsets = new OffsetStore(config['offset.storage.file.filename'] ?? join(STATE_DIR, `${name}.offsets.json`)).read();
        const state = {
          tables,
          publication: {
            exists: (pub.rowCount ?? 0) > 0,
            allTables: pub.rows[0]?.puballtables ?? false,
            tables: pubTables.rows.map((r) => r.q),
          },
          slotExists: (slot.rowCount ?? 0) > 0,
          offsets,
        };
        const plan = buildPlan(config, state);
        const checks = await checkPrerequisites(client, config, plan, state);
        const owners = (
          await client.query<{ owner: string }>(
            'SELECT DISTINCT pg_get_userbyid(relowner) AS owner FROM pg_class WHERE oid = ANY($1::oid[]) ORDER BY 1',
            [plan.captured.map((t) => t.oid)],
          )
        ).rows.map((r) => r.owner);
        const out: string[] = [`# tide source plan: ${name} (dry run, nothing was changed)`, ''];
        out.push(`-- prerequisites of start, checked as ${config['database.user']} (see README "Prerequisites checklist")`);
        for (const c of checks)
          out.push(
            `--   [${c.ok ? 'ok' : c.blocking ? 'MISSING' : 'warn'}] ${c.name}: ${c.detail}${c.ok ? '' : `\n--          fix: ${c.fix}`}`,
          );
        out.push('');
        out.push(`-- captured tables (${plan.captured.length}): ${plan.captured.map((t) => t.qualified).join(', ') || 'none'}`);
        if (plan.missingPrimaryKey.length)
          out.push(`-- BLOCKER: no primary key on ${plan.missingPrimaryKey.join(', ')}: add one or exclude the table`);
        const badTopics = plan.topics.flatMap((t) =>
          topicNameProblem(t.topic) ? [invalidTopicName(t.topic, topicNameProblem(t.topic)!)] : [],
        );
        for (const err of badTopics) out.push(`-- BLOCKER: ${err.message}`);
        out.push('', '-- SQL');
        if (plan.statements.length === 0) out.push('-- (none: publication and slot are in place)');
        for (const s of plan.statements) out.push(`-- ${s.why}${s.replication ? ' (replication protocol)' : ''}`, `${s.sql};`);
        out.push('', `-- initial snapshot: ${plan.snapshot ? 'yes' : 'no'} (snapshot.mode=${config['snapshot.mode']})`);
        out.push(
          `-- incremental snapshots at the next start: ${plan.incremental.length ? plan.incremental.map((i) => `${i.table} (${i.why})`).join(', ') : 'none'}`,
        );
        out.push(
          '',
          '-- replica identity: in these tables an update that does not touch a TOAST-able column carries no value for it when',
          '-- the value is stored out of line (over ~2 kB); the event lists it in unchanged_toast. Start warns only for tables that hold such values.',
        );
        if (plan.toastAffected.length === 0) out.push('-- (none)');
        for (const t of plan.toastAffected) out.push(`-- ${t.table}: ${t.columns.join(', ')}  (to avoid: ${t.fix};)`);
        out.push('', '-- Kafka topics (created if missing)');
        for (const t of plan.topics)
          out.push(`--   ${t.topic}  partitions=${t.partitions} replication.factor=${t.replicationFactor ?? 'cluster default'}`);
        out.push('', '-- Schema Registry subjects');
        for (const s of plan.subjects) out.push(`--   ${s}`);
        out.push('', ...leastPrivilegeSql(config, plan, owners));
        console.log(out.join('\n'));
        if (plan.missingPrimaryKey.length || badTopics.length || checks.some((c) => !c.ok && c.blocking)) process.exitCode = 1;
      } finally {
        await client.end();
      }
    });

  registerSnapshotCommand(source);

  source
    .command('status <connector.json>')
    .description('state, slot, confirmed LSN, lag and events/s of a running connector')
    .option('--json', 'print JSON')
    .action(async (file: string, opts: { json?: boolean }) => {
      const { name, config } = loadSourceConfig(file);
      const status = readStatus(join(STATE_DIR, `${name}.status.json`));
      const running = status !== undefined && isPidAlive(status.pid);
      const client = await connectPg(config);
      const slot = await client
        .query<{ active: boolean; confirmed: string | null; lag: string | null; retained: string | null }>(
          `SELECT active, confirmed_flush_lsn::text AS confirmed, pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint::text AS lag,
                  pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint::text AS retained
             FROM pg_replication_slots WHERE slot_name = $1`,
          [config['slot.name']],
        )
        .finally(() => client.end());
      const s = slot.rows[0];
      const report = {
        connector: name,
        state: running
          ? status.state
          : status
            ? `${status.state === 'paused' || status.state === 'failed' ? status.state : 'stopped'} (not running)`
            : 'never started',
        slot: config['slot.name'],
        slotActive: s?.active ?? false,
        confirmedLsn: s?.confirmed ?? null,
        lagBytes: s?.lag === null || s === undefined ? null : Number(s.lag),
        retainedWalBytes: s?.retained === null || s === undefined ? null : Number(s.retained),
        eventsPerSecond: running ? status.eventsPerSecond : 0,
        eventsTotal: status?.eventsTotal ?? 0,
        snapshot: status?.snapshot,
        incrementalSnapshot: status?.incrementalSnapshot,
        error: status?.error,
      };
      if (opts.json) console.log(JSON.stringify(report, null, 2));
      else
        for (const [k, v] of Object.entries(report))
          if (v !== undefined) console.log(`${k.padEnd(17)} ${typeof v === 'object' ? JSON.stringify(v) : v}`);
    });
}

import type pg from 'pg';
import type { SourceConfig } from '../config/source-config.ts';
import { ConnectionError, TideError } from '../errors.ts';
import { quoteIdent, type DatabaseState, type SourcePlan } from './plan.ts';
import { findIdentityGaps, identityCheck } from './replica-identity.ts';

/**
 * What `tide source start` needs from the server and the role it logs in as, checked as data: `tide
 * source plan` prints every check (so a DBA learns it before the first start), and `start` refuses
 * with the failing ones, each naming the right and the SQL that grants it. The same module writes the
 * least-privilege role for the chosen publication.autocreate.mode.
 *
 * What each right is for (PostgreSQL 15):
 * - REPLICATION (or superuser): the replication connection, CREATE_REPLICATION_SLOT, START_REPLICATION.
 * - A free replication slot (max_replication_slots) for a new slot, and a free WAL sender (max_wal_senders).
 * - USAGE on the schema and SELECT on each captured table: the initial snapshot (pgoutput itself needs none).
 * - Heartbeats, incremental snapshots' watermarks and signals call pg_logical_emit_message, which every role
 *   may execute unless a DBA revoked it. Incremental snapshots read with the same SELECT right as the initial one.
 * - `filtered`: CREATE PUBLICATION needs CREATE on the database; adding a table to a publication needs
 *   ownership of the table (membership in its owning role), and ALTER PUBLICATION ownership of the
 *   publication. PostgreSQL has no narrower right for it, so least privilege is `disabled` mode with a
 *   publication the DBA creates.
 * - `all_tables`: CREATE PUBLICATION … FOR ALL TABLES needs a superuser.
 */
export interface PrerequisiteCheck {
  /** What is checked, e.g. `REPLICATION attribute`. */
  name: string;
  ok: boolean;
  /** What was found. */
  detail: string;
  /** The SQL or setting that fixes it, when not ok. */
  fix?: string;
  /** Start cannot work without it (a warning otherwise). */
  blocking: boolean;
}

const lit = (s: string) => `'${s.replace(/'/g, "''")}'`;

interface RoleFacts {
  user: string;
  superuser: boolean;
  replication: boolean;
  createOnDb: boolean;
  walLevel: string;
  maxSlots: number;
  slots: { name: string; database: string | null; active: boolean }[];
  maxSenders: number;
  senders: number;
  emitMessage: boolean;
}

async function readFacts(client: pg.ClientBase): Promise<RoleFacts> {
  const { rows } = await client.query<{
    user: string;
    superuser: boolean;
    replication: boolean;
    create_db: boolean;
    wal_level: string;
    max_slots: number;
    max_senders: number;
    senders: number;
    emit: boolean;
  }>(
    `SELECT current_user AS user, r.rolsuper AS superuser,
            r.rolreplication OR r.rolsuper
              OR EXISTS (SELECT 1 FROM pg_roles g WHERE g.rolname = 'rds_replication' AND pg_has_role(current_user, g.oid, 'MEMBER')) AS replication,
            has_database_privilege(current_database(), 'CREATE') AS create_db,
            current_setting('wal_level') AS wal_level,
            current_setting('max_replication_slots')::int AS max_slots,
            current_setting('max_wal_senders')::int AS max_senders,
            (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender')::int AS senders,
            has_function_privilege('pg_logical_emit_message(boolean, text, text)', 'EXECUTE') AS emit
       FROM pg_roles r WHERE r.rolname = current_user`,
  );
  const slots = await client.query<{ name: string; database: string | null; active: boolean }>(
    'SELECT slot_name AS name, database, active FROM pg_replication_slots ORDER BY slot_name',
  );
  const f = rows[0]!;
  return {
    user: f.user,
    superuser: f.superuser,
    replication: f.replication,
    createOnDb: f.create_db,
    walLevel: f.wal_level,
    maxSlots: f.max_slots,
    slots: slots.rows,
    maxSenders: f.max_senders,
    senders: f.senders,
    emitMessage: f.emit,
  };
}

function slotList(slots: RoleFacts['slots']): string {
  return slots.map((s) => `${s.name}${s.database ? ` (${s.database}${s.active ? ', active' : ', inactive'})` : ''}`).join(', ');
}

/** Every check for this connector against the server; `plan` and `state` as buildPlan and readDatabaseState give them. */
export async function checkPrerequisites(
  client: pg.ClientBase,
  config: SourceConfig,
  plan: SourcePlan,
  state: DatabaseState,
): Promise<PrerequisiteCheck[]> {
  const f = await readFacts(client);
  const role = quoteIdent(f.user);
  const checks: PrerequisiteCheck[] = [];
  checks.push({
    name: 'wal_level',
    ok: f.walLevel === 'logical',
    detail: `wal_level=${f.walLevel}`,
    fix: 'ALTER SYSTEM SET wal_level = logical; then restart Postgres (RDS: rds.logical_replication=1; Azure: server parameter wal_level=logical)',
    blocking: true,
  });
  checks.push({
    name: 'REPLICATION attribute',
    ok: f.replication,
    detail: f.superuser ? `${f.user} is a superuser` : f.replication ? `${f.user} may replicate` : `${f.user} lacks REPLICATION`,
    fix: `ALTER ROLE ${role} REPLICATION;  (RDS: GRANT rds_replication TO ${role};)`,
    blocking: true,
  });
  const needSlot = state.slotExists ? 0 : 1;
  checks.push({
    name: 'free replication slot',
    ok: f.maxSlots - f.slots.length >= needSlot,
    detail: `${f.slots.length} of max_replication_slots=${f.maxSlots} in use${state.slotExists ? `; slot ${config['slot.name']} exists` : `; slot ${config['slot.name']} will be created`}${f.slots.length ? `: ${slotList(f.slots)}` : ''}`,
    fix: 'drop a slot nobody uses (SELECT pg_drop_replication_slot(name)) or raise max_replication_slots and restart Postgres',
    blocking: true,
  });
  checks.push({
    name: 'free WAL sender',
    ok: f.maxSenders - f.senders >= 1,
    detail: `${f.senders} of max_wal_senders=${f.maxSenders} in use`,
    fix: 'stop an unused replication client (SELECT pid, application_name FROM pg_stat_replication) or raise max_wal_senders and restart Postgres',
    // Not blocking: the sender of a source that just died may still be counted for a moment; a real lack fails START_REPLICATION clearly.
    blocking: false,
  });

  const oids = plan.captured.map((t) => t.oid);
  const tables = oids.length
    ? (
        await client.query<{
          q: string;
          ident: string;
          owner: string;
          can_select: boolean;
          schema_usage: boolean;
          owns: boolean;
          schema: string;
        }>(
          `SELECT n.nspname || '.' || c.relname AS q, quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS ident,
                  pg_get_userbyid(c.relowner) AS owner, quote_ident(n.nspname) AS schema,
                  has_table_privilege(c.oid, 'SELECT') AS can_select,
                  has_schema_privilege(n.oid, 'USAGE') AS schema_usage,
                  pg_has_role(c.relowner, 'USAGE') AS owns
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.oid = ANY($1::oid[]) ORDER BY 1`,
          [oids],
        )
      ).rows
    : [];
  const noSelect = tables.filter((t) => !t.can_select || !t.schema_usage);
  const schemas = [...new Set(noSelect.filter((t) => !t.schema_usage).map((t) => t.schema))];
  checks.push({
    name: 'SELECT on the captured tables',
    ok: noSelect.length === 0,
    detail: noSelect.length ? `${f.user} cannot read ${noSelect.map((t) => t.q).join(', ')}` : `${tables.length} tables readable`,
    fix: [
      ...schemas.map((s) => `GRANT USAGE ON SCHEMA ${s} TO ${role};`),
      ...(noSelect.some((t) => !t.can_select)
        ? [
            `GRANT SELECT ON ${noSelect
              .filter((t) => !t.can_select)
              .map((t) => t.ident)
              .join(', ')} TO ${role};`,
          ]
        : []),
    ].join(' '),
    // Only the snapshot reads rows: without one, start works, but a later snapshot would not.
    blocking: plan.snapshot,
  });
  checks.push({
    name: 'heartbeats and incremental-snapshot watermarks (pg_logical_emit_message)',
    ok: f.emitMessage,
    detail: f.emitMessage ? 'allowed' : 'EXECUTE was revoked: no heartbeats, and incremental snapshots cannot run',
    fix: `GRANT EXECUTE ON FUNCTION pg_logical_emit_message(boolean, text, text) TO ${role};`,
    blocking: false,
  });

  const mode = config['publication.autocreate.mode'];
  const pubStatements = plan.statements.filter((s) => !s.replication);
  const pub = config['publication.name'];
  if (mode === 'disabled') {
    const missing = state.publication.allTables ? [] : plan.captured.filter((t) => !state.publication.tables.includes(t.qualified));
    checks.push({
      name: `publication ${pub} (made by the DBA: publication.autocreate.mode=disabled)`,
      ok: state.publication.exists && missing.length === 0,
      detail: !state.publication.exists
        ? 'does not exist'
        : missing.length
          ? `lacks ${missing.map((t) => t.qualified).join(', ')}: their changes would not arrive`
          : 'publishes every captured table',
      fix: !state.publication.exists
        ? `CREATE PUBLICATION ${quoteIdent(pub)} FOR TABLE ${tables.map((t) => t.ident).join(', ')};  (as the tables' owner or a superuser)`
        : `ALTER PUBLICATION ${quoteIdent(pub)} ADD TABLE ${tables
            .filter((t) => missing.some((m) => m.qualified === t.q))
            .map((t) => t.ident)
            .join(', ')};`,
      blocking: !state.publication.exists,
    });
  } else if (mode === 'all_tables' && pubStatements.length) {
    checks.push({
      name: 'superuser, to create a publication FOR ALL TABLES',
      ok: f.superuser,
      detail: f.superuser ? `${f.user} is a superuser` : `${f.user} is not a superuser`,
      fix: `have a superuser run: CREATE PUBLICATION ${quoteIdent(pub)} FOR ALL TABLES;  (once; then no right is needed)`,
      blocking: true,
    });
  } else if (mode === 'filtered' && pubStatements.length) {
    const creating = !state.publication.exists;
    const notOwned = tables.filter((t) => !t.owns);
    const owners = [...new Set(notOwned.map((t) => t.owner))];
    const pubOwner = creating
      ? undefined
      : (
          await client.query<{ owns: boolean; owner: string }>(
            `SELECT pg_has_role(pubowner, 'USAGE') AS owns, pg_get_userbyid(pubowner) AS owner FROM pg_publication WHERE pubname = $1`,
            [pub],
          )
        ).rows[0];
    const problems: string[] = [];
    const fixes: string[] = [];
    if (creating && !f.createOnDb) {
      problems.push(`no CREATE on database ${config['database.dbname']}`);
      fixes.push(`GRANT CREATE ON DATABASE ${quoteIdent(config['database.dbname'])} TO ${role};`);
    }
    if (pubOwner && !pubOwner.owns) {
      problems.push(`publication ${pub} is owned by ${pubOwner.owner}`);
      fixes.push(`ALTER PUBLICATION ${quoteIdent(pub)} OWNER TO ${role};`);
    }
    if (notOwned.length) {
      problems.push(`not the owner of ${notOwned.map((t) => t.q).join(', ')} (owned by ${owners.join(', ')})`);
      fixes.push(
        `${owners.map((o) => `GRANT ${quoteIdent(o)} TO ${role};`).join(' ')}  (or let the DBA create the publication: publication.autocreate.mode=disabled)`,
      );
    }
    checks.push({
      name: `rights to ${creating ? 'create' : 'change'} publication ${pub} (publication.autocreate.mode=filtered)`,
      ok: problems.length === 0,
      detail: problems.length ? `${f.user}: ${problems.join('; ')}` : `${f.user} may ${creating ? 'create' : 'change'} it`,
      fix: fixes.join(' '),
      blocking: true,
    });
  }
  checks.push(identityCheck(await findIdentityGaps(client, plan.captured)));
  return checks;
}

/** The start-up refusal: every blocking check that failed, with its fix. */
export class PrerequisiteError extends TideError {
  constructor(
    readonly failed: PrerequisiteCheck[],
    where: string,
  ) {
    super(
      `${where}: the source cannot start: ${failed.length === 1 ? 'a prerequisite is' : `${failed.length} prerequisites are`} missing (tide source plan lists them all):\n` +
        failed.map((c) => `  - ${c.name}: ${c.detail}. Fix: ${c.fix}`).join('\n'),
    );
    this.name = 'PrerequisiteError';
  }
}

/** Throw a PrerequisiteError when a blocking check failed. */
export function requirePrerequisites(checks: PrerequisiteCheck[], where: string): void {
  const failed = checks.filter((c) => !c.ok && c.blocking);
  if (failed.length) throw new PrerequisiteError(failed, where);
}

/**
 * The SQL of a dedicated role with the least rights this connector needs, for a DBA to run as a
 * superuser (or the tables' owner). `tide source plan` prints it.
 */
export function leastPrivilegeSql(config: SourceConfig, plan: SourcePlan, owners: string[] = []): string[] {
  const role = quoteIdent(config['database.user']);
  const db = quoteIdent(config['database.dbname']);
  const pub = quoteIdent(config['publication.name']);
  const tables = plan.captured.map((t) => `${quoteIdent(t.schema)}.${quoteIdent(t.name)}`);
  const schemas = [...new Set(plan.captured.map((t) => quoteIdent(t.schema)))];
  const mode = config['publication.autocreate.mode'];
  const out = [
    `-- A dedicated role with the least rights for publication.autocreate.mode=${mode} (run as a superuser).`,
    `CREATE ROLE ${role} LOGIN REPLICATION PASSWORD ${lit('<choose one; give it to Tide as database.password>')};`,
    `-- On RDS / Aurora instead of REPLICATION: GRANT rds_replication TO ${role};`,
    `GRANT CONNECT ON DATABASE ${db} TO ${role};`,
    ...(schemas.length ? [`GRANT USAGE ON SCHEMA ${schemas.join(', ')} TO ${role};`] : []),
    ...(tables.length ? [`-- the initial snapshot reads the captured tables:`, `GRANT SELECT ON ${tables.join(', ')} TO ${role};`] : []),
    `-- heartbeats and the watermarks of incremental snapshots call pg_logical_emit_message, which every role may run unless it was revoked; if it was:`,
    `-- GRANT EXECUTE ON FUNCTION pg_logical_emit_message(boolean, text, text) TO ${role};`,
    `-- incremental snapshots read with the same SELECT right; tables created later need it too, e.g. (as the role that creates them):`,
    ...(schemas.length ? [`-- ALTER DEFAULT PRIVILEGES IN SCHEMA ${schemas.join(', ')} GRANT SELECT ON TABLES TO ${role};`] : []),
  ];
  if (mode === 'disabled')
    out.push(
      `-- publication.autocreate.mode=disabled: the DBA creates the publication (as the tables' owner or a superuser); Tide only reads it.`,
      `CREATE PUBLICATION ${pub} FOR TABLE ${tables.join(', ') || '<tables>'};`,
    );
  else if (mode === 'all_tables')
    out.push(
      `-- publication.autocreate.mode=all_tables needs a superuser to create the publication; create it once here:`,
      `CREATE PUBLICATION ${pub} FOR ALL TABLES;`,
    );
  else
    out.push(
      `-- publication.autocreate.mode=filtered: Tide creates the publication (CREATE on the database) and changes it when the`,
      `-- captured tables change, which PostgreSQL 15 allows only to the tables' owner. There is no narrower right: membership`,
      `-- in the owning role also lets Tide alter and drop those tables. For least privilege prefer mode=disabled.`,
      `GRANT CREATE ON DATABASE ${db} TO ${role};`,
      ...(owners.length ? owners.map((o) => `GRANT ${quoteIdent(o)} TO ${role};`) : [`GRANT <the tables' owner> TO ${role};`]),
    );
  return out;
}

/** Start-up: when no slot is free, a message that names max_replication_slots and the slots using them. */
export async function explainSlotFailure(err: TideError, sql: pg.ClientBase): Promise<TideError> {
  if (!(err instanceof ConnectionError) || err.code !== 'slots-exhausted') return err;
  const { rows } = await sql
    .query<{ name: string; database: string | null; active: boolean }>(
      'SELECT slot_name AS name, database, active FROM pg_replication_slots ORDER BY slot_name',
    )
    .catch(() => ({ rows: [] as { name: string; database: string | null; active: boolean }[] }));
  return new ConnectionError(
    err.kind,
    err.target,
    `all replication slots are in use (max_replication_slots)${rows.length ? `; the ${rows.length} slots: ${slotList(rows)}` : ''}`,
    'Drop a slot nobody uses (SELECT pg_drop_replication_slot(name)) or raise max_replication_slots and restart Postgres.',
    { cause: err, code: 'slots-exhausted' },
  );
}

/**
 * The tables of `plan.toastAffected` that hold out-of-line (TOAST) values now: only their updates can
 * arrive without a value for an untouched column. A table whose TOAST relation is empty stores every
 * value inline, so each update carries every column (REPLICA IDENTITY FULL tables are never listed).
 */
export async function toastedNow(client: pg.ClientBase, plan: SourcePlan): Promise<SourcePlan['toastAffected']> {
  if (plan.toastAffected.length === 0) return [];
  const { rows } = await client.query<{ q: string }>(
    `SELECT n.nspname || '.' || c.relname AS q
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.oid = ANY($1::oid[]) AND c.reltoastrelid <> 0 AND pg_relation_size(c.reltoastrelid) > 0`,
    [plan.captured.map((t) => t.oid)],
  );
  const toasted = new Set(rows.map((r) => r.q));
  return plan.toastAffected.filter((t) => toasted.has(t.table));
}

import { createHash, randomUUID } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { TideError } from '../errors.ts';
import { PROJECT_ROOT } from '../stack/context.ts';

/**
 * Applies the SQL migrations under prisma/migrations/ and records them in
 * Prisma's own `_prisma_migrations` table, the way `prisma migrate deploy`
 * does. We cannot run Prisma's deploy here (it needs the native schema engine,
 * which these machines cannot download), but the table and checksums match, so
 * `prisma migrate deploy` on a machine with the engine sees these as applied.
 */
export const MIGRATIONS_DIR = join(PROJECT_ROOT, 'prisma', 'migrations');

// The table exactly as Prisma's schema engine creates it.
const MIGRATIONS_TABLE = `
CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
    "id"                    VARCHAR(36) PRIMARY KEY NOT NULL,
    "checksum"              VARCHAR(64) NOT NULL,
    "finished_at"           TIMESTAMPTZ,
    "migration_name"        VARCHAR(255) NOT NULL,
    "logs"                  TEXT,
    "rolled_back_at"        TIMESTAMPTZ,
    "started_at"            TIMESTAMPTZ NOT NULL DEFAULT now(),
    "applied_steps_count"   INTEGER NOT NULL DEFAULT 0
)`;

export interface Migration {
  name: string;
  sql: string;
  checksum: string;
}

export function listMigrations(dir = MIGRATIONS_DIR): Migration[] {
  return readdirSync(dir, { withFileTypes: true })
    .filter((d) => d.isDirectory() && existsSync(join(dir, d.name, 'migration.sql')))
    .map((d) => d.name)
    .sort()
    .map((name) => {
      const sql = readFileSync(join(dir, name, 'migration.sql'), 'utf8');
      return { name, sql, checksum: createHash('sha256').update(sql).digest('hex') };
    });
}

export class MigrationError extends TideError {
  constructor(migration: string, message: string, cause?: unknown) {
    super(`migration ${migration}: ${message}`, { cause });
    this.name = 'MigrationError';
  }
}

/** Apply pending migrations; returns the names applied. Each runs in its own transaction. */
export async function migrate(databaseUrl: string, dir = MIGRATIONS_DIR): Promise<string[]> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    // One migrator at a time per database.
    await client.query(`SELECT pg_advisory_lock(72707369)`);
    await client.query(MIGRATIONS_TABLE);
    const { rows } = await client.query<{ migration_name: string; checksum: string; finished_at: Date | null }>(
      `SELECT migration_name, checksum, finished_at FROM "_prisma_migrations" WHERE rolled_back_at IS NULL`,
    );
    const applied = new Map(rows.map((r) => [r.migration_name, r]));
    const done: string[] = [];
    for (const m of listMigrations(dir)) {
      const prior = applied.get(m.name);
      if (prior) {
        if (!prior.finished_at) {
          throw new MigrationError(
            m.name,
            'an earlier attempt failed half-way. Fix the database by hand, then delete its row from "_prisma_migrations".',
          );
        }
        if (prior.checksum !== m.checksum) {
          throw new MigrationError(
            m.name,
            'was edited after it was applied. Never edit an applied migration: add a new one (scripts/new-migration.sh).',
          );
        }
        continue;
      }
      const id = randomUUID();
      try {
        await client.query('BEGIN');
        await client.query(m.sql);
        await client.query(
          `INSERT INTO "_prisma_migrations" (id, checksum, finished_at, migration_name, applied_steps_count) VALUES ($1, $2, now(), $3, 1)`,
          [id, m.checksum, m.name],
        );
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK');
        throw new MigrationError(m.name, `failed: ${(err as Error).message}`, err);
      }
      done.push(m.name);
    }
    return done;
  } finally {
    await client.end();
  }
}

import pg from 'pg';
import { migrate } from '../../src/app/migrate.ts';

/**
 * A fresh, migrated database per test file, named after it, so files never
 * see each other's rows. Kept when TIDE_KEEP_TEST_DB=1, for inspection.
 */
export async function createTestDatabase(label: string): Promise<{ url: string; name: string; drop: () => Promise<void> }> {
  const adminUrl = process.env.DATABASE_URL;
  if (!adminUrl) throw new Error('DATABASE_URL is not set: the integration global setup should have exported it from .stack/env');
  const name = `t_${label.replace(/[^a-z0-9]+/gi, '_').toLowerCase()}_${Date.now().toString(36)}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  await migrate(url.toString());
  return {
    url: url.toString(),
    name,
    drop: async () => {
      if (process.env.TIDE_KEEP_TEST_DB === '1') return;
      const c = new pg.Client({ connectionString: adminUrl });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

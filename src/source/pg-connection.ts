import type pg from 'pg';
import type { SourceConfig } from '../config/source-config.ts';
import { sessionOptions } from './session-settings.ts';

/** The node-postgres settings for a source connector's database (its normal and replication connections). */
export function pgClientConfig(c: SourceConfig): pg.ClientConfig {
  const ssl = {
    disable: false,
    prefer: false,
    require: { rejectUnauthorized: false },
    'verify-ca': { rejectUnauthorized: true },
    'verify-full': { rejectUnauthorized: true },
  }[c['database.sslmode']];
  return {
    host: c['database.hostname'],
    port: c['database.port'],
    user: c['database.user'],
    password: c['database.password'],
    database: c['database.dbname'],
    ssl,
    options: sessionOptions(),
    connectionTimeoutMillis: 10_000,
  };
}

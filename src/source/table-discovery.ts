import type pg from 'pg';
import type { SourceConfig } from '../config/source-config.ts';
import { untilAborted } from '../abortable.ts';
import { TideError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { readTables, tableFilter, type CatalogTable } from './catalog.ts';
import type { IncrementalSnapshots } from './incremental-snapshot.ts';
import type { OffsetStore } from './offset-store.ts';
import { endPg } from './pg-connection.ts';
import { quoteIdent } from './plan.ts';

/**
 * Tables created while the source runs that match `table.include.list` are captured from their first row:
 * every `table.discovery.interval.ms` the catalog is read; a new matching table is added to the publication
 * (publication.autocreate.mode=filtered; under all_tables it is in already, under disabled Tide waits until
 * the DBA adds it), gets its topic and schemas, and an incremental snapshot. The snapshot brings the rows
 * written before the table entered the publication; the stream brings everything after, and the snapshot's
 * watermarks reconcile the two.
 *
 * Why a periodic catalog check and not an event trigger on CREATE TABLE: CREATE EVENT TRIGGER needs a
 * superuser (managed services rarely grant it, and the source's least-privilege role must not have it), the
 * trigger would run inside the application's DDL transaction (a failure there fails the application's
 * migration), and it would still have to reach the running connector. The check needs only catalog reads, and
 * nothing is lost between the CREATE and the check: the incremental snapshot reads what was written meanwhile.
 */
export interface DiscoveryDeps {
  config: SourceConfig;
  connect: () => Promise<pg.Client>;
  /** Whether the source already captures the table (`schema.table`). */
  captures: (qualified: string) => boolean;
  /** Create the table's topic: the source captures it from now on. */
  capture: (table: CatalogTable) => Promise<void>;
  incremental: IncrementalSnapshots;
  store: OffsetStore;
  log: Logger;
}

export class TableDiscovery {
  private client: pg.Client | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  /** Tables already reported as impossible to capture (no primary key, not in the publication), so each is told once. */
  private readonly told = new Set<string>();
  /** Aborted by stop(): a check in progress stops waiting (for the catalog, the registry or Kafka). */
  private readonly stopping = new AbortController();

  constructor(private readonly d: DiscoveryDeps) {}

  start(): void {
    const every = this.d.config['table.discovery.interval.ms'];
    if (every <= 0) return;
    const tick = () => {
      if (this.stopping.signal.aborted) return;
      this.running = this.check()
        .catch((err: unknown) => {
          if (!this.stopping.signal.aborted)
            this.d.log.warn({ err: (err as Error).message }, 'looking for new tables failed; trying again');
        })
        .finally(() => {
          if (!this.stopping.signal.aborted) this.timer = setTimeout(tick, every);
        });
    };
    this.timer = setTimeout(tick, every);
  }

  /** Stop now, also in the middle of a check: ending the connection fails a query in flight. */
  async stop(): Promise<void> {
    this.stopping.abort(new TideError('the source is stopping'));
    clearTimeout(this.timer);
    const client = this.client;
    this.client = undefined;
    await endPg(client);
    await this.running;
  }

  /** One look at the catalog. */
  async check(): Promise<void> {
    const c = this.d.config;
    const signal = this.stopping.signal;
    const include = tableFilter(c['table.include.list'], c['table.exclude.list']);
    let client = this.client;
    if (!client) {
      client = await this.d.connect();
      if (signal.aborted) {
        await endPg(client); // stop() came while connecting: nobody else would end it
        return;
      }
      client.on('error', () => (this.client = undefined));
      this.client = client;
    }
    let tables: CatalogTable[];
    try {
      tables = (await readTables(client)).filter((t) => include(t.qualified) && !this.d.captures(t.qualified));
    } catch (err) {
      this.client = undefined;
      await endPg(client);
      throw err;
    }
    for (const t of tables) {
      if (signal.aborted) return;
      await untilAborted(this.adopt(client, t), signal);
    }
  }

  private async adopt(client: pg.Client, t: CatalogTable): Promise<void> {
    const c = this.d.config;
    const once = (what: string, details: Record<string, unknown>) => {
      if (this.told.has(`${t.qualified}:${what}`)) return;
      this.told.add(`${t.qualified}:${what}`);
      this.d.log.error({ table: t.qualified, ...details }, what);
    };
    if (t.keyColumns.length === 0)
      return once('a new table matches table.include.list but has no primary key: it is not captured', {
        fix: `ALTER TABLE ${quoteIdent(t.schema)}.${quoteIdent(t.name)} ADD PRIMARY KEY (...), or exclude it with table.exclude.list`,
      });
    const pub = c['publication.name'];
    const inPublication = async () =>
      ((
        await client.query('SELECT 1 FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2 AND tablename = $3', [
          pub,
          t.schema,
          t.name,
        ])
      ).rowCount ?? 0) > 0;
    if (!(await inPublication())) {
      if (c['publication.autocreate.mode'] !== 'filtered')
        return once('a new table matches table.include.list but is not in the publication: it is captured once it is', {
          fix: `ALTER PUBLICATION ${quoteIdent(pub)} ADD TABLE ${quoteIdent(t.schema)}.${quoteIdent(t.name)}`,
        });
      const sql = `ALTER PUBLICATION ${quoteIdent(pub)} ADD TABLE ${quoteIdent(t.schema)}.${quoteIdent(t.name)}`;
      try {
        this.d.log.info({ sql }, 'a new table matches table.include.list: adding it to the publication');
        await client.query(sql);
      } catch (err) {
        return once('could not add a new table to the publication: it is not captured until it is added', {
          err: (err as Error).message,
          fix: `run ${sql} as the table's owner, or make ${c['database.user']} a member of the owning role`,
        });
      }
    }
    await this.d.capture(t);
    this.d.incremental.request([{ table: t.qualified, reason: 'created', requestedAt: new Date().toISOString() }]);
    rememberCaptured(this.d.store, [t.qualified]);
    this.d.log.info({ table: t.qualified }, 'a new table is captured from its first row (incremental snapshot queued)');
  }
}

/** Add tables to the offsets' list of captured tables (a table missing from it joins the capture at the next start). */
export function rememberCaptured(store: OffsetStore, tables: string[], replace = false): void {
  const offsets = store.read();
  if (!offsets) return;
  const next = [...new Set([...(replace ? [] : (offsets.captured ?? [])), ...tables])].sort();
  if (JSON.stringify(next) === JSON.stringify(offsets.captured)) return;
  offsets.captured = next;
  store.write(offsets);
}

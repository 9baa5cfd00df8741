import type { SinkConfig } from '../config/sink-config.ts';
import { ParquetEngine } from '../lake/parquet/parquet-engine.ts';
import type { ObjectStore } from '../lake/storage/object-store.ts';
import type { Logger } from '../log.ts';
import { GoldRefresher } from '../reports/gold-refresh.ts';
import type { GoldReport } from '../reports/gold-reports.ts';
import { ServingDatabase } from '../reports/serving.ts';
import type { SinkStats } from './sink-observer.ts';
import { bronzePath, historyPath, silverPath } from './table-layout.ts';

/** The lake tables the sink keeps for a source table. */
export const lakeRoots = (qualified: string): string[] => [bronzePath(qualified), silverPath(qualified), historyPath(qualified)];

/**
 * The sink's gold layer: the report refresher (when the connector has gold reports) and the serving database
 * it publishes to (`serving.uri`). The sink worker tells it which lake tables changed; it builds the reports
 * that are due and counts the builds in the worker's stats.
 *
 * Builds run in the background, beside the flushes, on gold's own DuckDB instance (one thread): a build of
 * the shipped order reports over a growing lake takes seconds, and while it ran between two flushes nothing
 * reached silver, so every build showed up in commit → silver latency (README "The whole pipeline,
 * sustained"). A build reads each table's Delta snapshot as it opens it (the sink only adds commits; the
 * files a later commit removes stay until a vacuum), and writes only gold tables, which the flushes never touch.
 */
export class SinkGold {
  private refresher: GoldRefresher | undefined;
  private serving: ServingDatabase | undefined;
  private engine: ParquetEngine | undefined;
  /** The build running in the background, if any (one at a time). */
  private building: Promise<void> | undefined;
  private failed: unknown;
  /** Tables changed while the tables were opened, before gold was set up (a reconcile finished at open). */
  private readonly changedBeforeStart = new Set<string>();

  constructor(private readonly stats: SinkStats) {}

  /** A background build failed outside a report (a report's own failure is logged and kept by the refresher). */
  get error(): unknown {
    return this.failed;
  }

  /** Open the serving database; refuses one that Tide captures (`captured`: the sink's source tables). */
  async openServing(config: SinkConfig, log: Logger, captured: string[]): Promise<void> {
    if (!config['serving.uri']) return;
    this.serving = new ServingDatabase({ uri: config['serving.uri'], schema: config['serving.schema'], log });
    // Before anything is written: BI queries must never land on a database Tide captures.
    await this.serving.refuseCapturedDatabase(captured);
  }

  /** Start refreshing `reports` (none: gold stays off); reports without a gold table yet are due at once. */
  async start(config: SinkConfig, store: ObjectStore, log: Logger, reports: GoldReport[]): Promise<void> {
    if (reports.length) {
      // One thread: gold is background work; the change path keeps the other core(s).
      this.engine = await ParquetEngine.create({ memoryLimit: config['duckdb.memory.limit'], threads: 1 });
      this.refresher = new GoldRefresher(this.engine, store, log, reports, {
        serving: this.serving,
        onChangeIntervalMs: config['gold.refresh.interval.ms'],
        maxBuildShare: config['gold.build.max.share'],
      });
    }
    for (const qualified of this.changedBeforeStart) this.refresher?.noteChanged(lakeRoots(qualified));
    // Reports without a gold table yet (new in the folder) are due at once, even with no new message.
    await this.refresher?.loadBuildTimes();
  }

  /** The sink committed to the lake tables of `qualified` (also before `start`): reports that read them become due. */
  noteTableChanged(qualified: string): void {
    if (this.refresher) this.refresher.noteChanged(lakeRoots(qualified));
    else this.changedBeforeStart.add(qualified);
  }

  /** Lake tables (roots) a flush committed to. */
  noteChanged(roots: string[]): void {
    this.refresher?.noteChanged(roots);
  }

  /** Start building the due reports in the background, unless a build is running (it is asked again later). */
  kick(): void {
    if (!this.refresher || this.building || !this.refresher.anyDue()) return;
    this.building = this.build(false)
      .catch((err: unknown) => void (this.failed ??= err))
      .finally(() => (this.building = undefined));
  }

  /** Build now (after a running build): with `force`, every report whose inputs changed since its last build; else the due ones. */
  async refreshIfDue(force = false): Promise<void> {
    while (this.building) await this.building;
    if (this.refresher) await this.build(force);
  }

  private async build(force: boolean): Promise<void> {
    const results = force ? await this.refresher!.refreshChanged() : await this.refresher!.refreshDue();
    // A pass where every report failed (or none was due) is no build.
    if (results.length) this.stats.goldRefreshes++;
  }

  /** Wait for a running build, then close gold's engine and the serving database. */
  async close(): Promise<void> {
    while (this.building) await this.building;
    await this.engine?.close();
    await this.serving?.close();
  }
}

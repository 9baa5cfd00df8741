import type { SinkConfig } from '../config/sink-config.ts';
import type { ParquetEngine } from '../lake/parquet/parquet-engine.ts';
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
 */
export class SinkGold {
  /** A flush for a due gold build is queued (the tick must not queue one every 250 ms while it builds). */
  queued = false;
  private refresher: GoldRefresher | undefined;
  private serving: ServingDatabase | undefined;
  /** Tables changed while the tables were opened, before gold was set up (a reconcile finished at open). */
  private readonly changedBeforeStart = new Set<string>();

  constructor(private readonly stats: SinkStats) {}

  /** Open the serving database; refuses one that Tide captures (`captured`: the sink's source tables). */
  async openServing(config: SinkConfig, log: Logger, captured: string[]): Promise<void> {
    if (!config['serving.uri']) return;
    this.serving = new ServingDatabase({ uri: config['serving.uri'], schema: config['serving.schema'], log });
    // Before anything is written: BI queries must never land on a database Tide captures.
    await this.serving.refuseCapturedDatabase(captured);
  }

  /** Start refreshing `reports` (none: gold stays off); reports without a gold table yet are due at once. */
  async start(engine: ParquetEngine, store: ObjectStore, log: Logger, reports: GoldReport[], intervalMs: number): Promise<void> {
    if (reports.length)
      this.refresher = new GoldRefresher(engine, store, log, reports, { serving: this.serving, onChangeIntervalMs: intervalMs });
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

  /** A gold report is due (its refresh header; gold.refresh.interval.ms 0 turns gold off). */
  due(): boolean {
    return !!this.refresher?.anyDue();
  }

  /** Build the due reports; with `force`, every report whose inputs changed since its last build. */
  async refreshIfDue(force = false): Promise<void> {
    if (!this.refresher) return;
    const results = force ? await this.refresher.refreshChanged() : await this.refresher.refreshDue();
    // A pass where every report failed (or none was due) is no build.
    if (results.length) this.stats.goldRefreshes++;
  }

  async close(): Promise<void> {
    await this.serving?.close();
  }
}

import type { SinkConfig } from '../config/sink-config.ts';
import type { SchemaRegistry } from '../events/schema-registry.ts';
import type { ParquetEngine } from '../lake/parquet/parquet-engine.ts';
import type { ObjectStore } from '../lake/storage/object-store.ts';
import type { Logger } from '../log.ts';
import type { RetryPolicy } from '../retry.ts';
import { withRetries } from '../retry.ts';
import type { DeadLetterMessage } from './dead-letter.ts';
import {
  deadLetterOf,
  EventDecoder,
  eventTableName,
  MalformedEventError,
  type EventRecord,
  type InputFlush,
  type TopicInput,
} from './event-input.ts';
import { EventTables } from './event-tables.ts';
import type { RawMessage } from './kafka-intake.ts';
import { layerPositions } from './offsets.ts';

/**
 * input.format events: append-only event topics into bronze (partitioned by event date) and, with
 * pk.fields, a silver of the latest event per key. See event-tables.ts for the tables, event-input.ts for
 * the decoding. Each topic has its own tables, named after it (`notifications` → bronze/notifications).
 */
export class EventTopics implements TopicInput {
  private readonly tables = new Map<string, EventTables>();
  private readonly decoder: EventDecoder;

  constructor(
    private readonly opts: {
      name: string;
      config: SinkConfig;
      connectorFile: string;
      registry: SchemaRegistry;
      engine: ParquetEngine;
      store: ObjectStore;
      log: Logger;
      policy: RetryPolicy;
      signal?: AbortSignal;
      /** Sends dead letters (before the commits that move past them). */
      sendDeadLetters: (letters: DeadLetterMessage[]) => Promise<void>;
    },
  ) {
    this.decoder = new EventDecoder(opts.config, opts.connectorFile, opts.registry);
  }

  async open(topic: string): Promise<void> {
    await this.tablesOf(topic);
  }

  positions(topic: string, partition: number) {
    const t = this.tables.get(eventTableName(topic));
    return t ? layerPositions(t.layers(), this.opts.name, topic, partition) : [];
  }

  private async tablesOf(topic: string): Promise<EventTables> {
    const name = eventTableName(topic);
    let t = this.tables.get(name);
    if (!t) {
      const c = this.opts.config;
      t = new EventTables(
        {
          name: this.opts.name,
          engine: this.opts.engine,
          store: this.opts.store,
          log: this.opts.log,
          checkpointInterval: c['delta.checkpoint.interval'],
          bronzeEnabled: c['bronze.enabled'],
          keyFields: c['pk.fields'] ?? [],
        },
        name,
      );
      await t.open();
      this.tables.set(name, t);
    }
    return t;
  }

  async write(messages: RawMessage[]): Promise<InputFlush> {
    const out: InputFlush = { bronzeRows: 0, silverChanges: 0, deadLetters: 0, changedRoots: [], newestMs: {} };
    const byTable = new Map<string, { tables: EventTables; records: EventRecord[]; messages: RawMessage[] }>();
    const dead: DeadLetterMessage[] = [];
    const rawOf = new Map<EventRecord, RawMessage>();
    for (const m of messages) {
      const tables = await this.tablesOf(m.topic);
      let entry = byTable.get(tables.table);
      if (!entry) byTable.set(tables.table, (entry = { tables, records: [], messages: [] }));
      entry.messages.push(m);
      try {
        // A registry that is down or rate-limits is waited for (errors.retry.timeout), as for Tide's topics.
        const r = await withRetries(
          this.opts.policy,
          {
            what: `reading the schema of ${m.topic}[${m.partition}]@${m.offset} from the registry`,
            log: this.opts.log,
            signal: this.opts.signal,
          },
          () => this.decoder.decode(m),
        );
        if (r) {
          entry.records.push(r);
          rawOf.set(r, m);
        }
      } catch (err) {
        if (!(err instanceof MalformedEventError)) throw err;
        dead.push(deadLetterOf(m, err.message));
      }
    }
    for (const entry of byTable.values()) {
      const rejects = entry.tables.rejects(entry.records);
      if (!rejects.size) continue;
      for (const [r, reason] of rejects) dead.push(deadLetterOf(rawOf.get(r)!, `${r.topic}[${r.partition}]@${r.offset}: ${reason}`));
      entry.records = entry.records.filter((r) => !rejects.has(r));
    }
    // Dead letters go out before the lake commits that move past their offsets: at least once, never lost.
    if (dead.length) {
      await this.opts.sendDeadLetters(dead);
      this.opts.log.warn({ count: dead.length, first: dead[0]!.reason }, 'events sent to the dead-letter topic');
    }
    out.deadLetters = dead.length;
    for (const { tables, records, messages: raw } of byTable.values()) {
      const offsets = raw.map((m) => ({ topic: m.topic, partition: m.partition, offset: BigInt(m.offset) }));
      const result = await tables.apply(records, offsets);
      out.bronzeRows += result.bronzeRows;
      out.silverChanges += result.silverChanges;
      if (result.bronzeVersion !== undefined) out.changedRoots.push(`bronze/${tables.table}`);
      if (result.silverVersion !== undefined) out.changedRoots.push(`silver/${tables.table}`);
      if (result.newestMicros !== undefined) out.newestMs[tables.table] = Number(result.newestMicros / 1000n);
    }
    return out;
  }
}

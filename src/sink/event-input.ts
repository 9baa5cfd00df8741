import type { Type } from 'avsc';
import { dirname, resolve } from 'node:path';
import type { SinkConfig } from '../config/sink-config.ts';
import { createAvroType, type AvroSchema } from '../events/avro-types.ts';
import { SchemaRegistryError, type SchemaRegistry } from '../events/schema-registry.ts';
import { ConnectionError, TideError } from '../errors.ts';
import type { LakeColumn } from '../lake/lake-schema.ts';
import { SchemaUnavailableError } from './change-event.ts';
import type { DeadLetterMessage } from './dead-letter.ts';
import { decodeJsonEvent, fieldsFromJsonSchema, fieldsFromList, jsonColumns, type JsonField } from './event-json.ts';
import { eventTimeMicros } from './event-time.ts';
import type { RawMessage } from './kafka-intake.ts';
import { lakeColumnsOf, type SinkColumn } from './lake-columns.ts';
import type { LayerPosition } from './retention-gap.ts';

/**
 * What the sink's intake calls for a kind of input topic other than Tide's own (input.format). The worker
 * hands it each flush's raw messages; it decodes them, sends what it cannot write to the dead-letter topic
 * (before the commits that move past them) and commits its lake tables with the partitions' offsets.
 */
export interface TopicInput {
  /** Open (or look up) the lake tables of a topic, before anything is consumed. */
  open(topic: string): Promise<void>;
  /** Where each lake table of the topic stands on a partition (the seek and the retention-gap check). */
  positions(topic: string, partition: number): LayerPosition[];
  /** Write one flush's messages; returns what changed. */
  write(messages: RawMessage[]): Promise<InputFlush>;
}

export interface InputFlush {
  bronzeRows: number;
  silverChanges: number;
  deadLetters: number;
  /** Lake table roots that got a commit (`bronze/notifications`, …): the gold reports reading them become due. */
  changedRoots: string[];
  /** The newest event time written per lake table (ms), for freshness. */
  newestMs: Record<string, number>;
}

/** One event of an append-only topic (input.format events), decoded. */
export interface EventRecord {
  topic: string;
  partition: number;
  offset: bigint;
  /** The event's fields, in the lake's JS representation (lake-schema.ts). */
  row: Record<string, unknown>;
  columns: LakeColumn[];
  /** timestamp.field, in µs since the epoch (UTC). */
  timeMicros: bigint;
}

/** A message of an event topic that cannot be written: it goes to the dead-letter topic with this reason. */
export class MalformedEventError extends TideError {
  constructor(
    readonly topic: string,
    readonly partition: number,
    readonly offset: string,
    readonly reason: string,
    options: { cause?: unknown } = {},
  ) {
    super(`${topic}[${partition}]@${offset}: ${reason}`, options);
    this.name = 'MalformedEventError';
  }
}

export function deadLetterOf(m: RawMessage, reason: string): DeadLetterMessage {
  return { topic: m.topic, partition: m.partition, offset: m.offset, key: m.key, value: m.value, reason };
}

/** The lake name of an event topic: `notifications` → bronze/notifications, read by reports as bronze_notifications. */
export function eventTableName(topic: string): string {
  return topic
    .toLowerCase()
    .replace(/[^a-z0-9_]+/g, '_')
    .replace(/^_+|_+$/g, '');
}

/**
 * Decodes event values: Avro in Confluent wire format (magic byte 0, 4-byte schema id, body) with the
 * writer's schema from the registry (a record; its fields are the columns), or JSON with the fields the
 * connector file gives. Either way the event must carry `timestamp.field` with a readable time.
 */
export class EventDecoder {
  private readonly avro = new Map<number, Promise<{ type: Type; columns: SinkColumn[] }>>();
  private readonly json: { fields: JsonField[]; columns: LakeColumn[] } | undefined;
  private readonly timeField: string;

  constructor(
    config: SinkConfig,
    connectorFile: string,
    private readonly registry: SchemaRegistry,
  ) {
    this.timeField = config['timestamp.field']!;
    if (config['value.converter'] === 'json') {
      const fields = config['value.converter.schema.file']
        ? fieldsFromJsonSchema(resolve(dirname(connectorFile), config['value.converter.schema.file']), connectorFile)
        : fieldsFromList(config['value.converter.fields'] ?? [], connectorFile);
      this.json = { fields, columns: jsonColumns(fields) };
    }
  }

  /** undefined for an empty value (a tombstone: nothing to append). */
  async decode(m: RawMessage): Promise<EventRecord | undefined> {
    if (m.value === null || m.value.length === 0) return undefined;
    const fail = (reason: string, cause?: unknown) => new MalformedEventError(m.topic, m.partition, m.offset, reason, { cause });
    let row: Record<string, unknown>;
    let columns: LakeColumn[];
    if (this.json) {
      try {
        row = decodeJsonEvent(m.value, this.json.fields);
      } catch (err) {
        throw fail((err as Error).message, err);
      }
      columns = this.json.columns;
    } else {
      ({ row, columns } = await this.decodeAvro(m, fail));
    }
    const time = columns.find((c) => c.name === this.timeField);
    if (!time) throw fail(`the event has no field "${this.timeField}" (timestamp.field)`);
    const timeMicros = eventTimeMicros(time.type, row[this.timeField]);
    if (timeMicros === undefined)
      throw fail(
        row[this.timeField] === null || row[this.timeField] === undefined
          ? `the event time "${this.timeField}" (timestamp.field) is null`
          : `the event time "${this.timeField}" (timestamp.field) cannot be read as a time: ${JSON.stringify(String(row[this.timeField])).slice(0, 80)}`,
      );
    return { topic: m.topic, partition: m.partition, offset: BigInt(m.offset), row, columns, timeMicros };
  }

  private async decodeAvro(
    m: RawMessage,
    fail: (reason: string, cause?: unknown) => MalformedEventError,
  ): Promise<{ row: Record<string, unknown>; columns: LakeColumn[] }> {
    const value = m.value!;
    if (value.length < 5 || value[0] !== 0) throw fail('the value is not in Confluent wire format (magic byte 0 and a 4-byte schema id)');
    const id = value.readInt32BE(1);
    let codec: { type: Type; columns: SinkColumn[] };
    try {
      codec = await this.avroCodec(id);
    } catch (err) {
      // As for Tide's topics (change-event.ts): a registry that is down or refuses Tide is not the message's fault.
      if (err instanceof ConnectionError || (err instanceof TideError && err.retriable)) throw err;
      if (err instanceof SchemaRegistryError) throw new SchemaUnavailableError(m.topic, m.partition, m.offset, id, 'value', err);
      throw fail(`cannot use value schema ${id}: ${(err as Error).message}`, err);
    }
    let record: Record<string, unknown>;
    try {
      record = codec.type.fromBuffer(value.subarray(5)) as Record<string, unknown>;
    } catch (err) {
      throw fail(`the Avro body does not match schema ${id}: ${(err as Error).message}`, err);
    }
    const row: Record<string, unknown> = {};
    try {
      for (const c of codec.columns) {
        const v = record[c.avroName];
        row[c.name] = v === null || v === undefined ? null : c.convert(v);
      }
    } catch (err) {
      throw fail(`a value does not fit its column: ${(err as Error).message}`, err);
    }
    return { row, columns: codec.columns };
  }

  private avroCodec(id: number): Promise<{ type: Type; columns: SinkColumn[] }> {
    let p = this.avro.get(id);
    if (!p) {
      p = this.registry.schemaById(id).then((schema) => ({ type: createAvroType(schema), columns: eventColumnsOf(schema as AvroSchema) }));
      p.catch(() => this.avro.delete(id));
      this.avro.set(id, p);
    }
    return p;
  }
}

/**
 * The columns of an event's Avro record. lake-columns.ts maps the record of a Debezium envelope's `after`
 * field, so the record is wrapped as one; `timestamp-millis` (common in event schemas, never written by
 * Tide's source) becomes a timestamp too.
 */
export function eventColumnsOf(schema: AvroSchema): SinkColumn[] {
  const record = schema as { type?: unknown; fields?: { name: string; type: AvroSchema }[] };
  if (record.type !== 'record' || !Array.isArray(record.fields)) throw new Error('the value schema is not an Avro record');
  const millis = new Set(record.fields.filter((f) => isTimestampMillis(f.type)).map((f) => f.name));
  const columns = lakeColumnsOf({ type: 'record', name: 'Wrapper', fields: [{ name: 'after', type: schema }] });
  return columns.map((c) =>
    millis.has(c.avroName) ? { ...c, type: { kind: 'timestamp' }, convert: (v: unknown) => BigInt(v as number | bigint) * 1000n } : c,
  );
}

function isTimestampMillis(t: AvroSchema): boolean {
  const branches = Array.isArray(t) ? t : [t];
  return branches.some(
    (b) => typeof b === 'object' && b !== null && !Array.isArray(b) && (b as { logicalType?: string }).logicalType === 'timestamp-millis',
  );
}

import type { Op } from '../events/envelope.ts';
import { SchemaRegistryError, type SchemaRegistry } from '../events/schema-registry.ts';
import { ConnectionError, TideError } from '../errors.ts';
import { envelopeReader, type EnvelopeReader } from './envelope-projection.ts';
import { keyColumnsOf, lakeColumnsOf, rowImage, type SinkColumn } from './lake-columns.ts';

/**
 * One decoded change event, as the sink uses it: Debezium's envelope with the row images
 * keyed by column name and values already in the lake's JS representation.
 */
export interface ChangeEvent {
  topic: string;
  partition: number;
  offset: bigint;
  /** `schema.table` from source. */
  table: string;
  op: Op;
  before: Record<string, unknown> | null;
  after: Record<string, unknown> | null;
  /** Columns of `after` the change did not carry (unchanged TOAST): keep the previous value. */
  unchangedToast: string[];
  commitLsn: bigint;
  eventIndex: number;
  txId: number | null;
  /** source.ts_ms: the commit time (snapshot: the time the row was read). */
  commitTsMs: number;
  /** The envelope's ts_ms: when Tide's source processed the change. */
  eventTsMs: number | null;
  snapshot: boolean;
  /** The value schema's columns (the shape of this event's table at the time of the change). */
  columns: SinkColumn[];
  valueSchemaId: number;
  /** Primary-key columns (empty for a truncate, which has no key). */
  keyColumns: string[];
}

/** A message the sink cannot read: it goes to the dead-letter topic with this reason. */
export class UndecodableMessageError extends TideError {
  constructor(
    readonly topic: string,
    readonly partition: number,
    readonly offset: string,
    reason: string,
    options: { cause?: unknown } = {},
  ) {
    super(`${topic}[${partition}]@${offset}: ${reason}`, options);
    this.name = 'UndecodableMessageError';
  }
}

/**
 * The registry answered that a message's schema does not exist (HTTP 404 with Confluent's error code
 * 40403, or another 4xx). Not the message's fault and not transient: the sink stops here, without
 * dead-lettering the message and without committing past it, so that nothing behind it is written
 * either (a later version of the same key would otherwise reach silver before it).
 */
export class SchemaUnavailableError extends TideError {
  constructor(
    readonly topic: string,
    readonly partition: number,
    readonly offset: string,
    readonly schemaId: number,
    which: 'key' | 'value',
    cause: SchemaRegistryError,
  ) {
    super(
      `kafka topic ${topic} partition ${partition} offset ${offset}: the ${which} schema ${schemaId} cannot be fetched: ${cause.message}. ` +
        'The sink stops here: it neither dead-letters the message nor commits past it. ' +
        "Check that schema.registry.url is the registry the source writes to (the same one as in the source's connector file) and that the schema was not deleted (restore it), then start the sink again.",
      { cause },
    );
    this.name = 'SchemaUnavailableError';
  }
}

interface ValueCodec extends EnvelopeReader {
  columns: SinkColumn[];
}

interface Envelope {
  before: Record<string, unknown> | null;
  after: Record<string, unknown> | null;
  source: {
    schema: string;
    table: string;
    ts_ms: number | bigint;
    snapshot: string | null;
    txId: number | bigint | null;
    commit_lsn?: number | bigint;
    event_index?: number | bigint;
    lsn?: number | bigint | null;
  };
  op: string;
  ts_ms: number | bigint | null;
  unchanged_toast?: string[];
}

const OPS = new Set(['c', 'u', 'd', 'r', 't']);

/** decodeCached: the message's schema is not fetched yet (decode() fetches it). */
export const NEEDS_FETCH: unique symbol = Symbol('needs a schema fetch');

const notFramed = (topic: string, partition: number, offset: string, which: 'key' | 'value') =>
  new UndecodableMessageError(
    topic,
    partition,
    offset,
    which === 'value'
      ? 'the value is not in Confluent wire format (magic byte 0 and a 4-byte schema id)'
      : 'the key is not in Confluent wire format',
  );

/** The Avro body of a framed value, checked (op, Tide's source fields). */
function readEnvelope(codec: ValueCodec, valueId: number, topic: string, partition: number, offset: string, value: Buffer): Envelope {
  const fail = (reason: string, cause?: unknown) => new UndecodableMessageError(topic, partition, offset, reason, { cause });
  let env: Envelope;
  try {
    env = codec.type.fromBuffer(value.subarray(5), codec.resolver) as Envelope;
  } catch (err) {
    throw fail(`the Avro body does not match schema ${valueId}: ${(err as Error).message}`, err);
  }
  if (!OPS.has(env.op)) throw fail(`unknown op ${JSON.stringify(env.op)}`);
  if (env.source.commit_lsn === undefined || env.source.event_index === undefined)
    throw fail(
      "source.commit_lsn / source.event_index are missing: input.format tide reads topics written by Tide's source (for Debezium's topics set input.format to debezium)",
    );
  return env;
}

/** The change event of a read envelope (row images in the lake's JS representation). */
function changeEvent(
  env: Envelope,
  codec: ValueCodec,
  valueId: number,
  keyColumns: string[],
  topic: string,
  partition: number,
  offset: string,
): ChangeEvent {
  let before: Record<string, unknown> | null;
  let after: Record<string, unknown> | null;
  try {
    before = env.before ? rowImage(env.before, codec.columns) : null;
    after = env.after ? rowImage(env.after, codec.columns) : null;
  } catch (err) {
    throw new UndecodableMessageError(topic, partition, offset, `a value does not fit its column: ${(err as Error).message}`, {
      cause: err,
    });
  }
  return {
    topic,
    partition,
    offset: BigInt(offset),
    table: `${env.source.schema}.${env.source.table}`,
    op: env.op as Op,
    before,
    after,
    unchangedToast: env.unchanged_toast ?? [],
    commitLsn: BigInt(env.source.commit_lsn!),
    eventIndex: Number(env.source.event_index),
    txId: env.source.txId === null ? null : Number(env.source.txId),
    commitTsMs: Number(env.source.ts_ms),
    eventTsMs: env.ts_ms === null ? null : Number(env.ts_ms),
    snapshot: env.source.snapshot !== null && env.source.snapshot !== 'false',
    columns: codec.columns,
    valueSchemaId: valueId,
    keyColumns,
  };
}

/** Decodes Confluent-framed Avro (magic 0, schema id, body), with schemas fetched once per id from the registry. */
export class ChangeEventDecoder {
  private readonly values = new Map<number, Promise<ValueCodec>>();
  private readonly keys = new Map<number, Promise<string[]>>();

  constructor(private readonly registry: SchemaRegistry) {}

  /** Codecs and key columns already fetched (decodeCached's synchronous path). */
  private readonly readyValues = new Map<number, ValueCodec>();
  private readonly readyKeys = new Map<number, string[]>();

  /** undefined for a tombstone (a null value: Kafka compaction's delete marker, nothing to apply). */
  async decode(
    topic: string,
    partition: number,
    offset: string,
    key: Buffer | null,
    value: Buffer | null,
  ): Promise<ChangeEvent | undefined> {
    if (value === null || value.length === 0) return undefined;
    const valueId = frameId(value);
    if (valueId === undefined) throw notFramed(topic, partition, offset, 'value');
    const at = { topic, partition, offset };
    const codec = await lookupSchema(valueId, 'value', at, () => this.valueCodec(valueId));
    const env = readEnvelope(codec, valueId, topic, partition, offset, value);
    let keyColumns: string[] = [];
    if (key && key.length) {
      const keyId = frameId(key);
      if (keyId === undefined) throw notFramed(topic, partition, offset, 'key');
      keyColumns = await lookupSchema(keyId, 'key', at, () => this.keyColumns(keyId));
    }
    return changeEvent(env, codec, valueId, keyColumns, topic, partition, offset);
  }

  /**
   * decode() without a promise, for a message whose value and key schemas were fetched before (the usual
   * case: a topic has a handful of schema ids): the same event, or the same UndecodableMessageError.
   * NEEDS_FETCH when a schema is not fetched yet: decode() then fetches it (with the worker's retries).
   * Saves the sink two awaits per message, and lets it decode buffered messages between a flush's DuckDB calls.
   */
  decodeCached(
    topic: string,
    partition: number,
    offset: string,
    key: Buffer | null,
    value: Buffer | null,
  ): ChangeEvent | undefined | typeof NEEDS_FETCH {
    if (value === null || value.length === 0) return undefined;
    const valueId = frameId(value);
    if (valueId === undefined) throw notFramed(topic, partition, offset, 'value');
    const codec = this.readyValues.get(valueId);
    if (!codec) return NEEDS_FETCH;
    let keyColumns: string[] = [];
    if (key && key.length) {
      const keyId = frameId(key);
      // decode() reads the body before the key's frame: the same order here, so the same error wins.
      if (keyId === undefined) {
        readEnvelope(codec, valueId, topic, partition, offset, value);
        throw notFramed(topic, partition, offset, 'key');
      }
      const ready = this.readyKeys.get(keyId);
      if (!ready) return NEEDS_FETCH;
      keyColumns = ready;
    }
    const env = readEnvelope(codec, valueId, topic, partition, offset, value);
    return changeEvent(env, codec, valueId, keyColumns, topic, partition, offset);
  }

  private valueCodec(id: number): Promise<ValueCodec> {
    return oncePerSchema(this.values, id, async () => {
      const schema = await this.registry.schemaById(id);
      const codec = { ...envelopeReader(schema), columns: lakeColumnsOf(schema) };
      this.readyValues.set(id, codec);
      return codec;
    });
  }

  private keyColumns(id: number): Promise<string[]> {
    return oncePerSchema(this.keys, id, async () => {
      const columns = keyColumnsOf(await this.registry.schemaById(id));
      this.readyKeys.set(id, columns);
      return columns;
    });
  }
}

/** What `make` builds of registry schema `id`, once per id; a failed lookup is forgotten and retried on the next message. */
export function oncePerSchema<T>(cache: Map<number, Promise<T>>, id: number, make: () => Promise<T>): Promise<T> {
  let p = cache.get(id);
  if (!p) {
    p = make();
    p.catch(() => cache.delete(id));
    cache.set(id, p);
  }
  return p;
}

/**
 * A schema lookup for the message at `at`. Not the message's fault, so never a dead letter: a registry that is
 * down or rate-limits (retriable: the worker retries), one that refuses Tide's credentials or is not a registry
 * at all (a ConnectionError: the connector stops), or a schema the registry does not have (SchemaUnavailableError:
 * stops). Only a schema that was fetched but cannot be used (createAvroType, its columns) is the message's
 * problem (UndecodableMessageError: a dead letter).
 */
export async function lookupSchema<T>(
  id: number,
  which: 'key' | 'value',
  at: { topic: string; partition: number; offset: string },
  get: () => Promise<T>,
): Promise<T> {
  try {
    return await get();
  } catch (err) {
    if (err instanceof ConnectionError || (err instanceof TideError && err.retriable)) throw err;
    if (err instanceof SchemaRegistryError) throw new SchemaUnavailableError(at.topic, at.partition, at.offset, id, which, err);
    throw new UndecodableMessageError(at.topic, at.partition, at.offset, `cannot use ${which} schema ${id}: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

function frameId(buf: Buffer): number | undefined {
  if (buf.length < 5 || buf[0] !== 0) return undefined;
  return buf.readInt32BE(1);
}

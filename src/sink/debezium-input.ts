import JSONbig from 'json-bigint';
import type { Type } from 'avsc';
import { createAvroType, type AvroSchema } from '../events/avro-types.ts';
import type { Op } from '../events/envelope.ts';
import { type SchemaRegistry } from '../events/schema-registry.ts';
import { lookupSchema, oncePerSchema, UndecodableMessageError, type ChangeEvent } from './change-event.ts';
import { avroNames, columnsOfStruct, connectFromAvro, untypedColumns, type ConnectSchema } from './connect-types.ts';
import type { RawMessage } from './kafka-intake.ts';
import { rowImage, type SinkColumn } from './lake-columns.ts';
import type { MessageDecoder } from './message-decoder.ts';

/**
 * `input.format: debezium`: topics written by Debezium's PostgreSQL connector, in any of its usual converters,
 * told apart per message: Confluent wire format (magic byte 0 + 4-byte schema id: Confluent's or Apicurio's Avro
 * converter against a Confluent-API registry), JsonConverter with schemas (`{"schema":…,"payload":…}`) and without
 * (`{"before":…,"after":…,"op":…}`). Each becomes the same ChangeEvent as a Tide topic's, so bronze, silver and
 * the history are written by the same code.
 *
 * Order. Tide's sink orders changes by (commit LSN, event index). Debezium gives `source.lsn` (the change's WAL
 * position) and `source.sequence` = ["<end LSN of the previous transaction's commit>", "<lsn>"]. Debezium streams
 * transactions in commit order, so the pair (sequence[0], lsn) orders every streamed change: sequence[0] grows with
 * each transaction, lsn within one. So:
 *   - streamed change: commitLsn = sequence[0], eventIndex = lsn − sequence[0] (negative when the transaction
 *     began writing before the previous one committed; it is exact, and its order is the pair's);
 *   - the first transaction after the connector started without a commit position (sequence[0] null):
 *     commitLsn = lsn, eventIndex = 0. Every later transaction's sequence[0] is at or after its commit;
 *   - snapshot read (op r): commitLsn = lsn − 1, eventIndex = 0. All rows of one snapshot share Debezium's
 *     snapshot LSN; each key is read once per snapshot, so per key the order is still total, and a change streamed
 *     after the snapshot (at or past that LSN) sorts after it.
 * The README ("Reading Debezium topics") states the guarantee and its one gap.
 */
export const UNAVAILABLE_VALUE = '__debezium_unavailable_value';
const UNAVAILABLE_BYTES = Buffer.from(UNAVAILABLE_VALUE);
const UNAVAILABLE_BASE64 = UNAVAILABLE_BYTES.toString('base64');

const json = JSONbig({ useNativeBigInt: true });
const OPS = new Set(['c', 'u', 'd', 'r', 't']);

interface Source {
  schema: string;
  table: string;
  ts_ms: number | bigint;
  snapshot?: string | boolean | null;
  txId?: number | bigint | null;
  lsn?: number | bigint | null;
  sequence?: string | null;
}
interface Envelope {
  before?: Record<string, unknown> | null;
  after?: Record<string, unknown> | null;
  source?: Source;
  op?: string;
  ts_ms?: number | bigint | null;
}

interface AvroCodec {
  type: Type;
  columns: SinkColumn[];
}

/** A message shape this decoder does not know (wrong topic, another connector's messages). */
const NOT_DEBEZIUM =
  'not a Debezium change event: expected Confluent-framed Avro or JsonConverter JSON with before/after/source/op (input.format is debezium)';

export class DebeziumDecoder implements MessageDecoder {
  private readonly avro = new Map<number, Promise<AvroCodec>>();
  private readonly avroKeys = new Map<number, Promise<string[]>>();
  /** Columns per JSON schema (or per column list without schemas), so an unchanged schema keeps one array. */
  private readonly jsonColumns = new Map<string, SinkColumn[]>();

  constructor(private readonly registry: SchemaRegistry) {}

  async decode(m: RawMessage): Promise<ChangeEvent | undefined> {
    const { topic, partition, offset, key, value } = m;
    // A tombstone (Kafka compaction's delete marker after Debezium's delete): nothing to apply.
    if (value === null || value.length === 0) return undefined;
    const fail = (reason: string, cause?: unknown) => new UndecodableMessageError(topic, partition, offset, reason, { cause });
    let env: Envelope;
    let columns: SinkColumn[];
    let valueSchemaId = -1;
    let keyColumns: string[] = [];
    if (value[0] === 0) {
      if (value.length < 5) throw fail(NOT_DEBEZIUM);
      valueSchemaId = value.readInt32BE(1);
      const codec = await lookupSchema(valueSchemaId, 'value', m, () => this.avroCodec(valueSchemaId));
      try {
        env = codec.type.fromBuffer(value.subarray(5)) as Envelope;
      } catch (err) {
        throw fail(`the Avro body does not match schema ${valueSchemaId}: ${(err as Error).message}`, err);
      }
      columns = codec.columns;
      if (key && key.length >= 5 && key[0] === 0) {
        const keyId = key.readInt32BE(1);
        keyColumns = await lookupSchema(keyId, 'key', m, () => this.avroKeyColumns(keyId));
      } else if (key && key.length) throw fail('the value is Avro but the key is not in Confluent wire format');
    } else {
      let doc: unknown;
      try {
        doc = json.parse(value.toString('utf8'));
      } catch (err) {
        throw fail(`${NOT_DEBEZIUM} (${(err as Error).message})`, err);
      }
      if (!doc || typeof doc !== 'object') throw fail(NOT_DEBEZIUM);
      const withSchema = 'schema' in doc && 'payload' in doc;
      env = (withSchema ? (doc as { payload: Envelope }).payload : doc) as Envelope;
      if (!env || typeof env !== 'object' || !('op' in env)) throw fail(NOT_DEBEZIUM);
      try {
        columns = withSchema ? this.schemaColumns((doc as { schema: ConnectSchema }).schema) : this.untyped(env);
      } catch (err) {
        throw fail(`cannot use the message's schema: ${(err as Error).message}`, err);
      }
      if (key && key.length) keyColumns = jsonKeyColumns(key, fail);
    }
    if (!env.op || !OPS.has(env.op)) throw fail(`unknown op ${JSON.stringify(env.op)}`);
    const source = env.source;
    if (!source || typeof source.schema !== 'string' || typeof source.table !== 'string')
      throw fail("source.schema / source.table are missing: not a Debezium PostgreSQL connector's event");
    if (source.lsn === null || source.lsn === undefined)
      throw fail('source.lsn is missing: the sink orders Debezium events by it (is this a Debezium PostgreSQL topic?)');
    const { commitLsn, eventIndex } = positionOf(env.op, source, fail);
    const unchangedToast: string[] = [];
    let before: Record<string, unknown> | null;
    let after: Record<string, unknown> | null;
    try {
      before = env.before ? rowImage(env.before, columns, { is: isUnavailable, unchanged: [] }) : null;
      after = env.after ? rowImage(env.after, columns, { is: isUnavailable, unchanged: unchangedToast }) : null;
    } catch (err) {
      throw fail(`a value does not fit its column: ${(err as Error).message}`, err);
    }
    return {
      topic,
      partition,
      offset: BigInt(offset),
      table: `${source.schema}.${source.table}`,
      op: env.op as Op,
      before,
      after,
      unchangedToast,
      commitLsn,
      eventIndex,
      txId: source.txId === null || source.txId === undefined ? null : Number(source.txId),
      commitTsMs: Number(source.ts_ms),
      eventTsMs: env.ts_ms === null || env.ts_ms === undefined ? null : Number(env.ts_ms),
      snapshot: source.snapshot !== null && source.snapshot !== undefined && String(source.snapshot) !== 'false',
      columns,
      valueSchemaId,
      keyColumns: env.op === 't' ? [] : keyColumns,
    };
  }

  private avroCodec(id: number): Promise<AvroCodec> {
    return oncePerSchema(this.avro, id, async () => {
      const schema = await this.registry.schemaById(id);
      const names = avroNames(schema as AvroSchema);
      const after = (schema as { fields?: { name: string; type: AvroSchema }[] }).fields?.find((f) => f.name === 'after');
      if (!after) throw new Error('not a Debezium envelope: the value schema has no `after` field');
      return { type: createAvroType(schema), columns: columnsOfStruct(connectFromAvro(after.type, names)) };
    });
  }

  private avroKeyColumns(id: number): Promise<string[]> {
    return oncePerSchema(this.avroKeys, id, async () => {
      const schema = await this.registry.schemaById(id);
      return ((schema as { fields?: { name: string }[] }).fields ?? []).map((f) => f.name);
    });
  }

  private schemaColumns(schema: ConnectSchema): SinkColumn[] {
    const cacheKey = JSON.stringify(schema);
    let cols = this.jsonColumns.get(cacheKey);
    if (!cols) {
      const after = schema.fields?.find((f) => f.field === 'after');
      if (!after) throw new Error('not a Debezium envelope: the schema has no `after` field');
      cols = columnsOfStruct(after);
      this.jsonColumns.set(cacheKey, cols);
    }
    return cols;
  }

  private untyped(env: Envelope): SinkColumn[] {
    const names = Object.keys(env.after ?? env.before ?? {});
    const cacheKey = `\u0000${names.join('\u0000')}`;
    let cols = this.jsonColumns.get(cacheKey);
    if (!cols) this.jsonColumns.set(cacheKey, (cols = untypedColumns(names)));
    return cols;
  }
}

function jsonKeyColumns(key: Buffer, fail: (reason: string) => Error): string[] {
  let doc: unknown;
  try {
    doc = json.parse(key.toString('utf8'));
  } catch {
    throw fail('the key is neither Confluent-framed Avro nor JSON');
  }
  if (doc && typeof doc === 'object' && 'schema' in doc && 'payload' in doc) {
    const schema = (doc as { schema: ConnectSchema }).schema;
    return (schema.fields ?? []).map((f) => f.field);
  }
  if (doc && typeof doc === 'object') return Object.keys(doc);
  throw fail('the key is not a JSON object of the primary-key columns');
}

/** Debezium's position fields → (commitLsn, eventIndex); see the comment at the top. */
export function positionOf(op: string, source: Source, fail: (reason: string) => Error): { commitLsn: bigint; eventIndex: number } {
  const lsn = BigInt(source.lsn!);
  if (op === 'r') return { commitLsn: lsn - 1n, eventIndex: 0 };
  let lastCommit: bigint | null = null;
  if (source.sequence) {
    let seq: unknown;
    try {
      seq = JSON.parse(source.sequence);
    } catch {
      seq = undefined;
    }
    if (!Array.isArray(seq) || seq.length !== 2)
      throw fail(`source.sequence ${JSON.stringify(source.sequence)} is not Debezium's ["<last commit LSN>","<LSN>"]`);
    if (seq[0] !== null) lastCommit = BigInt(seq[0] as string);
  }
  if (lastCommit === null) return { commitLsn: lsn, eventIndex: 0 };
  return { commitLsn: lastCommit, eventIndex: Number(lsn - lastCommit) };
}

/**
 * Debezium's placeholder for an unchanged TOASTed value it did not get (REPLICA IDENTITY DEFAULT):
 * `__debezium_unavailable_value`, for bytea its bytes, for arrays a one-element array of it. The column goes
 * to `unchanged` and silver keeps its value, as for Tide's `unchanged_toast`.
 */
function isUnavailable(v: unknown): boolean {
  if (v === UNAVAILABLE_VALUE || v === UNAVAILABLE_BASE64) return true;
  if (Buffer.isBuffer(v)) return v.equals(UNAVAILABLE_BYTES);
  if (Array.isArray(v)) return v.length === 1 && isUnavailable(v[0]);
  return false;
}

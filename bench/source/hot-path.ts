/**
 * Tide's CPU per streamed row, without Postgres in the measurement: one transaction of N synthetic pgoutput
 * insert messages for the drain benchmark's table (bench_rows, same 8 columns and values) goes through the
 * real hot path, ChangeHandler (pgoutput decode, Avro encode) → EventPublisher → RetryingProducer-free
 * PlatformaticProducer → the local stack's Kafka (acks from all in-sync replicas), and this process's own
 * CPU time is read with process.cpuUsage(). The machine's load changes the wall time, much less the CPU
 * time, so this is the figure to compare code changes with (bench/source-drain.ts measures the whole
 * drain against pg_recvlogical).
 *
 *   npx tsx bench/source/hot-path.ts [--rows 1000000] [--kafka real|none] [--partitions 3] [--batch 2048]
 *                                    [--compression none|gzip|snappy|lz4]
 *   node --cpu-prof --import tsx bench/source/hot-path.ts ...   (where the CPU goes; see profile.ts)
 *
 * --kafka none: a producer that drops every batch (decode + encode + publisher only). --batch is max.batch.size;
 * --compression compresses the record batches (through the library's encoder: produce-request.ts writes
 * uncompressed ones only). With --kafka real the broker's CPU over the same interval is printed too
 * (brokerCpuSecondsPer1MRows, read from /proc/<pid>/stat of the stack's Kafka JVM, its idling included).
 * Not part of the test suite. --kafka real needs the local stack (`npm run stack:up`).
 */
import { parseArgs } from 'node:util';
import { createHash } from 'node:crypto';
import { TableCodec } from '../../src/events/envelope.ts';
import { kafkaConnection } from '../../src/events/kafka-connection.ts';
import { PlatformaticProducer, type CompressionType, type EventProducer, type OutgoingMessage } from '../../src/events/kafka-producer.ts';
import { TransactionEvents } from '../../src/events/transaction-events.ts';
import type { CatalogColumn, CatalogTable } from '../../src/source/catalog.ts';
import { ChangeHandler } from '../../src/source/change-handler.ts';
import { EventPublisher } from '../../src/source/publisher.ts';
import { readStackEnv } from '../../src/stack/context.ts';
import { cpuSeconds as processCpuSeconds, kafkaPid } from './support.ts';
import { machine, round, say } from '../bench-common.ts';

const { values: args } = parseArgs({
  options: {
    rows: { type: 'string', default: '1000000' },
    kafka: { type: 'string', default: 'real' },
    partitions: { type: 'string', default: '3' },
    batch: { type: 'string', default: '2048' },
    compression: { type: 'string', default: 'none' },
  },
});
const N = Number(args.rows);
const OID = 77001;

const col = (name: string, typeOid: number, typeName: string, typeCategory: string, typeMod = -1): CatalogColumn => ({
  name,
  typeOid,
  typeMod,
  typeName,
  typeCategory,
  notNull: name !== 'note' && name !== 'score',
  hasDefault: false,
  defaultExpr: null,
  toastable: typeCategory === 'S',
});
/** bench_rows of bench/source/support.ts (COLUMNS). */
const TABLE: CatalogTable = {
  oid: OID,
  schema: 'public',
  name: 'bench_rows',
  qualified: 'public.bench_rows',
  replicaIdentity: 'd',
  columns: [
    col('id', 20, 'int8', 'N'),
    col('qty', 23, 'int4', 'N'),
    col('amount', 1700, 'numeric', 'N', ((12 << 16) | 2) + 4),
    col('name', 25, 'text', 'S'),
    col('created_at', 1184, 'timestamptz', 'D'),
    col('active', 16, 'bool', 'B'),
    col('note', 25, 'text', 'S'),
    col('score', 23, 'int4', 'N'),
  ],
  keyColumns: ['id'],
};

/** The values rowSql(g) gives, as Postgres prints them. */
function texts(g: number): string[] {
  const at = new Date(Date.UTC(2026, 0, 1) + g * 1000).toISOString().replace('T', ' ').replace('.000Z', '+00');
  return [
    String(g),
    String(g % 1000),
    ((g % 1_000_000) / 100).toFixed(2),
    `customer ${g}`,
    at,
    g % 2 === 0 ? 't' : 'f',
    `${createHash('md5').update(String(g)).digest('hex')} note`,
    String(g % 97),
  ];
}

function u8(n: number) {
  return Buffer.from([n]);
}
function u16(n: number) {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}
function u32(n: number) {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}
function u64(n: bigint) {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(n);
  return b;
}
const cstr = (s: string) => Buffer.concat([Buffer.from(s), u8(0)]);

function relationMessage(): Buffer {
  const parts = [Buffer.from('R'), u32(OID), cstr('public'), cstr('bench_rows'), Buffer.from('d'), u16(TABLE.columns.length)];
  for (const c of TABLE.columns) parts.push(u8(c.name === 'id' ? 1 : 0), cstr(c.name), u32(c.typeOid), u32(c.typeMod));
  return Buffer.concat(parts);
}
function insertMessage(g: number): Buffer {
  const parts: Buffer[] = [Buffer.from('I'), u32(OID), Buffer.from('N'), u16(TABLE.columns.length)];
  for (const t of texts(g)) {
    const b = Buffer.from(t);
    parts.push(Buffer.from('t'), u32(b.length), b);
  }
  return Buffer.concat(parts);
}

/** Drops every batch: decode + encode + publisher only. */
class NullProducer implements EventProducer {
  sent = 0;
  ensureTopics() {
    return Promise.resolve();
  }
  send(messages: OutgoingMessage[]) {
    this.sent += messages.length;
    return Promise.resolve();
  }
  close() {
    return Promise.resolve();
  }
}

async function main() {
  for (const [k, v] of Object.entries(readStackEnv())) process.env[k] ??= v;
  const m = machine();
  const prefix = `hot_${Date.now().toString(36)}`;
  const codec = new TableCodec(TABLE, prefix, { decimalHandlingMode: 'precise' }, () => undefined);
  codec.keySchemaId = 1;
  codec.valueSchemaId = 2;
  const txEvents = new TransactionEvents(`${prefix}.transaction`);
  txEvents.keySchemaId = 3;
  txEvents.valueSchemaId = 4;
  const producer: EventProducer =
    args.kafka === 'none'
      ? new NullProducer()
      : new PlatformaticProducer(
          kafkaConnection({
            'kafka.bootstrap.servers': (process.env.KAFKA_BROKERS ?? '127.0.0.1:59092').split(','),
            'kafka.security.protocol': 'PLAINTEXT',
            'kafka.ssl.endpoint.identification.algorithm': 'https',
          }),
          'tide-hot-path',
          undefined,
          undefined,
          args.compression as CompressionType,
        );
  await producer.ensureTopics([
    { topic: codec.topic, partitions: Number(args.partitions) },
    { topic: txEvents.topic, partitions: 1 },
  ]);

  say(`building ${N.toLocaleString('en')} insert messages ...`);
  const messages: Buffer[] = [relationMessage()];
  for (let g = 1; g <= N; g++) messages.push(insertMessage(g));
  const commitLsn = 0x1000000n + BigInt(N) * 200n;
  const begin = Buffer.concat([Buffer.from('B'), u64(commitLsn), u64(BigInt(Date.now() - 946_684_800_000) * 1000n), u32(4242)]);
  const commit = Buffer.concat([Buffer.from('C'), u8(0), u64(commitLsn), u64(commitLsn + 40n), u64(0n)]);

  let confirmed = 0n;
  let failure: Error | undefined;
  const publisher = new EventPublisher(producer, {
    maxBatch: Number(args.batch),
    lingerMs: 5,
    maxQueuedBatches: 4,
    maxMessageBytes: 1_048_588,
    onConfirmable: (lsn) => (confirmed = lsn),
    onError: (err) => (failure = err),
  });
  const codecs = new Map([[OID, codec]]);
  const handler = new ChangeHandler({
    publisher,
    txEvents,
    codecs,
    topicPrefix: prefix,
    db: 'bench',
    tombstonesOnDelete: true,
    onRelation: () => Promise.resolve(),
    isStreaming: () => failure === undefined,
    confirmedLsn: () => confirmed,
    onError: (err) => (failure = err),
  });

  global.gc?.();
  say(`streaming through ChangeHandler → EventPublisher → ${args.kafka === 'none' ? 'a producer that drops batches' : 'Kafka'} ...`);
  // The broker's CPU over the same interval (its JVM idles at a few % of a core; that is included).
  const broker = args.kafka === 'none' ? undefined : kafkaPid();
  const broker0 = processCpuSeconds(broker);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let lsn = 0x1000000;
  const feed = async (buf: Buffer) => {
    const wait = handler.onData(lsn, buf, 0);
    lsn += 200;
    if (wait) await wait;
  };
  await feed(begin);
  for (const msg of messages) await feed(msg);
  await feed(commit);
  await publisher.flush();
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const brokerSeconds = broker0 === undefined ? undefined : processCpuSeconds(broker)! - broker0;
  if (failure) throw failure;
  if (confirmed !== commitLsn + 40n) throw new Error(`confirmed ${confirmed}, expected ${commitLsn + 40n}`);
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  const result = {
    rows: N,
    kafka: args.kafka,
    partitions: Number(args.partitions),
    seconds: round(seconds),
    cpuSeconds: round(cpuSeconds),
    cpuUserSeconds: round(cpu.user / 1e6),
    cpuSystemSeconds: round(cpu.system / 1e6),
    cpuSecondsPer1MRows: round((cpuSeconds * 1e6) / N),
    rowsPerCpuSecond: Math.round(N / cpuSeconds),
    batch: Number(args.batch),
    compression: args.compression,
    brokerCpuSecondsPer1MRows: brokerSeconds === undefined ? undefined : round((brokerSeconds * 1e6) / N),
    load: m.loadavgAtStart,
  };
  console.log(JSON.stringify(result));
  publisher.close();
  await producer.close();
}

await main();

/**
 * Consumer comparison (issue 12 item 2): kafkajs' consumer (what the sink's intake uses) against
 * @platformatic/kafka's consumer (what the source's producer comes from), each consuming the same
 * N messages of one topic as a new consumer-group member from the earliest offset.
 *
 *   npx tsx bench/sink-consumer.ts [--messages 500000] [--partitions 3] [--value-bytes 150] [--repeats 3]
 *
 * Each client runs with the intake's fetch settings (kafkajs: maxWaitTimeInMs 1000, maxBytesPerPartition
 * 4 MiB, eachBatch; platformatic: the same limits, a stream with autocommit off) and only counts the
 * messages (keeps key, value and offset references as the intake's buffer does), so the figures are the
 * clients' own cost: wall time from subscribe to the last message, messages/s, and this process's CPU
 * seconds (user + system) over the same span. Runs alternate kafkajs / platformatic so that both see the
 * same machine state. Writes bench/results/sink-consumer-<date>.json. Needs the local stack.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Consumer as PlatformaticConsumer, Producer as PlatformaticProducer } from '@platformatic/kafka';
import { readStackEnv, PROJECT_ROOT } from '../src/stack/context.ts';
import { kafka } from '../test/support/kafka.ts';
import { BenchError, machine, provenance, round, say } from './bench-common.ts';
import { median } from './sink-bench-support.ts';

const { values: args } = parseArgs({
  options: {
    messages: { type: 'string', default: '500000' },
    partitions: { type: 'string', default: '3' },
    'value-bytes': { type: 'string', default: '150' },
    repeats: { type: 'string', default: '3' },
  },
});
const positive = (flag: string, raw: string | undefined): number => {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new BenchError('arguments', `--${flag} must be a positive integer, got ${raw}`);
  return n;
};
const N = positive('messages', args.messages);
const PARTITIONS = positive('partitions', args.partitions);
const VALUE_BYTES = positive('value-bytes', args['value-bytes']);
const REPEATS = positive('repeats', args.repeats);

for (const [k, v] of Object.entries(readStackEnv())) process.env[k] ??= v;
if (!process.env.KAFKA_BROKERS) throw new BenchError('stack', 'KAFKA_BROKERS is not set: run `npm run stack:up` first');
const brokers = process.env.KAFKA_BROKERS.split(',');

interface Run {
  client: 'kafkajs' | 'platformatic';
  seconds: number;
  messagesPerSecond: number;
  cpuSeconds: number;
  cpuMicrosPerMessage: number;
}

const TIMEOUT_MS = 300_000;

/** Time `consume` until it reports N messages; CPU is this process's user + system over the same span. */
async function timed(client: Run['client'], consume: (done: () => void, count: () => void) => Promise<() => Promise<void>>): Promise<Run> {
  let n = 0;
  let finish!: () => void;
  const done = new Promise<void>((r) => (finish = r));
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const stop = await consume(finish, () => {
    if (++n === N) finish();
  });
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      done,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new BenchError(client, `consumed ${n} of ${N} messages in ${TIMEOUT_MS / 1000} s`)), TIMEOUT_MS);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
  const seconds = (performance.now() - t0) / 1000;
  const c = process.cpuUsage(cpu0);
  await stop();
  const cpuSeconds = (c.user + c.system) / 1e6;
  return {
    client,
    seconds: round(seconds, 3),
    messagesPerSecond: Math.round(N / seconds),
    cpuSeconds: round(cpuSeconds, 3),
    cpuMicrosPerMessage: round((cpuSeconds * 1e6) / N, 2),
  };
}

async function main() {
  const m = machine();
  say(`machine: ${m.nproc} cores, ${m.memoryGiB} GiB, load ${m.loadavgAtStart.join(' ')}`);
  const topic = `bench-consumer-${Date.now().toString(36)}`;
  const admin = kafka().admin();
  await admin.connect();
  const groups: string[] = [];
  try {
    await admin.createTopics({ topics: [{ topic, numPartitions: PARTITIONS, replicationFactor: 1 }], waitForLeaders: true });
    say(`producing ${N.toLocaleString('en')} messages of ${VALUE_BYTES} B to ${topic} (${PARTITIONS} partitions) ...`);
    const producer = new PlatformaticProducer({ clientId: 'bench-consumer', bootstrapBrokers: brokers });
    const value = Buffer.alloc(VALUE_BYTES, 7);
    for (let from = 0; from < N; from += 10_000) {
      const messages = [];
      for (let i = from; i < Math.min(N, from + 10_000); i++)
        messages.push({ topic, key: Buffer.from(String(i)), value, partition: i % PARTITIONS });
      await producer.send({ messages });
    }
    await producer.close();

    const kafkajsRun = () =>
      timed('kafkajs', async (_done, count) => {
        const groupId = `${topic}-kafkajs-${groups.length}`;
        groups.push(groupId);
        const consumer = kafka().consumer({ groupId, maxWaitTimeInMs: 1000, maxBytesPerPartition: 4 << 20, sessionTimeout: 6000 });
        await consumer.connect();
        await consumer.subscribe({ topic, fromBeginning: true });
        const held: unknown[] = [];
        await consumer.run({
          autoCommit: false,
          eachBatch: async ({ batch }) => {
            for (const msg of batch.messages) {
              held.push(msg.value);
              count();
            }
            held.length = 0;
          },
        });
        return () => consumer.disconnect();
      });
    const platformaticRun = () =>
      timed('platformatic', async (_done, count) => {
        const groupId = `${topic}-platformatic-${groups.length}`;
        groups.push(groupId);
        const consumer = new PlatformaticConsumer({ clientId: 'bench-consumer', bootstrapBrokers: brokers, groupId });
        const stream = await consumer.consume({
          topics: [topic],
          mode: 'earliest',
          autocommit: false,
          maxWaitTime: 1000,
          maxBytesPerPartition: 4 << 20,
          sessionTimeout: 6000,
          heartbeatInterval: 1000,
        });
        const held: unknown[] = [];
        stream.on('data', (msg: { value: unknown }) => {
          held.push(msg.value);
          if (held.length > 1000) held.length = 0;
          count();
        });
        return async () => {
          await stream.close();
          await consumer.close(true);
        };
      });

    const runs: Run[] = [];
    for (let r = 0; r < REPEATS; r++) {
      for (const run of r % 2 ? [platformaticRun, kafkajsRun] : [kafkajsRun, platformaticRun]) {
        const result = await run();
        runs.push(result);
        say(
          `${result.client}: ${result.seconds} s, ${result.messagesPerSecond.toLocaleString('en')} msg/s, ${result.cpuSeconds} CPU s (${result.cpuMicrosPerMessage} µs/msg)`,
        );
      }
    }
    const summary = (client: Run['client']) => {
      const mine = runs.filter((x) => x.client === client);
      return {
        medianMessagesPerSecond: Math.round(median(mine.map((x) => x.messagesPerSecond))),
        medianCpuMicrosPerMessage: round(median(mine.map((x) => x.cpuMicrosPerMessage)), 2),
      };
    };
    const result = {
      benchmark: 'sink-consumer',
      date: new Date().toISOString(),
      machine: m,
      code: provenance(),
      messages: N,
      partitions: PARTITIONS,
      valueBytes: VALUE_BYTES,
      kafkajs: summary('kafkajs'),
      platformatic: summary('platformatic'),
      runs,
      loadavgAtEnd: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number),
    };
    console.log(JSON.stringify({ kafkajs: result.kafkajs, platformatic: result.platformatic, loadavgAtEnd: result.loadavgAtEnd }, null, 2));
    const dir = join(PROJECT_ROOT, 'bench', 'results');
    mkdirSync(dir, { recursive: true });
    const out = join(dir, `sink-consumer-${result.date.slice(0, 16).replace(':', '')}.json`);
    writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
    say(`wrote ${out}`);
  } finally {
    await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
    await admin.deleteGroups(groups).catch(() => undefined);
    await admin.disconnect();
  }
}

await main();

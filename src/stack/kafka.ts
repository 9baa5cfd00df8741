/**
 * A real single-node Apache Kafka broker (KRaft, combined broker+controller)
 * run from the official artifacts on Maven Central. There is no Docker here
 * and no npm/Debian package ships a broker, so Maven resolves
 * `org.apache.kafka:kafka_2.13` and its runtime dependencies into a cached
 * `libs/` directory and we launch `java -cp 'libs/*' kafka.Kafka`, which is
 * all `bin/kafka-server-start.sh` does (the scripts exist only in the binary
 * tarball, which is not on Maven Central).
 *
 * Version: 4.4.0, the newest release on Maven Central when written. kafkajs
 * 2.2.4 works against it: Kafka 4 dropped old protocol versions (KIP-896),
 * but for every API kafkajs implements, its highest version is still within
 * the broker's supported range (kafkajs picks min(its max, broker max) and
 * never looks at the broker's min). Checked with createTopics (partitions +
 * configs), describeConfigs, an idempotent producer, a consumer group,
 * fetchTopicOffsets and describeCluster.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { StackServiceError } from '../errors.ts';
import { ensureStackCerts } from './certs.ts';
import {
  ensureScramUsers,
  localhostFallbackNote,
  secureKafkaEnv,
  secureListenerAnswers,
  secureListenerProperties,
  secureListenerStatus,
} from './kafka-security.ts';
import type { StackContext, StackService } from './service.ts';
import { isPidAlive, portOpen, readPid, spawnDetached, stopPid, tailFile, waitUntil } from './process.ts';

export const KAFKA_VERSION = '4.4.0';
/** Kafka 4.4 logs through slf4j 1.7 and ships log4j2 2.25.5; the slf4j 1.x binding is not in its pom. */
const LOG4J_VERSION = '2.25.5';
const DEPENDENCY_PLUGIN_VERSION = '3.8.1';

const dir = (ctx: StackContext) => join(ctx.stackDir, 'kafka');
const dataDir = (ctx: StackContext) => join(dir(ctx), 'data');
const pidFile = (ctx: StackContext) => join(dir(ctx), 'kafka.pid');
const logPath = (ctx: StackContext) => join(dir(ctx), 'kafka.log');
const cacheDir = (ctx: StackContext) => join(ctx.cacheDir, 'kafka', KAFKA_VERSION);
const libsDir = (ctx: StackContext) => join(cacheDir(ctx), 'libs');
/** Written after Maven succeeds; lists the jars so a half-deleted cache is noticed. */
const markerFile = (ctx: StackContext) => join(cacheDir(ctx), 'libs.complete');
const brokers = (ctx: StackContext) => [`127.0.0.1:${ctx.ports.kafka}`];

/** Run a command to completion, appending its output to `logFile`; resolves to the exit code. */
function run(command: string, args: string[], cwd: string, logFile: string): Promise<number> {
  const fd = openSync(logFile, 'a');
  return new Promise<number>((resolve, reject) => {
    const child = spawn(command, args, { cwd, stdio: ['ignore', fd, fd] });
    child.once('error', reject);
    child.once('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  }).finally(() => closeSync(fd));
}

const pom = `<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>tide.stack</groupId>
  <artifactId>kafka-libs</artifactId>
  <version>${KAFKA_VERSION}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>${KAFKA_VERSION}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>${LOG4J_VERSION}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>${LOG4J_VERSION}</version></dependency>
  </dependencies>
  <build><plugins><plugin>
    <groupId>org.apache.maven.plugins</groupId><artifactId>maven-dependency-plugin</artifactId><version>${DEPENDENCY_PLUGIN_VERSION}</version>
  </plugin></plugins></build>
</project>
`;

function libsComplete(ctx: StackContext): boolean {
  if (!existsSync(markerFile(ctx))) return false;
  const jars = readFileSync(markerFile(ctx), 'utf8').split('\n').filter(Boolean);
  return jars.length > 0 && jars.every((jar) => existsSync(join(libsDir(ctx), jar)));
}

/** Everything goes to stdout, which spawnDetached appends to kafka.log (the stock config writes 6 files). */
const log4j2 = `status = warn
# Kafka logs from its own shutdown hook; log4j's hook would close the appender first.
shutdownHook = disable
appender.out.type = Console
appender.out.name = out
appender.out.target = SYSTEM_OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.out.ref = out
logger.request.name = kafka.request.logger
logger.request.level = warn
# The ~400-line "KafkaConfig values" dumps (several per start); server.properties sits next to this log.
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = warn
`;

function serverProperties(ctx: StackContext): string {
  const { kafka, kafkaController } = ctx.ports;
  const secure = secureListenerProperties(ctx);
  return `# Written by src/stack/kafka.ts on every start; edits are overwritten.
process.roles=broker,controller
node.id=1
# Static quorum rather than KIP-853 dynamic (--standalone): the voter set is
# then not baked into the formatted storage, so ports may change between runs.
controller.quorum.voters=1@127.0.0.1:${kafkaController}
controller.listener.names=CONTROLLER
listeners=${[`PLAINTEXT://127.0.0.1:${kafka}`, `CONTROLLER://127.0.0.1:${kafkaController}`, ...secure.listeners].join(',')}
advertised.listeners=${[`PLAINTEXT://127.0.0.1:${kafka}`, ...secure.advertised].join(',')}
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=${['PLAINTEXT:PLAINTEXT', 'CONTROLLER:PLAINTEXT', ...secure.protocolMap].join(',')}
log.dirs=${dataDir(ctx)}
auto.create.topics.enable=false
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
min.insync.replicas=1
group.initial.rebalance.delay.ms=0
# Retention is checked every 2 s instead of 5 min, so a test can set a topic's retention.ms and segment.ms low
# and see Kafka delete the segments (test/integration/sink-offsets.test.ts). Topics keep the default 7-day retention.
log.retention.check.interval.ms=2000
${secure.body}`;
}

/**
 * A Kafka cluster id is a random 16-byte UUID in unpadded base64url (what
 * `kafka-storage.sh random-uuid` prints); Kafka's Uuid.randomUuid also rejects
 * ids starting with '-', which command-line parsers would read as a flag.
 */
function newClusterId(): string {
  for (;;) {
    const id = randomBytes(16).toString('base64url');
    if (!id.startsWith('-')) return id;
  }
}

/** Size of kafka.log when the broker was last spawned, so errors quote only that run. */
let startedAtLogSize = 0;

/** ERROR lines (with the exception line after each) since byte `from`: after a failed start the tail is only shutdown noise. */
function logSummary(logFile: string, from: number): string {
  const text = existsSync(logFile) ? readFileSync(logFile).subarray(from).toString('utf8') : '';
  const errors = text.match(/^\[[^\]]*\] ERROR .*(\n[^[\n].*)?/gm);
  return errors ? errors.slice(0, 5).join('\n') : tailFile(logFile, 30);
}

/** One describeCluster round trip with kafkajs, bounded by `timeoutMs` overall. */
async function probe(ctx: StackContext, timeoutMs: number): Promise<boolean> {
  if (!(await portOpen(ctx.ports.kafka, '127.0.0.1', Math.min(1000, timeoutMs)))) return false;
  const admin = new Kafka({
    clientId: 'tide-stack-probe',
    brokers: brokers(ctx),
    logLevel: logLevel.NOTHING,
    connectionTimeout: Math.min(1000, timeoutMs),
    requestTimeout: timeoutMs,
    retry: { retries: 0 },
  }).admin();
  const check = (async () => {
    try {
      await admin.connect();
      const cluster = await admin.describeCluster();
      // Metadata can be answered before the broker has registered with the
      // controller; only call it ready once it lists itself and a controller.
      return cluster.brokers.length > 0 && cluster.controller !== null && cluster.controller >= 0;
    } catch {
      return false;
    } finally {
      await admin.disconnect().catch(() => undefined);
    }
  })();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)));
  return Promise.race([check, timeout]).finally(() => clearTimeout(timer));
}

export const kafkaService: StackService = {
  name: 'kafka',

  logPath,

  async install(ctx) {
    if (libsComplete(ctx)) return;
    const cache = cacheDir(ctx);
    mkdirSync(cache, { recursive: true });
    mkdirSync(dir(ctx), { recursive: true });
    const installLog = join(dir(ctx), 'install.log');
    ctx.say(`kafka: resolving Apache Kafka ${KAFKA_VERSION} from Maven Central (first run only)…`);
    writeFileSync(join(cache, 'pom.xml'), pom);
    // Copy into a scratch dir and rename, so an interrupted run never leaves a
    // libs/ that looks usable.
    const staging = `${libsDir(ctx)}.tmp`;
    rmSync(staging, { recursive: true, force: true });
    const goal = ['dependency:copy-dependencies', '-DincludeScope=runtime', `-DoutputDirectory=${staging}`];
    const args = ['-q', '-B', `-Dmaven.repo.local=${join(ctx.cacheDir, 'm2')}`, ...goal];
    const code = await run('mvn', args, cache, installLog).catch((err: unknown) => {
      throw new StackServiceError('kafka', installLog, `could not run mvn (is Maven installed?)`, { cause: err });
    });
    if (code !== 0) {
      throw new StackServiceError('kafka', installLog, `mvn exited ${code}:\n${tailFile(installLog)}`);
    }
    rmSync(libsDir(ctx), { recursive: true, force: true });
    renameSync(staging, libsDir(ctx));
    const jars = readdirSync(libsDir(ctx)).filter((f) => f.endsWith('.jar'));
    writeFileSync(markerFile(ctx), `${jars.join('\n')}\n`);
  },

  async start(ctx) {
    const logFile = logPath(ctx);
    mkdirSync(dataDir(ctx), { recursive: true });
    ensureStackCerts(ctx); // the secured listeners' keystore and truststore (kept when present)
    const props = join(dir(ctx), 'server.properties');
    const log4jFile = join(dir(ctx), 'log4j2.properties');
    writeFileSync(props, serverProperties(ctx));
    writeFileSync(log4jFile, log4j2);
    // Roughly what kafka-run-class.sh passes, with a smaller heap for a dev box.
    const heapAndGc = ['-Xms256m', '-Xmx768m', '-XX:+UseG1GC', '-XX:MaxGCPauseMillis=20', '-XX:+ExitOnOutOfMemoryError'];
    const jvm = [...heapAndGc, '-Djava.awt.headless=true', `-Dlog4j2.configurationFile=${log4jFile}`, '-cp', join(libsDir(ctx), '*')];

    // meta.properties appears once storage is formatted; formatting twice fails.
    if (!existsSync(join(dataDir(ctx), 'meta.properties'))) {
      ctx.say('kafka: formatting KRaft storage…');
      const before = existsSync(logFile) ? statSync(logFile).size : 0;
      const args = [...jvm, 'kafka.tools.StorageTool', 'format', '-t', newClusterId(), '-c', props];
      const code = await run('java', args, dir(ctx), logFile);
      if (code !== 0) {
        throw new StackServiceError('kafka', logFile, `storage format exited ${code}:\n${logSummary(logFile, before)}`);
      }
    }
    startedAtLogSize = existsSync(logFile) ? statSync(logFile).size : 0;
    spawnDetached({ command: 'java', args: [...jvm, 'kafka.Kafka', props], cwd: dir(ctx), logFile, pidFile: pidFile(ctx) });
  },

  async waitReady(ctx, timeoutMs) {
    const logFile = logPath(ctx);
    let exited = false;
    const ready = await waitUntil(
      async () => {
        const pid = readPid(pidFile(ctx));
        if (pid === undefined || !isPidAlive(pid)) return (exited = true);
        return probe(ctx, 2000);
      },
      timeoutMs,
      500,
    );
    const why = () => logSummary(logFile, startedAtLogSize);
    if (exited) {
      const what = readPid(pidFile(ctx)) === undefined ? 'broker not started (no pid file)' : 'broker exited during startup';
      throw new StackServiceError('kafka', logFile, `${what}:\n${why()}`);
    }
    if (!ready) {
      const where = `127.0.0.1:${ctx.ports.kafka}`;
      throw new StackServiceError('kafka', logFile, `broker not ready on ${where} after ${timeoutMs} ms:\n${why()}`);
    }
    // The secured listeners: SCRAM users (kept in the cluster metadata), then one real SCRAM login over SASL_SSL.
    const secureStarted = Date.now();
    await ensureScramUsers(ctx, logFile);
    if (!(await waitUntil(() => secureListenerAnswers(ctx, 5000), 30_000, 250)))
      throw new StackServiceError(
        'kafka',
        logFile,
        `the SASL_SSL listener on localhost:${ctx.ports.kafkaSaslSsl} refused the stack's SCRAM user:\n${why()}`,
      );
    ctx.say(
      `kafka: SASL_SSL (localhost:${ctx.ports.kafkaSaslSsl}) and mTLS (localhost:${ctx.ports.kafkaMtls}) listeners ready, +${((Date.now() - secureStarted) / 1000).toFixed(1)} s`,
    );
    const note = localhostFallbackNote();
    if (note) ctx.say(`kafka: ${note}`);
  },

  isUp: (ctx) => probe(ctx, 1500),

  stop: (ctx) => stopPid(pidFile(ctx)),

  listeners: (ctx) => secureListenerStatus(ctx),

  env: (ctx) => ({ KAFKA_BROKERS: brokers(ctx).join(','), ...secureKafkaEnv(ctx) }),
};

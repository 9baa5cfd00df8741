import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * A real Kafka Connect worker (standalone mode) running Debezium's PostgreSQL connector, from the jars
 * scripts/setup-debezium.sh fetched from Maven Central. One worker per test file; connectors are added and
 * removed through its REST API. Nothing here writes a Debezium message itself.
 */

const repo = fileURLToPath(new URL('../../', import.meta.url));
export const DEBEZIUM_VERSION = '3.6.1.Final';
const cacheDir = () => process.env.TIDE_CACHE_DIR ?? join(repo, '.cache');
const home = () => join(cacheDir(), 'debezium', DEBEZIUM_VERSION);

/** Why the Debezium tests cannot run here (undefined when they can). */
export function debeziumMissing(): string | undefined {
  if (!existsSync(join(home(), 'complete')))
    return `Debezium ${DEBEZIUM_VERSION} and Kafka Connect are not in ${home()}: run \`bash scripts/setup-debezium.sh\``;
  return undefined;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class ConnectWorker {
  private constructor(
    private readonly child: ChildProcess,
    readonly url: string,
    readonly dir: string,
    readonly logFile: string,
  ) {}

  /** Start a standalone worker against the stack's Kafka; resolves when its REST API answers. */
  static async start(brokers: string): Promise<ConnectWorker> {
    const dir = mkdtempSync(join(tmpdir(), 'tide-connect-'));
    const port = await freePort();
    const props = join(dir, 'worker.properties');
    writeFileSync(
      props,
      [
        `bootstrap.servers=${brokers}`,
        'key.converter=org.apache.kafka.connect.json.JsonConverter',
        'value.converter=org.apache.kafka.connect.json.JsonConverter',
        `offset.storage.file.filename=${join(dir, 'offsets')}`,
        'offset.flush.interval.ms=1000',
        `plugin.path=${join(home(), 'plugins')}`,
        // Debezium and Apicurio's converter ship no ServiceLoader manifests for Connect 4's discovery.
        'plugin.discovery=only_scan',
        `listeners=http://127.0.0.1:${port}`,
        '',
      ].join('\n'),
    );
    const log4j = join(dir, 'log4j2.properties');
    writeFileSync(
      log4j,
      [
        'status = warn',
        'appender.out.type = Console',
        'appender.out.name = out',
        'appender.out.layout.type = PatternLayout',
        'appender.out.layout.pattern = [%d] %p %m (%c)%n',
        'rootLogger.level = info',
        'rootLogger.appenderRef.out.ref = out',
        'logger.config.name = org.apache.kafka.common.config.AbstractConfig',
        'logger.config.level = warn',
        '',
      ].join('\n'),
    );
    const logFile = join(dir, 'connect.log');
    const fd = openSync(logFile, 'a');
    const child = spawn(
      process.env.JAVA_HOME ? join(process.env.JAVA_HOME, 'bin', 'java') : 'java',
      [
        '-Xms128m',
        '-Xmx512m',
        '-XX:+UseSerialGC',
        '-XX:TieredStopAtLevel=1',
        `-Dlog4j2.configurationFile=${log4j}`,
        '-cp',
        join(home(), 'runtime', '*'),
        'org.apache.kafka.connect.cli.ConnectStandalone',
        props,
      ],
      { stdio: ['ignore', fd, fd] },
    );
    const worker = new ConnectWorker(child, `http://127.0.0.1:${port}`, dir, logFile);
    const deadline = Date.now() + 120_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`Kafka Connect exited ${child.exitCode}:\n${worker.tail()}`);
      try {
        const res = await fetch(`${worker.url}/connectors`, { signal: AbortSignal.timeout(2000) });
        if (res.ok) break;
      } catch {
        // not up yet
      }
      if (Date.now() > deadline) {
        await worker.stop();
        throw new Error(`Kafka Connect did not answer within 120 s:\n${worker.tail()}`);
      }
      await sleep(500);
    }
    return worker;
  }

  tail(lines = 40): string {
    return existsSync(this.logFile) ? readFileSync(this.logFile, 'utf8').split('\n').slice(-lines).join('\n') : '';
  }

  /** Create a connector and wait until it and its task run. */
  async create(name: string, config: Record<string, string>): Promise<void> {
    const res = await fetch(`${this.url}/connectors`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name, config }),
    });
    if (!res.ok) throw new Error(`creating connector ${name}: HTTP ${res.status} ${await res.text()}`);
    const deadline = Date.now() + 60_000;
    for (;;) {
      const s = (await (await fetch(`${this.url}/connectors/${name}/status`)).json()) as {
        connector?: { state: string; trace?: string };
        tasks?: { state: string; trace?: string }[];
      };
      const failed = [s.connector, ...(s.tasks ?? [])].find((x) => x?.state === 'FAILED');
      if (failed) throw new Error(`connector ${name} failed: ${failed.trace ?? ''}`);
      if (s.connector?.state === 'RUNNING' && s.tasks?.length && s.tasks.every((t) => t.state === 'RUNNING')) return;
      if (Date.now() > deadline) throw new Error(`connector ${name} is not running after 60 s: ${JSON.stringify(s)}\n${this.tail()}`);
      await sleep(300);
    }
  }

  /** Stop a connector's task and start it again (a restart of the connector, as after a worker restart). */
  async restart(name: string): Promise<void> {
    const res = await fetch(`${this.url}/connectors/${name}/restart?includeTasks=true`, { method: 'POST' });
    if (!res.ok && res.status !== 202) throw new Error(`restarting connector ${name}: HTTP ${res.status} ${await res.text()}`);
  }

  async remove(name: string): Promise<void> {
    await fetch(`${this.url}/connectors/${name}`, { method: 'DELETE' });
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGTERM');
    const t = setTimeout(() => this.child.kill('SIGKILL'), 20_000);
    await exited;
    clearTimeout(t);
  }
}

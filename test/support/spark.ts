import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/**
 * Apache Spark with Delta Lake (pyspark from PyPI, Delta's jars from Maven Central, both cached by
 * scripts/setup-spark.sh) as a second independent reader of Tide's tables, and as a foreign writer.
 * One long-lived Spark process (scripts/spark_reader.py) serves a whole test file: Spark takes
 * tens of seconds to start on a 2-core machine.
 */

const repo = fileURLToPath(new URL('../../', import.meta.url));
const python = `${repo}.cache/spark-venv/bin/python`;
const script = `${repo}scripts/spark_reader.py`;
/** Keep in step with scripts/setup-spark.sh. */
export const SPARK_VERSION = '4.0.1';
export const DELTA_SPARK_VERSION = '4.0.1';
const cacheDir = resolve(process.env.TIDE_CACHE_DIR ?? join(repo, '.cache'));
const jars = [`delta-spark_2.13-${DELTA_SPARK_VERSION}.jar`, `delta-storage-${DELTA_SPARK_VERSION}.jar`].map((j) =>
  join(cacheDir, 'spark', `delta-${DELTA_SPARK_VERSION}`, j),
);
const PREFIX = '@tide-spark ';

/** Why Spark cannot run here (the setup step has not run), or undefined when it can. */
export function sparkMissing(): string | undefined {
  if (!existsSync(python)) return `the Spark venv ${python} is missing: run \`bash scripts/setup-spark.sh\``;
  const missing = jars.filter((j) => !existsSync(j));
  if (missing.length) return `Delta's jars ${missing.join(', ')} are missing: run \`bash scripts/setup-spark.sh\``;
  return undefined;
}

export interface SparkView {
  version: number;
  protocol: { min_reader_version: number; min_writer_version: number; table_features: string[] };
  partition_columns: string[];
  num_files: number;
  columns: string[];
  row_count: number;
  /** Sorted by all columns; encoded as delta_reader.py encodes them. */
  rows: unknown[][];
}

export interface SparkCommit {
  version: number;
  operation: string;
  operationParameters: Record<string, string>;
  engineInfo: string | null;
  isBlindAppend: boolean | null;
  readVersion: number | null;
}

export class SparkDelta {
  private queue: { resolve: (v: Record<string, unknown>) => void; reject: (e: Error) => void }[] = [];
  private stderr = '';
  private chain: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly child: ChildProcess,
    readonly sparkVersion: string,
  ) {}

  /** Start Spark (local[2]) and wait until its session is up. */
  static async start(timeoutMs = 240_000): Promise<SparkDelta> {
    const why = sparkMissing();
    if (why) throw new Error(why);
    const child = spawn(python, [script, '--jars', jars.join(',')], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, TZ: 'UTC', PYSPARK_PYTHON: python, SPARK_LOCAL_IP: '127.0.0.1' },
    });
    let spark: SparkDelta | undefined;
    let stderr = '';
    const ready = new Promise<string>((resolveReady, rejectReady) => {
      const timer = setTimeout(
        () => rejectReady(new Error(`Spark did not start within ${timeoutMs} ms:\n${stderr.slice(-4000)}`)),
        timeoutMs,
      );
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        const err = new Error(`Spark (scripts/spark_reader.py) exited (${code ?? signal}):\n${(spark?.stderr ?? stderr).slice(-4000)}`);
        rejectReady(err);
        for (const p of spark?.queue.splice(0) ?? []) p.reject(err);
      });
      child.stderr!.on('data', (d: Buffer) => {
        stderr = (stderr + d.toString('utf8')).slice(-64_000);
        if (spark) spark.stderr = stderr;
      });
      createInterface({ input: child.stdout! }).on('line', (line) => {
        if (!line.startsWith(PREFIX)) return;
        const msg = JSON.parse(line.slice(PREFIX.length)) as Record<string, unknown>;
        if (msg.ready) {
          clearTimeout(timer);
          resolveReady(String(msg.spark));
          return;
        }
        const pending = spark?.queue.shift();
        if (!pending) return;
        if (typeof msg.error === 'string') pending.reject(new Error(`Spark: ${msg.error}`));
        else pending.resolve(msg);
      });
    });
    try {
      spark = new SparkDelta(child, await ready);
    } catch (e) {
      child.kill('SIGKILL');
      throw e;
    }
    spark.stderr = stderr;
    return spark;
  }

  /** Send one request and wait for its answer (requests run one at a time, in order). */
  private request<T>(req: Record<string, unknown>): Promise<T> {
    const next = this.chain.then(
      () =>
        new Promise<T>((res, rej) => {
          this.queue.push({ resolve: res as (v: Record<string, unknown>) => void, reject: rej });
          this.child.stdin!.write(`${JSON.stringify(req)}\n`);
        }),
    );
    this.chain = next.catch(() => undefined);
    return next;
  }

  /** The table at `path` (a local directory), latest or at `version`. */
  read(path: string, version?: number): Promise<SparkView> {
    return this.request<SparkView>({ op: 'read', path, version });
  }

  async history(path: string): Promise<SparkCommit[]> {
    return (await this.request<{ history: SparkCommit[] }>({ op: 'history', path })).history;
  }

  /** Append `rows` (values as the readers print them; cast by Spark to the column types) in one Spark commit; its version. */
  async append(path: string, rows: Record<string, unknown>[]): Promise<number> {
    return (await this.request<{ version: number }>({ op: 'append', path, rows })).version;
  }

  /** Have Delta (Spark) write a checkpoint of the latest version; its version. */
  async checkpoint(path: string): Promise<number> {
    return (await this.request<{ version: number }>({ op: 'checkpoint', path })).version;
  }

  async sql(statement: string): Promise<(string | null)[][]> {
    return (await this.request<{ rows: (string | null)[][] }>({ op: 'sql', statement })).rows;
  }

  /** Stop Spark (its JVM exits with the Python process). */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise<void>((r) => this.child.once('exit', () => r()));
    this.child.stdin!.end(`${JSON.stringify({ op: 'stop' })}\n`);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 30_000);
    await exited;
    clearTimeout(timer);
  }
}

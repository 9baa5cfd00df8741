import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createWriteStream, existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { StackServiceError } from '../errors.ts';
import type { StackContext, StackService } from './service.ts';
import { isPidAlive, portOpen, readPid, spawnDetached, stopPid, tailFile } from './process.ts';

/**
 * A Confluent-API schema registry: Apicurio Registry 3 (a Quarkus app, Apache-2.0),
 * run from the assembly that its release build attaches on Maven Central
 * (`io.apicurio:apicurio-registry-app:<v>:tar.gz:all`). It serves Confluent's REST
 * API under `/apis/ccompat/v7`; we never implement a registry ourselves.
 *
 * Why 3.0.9 and not the newest 3.x: from 3.3 on the jars are compiled for Java 21
 * (class file 65) and these machines have Java 17 (Debian 12 has no 21). 3.0.9 is
 * the newest 3.x on Maven Central built for Java 17. Its assembly is Quarkus'
 * legacy-jar layout (`apicurio-registry-app-3.0.9-runner.jar` + `lib/`), not fast-jar.
 */
const VERSION = '3.0.9';
const ARTIFACT = `apicurio-registry-app-${VERSION}-all.tar.gz`;
const URL_BASE = 'https://repo1.maven.org/maven2/io/apicurio/apicurio-registry-app';
/** Pinned: the `.sha1` Maven Central publishes next to the assembly. */
const SHA1 = '4deac01752711c32da5662e7b778b61c5e904746';
const RUNNER_JAR = `apicurio-registry-app-${VERSION}-runner.jar`;
const MARKER = '.tide-installed';
const API_PATH = '/apis/ccompat/v7';

const run = promisify(execFile);
const installDir = (ctx: StackContext) => join(ctx.cacheDir, 'registry', VERSION);
/** The installed runner jar (after `install`): tests start a second, authenticated Apicurio from it. */
export const registryRunnerJar = (ctx: StackContext) => join(installDir(ctx), RUNNER_JAR);
const dir = (ctx: StackContext) => join(ctx.stackDir, 'registry');
const pidFile = (ctx: StackContext) => join(dir(ctx), 'registry.pid');
const baseUrl = (ctx: StackContext) => `http://127.0.0.1:${ctx.ports.registry}${API_PATH}`;
const javaBin = () => (process.env.JAVA_HOME ? join(process.env.JAVA_HOME, 'bin', 'java') : 'java');

/**
 * Everything passed to Quarkus/Apicurio as system properties, with why.
 *
 * Storage: Apicurio's default is an in-memory H2 database, so every schema id would
 * be lost on restart while Kafka (and Postgres) keep their data under `.stack/`:
 * records already in topics would then name ids the registry no longer knows. We
 * keep the same H2 engine but file-backed in `.stack/registry/data`, so the stack
 * survives `stack down`/`up`; deleting `.stack/` resets both together.
 */
function systemProperties(ctx: StackContext): Record<string, string> {
  return {
    'quarkus.http.host': '127.0.0.1',
    'quarkus.http.port': String(ctx.ports.registry),
    'apicurio.datasource.url': `jdbc:h2:file:${resolve(dir(ctx), 'data', 'registry')}`,
    // Confluent's default global compatibility is BACKWARD; Apicurio's is none. This
    // makes an incompatible version fail with 409 and /compatibility answer false for
    // subjects without their own level. Gotchas (Apicurio 3.0.9 ccompat, not Confluent):
    //  - GET /config (global) still answers NONE: it only reads rules stored via the API.
    //  - PUT /config/<subject> {"compatibility":"NONE"} deletes the subject's rule, so
    //    the subject falls back to this global BACKWARD instead of turning checks off.
    //  - GET /config/<subject> answers 200 NONE (not 404) for an existing subject with
    //    no level of its own; @kafkajs/confluent-schema-registry's register() then
    //    throws "Compatibility does not match". Subjects it creates itself are fine: it
    //    sets their level (BACKWARD by default) right after the first registration.
    'apicurio.rules.global.compatibility': 'BACKWARD',
    // Ids: keep the default (legacy-id-mode off), so a schema id is Apicurio's content
    // id: the same schema text under two subjects gets the same id, as in Confluent.
    // (Legacy mode would hand out one id per subject version instead.)
    'apicurio.ccompat.legacy-id-mode.enabled': 'false',
    // Match schemas by canonical form within a subject, as Confluent does: re-registering
    // a schema that differs only in formatting returns the existing id and version. (Across
    // subjects ids follow the stored text, so such a copy elsewhere gets a new id.)
    'apicurio.ccompat.use-canonical-hash': 'true',
    // Confluent lets clients delete subjects and versions (DELETE /subjects/...).
    'apicurio.rest.deletion.artifact.enabled': 'true',
    'apicurio.rest.deletion.artifact-version.enabled': 'true',
    // Nothing here reaches the internet: OIDC is off by default (quarkus.oidc.tenant-enabled
    // =false), storage is local H2, and event sinks/KafkaSQL are unset. Say so explicitly.
    'quarkus.oidc.tenant-enabled': 'false',
    'apicurio.events.ksink': '',
  };
}

/** Download `url` to `file`, verifying its SHA-1 on the way. */
async function download(url: string, file: string, sha1: string): Promise<void> {
  const res = await fetch(url);
  if (!res.ok || !res.body) throw new Error(`GET ${url}: HTTP ${res.status}`);
  const hash = createHash('sha1');
  const tap = new Transform({
    transform(chunk: Buffer, _enc, done) {
      hash.update(chunk);
      done(null, chunk);
    },
  });
  await pipeline(Readable.fromWeb(res.body as import('node:stream/web').ReadableStream), tap, createWriteStream(file));
  const got = hash.digest('hex');
  if (got !== sha1) throw new Error(`${url}: SHA-1 ${got}, expected ${sha1}`);
}

async function getOk(ctx: StackContext, path: string, timeoutMs: number): Promise<boolean> {
  try {
    const res = await fetch(`${baseUrl(ctx)}${path}`, { signal: AbortSignal.timeout(timeoutMs) });
    await res.body?.cancel();
    return res.status === 200;
  } catch {
    return false;
  }
}

export const registryService: StackService = {
  name: 'registry',

  logPath: (ctx) => join(dir(ctx), 'registry.log'),

  async install(ctx) {
    const target = installDir(ctx);
    if (existsSync(join(target, MARKER))) return;
    const fail = (message: string, cause?: unknown) => new StackServiceError('registry', this.logPath(ctx), message, { cause });
    try {
      const { stderr } = await run(javaBin(), ['-version']);
      const major = Number(/version "(\d+)/.exec(stderr)?.[1] ?? 0);
      if (major < 17) throw new Error(`Java ${major} found`);
    } catch (err) {
      throw fail(`Apicurio Registry ${VERSION} needs Java 17+ (apt-get install openjdk-17-jre-headless, or set JAVA_HOME)`, err);
    }
    const url = `${URL_BASE}/${VERSION}/${ARTIFACT}`;
    ctx.say(`registry: downloading Apicurio Registry ${VERSION} from Maven Central (~104 MB) ...`);
    const partial = `${target}.partial-${process.pid}`;
    rmSync(partial, { recursive: true, force: true });
    mkdirSync(partial, { recursive: true });
    try {
      const archive = join(partial, ARTIFACT);
      await download(url, archive, SHA1);
      await run('tar', ['--no-same-owner', '-xzf', archive, '-C', partial]);
      rmSync(archive);
      if (!existsSync(join(partial, RUNNER_JAR))) throw new Error(`${ARTIFACT} has no ${RUNNER_JAR}`);
      writeFileSync(join(partial, MARKER), `${url}\nsha1 ${SHA1}\n`);
      rmSync(target, { recursive: true, force: true });
      renameSync(partial, target);
    } catch (err) {
      rmSync(partial, { recursive: true, force: true });
      throw fail(`could not install Apicurio Registry ${VERSION} from ${url}: ${(err as Error).message}`, err);
    }
  },

  async start(ctx) {
    const home = installDir(ctx);
    if (!existsSync(join(home, MARKER))) {
      throw new StackServiceError('registry', this.logPath(ctx), `not installed in ${home}; run install first`);
    }
    if (await portOpen(ctx.ports.registry)) {
      throw new StackServiceError(
        'registry',
        this.logPath(ctx),
        `port ${ctx.ports.registry} is already taken; stop what holds it or set TIDE_REGISTRY_PORT`,
      );
    }
    mkdirSync(join(dir(ctx), 'data'), { recursive: true });
    const props = Object.entries(systemProperties(ctx)).map(([k, v]) => `-D${k}=${v}`);
    spawnDetached({
      command: javaBin(),
      // ~230 MB RSS idle; SerialGC keeps the footprint small on these 2-core machines.
      args: ['-Xms64m', '-Xmx512m', '-XX:+UseSerialGC', ...props, '-jar', RUNNER_JAR],
      cwd: home,
      logFile: this.logPath(ctx),
      pidFile: pidFile(ctx),
    });
  },

  async waitReady(ctx, timeoutMs) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (await getOk(ctx, '/subjects', 2000)) return;
      const pid = readPid(pidFile(ctx));
      if (pid === undefined || !isPidAlive(pid)) {
        throw new StackServiceError(
          'registry',
          this.logPath(ctx),
          `the registry process exited during start-up:\n${tailFile(this.logPath(ctx))}`,
        );
      }
      if (Date.now() >= deadline) {
        throw new StackServiceError(
          'registry',
          this.logPath(ctx),
          `GET ${baseUrl(ctx)}/subjects did not answer 200 within ${timeoutMs} ms:\n${tailFile(this.logPath(ctx))}`,
        );
      }
      await sleep(250);
    }
  },

  isUp: (ctx) => getOk(ctx, '/subjects', 1500),

  async stop(ctx) {
    await stopPid(pidFile(ctx));
  },

  env: (ctx) => ({ SCHEMA_REGISTRY_URL: baseUrl(ctx) }),
};

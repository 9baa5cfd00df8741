/**
 * What every benchmark shares: progress lines on stderr, the machine and the code a figure was measured
 * on (so each result file says where it came from), and topics timestamped by the broker.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import kafkajs, { type Admin } from 'kafkajs';
import { TideError } from '../src/errors.ts';
import { PROJECT_ROOT } from '../src/stack/context.ts';

const { ConfigResourceTypes } = kafkajs; // not a named export Node's CJS lexer detects

/** A benchmark step that could not produce its figure; names the step and what to check. */
export class BenchError extends TideError {
  constructor(step: string, message: string, options: { cause?: unknown } = {}) {
    super(`${step}: ${message}`, options);
    this.name = 'BenchError';
  }
}

export const say = (m: string): void => void process.stderr.write(`[${new Date().toISOString().slice(11, 23)}] ${m}\n`);
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
export const round = (x: number, d = 2): number => Math.round(x * 10 ** d) / 10 ** d;

/** The machine a figure was measured on, with its load when the run started. */
export function machine() {
  const info = readFileSync('/proc/cpuinfo', 'utf8');
  return {
    nproc: cpus().length,
    memoryGiB: round(totalmem() / 2 ** 30, 1),
    cpuModel: /^model name\s*:\s*(.*)$/m.exec(info)?.[1] ?? 'unknown',
    loadavgAtStart: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number),
    node: process.version,
  };
}

/**
 * The node flags Tide's processes start with: those on bin/tide.js's shebang line (`npm run tide` passes the
 * same). Benchmarks that spawn `node bin/tide.js` pass them, as a user starting the processes does.
 */
export function tideNodeFlags(): string[] {
  const first = readFileSync(`${PROJECT_ROOT}/bin/tide.js`, 'utf8').split('\n', 1)[0]!;
  const words = first.replace(/^#!\S*env(\s+-S)?\s+/, '').split(/\s+/);
  if (words[0] !== 'node')
    throw new BenchError(
      'node flags',
      `bin/tide.js's first line (${first}) does not start node: keep it as #!/usr/bin/env -S node <flags>`,
    );
  return words.slice(1);
}

/** Which code was measured: the commit, and files under src/ that differ from it. */
export function provenance() {
  const git = (...a: string[]) => {
    try {
      return execFileSync('git', a, { cwd: PROJECT_ROOT, encoding: 'utf8' }).trim();
    } catch {
      return undefined;
    }
  };
  return {
    commit: git('rev-parse', 'HEAD'),
    uncommittedInSrc: git('status', '--porcelain', '--', 'src')?.split('\n').filter(Boolean) ?? [],
  };
}

/** Have the broker stamp `topic`'s records on append (LogAppendTime), so a latency is commit time → Kafka's clock. */
export async function useLogAppendTime(admin: Admin, topic: string): Promise<void> {
  await admin.alterConfigs({
    validateOnly: false,
    resources: [
      { type: ConfigResourceTypes.TOPIC, name: topic, configEntries: [{ name: 'message.timestamp.type', value: 'LogAppendTime' }] },
    ],
  });
  const described = await admin.describeConfigs({
    includeSynonyms: false,
    resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configNames: ['message.timestamp.type'] }],
  });
  const value = described.resources[0]?.configEntries[0]?.configValue;
  if (value !== 'LogAppendTime')
    throw new BenchError('kafka', `could not set message.timestamp.type=LogAppendTime on ${topic} (got ${value})`);
  await sleep(2000); // let the config reach the partition leader
}

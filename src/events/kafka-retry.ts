import { QUIET_MONITOR, reportingRetries, type ConnectionMonitor } from '../connection-monitor.ts';
import { ConnectionError, TideError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { RetriesExhaustedError, withRetries, type RetryPolicy } from '../retry.ts';
import type { KafkaConnection } from './kafka-connection.ts';
import { explainKafkaError, invalidTopicName, topicCreationError, topicNameProblem } from './kafka-errors.ts';
import { KafkaDeliveryError, type EventProducer, type OutgoingMessage, type TopicSpec } from './kafka-producer.ts';

/**
 * Every Kafka call a connector makes goes through `KafkaRetrier.run`: each try is bounded in time, a
 * transient failure (no broker listening, a broker restarting, a leadership change) is logged as
 * "waiting for Kafka at …" and retried with backoff, reported to the ConnectionMonitor (/readyz, the
 * `tide_connection_*` metrics), and the end is a ConnectionError naming the brokers, the cause and the fix.
 *
 * Budgets:
 * - until this process has reached Kafka once, at most STARTUP_RETRY_MS (or errors.retry.timeout when
 *   shorter; -1 still waits for ever): a broker that cannot be reached at all since the start is most
 *   often a wrong `kafka.bootstrap.servers`, which should fail in seconds, and an orchestrator restarts
 *   a process that started before its broker anyway;
 * - once Kafka answered, `errors.retry.timeout` (a broker restart or failover is ridden out).
 * A stop (the signal) ends the waiting at once; a try already running gets STOP_GRACE_MS to finish, so
 * a clean shutdown still flushes to a healthy broker.
 */
export const STARTUP_RETRY_MS = 15_000;
/** A try still running when a stop is asked gets this long before it is abandoned. */
export const STOP_GRACE_MS = 2_000;
/** The longest one try may take before it counts as failed (the clients' own timeouts are shorter). */
export const ATTEMPT_TIMEOUT_MS = 30_000;

/** A stop was asked while Tide waited for Kafka. */
export class StoppedWhileWaitingError extends TideError {
  constructor(what: string, last: unknown) {
    super(`stopped while ${what}${last instanceof Error ? `: ${last.message}` : ''}`, { cause: last, retriable: false });
    this.name = 'StoppedWhileWaitingError';
  }
}

export class KafkaRetrier {
  readonly target: string;
  /** Aborted when the connector stops (set by the connector's run). */
  signal: AbortSignal | undefined;
  private reached = false;
  private down = false;

  constructor(
    readonly conn: KafkaConnection,
    private readonly policy: RetryPolicy,
    private readonly log: Logger,
    private readonly monitor: ConnectionMonitor = QUIET_MONITOR,
  ) {
    this.target = conn.target;
  }

  /** The budget of the next failure: short until Kafka answered once in this process. */
  private budget(): RetryPolicy {
    if (this.reached || this.policy.timeoutMs <= 0) return this.policy;
    return { ...this.policy, timeoutMs: Math.min(this.policy.timeoutMs, STARTUP_RETRY_MS) };
  }

  /** Run `fn` (one Kafka call, `doing` says what: `creating topics`) with bounded tries and retries. */
  async run<T>(doing: string, fn: () => Promise<T>, opts: { translate?: (err: unknown) => TideError | undefined } = {}): Promise<T> {
    const budget = this.budget();
    const what = `waiting for Kafka at ${this.target} (${doing})`;
    let last: unknown;
    let tries = 0;
    const started = Date.now();
    try {
      const result = await withRetries(
        budget,
        reportingRetries(this.monitor, 'kafka', this.target, { what, log: this.log, signal: this.signal }),
        async () => {
          tries++;
          try {
            return await bounded(fn(), this.signal, what);
          } catch (err) {
            if (err instanceof StoppedWhileWaitingError) throw new StoppedWhileWaitingError(what, last);
            last = opts.translate?.(err) ?? this.translate(err, doing);
            throw last;
          }
        },
      );
      this.reached = true;
      if (this.down) {
        this.down = false;
        this.monitor.up('kafka', this.target);
      }
      return result;
    } catch (err) {
      this.down = true;
      if (this.signal?.aborted && !(err instanceof StoppedWhileWaitingError)) throw new StoppedWhileWaitingError(what, err);
      throw this.exhausted(err, budget, tries, Date.now() - started);
    }
  }

  private translate(err: unknown, doing: string): TideError {
    if (err instanceof TideError && !(err instanceof KafkaDeliveryError)) return err;
    const cause = err instanceof KafkaDeliveryError ? (err.cause ?? err) : err;
    const explained = explainKafkaError(this.conn, cause, doing);
    // @platformatic/kafka marks what its own retries must not repeat (a message too large, a missing right);
    // neither may ours. (explainKafkaError's catch-all trusts kafkajs' `retriable` only.)
    if (explained.retriable && explained.code === 'kafka' && saysNoRetry(cause))
      return new ConnectionError(explained.kind, explained.target, explained.problem, explained.fix, {
        cause,
        retriable: false,
        code: explained.code,
      });
    return explained;
  }

  /** The budget ran out: the last ConnectionError, saying for how long it was tried. */
  private exhausted(err: unknown, budget: RetryPolicy, tries: number, elapsedMs: number): unknown {
    if (!(err instanceof RetriesExhaustedError) || !(err.cause instanceof ConnectionError)) return err;
    const last = err.cause;
    const startup = budget.timeoutMs !== this.policy.timeoutMs;
    const seconds = Math.round(elapsedMs / 1000);
    const how = startup
      ? `tried ${tries} times over ${seconds} s; at start-up Tide waits at most ${Math.round(budget.timeoutMs / 1000)} s for a broker it has not reached yet`
      : `tried ${tries} times over ${seconds} s, errors.retry.timeout is ${Math.round(budget.timeoutMs / 1000)} s`;
    const fix = startup ? last.fix : `${last.fix}; raise errors.retry.timeout to wait longer (-1: for ever)`;
    return new ConnectionError(last.kind, last.target, `${last.problem} (${how})`, fix, {
      cause: last.cause,
      retriable: false,
      code: last.code,
      exitCode: last.exitCode,
    });
  }
}

/** `work`, or a rejection when it takes longer than ATTEMPT_TIMEOUT_MS, or STOP_GRACE_MS after `signal` aborts. */
export function bounded<T>(work: Promise<T>, signal: AbortSignal | undefined, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  let graceTimer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  const limits = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ATTEMPT_TIMEOUT_MS / 1000} s`)), ATTEMPT_TIMEOUT_MS);
    onAbort = () => {
      graceTimer = setTimeout(() => reject(new StoppedWhileWaitingError(what, undefined)), STOP_GRACE_MS);
    };
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
  });
  work.catch(() => undefined); // an abandoned try's late failure is nobody's business
  return Promise.race([work, limits]).finally(() => {
    clearTimeout(timer);
    clearTimeout(graceTimer);
    if (onAbort) signal?.removeEventListener('abort', onAbort);
  });
}

/**
 * The source's producer with Kafka failures retried (KafkaRetrier) and topic errors named.
 *
 * Delivery retries resend the same batch, in the same order, on the same idempotent producer, and the
 * publisher sends nothing else until it is acknowledged (one batch in flight). @platformatic/kafka
 * advances a partition's sequence number only when the broker acknowledged it, so the resend carries
 * the same producer id and sequence numbers: the broker writes what it did not have and answers the
 * part it had as a duplicate (KIP-98), so a retry neither reorders nor duplicates. If the broker lost
 * the producer's state (UNKNOWN_PRODUCER_ID, OUT_OF_ORDER_SEQUENCE_NUMBER: not retriable) the source
 * stops; the restart resends from the confirmed LSN and consumers drop the duplicates by
 * (commit_lsn, event_index), as after a crash.
 */
export class RetryingProducer implements EventProducer {
  constructor(
    private readonly inner: EventProducer,
    readonly kafka: KafkaRetrier,
  ) {}

  async ensureTopics(specs: TopicSpec[]): Promise<void> {
    for (const s of specs) {
      const problem = topicNameProblem(s.topic);
      if (problem) throw invalidTopicName(s.topic, problem);
    }
    await this.kafka.run(`creating topics ${summary(specs.map((s) => s.topic))}`, () => this.inner.ensureTopics(specs), {
      translate: topicCreationError,
    });
  }

  send(messages: OutgoingMessage[]): Promise<void> {
    return this.kafka.run(`delivering ${messages.length} events`, () => this.inner.send(messages));
  }

  async partitionEnds(topic: string): Promise<bigint[]> {
    const inner = this.inner;
    if (!inner.partitionEnds) throw new Error(`the producer cannot tell the partitions of ${topic}`);
    return this.kafka.run(`reading the end offsets of ${topic}`, () => inner.partitionEnds!(topic));
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

function summary(names: string[]): string {
  return names.length <= 3 ? names.join(', ') : `${names.slice(0, 3).join(', ')} and ${names.length - 3} more`;
}

/** Whether a @platformatic/kafka error chain says the failure is not worth retrying (`canRetry: false`, and no network error). */
function saysNoRetry(err: unknown, depth = 0): boolean {
  if (!err || typeof err !== 'object' || depth > 8) return false;
  const e = err as { canRetry?: unknown; code?: unknown; cause?: unknown; errors?: unknown };
  if (e.code === 'PLT_KFK_NETWORK') return false;
  if (e.canRetry === false) return true;
  if (Array.isArray(e.errors)) return e.errors.length > 0 && e.errors.every((x) => saysNoRetry(x, depth + 1));
  return saysNoRetry(e.cause, depth + 1);
}

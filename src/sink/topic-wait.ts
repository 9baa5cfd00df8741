import type { SinkConfig } from '../config/sink-config.ts';
import type { ConnectionMonitor } from '../connection-monitor.ts';
import { ConnectionError, TideError } from '../errors.ts';
import { StoppedWhileWaitingError, type KafkaRetrier } from '../events/kafka-retry.ts';
import type { Logger } from '../log.ts';
import { RetriesExhaustedError, withRetries, type RetryPolicy } from '../retry.ts';

/**
 * The sink's topics, waited for. A sink may start before the source has created its topics (the order of
 * starts is nobody's business in an orchestrator): it waits for every topic of `topics`, or for one topic
 * matching `topics.regex`, for at most `errors.retry.timeout`, logging which topics it waits for and
 * telling the ConnectionMonitor (so /readyz says it), then stops with an error naming them.
 */
class TopicsNotThere extends TideError {
  constructor(readonly waitingFor: string) {
    super(waitingFor, { retriable: true });
    this.name = 'TopicsNotThere';
  }
}

/** Topics the regex form never picks: the source's transaction topic, dead-letter topics, Kafka's own. */
export function sinkTopicFilter(regex: string): (topic: string) => boolean {
  const re = new RegExp(`^(?:${regex})$`);
  return (t) => re.test(t) && !t.endsWith('.transaction') && !t.endsWith('.dlq') && !t.startsWith('__');
}

export async function waitForTopics(opts: {
  connector: string;
  config: SinkConfig;
  kafka: KafkaRetrier;
  listTopics: () => Promise<string[]>;
  policy: RetryPolicy;
  monitor: ConnectionMonitor;
  log: Logger;
  signal: AbortSignal;
}): Promise<string[]> {
  const { config: c, kafka, monitor, log } = opts;
  const pick = (all: string[]): string[] => {
    if (c.topics?.length) {
      const have = new Set(all);
      const missing = c.topics.filter((t) => !have.has(t));
      if (missing.length) throw new TopicsNotThere(`waiting for topics ${missing.join(', ')} to exist`);
      return c.topics;
    }
    const found = all.filter(sinkTopicFilter(c['topics.regex']!)).sort();
    if (!found.length) throw new TopicsNotThere(`waiting for a topic that matches topics.regex ${c['topics.regex']}`);
    return found;
  };
  let waited = false;
  const started = Date.now();
  try {
    const topics = await withRetries(
      opts.policy,
      {
        what: 'waiting for topics',
        signal: opts.signal,
        isRetriable: (err) => err instanceof TopicsNotThere,
        onRetry: (err, _attempt, retryInMs) => {
          waited = true;
          const what = (err as TopicsNotThere).waitingFor;
          monitor.waiting('kafka', kafka.target, what);
          log.warn(
            { retryInMs, errorsRetryTimeoutMs: opts.policy.timeoutMs },
            `${what} (the source connector creates them); looking again until errors.retry.timeout`,
          );
        },
      },
      async () => pick(await kafka.run('listing topics', opts.listTopics)),
    );
    if (waited) {
      monitor.up('kafka', kafka.target);
      log.info({ topics, waitedSeconds: Math.round((Date.now() - started) / 1000) }, 'the topics exist now');
    }
    return topics;
  } catch (err) {
    const last = err instanceof RetriesExhaustedError ? err.cause : err;
    if (!(last instanceof TopicsNotThere)) throw err;
    if (opts.signal.aborted) throw new StoppedWhileWaitingError(`${last.waitingFor}`, undefined);
    const seconds = Math.round((Date.now() - started) / 1000);
    throw new ConnectionError(
      'kafka',
      kafka.target,
      `sink ${opts.connector} is still ${last.waitingFor} after ${seconds} s (errors.retry.timeout ${Math.round(opts.policy.timeoutMs / 1000)} s)`,
      c.topics?.length
        ? 'start the source connector first (it creates the topics), or fix `topics`; raise errors.retry.timeout to wait longer'
        : 'start the source connector first (it creates the topics), or fix `topics.regex`; raise errors.retry.timeout to wait longer',
      { cause: last, retriable: false, code: 'missing-topics' },
    );
  }
}

import { describe, expect, it } from 'vitest';
import { reportingRetries } from '../../src/connection-monitor.ts';
import { ConnectionError } from '../../src/errors.ts';
import { PassThrough } from 'node:stream';
import { kafkaConnection, type KafkaConnectionConfig } from '../../src/events/kafka-connection.ts';
import { invalidTopicName, topicCreationError, topicNameProblem } from '../../src/events/kafka-errors.ts';
import { bounded, KafkaRetrier, StoppedWhileWaitingError } from '../../src/events/kafka-retry.ts';
import { createLogger } from '../../src/log.ts';
import { ConnectionHealth } from '../../src/ops/connection-health.ts';
import { TideMetrics } from '../../src/ops/metrics.ts';
import { withRetries } from '../../src/retry.ts';

describe('ConnectionHealth (readiness and tide_connection_* metrics)', () => {
  it('is not ready while a connection is retried, counts the retries, and is ready again once it is up', async () => {
    const metrics = new TideMetrics({ processMetrics: false });
    let now = 1_000_000;
    const health = new ConnectionHealth('orders', metrics, () => now);
    const ready = health.readiness();
    expect(await ready()).toEqual({ ready: true, component: 'connections of orders' });

    health.retrying('kafka', '127.0.0.1:9092', 'kafka (127.0.0.1:9092): nothing accepts connections there (ECONNREFUSED)');
    now += 12_000;
    health.retrying('kafka', '127.0.0.1:9092', 'kafka (127.0.0.1:9092): nothing accepts connections there (ECONNREFUSED)');
    expect(await ready()).toMatchInlineSnapshot(`
      {
        "component": "connections of orders",
        "ready": false,
        "reason": "kafka (127.0.0.1:9092) is down for 12 s, 2 retries so far (errors.retry.timeout): kafka (127.0.0.1:9092): nothing accepts connections there (ECONNREFUSED)",
      }
    `);
    let text = await metrics.scrape();
    expect(text).toContain('tide_connection_retries_total{connector="orders",connection="kafka"} 2');
    expect(text).toContain('tide_connection_up{connector="orders",connection="kafka"} 0');

    health.up('kafka', '127.0.0.1:9092');
    expect((await ready()).ready).toBe(true);
    text = await metrics.scrape();
    expect(text).toContain('tide_connection_up{connector="orders",connection="kafka"} 1');
    expect(text).toContain('tide_connection_retries_total{connector="orders",connection="kafka"} 2');

    health.waiting('kafka', '127.0.0.1:9092', 'waiting for topics a.public.t to exist');
    expect(await ready()).toEqual({
      ready: false,
      component: 'connections of orders',
      reason: 'kafka (127.0.0.1:9092): waiting for topics a.public.t to exist',
    });
    health.close();
    expect(await metrics.scrape()).not.toContain('tide_connection_up{');
  });

  it('withRetries reports through a monitor: each retry, then the recovery', async () => {
    const seen: string[] = [];
    const monitor = {
      retrying: (kind: string, _t: string, problem: string) => seen.push(`retrying ${kind}: ${problem}`),
      waiting: () => undefined,
      up: (kind: string) => seen.push(`up ${kind}`),
    };
    await withRetries(
      { timeoutMs: 5000, maxDelayMs: 2, initialDelayMs: 1 },
      reportingRetries(monitor, 'kafka', 'b:9092', { what: 'test' }),
      async (attempt) => {
        if (attempt < 2) throw new ConnectionError('kafka', 'b:9092', 'down', 'wait', { retriable: true });
        return 1;
      },
    );
    expect(seen).toEqual(['retrying kafka: kafka (b:9092): down. wait', 'up kafka']);
  });
});

describe('Kafka errors in Tide words', () => {
  it('names a topic Kafka would refuse, and the limit', () => {
    expect(topicNameProblem('orders.public.customers')).toBeUndefined();
    expect(topicNameProblem('x'.repeat(249))).toBeUndefined();
    expect(topicNameProblem('x'.repeat(250))).toBe('is 250 characters long; Kafka allows at most 249');
    expect(topicNameProblem('orders.public.unit price')).toMatch(/characters Kafka does not allow/);
    const err = invalidTopicName(`${'p'.repeat(240)}.public.orders`, topicNameProblem(`${'p'.repeat(240)}.public.orders`)!);
    expect(err.retriable).toBe(false);
    expect(err.message).toMatch(/^kafka topic p{80}…: is 254 characters long; Kafka allows at most 249\. .*shorten topic\.prefix/);
  });

  it('turns kafkajs topic creation errors into one naming the topic', () => {
    const aggregate = Object.assign(new Error('Topic creation errors'), {
      name: 'KafkaJSAggregateError',
      errors: [{ topic: 'orders.public.x', type: 'POLICY_VIOLATION', message: 'partitions must be 6' }],
    });
    const err = topicCreationError(aggregate)!;
    expect(err.message).toMatch(
      /^kafka topic orders\.public\.x: Kafka refused to create it: partitions must be 6\. the cluster's topic policy/,
    );
    expect(topicCreationError(new Error('socket hang up'))).toBeUndefined();
  });

  it('KafkaRetrier: retries what waiting may fix, reports it, and ends at once on what it cannot', async () => {
    const conn = kafkaConnection({
      'kafka.bootstrap.servers': ['127.0.0.1:1'],
      'kafka.security.protocol': 'PLAINTEXT',
      'kafka.ssl.endpoint.identification.algorithm': 'https',
    } as KafkaConnectionConfig);
    const seen: string[] = [];
    const monitor = {
      retrying: (kind: string, _t: string, problem: string) => seen.push(`retrying ${kind}: ${problem}`),
      waiting: () => undefined,
      up: (kind: string) => seen.push(`up ${kind}`),
    };
    const retrier = new KafkaRetrier(
      conn,
      { timeoutMs: 60_000, maxDelayMs: 2, initialDelayMs: 1 },
      createLogger(new PassThrough()),
      monitor,
    );
    const refused = Object.assign(new Error('Connection error: connect ECONNREFUSED 127.0.0.1:1'), { name: 'KafkaJSConnectionError' });
    let tries = 0;
    const out = await retrier.run('creating topics t', async () => {
      if (++tries < 3) throw refused;
      return 'done';
    });
    expect(out).toBe('done');
    expect(seen).toEqual([
      'retrying kafka: kafka (127.0.0.1:1): no broker answered while creating topics t (timeout). Check kafka.bootstrap.servers and that the brokers are running and reachable from this machine',
      'retrying kafka: kafka (127.0.0.1:1): no broker answered while creating topics t (timeout). Check kafka.bootstrap.servers and that the brokers are running and reachable from this machine',
      'up kafka',
    ]);
    // @platformatic/kafka's "do not retry" (e.g. a message over the broker's size limit) ends the try at once.
    const tooLarge = Object.assign(new Error('Produce failed'), {
      code: 'PLT_KFK_MULTIPLE',
      errors: [
        Object.assign(new Error('The request included a message larger than the max message size'), {
          canRetry: false,
          code: 'PLT_KFK_PROTOCOL',
        }),
      ],
    });
    tries = 0;
    const err = await retrier
      .run('delivering 3 events', async () => {
        tries++;
        throw tooLarge;
      })
      .catch((e: unknown) => e);
    expect(tries).toBe(1);
    expect(err).toBeInstanceOf(ConnectionError);
    expect((err as ConnectionError).retriable).toBe(false);
    expect((err as Error).message).toMatch(/^kafka \(127\.0\.0\.1:1\): delivering 3 events failed: /);
  });

  it('bounded() gives a running try a grace after a stop, then abandons it', async () => {
    const stop = new AbortController();
    stop.abort();
    await expect(bounded(Promise.resolve(7), stop.signal, 'x')).resolves.toBe(7);
    const never = new Promise<number>(() => undefined);
    await expect(bounded(never, stop.signal, 'waiting for Kafka')).rejects.toBeInstanceOf(StoppedWhileWaitingError);
  });
});

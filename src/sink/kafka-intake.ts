import type { Admin, Consumer, Kafka } from 'kafkajs';
import type { ChangeEvent, UndecodableMessageError } from './change-event.ts';
import type { ConnectionMonitor } from '../connection-monitor.ts';
import { ConnectionError } from '../errors.ts';
import type { KafkaConnection } from '../events/kafka-connection.ts';
import { explainKafkaError } from '../events/kafka-errors.ts';
import type { Logger } from '../log.ts';
import type { RetryPolicy } from '../retry.ts';
import { missingRanges, RetentionGapError, seekTarget, TopicRewoundError, type LayerPosition } from './retention-gap.ts';

/**
 * The sink's Kafka side: a consumer-group member that buffers raw messages for the worker.
 *
 * Offsets live in the lake (Delta txn actions), not in Kafka: on every (re)join the intake seeks
 * each assigned partition to the lowest offset any of its lake tables needs (`positions`; a table that
 * never committed the partition, e.g. a history table switched on later, starts at the earliest retained
 * offset, never at the group's committed offset). Each table then skips what it already has (offsets.ts).
 * The first offset received after the seek, and any later jump, is checked against the partition's log
 * start offset: offsets a table needs that retention deleted stop the sink (retention-gap.ts). It also commits offsets
 * to the group after each lake commit, only so that lag shows in standard Kafka tooling; those
 * never run ahead of the lake, so a restart that uses them before the seek lands re-reads, at worst,
 * messages the tables then skip by their txn versions.
 */
export interface RawMessage {
  topic: string;
  partition: number;
  offset: string;
  key: Buffer | null;
  value: Buffer | null;
  /** Record headers (the end-of-snapshot markers carry theirs: events/snapshot-end.ts). */
  headers?: Record<string, Buffer | string | (Buffer | string)[] | undefined>;
  /** Decoded while it waited in the buffer (sink-worker.ts predecode); absent: the flush decodes it. */
  decoded?: { event: ChangeEvent | undefined } | { undecodable: UndecodableMessageError };
}

export interface IntakeOptions {
  groupId: string;
  /** session.timeout.ms: how long a member that stopped heartbeating keeps its partitions. */
  sessionTimeoutMs: number;
  topics: string[];
  /** Where each lake table of the topic stands on a partition (seek target and gap check). */
  positions: (topic: string, partition: number) => LayerPosition[];
  /** The sink connector file, for the way out a retention gap error offers. */
  connectorFile: string;
  /** Called when the buffer reaches maxBuffered messages or maxBufferedBytes; fetching is paused until resume(). */
  onFull: () => Promise<void>;
  /** Called after messages were added to the buffer (the worker decodes them ahead of the flush: undecoded()). */
  onBuffered?: () => void;
  maxBuffered: number;
  /** flush.max.bytes: the keys' and values' bytes buffered before a flush. */
  maxBufferedBytes: number;
  log: Logger;
  /** Told when the consumer loses Kafka and when it has joined again. */
  monitor: ConnectionMonitor;
  /** The connection, for messages. */
  conn: KafkaConnection;
  /** errors.retry.timeout: how long the consumer restarts after failures before the sink stops. */
  policy: RetryPolicy;
}

/** Per partition: the next offset expected, whether nothing was received since the seek, and whether new tables were warned about. */
interface Cursor {
  next: bigint;
  fresh: boolean;
  warned?: boolean;
}

export class KafkaIntake {
  private consumer: Consumer | undefined;
  private buffer: RawMessage[] = [];
  private bufferedBytes = 0;
  private bufferedSince = 0;
  /** How many messages at the head of the buffer undecoded() has handed out. */
  private handedOut = 0;
  /** Highest offset buffered per partition: kafkajs may deliver a message again after a seek. */
  private readonly highest = new Map<string, bigint>();
  private failure: unknown;
  /** When the consumer first crashed in the current outage (undefined while it works). */
  private outageSince: number | undefined;
  /** Per partition: the next offset expected, and whether nothing was received since the seek. */
  private readonly cursors = new Map<string, Cursor>();
  private admin: Admin | undefined;

  constructor(
    private readonly kafka: Kafka,
    private readonly opts: IntakeOptions,
  ) {}

  get size(): number {
    return this.buffer.length;
  }

  /** Bytes (keys and values) buffered. */
  get bytes(): number {
    return this.bufferedBytes;
  }

  /** Milliseconds since the oldest buffered message arrived (0 when empty). */
  get age(): number {
    return this.buffer.length ? Date.now() - this.bufferedSince : 0;
  }

  /** A failure of the consumer loop, surfaced to the worker (background loops never fail silently). */
  get error(): unknown {
    return this.failure;
  }

  /**
   * Take what is buffered, up to maxBuffered messages and maxBufferedBytes (at least one message): a
   * fetch delivered while the buffer filled may overshoot the bounds, and what is beyond them waits, in
   * order, for the next flush.
   */
  drain(): RawMessage[] {
    let n = 0;
    let bytes = 0;
    const limit = Math.min(this.buffer.length, this.opts.maxBuffered);
    while (n < limit) {
      const m = this.buffer[n]!;
      const size = (m.key?.length ?? 0) + (m.value?.length ?? 0);
      if (n > 0 && bytes + size > this.opts.maxBufferedBytes) break;
      bytes += size;
      n++;
    }
    this.handedOut = Math.max(0, this.handedOut - n);
    if (n === this.buffer.length) {
      const out = this.buffer;
      this.buffer = [];
      this.bufferedBytes = 0;
      return out;
    }
    const out = this.buffer.slice(0, n);
    this.buffer = this.buffer.slice(n);
    this.bufferedBytes -= bytes;
    // The rest arrived with this flush's messages: it is due at the next tick.
    this.bufferedSince = 0;
    return out;
  }

  /**
   * Up to `max` buffered messages not handed out before, oldest first, for decoding ahead of the flush (they
   * stay in the buffer: drain() still hands them to the flush, in order).
   */
  undecoded(max: number): RawMessage[] {
    const out = this.buffer.slice(this.handedOut, this.handedOut + max);
    this.handedOut += out.length;
    return out;
  }

  async start(): Promise<void> {
    this.stopping = false;
    const { groupId, topics, log } = this.opts;
    // A member that died (kill -9) holds its partitions until its session times out, so a restart (or the
    // other workers) resume them after at most session.timeout.ms. kafkajs has no static membership
    // (group.instance.id, KIP-345: tulios/kafkajs#884, #1242), so a restarted worker joins as a new member and
    // the only lever is the session timeout; it defaults to the broker's minimum (group.min.session.timeout.ms,
    // 6 s). Heartbeats keep flowing during a flush: fetching is paused, not blocked. The interval stays
    // at most a third of the timeout, as Kafka's consumer recommends.
    const consumer = this.kafka.consumer({
      groupId,
      sessionTimeout: this.opts.sessionTimeoutMs,
      heartbeatInterval: Math.min(1000, Math.floor(this.opts.sessionTimeoutMs / 3)),
      // kafkajs heartbeats (and so learns of a rebalance) between fetches, and a fetch of idle or paused
      // partitions waits maxWaitTimeInMs (default 5 s) on the broker: a shorter wait lets the other workers
      // rejoin within about a second when one joins, leaves or dies, at the cost of one idle fetch a second.
      maxWaitTimeInMs: 1000,
      maxBytesPerPartition: 4 << 20,
      // A fresh broker answers "not the coordinator" while it creates and loads __consumer_offsets; kafkajs'
      // default 5 retries (~9 s) can run out under load, so joining keeps trying for about two minutes.
      // When they run out (a broker restart), kafkajs restarts the consumer (it rejoins, and GROUP_JOIN seeks
      // to the lake's offsets) for as long as errors.retry.timeout allows since the outage began.
      retry: { retries: 10, initialRetryTime: 300, maxRetryTime: 30_000, restartOnFailure: async () => this.withinBudget() },
    });
    this.consumer = consumer;
    consumer.on(consumer.events.GROUP_JOIN, (e) => {
      const assignment = e.payload.memberAssignment as Record<string, number[]>;
      // A rebalance: what was buffered for partitions we may no longer own is dropped; the lake says where to resume.
      this.buffer = [];
      this.bufferedBytes = 0;
      this.handedOut = 0;
      this.highest.clear();
      this.cursors.clear();
      for (const [topic, partitions] of Object.entries(assignment)) {
        for (const partition of partitions) {
          const at = seekTarget(this.opts.positions(topic, partition));
          // Offset 0 for a new table: when retention deleted it, the fetch answers OFFSET_OUT_OF_RANGE and kafkajs
          // moves to the earliest retained offset (subscribe's fromBeginning); checkJump then sees the difference.
          consumer.seek({ topic, partition, offset: at === 'earliest' ? '0' : at.toString() });
          this.cursors.set(`${topic}\u0000${partition}`, { next: at === 'earliest' ? 0n : at, fresh: true });
        }
      }
      // Nothing is fetched until the partitions are checked against what Kafka still holds (checkAssigned).
      const assigned = Object.entries(assignment).map(([topic, partitions]) => ({ topic, partitions }));
      consumer.pause(assigned);
      // Not after stop(): a check that fails because the sink is stopping ("Topic metadata not loaded") must not
      // resume a consumer that is leaving the group (kafkajs throws "Consumer group was not initialized", which
      // escaped and made a SIGTERM'd worker exit 1 once in four runs of sink-scale-out.test).
      const resume = () => {
        if (this.paused || this.stopping) return;
        try {
          consumer.resume(assigned);
        } catch (err) {
          if (!this.stopping) throw err;
        }
      };
      void this.checkAssigned(assigned).then(
        (problem) => {
          if (problem) return this.fail(problem);
          resume();
        },
        (err: unknown) => {
          if (this.stopping) return;
          // The first batch of each partition is checked as well (eachBatch), so the sink may go on.
          log.warn({ err: (err as Error).message }, "could not read the partitions' first and last offsets; checking on the first batch");
          resume();
        },
      );
      log.info({ assignment }, 'joined the consumer group; partitions resume where the lake tables say');
      if (this.outageSince !== undefined) {
        log.info({ seconds: Math.round((Date.now() - this.outageSince) / 1000) }, 'the consumer is back after losing Kafka');
        this.outageSince = undefined;
      }
      this.opts.monitor.up('kafka', this.opts.conn.target);
    });
    consumer.on(consumer.events.CRASH, (e) => {
      const err = explainKafkaError(this.opts.conn, e.payload.error, 'consuming');
      if (e.payload.restart) {
        this.opts.monitor.retrying('kafka', this.opts.conn.target, err.message, 0);
        log.warn({ err: err.message }, 'the Kafka consumer lost Kafka; kafkajs restarts it (errors.retry.timeout)');
        return;
      }
      const seconds = this.outageSince === undefined ? undefined : Math.round((Date.now() - this.outageSince) / 1000);
      this.failure =
        err instanceof ConnectionError && err.retriable && seconds !== undefined
          ? new ConnectionError(
              'kafka',
              err.target,
              `${err.problem} (the consumer was restarted for ${seconds} s, errors.retry.timeout ran out)`,
              `${err.fix}; raise errors.retry.timeout to wait longer (-1: for ever)`,
              { cause: e.payload.error, code: err.code },
            )
          : err;
      log.error({ err: this.failure }, 'Kafka consumer crashed');
    });
    try {
      await consumer.connect();
      await consumer.subscribe({ topics, fromBeginning: true });
    } catch (err) {
      // Tried again from the start by the caller's KafkaRetrier.
      this.consumer = undefined;
      await consumer.disconnect().catch(() => undefined);
      throw err;
    }
    await consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch, heartbeat }) => {
        const key = `${batch.topic}\u0000${batch.partition}`;
        if (this.failure) return;
        const cursor = this.cursors.get(key);
        if (cursor && batch.messages.length) {
          const first = BigInt(batch.messages[0]!.offset);
          if (first !== cursor.next) {
            const problem = await this.checkJump(batch.topic, batch.partition, cursor, first);
            // Nothing of this batch is buffered: the lake never commits past the gap.
            if (problem) return this.fail(problem);
          }
          cursor.fresh = false;
          const last = BigInt(batch.messages[batch.messages.length - 1]!.offset) + 1n;
          if (last > cursor.next) cursor.next = last;
        }
        let high = this.highest.get(key) ?? -1n;
        for (const m of batch.messages) {
          const offset = BigInt(m.offset);
          if (offset <= high) continue;
          high = offset;
          if (!this.buffer.length) this.bufferedSince = Date.now();
          this.bufferedBytes += (m.key?.length ?? 0) + (m.value?.length ?? 0);
          this.buffer.push({
            topic: batch.topic,
            partition: batch.partition,
            offset: m.offset,
            key: m.key,
            value: m.value,
            headers: m.headers,
          });
        }
        this.highest.set(key, high);
        this.opts.onBuffered?.();
        const full = this.buffer.length >= this.opts.maxBuffered || this.bufferedBytes >= this.opts.maxBufferedBytes;
        if (full && !this.paused) {
          // Backpressure without blocking the fetch loop (which also sends the group heartbeats): pause
          // every partition, let the worker flush, resume afterwards (resume()).
          this.paused = true;
          consumer.pause(this.opts.topics.map((topic) => ({ topic })));
          this.opts.onFull().catch((err: unknown) => (this.failure ??= err));
        }
        void heartbeat;
      },
    });
  }

  private paused = false;
  /** stop() was called: nothing resumes the consumer any more. */
  private stopping = false;

  /** Stop fetching for good and hand `problem` to the worker (which stops the sink). */
  private fail(problem: Error): void {
    this.failure ??= problem;
    this.paused = true;
    this.consumer?.pause(this.opts.topics.map((topic) => ({ topic })));
    this.opts.log.error({ err: problem.message }, 'stopping: the lake tables cannot resume where Kafka is');
  }

  private async offsetsOf(topic: string): Promise<Map<number, { low: bigint; high: bigint }>> {
    if (!this.admin) {
      const admin = this.kafka.admin();
      await admin.connect();
      this.admin = admin;
    }
    const out = new Map<number, { low: bigint; high: bigint }>();
    for (const p of await this.admin.fetchTopicOffsets(topic)) out.set(p.partition, { low: BigInt(p.low), high: BigInt(p.high) });
    return out;
  }

  /**
   * At a (re)join, before anything is fetched: does Kafka still hold the offsets each table needs? A
   * partition whose every message was deleted delivers nothing, so the first batch cannot tell.
   */
  private async checkAssigned(assigned: { topic: string; partitions: number[] }[]): Promise<Error | undefined> {
    for (const { topic, partitions } of assigned) {
      const offsets = await this.offsetsOf(topic);
      for (const partition of partitions) {
        const cursor = this.cursors.get(`${topic}\u0000${partition}`);
        const o = offsets.get(partition);
        if (!cursor || !o) continue;
        if (cursor.next > o.high) return new TopicRewoundError(topic, partition, cursor.next, o.high);
        const problem = this.classify(topic, partition, cursor, o.low);
        if (problem) return problem;
      }
    }
    return undefined;
  }

  /** The tables that need offsets below the partition's first retained one `low`: a RetentionGapError (new tables only warn). */
  private classify(topic: string, partition: number, cursor: Cursor, low: bigint): Error | undefined {
    const positions = this.opts.positions(topic, partition);
    const missing = missingRanges(positions, cursor.next, low, cursor.fresh);
    if (missing.length) return new RetentionGapError(topic, partition, low, missing, this.opts.connectorFile);
    const fresh = positions.filter((t) => t.next === undefined).map((t) => t.table);
    if (cursor.fresh && fresh.length && low > cursor.next && !cursor.warned) {
      cursor.warned = true;
      this.opts.log.warn(
        { topic, partition, tables: fresh, firstRetainedOffset: low.toString() },
        `new lake tables start at the first offset Kafka still holds (${low}); offsets ${cursor.next}–${low - 1n} were deleted by retention before they existed: keys that did not change since are missing until a re-snapshot of the table (README "Tables added later")`,
      );
    }
    return undefined;
  }

  /**
   * The first offset received is not the one expected: below it after a seek beyond the partition's end
   * (kafkajs then restarts at the earliest offset), above it after a hole. Legitimate holes (transaction
   * markers, compaction) lie above the partition's log start offset; offsets below it were deleted.
   */
  private async checkJump(topic: string, partition: number, cursor: Cursor, first: bigint): Promise<Error | undefined> {
    const o = (await this.offsetsOf(topic)).get(partition);
    if (!o) return undefined;
    if (first < cursor.next) return o.high < cursor.next ? new TopicRewoundError(topic, partition, cursor.next, o.high) : undefined;
    return this.classify(topic, partition, cursor, o.low);
  }

  /** Whether kafkajs may restart the consumer after a failure: within errors.retry.timeout since the outage began. */
  private withinBudget(): boolean {
    const now = Date.now();
    this.outageSince ??= now;
    const { timeoutMs } = this.opts.policy;
    return timeoutMs < 0 || now - this.outageSince < timeoutMs;
  }

  /** Resume fetching after a flush made room (no-op when not paused). */
  resume(): void {
    if (!this.paused || !this.consumer) return;
    this.paused = false;
    this.consumer.resume(this.opts.topics.map((topic) => ({ topic })));
  }

  /** Progress not sent to the group yet, per topic and partition (the newest flush's offset wins). */
  private readonly progress = new Map<string, { topic: string; partition: number; offset: bigint }>();
  /** The commit running in the background, if any (one at a time). */
  private committing: Promise<void> | undefined;

  /**
   * Record progress in the group, for lag tooling only (the lake holds the real offsets), in the background:
   * the flush loop no longer waits for the broker's answer (a flush's `offsetsMs`, p99 0.2 s and up to 2.9 s
   * in the 15-minute pipeline run, bench/pipeline-sustained.ts). Commits run one at a time; what arrives while
   * one runs goes with the next. A failed commit is reported to `onError` (the worker logs it) and its offsets
   * are sent again with the next progress. `stop()` waits for what is pending.
   */
  commitProgress(offsets: { topic: string; partition: number; offset: bigint }[], onError: (err: unknown) => void): void {
    if (!this.consumer || !offsets.length) return;
    for (const o of offsets) this.progress.set(`${o.topic}\0${o.partition}`, o);
    this.committing ??= this.sendProgress(onError).finally(() => (this.committing = undefined));
  }

  private async sendProgress(onError: (err: unknown) => void): Promise<void> {
    while (this.consumer && this.progress.size) {
      const batch = [...this.progress.values()];
      this.progress.clear();
      try {
        await this.consumer.commitOffsets(
          batch.map((o) => ({ topic: o.topic, partition: o.partition, offset: (o.offset + 1n).toString() })),
        );
      } catch (err) {
        for (const o of batch) if (!this.progress.has(`${o.topic}\0${o.partition}`)) this.progress.set(`${o.topic}\0${o.partition}`, o);
        onError(err);
        return;
      }
    }
  }

  async stop(): Promise<void> {
    this.stopping = true;
    // The last flush's progress reaches the group before the consumer leaves it.
    while (this.committing) await this.committing;
    await this.consumer?.disconnect();
    this.consumer = undefined;
    await this.admin?.disconnect().catch(() => undefined);
    this.admin = undefined;
  }
}

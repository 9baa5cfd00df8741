import { TideError } from '../errors.ts';

/**
 * Where each lake table of a topic stands on one Kafka partition, and what the sink does when Kafka no
 * longer holds the offsets a table needs (retention deleted them while the sink was stopped or behind).
 *
 * Kafka itself never reports such a gap to a consumer: a fetch at a deleted offset answers
 * OFFSET_OUT_OF_RANGE and kafkajs, like the Java client with auto.offset.reset=earliest, quietly moves
 * to the partition's first retained offset. The intake therefore compares the first offset it receives
 * on a partition with the offset it asked for, and when they differ asks the broker for the partition's
 * log start offset (ListOffsets, kafkajs admin.fetchTopicOffsets: `low`): offsets below `low` are gone;
 * a difference above `low` is a legitimate hole (transaction markers, compaction).
 */
export interface LayerPosition {
  /** The lake table, e.g. `silver.public.orders`. */
  table: string;
  /** The next offset the table needs (one past its txn version); undefined: it has never committed this partition (a new table or layer). */
  next: bigint | undefined;
}

/** Where the consumer seeks: the lowest offset any table needs; `earliest` when a table is new (it starts from the first retained offset). */
export function seekTarget(positions: LayerPosition[]): bigint | 'earliest' {
  let lowest: bigint | undefined;
  for (const p of positions) {
    if (p.next === undefined) return 'earliest';
    if (lowest === undefined || p.next < lowest) lowest = p.next;
  }
  return lowest ?? 'earliest';
}

export interface MissingRange {
  table: string;
  /** First and last missing offset (inclusive). */
  from: bigint;
  to: bigint;
}

/**
 * The tables that would miss messages because the partition now starts at `low`. `expected` is the offset
 * the consumer was reading from; `fresh` is true on the first batch after a seek (a new table, whose
 * position is undefined, then legitimately starts at the first retained offset: README "Tables added later").
 */
export function missingRanges(positions: LayerPosition[], expected: bigint, low: bigint, fresh: boolean): MissingRange[] {
  const out: MissingRange[] = [];
  for (const p of positions) {
    if (p.next === undefined && fresh) continue;
    const from = p.next === undefined || p.next < expected ? expected : p.next;
    if (from < low) out.push({ table: p.table, from, to: low - 1n });
  }
  return out;
}

/** The offsets a table needs were deleted by retention: the sink stops rather than skip them. */
export class RetentionGapError extends TideError {
  constructor(
    readonly topic: string,
    readonly partition: number,
    readonly low: bigint,
    readonly missing: MissingRange[],
    connectorFile: string,
  ) {
    const table = missing[0]?.table.replace(/^[a-z]+\./, '') ?? topic;
    const ranges = missing.map((m) => `${m.table} needs offsets ${m.from}–${m.to}`).join(', ');
    super(
      `kafka topic ${topic} partition ${partition}: the messages at offsets ${missing.length ? missing.map((m) => m.from).reduce((a, b) => (a < b ? a : b)) : low}–${low - 1n} were deleted by retention before the sink wrote them (the partition now starts at offset ${low}): ${ranges}. ` +
        `The sink stops instead of skipping them. Way out: re-snapshot the table (tide source resnapshot <source connector file>, or an incremental snapshot of ${table}) so that Kafka carries every current row again, ` +
        `then run \`tide lake accept-gap ${connectorFile} ${table}\` to let the tables resume at offset ${low} (README "Recovering from a retention gap"). ` +
        `Raise the topic's retention.ms above the sink's longest outage.`,
    );
    this.name = 'RetentionGapError';
  }
}

/** The partition ends below where the tables resume: the topic was deleted and created again (or the sink reads another cluster). */
export class TopicRewoundError extends TideError {
  constructor(
    readonly topic: string,
    readonly partition: number,
    readonly expected: bigint,
    readonly high: bigint,
  ) {
    super(
      `kafka topic ${topic} partition ${partition}: it ends at offset ${high}, but the lake tables have committed up to offset ${expected - 1n}: ` +
        'the topic was deleted and created again, or kafka.bootstrap.servers points at another cluster. The sink stops instead of skipping the new messages as already written. ' +
        "Check kafka.bootstrap.servers; if the topic was re-created, move the table's lake tables aside (they are rebuilt from the new topic's first offset) and re-snapshot the table.",
    );
    this.name = 'TopicRewoundError';
  }
}

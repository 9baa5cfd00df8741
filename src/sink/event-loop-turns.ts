/**
 * Long synchronous work in steps, with a turn of the event loop between them. The sink's flushes (bronze,
 * silver) and the background history lane share the one JS thread: a history merge takes ~400,000 events at
 * a time, and its pure-JS parts (historyVersions, the key index's lookups and updates) ran for up to ~0.9 s
 * each without a break, a stretch added to the latency of every change waiting then (README "SCD2 history on
 * its own cadence"). In steps of TURN_EVERY items, a flush's callbacks (DuckDB results, Kafka fetches,
 * timers) run between them.
 *
 * `setImmediate`, not a resolved promise: microtasks run before I/O, so only a macrotask lets the flush's
 * I/O callbacks in (Node.js docs, "The Node.js Event Loop").
 */

/** Items (events, changes) per step: ~20-40 ms of history work on this machine's cores. */
export const TURN_EVERY = 20_000;

/** A turn of the event loop: pending I/O callbacks and timers run before the promise resolves. */
export function nextTurn(): Promise<void> {
  return new Promise<void>((resolve) => setImmediate(resolve));
}

/** Run `steps` (a generator that yields between its steps) to its end, with a turn of the event loop at each yield. */
export async function inTurns<T>(steps: Generator<void, T, void>): Promise<T> {
  for (;;) {
    const step = steps.next();
    if (step.done) return step.value;
    await nextTurn();
  }
}

/** Run `steps` to its end at once (synchronous callers). */
export function atOnce<T>(steps: Generator<void, T, void>): T {
  for (;;) {
    const step = steps.next();
    if (step.done) return step.value;
  }
}

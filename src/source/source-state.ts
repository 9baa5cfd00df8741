/**
 * The source connector's life as an explicit state machine. Every transition
 * the connector makes goes through `transition`, so an impossible move is a
 * bug that fails loudly, and the table below is the whole story:
 *
 *   starting ──snapshot──▶ snapshotting ──stream──▶ streaming
 *      │                        │                      │  ▲
 *      └──────stream────────────┼──────────────────────┘  │ (resume after restart only)
 *   any ──pause──▶ paused    any ──fail──▶ failed    any ──stop──▶ stopped
 */
export type SourceState = 'starting' | 'snapshotting' | 'streaming' | 'paused' | 'failed' | 'stopped';
export type SourceEvent = 'snapshot' | 'stream' | 'pause' | 'fail' | 'stop';

export const TRANSITIONS: Readonly<Record<SourceState, Partial<Record<SourceEvent, SourceState>>>> = {
  starting: { snapshot: 'snapshotting', stream: 'streaming', fail: 'failed', stop: 'stopped', pause: 'paused' },
  snapshotting: { stream: 'streaming', fail: 'failed', stop: 'stopped', pause: 'paused' },
  streaming: { pause: 'paused', fail: 'failed', stop: 'stopped' },
  paused: { stop: 'stopped', fail: 'failed' },
  failed: { stop: 'stopped' },
  stopped: {},
};

export class IllegalTransitionError extends Error {
  constructor(from: SourceState, event: SourceEvent) {
    super(`source connector: no transition from "${from}" on "${event}"`);
    this.name = 'IllegalTransitionError';
  }
}

export function transition(from: SourceState, event: SourceEvent): SourceState {
  const to = TRANSITIONS[from][event];
  if (to === undefined) throw new IllegalTransitionError(from, event);
  return to;
}

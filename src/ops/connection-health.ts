import type { ConnectionMonitor } from '../connection-monitor.ts';
import type { ConnectionKind } from '../errors.ts';
import type { Readiness, ReadinessCheck } from './http-server.ts';
import { tideMetrics, type TideMetrics } from './metrics.ts';

interface ConnectionState {
  target: string;
  /** Since when the connection is down (undefined: it works). */
  downSince: number | undefined;
  problem: string | undefined;
  /** Retries of the current outage. */
  retries: number;
  waitingFor: string | undefined;
}

/**
 * The ops side of ConnectionMonitor for one connector: counts retries per connection
 * (`tide_connection_retries_total`), says whether each connection works (`tide_connection_up`), and
 * answers `/readyz` with "not ready" and the reason while a connection is down or the connector waits
 * for something on it (topics that do not exist yet).
 */
export class ConnectionHealth implements ConnectionMonitor {
  private readonly states = new Map<ConnectionKind, ConnectionState>();

  constructor(
    readonly connector: string,
    private readonly metrics: TideMetrics = tideMetrics(),
    private readonly now: () => number = Date.now,
  ) {}

  private state(kind: ConnectionKind, target: string): ConnectionState {
    let s = this.states.get(kind);
    if (!s) this.states.set(kind, (s = { target, downSince: undefined, problem: undefined, retries: 0, waitingFor: undefined }));
    s.target = target;
    return s;
  }

  retrying(kind: ConnectionKind, target: string, problem: string): void {
    const s = this.state(kind, target);
    s.downSince ??= this.now();
    s.problem = problem;
    s.retries++;
    this.metrics.connection.retries.inc({ connector: this.connector, connection: kind });
    this.metrics.connection.up.set({ connector: this.connector, connection: kind }, 0);
  }

  waiting(kind: ConnectionKind, target: string, what: string): void {
    const s = this.state(kind, target);
    s.downSince = undefined;
    s.retries = 0;
    s.waitingFor = what;
    this.metrics.connection.up.set({ connector: this.connector, connection: kind }, 1);
  }

  up(kind: ConnectionKind, target: string): void {
    const s = this.state(kind, target);
    s.downSince = undefined;
    s.retries = 0;
    s.waitingFor = undefined;
    this.metrics.connection.up.set({ connector: this.connector, connection: kind }, 1);
  }

  /** Why the connector is not ready because of a connection, or undefined when every connection it reported works. */
  reason(): string | undefined {
    const reasons: string[] = [];
    for (const [kind, s] of this.states) {
      if (s.downSince !== undefined)
        reasons.push(
          `${kind} (${s.target}) is down for ${Math.round((this.now() - s.downSince) / 1000)} s, ` +
            `${s.retries} ${s.retries === 1 ? 'retry' : 'retries'} so far (errors.retry.timeout): ${s.problem}`,
        );
      else if (s.waitingFor) reasons.push(`${kind} (${s.target}): ${s.waitingFor}`);
    }
    return reasons.length ? reasons.join('; ') : undefined;
  }

  /** For /readyz (combine with the connector's own check through allReady). */
  readiness(component = `connections of ${this.connector}`): ReadinessCheck {
    return (): Readiness => {
      const reason = this.reason();
      return reason ? { ready: false, component, reason } : { ready: true, component };
    };
  }

  /** Remove this connector's series (at shutdown). */
  close(): void {
    for (const kind of this.states.keys()) {
      this.metrics.connection.up.remove({ connector: this.connector, connection: kind });
      this.metrics.connection.retries.remove({ connector: this.connector, connection: kind });
    }
    this.states.clear();
  }
}

import { log } from './log.ts';

type Closer = { name: string; close: () => Promise<void> | void };

/**
 * Own every resource: register a closer as each one opens; on SIGTERM/SIGINT
 * (or `shutdown()`) they close in reverse order. A watchdog whose timer does
 * not keep the process alive forces exit if closing hangs.
 */
export class Lifecycle {
  private readonly closers: Closer[] = [];
  private closing: Promise<void> | undefined;
  private readonly abort = new AbortController();

  /** Aborted when shutdown starts: long loops watch it. */
  get signal(): AbortSignal {
    return this.abort.signal;
  }

  constructor(private readonly watchdogMs = 30_000) {}

  onClose(name: string, close: Closer['close']): void {
    this.closers.push({ name, close });
  }

  /** Install SIGTERM/SIGINT handlers; a second signal exits at once. */
  handleSignals(): this {
    const handler = (signal: NodeJS.Signals) => {
      if (this.closing) {
        log.warn({ signal }, 'second signal: exiting now');
        process.exit(130);
      }
      log.info({ signal }, 'shutting down');
      void this.shutdown().then(() => process.exit(process.exitCode ?? 0));
    };
    process.on('SIGTERM', handler);
    process.on('SIGINT', handler);
    return this;
  }

  shutdown(): Promise<void> {
    this.closing ??= this.closeAll();
    return this.closing;
  }

  private async closeAll(): Promise<void> {
    this.abort.abort();
    const watchdog = setTimeout(() => {
      log.error({ watchdogMs: this.watchdogMs }, 'shutdown watchdog fired: resources did not close in time');
      process.exit(1);
    }, this.watchdogMs);
    watchdog.unref();
    for (const closer of this.closers.reverse()) {
      try {
        await closer.close();
      } catch (err) {
        log.error({ err, resource: closer.name }, 'error while closing resource');
        process.exitCode = 1;
      }
    }
    clearTimeout(watchdog);
  }
}

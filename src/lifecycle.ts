import { log } from './log.ts';

/** After a signal's shutdown, how long a lingering handle may keep the process alive. */
const EXIT_GRACE_MS = 3000;

type Closer = { name: string; close: () => Promise<void> | void };

/**
 * Own every resource: register a closer as each one opens; on SIGTERM/SIGINT
 * (or `shutdown()`) they close in reverse order. A watchdog whose timer does
 * not keep the process alive forces exit if closing hangs.
 *
 * Work that runs until the signal (a connector, the sink, app traffic) is `track`ed right after it starts:
 * its closer waits for it to finish, and because closers run in reverse it finishes before anything it
 * uses (opened earlier) is closed. After a signal the command's own code still runs to its end (its
 * summary line, its exit code); the process then exits by itself, or after a short grace if a library
 * left a handle open.
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

  /** Shutdown waits for `work` before closing what was opened before it; its failure is the caller's to handle. */
  track<T>(name: string, work: Promise<T>): Promise<T> {
    this.onClose(name, () =>
      work.then(
        () => undefined,
        () => undefined,
      ),
    );
    return work;
  }

  /** Install SIGTERM/SIGINT handlers; a second signal exits at once. */
  handleSignals(): this {
    const handler = (signal: NodeJS.Signals) => {
      if (this.closing) {
        log.warn({ signal }, 'second signal: exiting now');
        process.exit(130);
      }
      log.info({ signal }, 'shutting down');
      // Not process.exit() at once: the command's code after its awaited work still runs (summary, exit code).
      void this.shutdown().then(() => setTimeout(() => process.exit(process.exitCode ?? 0), EXIT_GRACE_MS).unref());
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

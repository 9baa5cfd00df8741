/**
 * Fault injection for the crash tests: `TIDE_SINK_CRASH_AT=<point>:<n>` makes the sink kill itself
 * (SIGKILL, no cleanup, exactly like kill -9) the n-th time it reaches <point>. Points:
 *   before-commit  data files are written, the Delta commit is not (leaves orphan files)
 *   after-commit   the Delta commit is written, the group offsets are not
 *   reconcile-commit  a re-snapshot's reconcile (snapshot-reconcile.ts) wrote its files and delete markers, not its commit
 * Unset in production; the cost is one comparison per commit.
 */
const spec = process.env.TIDE_SINK_CRASH_AT;
const [point, nth] = spec ? [spec.split(':')[0], Number(spec.split(':')[1] ?? 1)] : [undefined, 0];
let seen = 0;

export function faultPoint(name: 'before-commit' | 'after-commit' | 'reconcile-commit'): void {
  if (point !== name) return;
  if (++seen === nth) {
    process.stderr.write(`tide: TIDE_SINK_CRASH_AT=${spec}: killing myself at ${name}\n`);
    process.kill(process.pid, 'SIGKILL');
  }
}

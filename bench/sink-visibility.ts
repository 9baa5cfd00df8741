/**
 * When each change became visible in a Delta table, read off its _delta_log (bench/sink-freshness.ts):
 * a commit's txn actions say up to which Kafka offset per partition it holds (src/sink/offsets.ts),
 * the commit file's ctime when readers could first see it (LocalStore.putIfAbsent links the file in).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { KafkaRecord } from './sink-kafka.ts';

/** Per partition: (highest offset the commit holds, when the commit became visible), in version order. */
export type Coverage = Map<number, { offset: number; visibleMs: number; version: number }[]>;

/** Per commit: ctime - mtime (temp file written → linked and unlinked) and ctime - commitInfo.timestamp (Tide's clock reading before the write). */
export interface StampGaps {
  ctimeAfterMtimeMs: number[];
  ctimeAfterCommitInfoMs: number[];
}

/** Each commit file of the table's log: when it became visible (ctime) and the offsets its txn actions hold. */
export function coverage(tableDir: string, appIds: Map<string, number>, gaps?: StampGaps): Coverage {
  const logDir = join(tableDir, '_delta_log');
  const out: Coverage = new Map();
  const files = readdirSync(logDir)
    .filter((f) => /^\d{20}\.json$/.test(f))
    .sort();
  for (const f of files) {
    const version = Number(f.slice(0, 20));
    const st = statSync(join(logDir, f));
    const visibleMs = st.ctimeMs;
    gaps?.ctimeAfterMtimeMs.push(st.ctimeMs - st.mtimeMs);
    for (const line of readFileSync(join(logDir, f), 'utf8').split('\n')) {
      if (gaps && line.startsWith('{"commitInfo"'))
        gaps.ctimeAfterCommitInfoMs.push(visibleMs - (JSON.parse(line) as { commitInfo: { timestamp: number } }).commitInfo.timestamp);
      if (!line.includes('"txn"')) continue;
      const txn = (JSON.parse(line) as { txn?: { appId: string; version: number } }).txn;
      const p = txn && appIds.get(txn.appId);
      if (txn && p !== undefined) {
        if (!out.has(p)) out.set(p, []);
        out.get(p)!.push({ offset: txn.version, visibleMs, version });
      }
    }
  }
  return out;
}

/** The first commit (in version order) holding the record's offset. */
export function visibleAt(cov: Coverage, r: KafkaRecord): { visibleMs: number; version: number } | undefined {
  const list = cov.get(r.partition) ?? [];
  let a = 0;
  let b = list.length;
  while (a < b) {
    const m = (a + b) >> 1;
    if (list[m]!.offset < r.offset) a = m + 1;
    else b = m;
  }
  return list[a];
}

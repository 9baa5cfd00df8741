/**
 * File names in `_delta_log/` (PROTOCOL.md "Delta Log Entries", "Checkpoints", "Last Checkpoint
 * File") and the URI encoding of data file paths in add/remove actions.
 */

export const LOG_DIR = '_delta_log';

const pad20 = (n: number) => String(n).padStart(20, '0');
const pad10 = (n: number) => String(n).padStart(10, '0');

/** `<root>/_delta_log/` */
export const logDir = (root: string): string => `${joinPath(root, LOG_DIR)}/`;
/** `<root>/_delta_log/00000000000000000042.json` */
export const commitPath = (root: string, version: number): string => `${logDir(root)}${pad20(version)}.json`;
/** `<root>/_delta_log/00000000000000000042.checkpoint.parquet` (a classic, single-part V1 checkpoint). */
export const checkpointPath = (root: string, version: number): string => `${logDir(root)}${pad20(version)}.checkpoint.parquet`;
/** Part `part` (1-based) of `parts` of a multi-part checkpoint (written by other engines; Tide reads them). */
export const checkpointPartPath = (root: string, version: number, part: number, parts: number): string =>
  `${logDir(root)}${pad20(version)}.checkpoint.${pad10(part)}.${pad10(parts)}.parquet`;
export const lastCheckpointPath = (root: string): string => `${logDir(root)}_last_checkpoint`;

/** Join store path segments with '/', ignoring empty ones (a table at the store root has root ''). */
export function joinPath(...parts: string[]): string {
  return parts
    .flatMap((p) => p.split('/'))
    .filter(Boolean)
    .join('/');
}

export type LogFile =
  { kind: 'commit'; version: number } | { kind: 'checkpoint'; version: number; part?: number; parts?: number } | { kind: 'other' };

/** What a file name in `_delta_log/` is. UUID-named (V2) checkpoints, CRC files, compactions etc. are 'other'. */
export function parseLogFileName(name: string): LogFile {
  let m = /^(\d{20})\.json$/.exec(name);
  if (m) return { kind: 'commit', version: Number(m[1]) };
  m = /^(\d{20})\.checkpoint\.parquet$/.exec(name);
  if (m) return { kind: 'checkpoint', version: Number(m[1]) };
  m = /^(\d{20})\.checkpoint\.(\d{10})\.(\d{10})\.parquet$/.exec(name);
  if (m) return { kind: 'checkpoint', version: Number(m[1]), part: Number(m[2]), parts: Number(m[3]) };
  return { kind: 'other' };
}

/**
 * The `path` of an add/remove action for a file at `relative` (a '/'-separated path under the
 * table root). PROTOCOL.md "Add File and Remove File": "The path is a URI as specified by RFC 2396
 * […], which needs to be decoded to get the data file path". Each segment is percent-encoded
 * (encodeURIComponent), except '=' which RFC 2396 allows in a path segment and which Hive-style
 * partition directories (`date=2024-01-01/`) use, so paths look like other engines' paths.
 * ':' stays encoded: in a relative reference's first segment it would read as a URI scheme.
 */
export function encodeDataPath(relative: string): string {
  return relative
    .split('/')
    .map((s) => encodeURIComponent(s).replace(/%3D/g, '='))
    .join('/');
}

/** The file path (relative to the table root) an add/remove `path` names: its percent-decoding. */
export function decodeDataPath(path: string): string {
  // Most paths have no escape at all (Tide's are `part-…-<uuid>.parquet`); they decode to themselves.
  if (!path.includes('%')) return path;
  try {
    return decodeURIComponent(path);
  } catch {
    // A malformed escape (a bare '%') cannot come from an encoder; take the text as it is, as
    // lenient URI parsers do, rather than make the whole table unreadable.
    return path;
  }
}

/** True when an action path is absolute (a URI with a scheme, or starting with '/'): such files live outside the table root. */
export function isAbsoluteDataPath(path: string): boolean {
  return path.startsWith('/') || /^[a-zA-Z][a-zA-Z0-9+.-]*:/.test(path);
}

import { randomUUID } from 'node:crypto';
import { copyFile, link, mkdir, open, readdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ConnectionError, TideError } from '../../errors.ts';
import type { ObjectInfo, ObjectStore } from './object-store.ts';

/** A store path is not a safe relative path, or an object is missing where one is required. */
export class StorePathError extends TideError {
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(`${path}: ${message}`);
    this.name = 'StorePathError';
  }
}

/**
 * An ObjectStore over a directory of the local filesystem. Writers never expose a partially
 * written object: every write goes to a temporary file in the target's own directory (same
 * filesystem, so the final step is a metadata operation), which is then renamed or linked into
 * place. Temporary files are named `.<name>.<uuid>.tmp`; the leading dot makes them hidden
 * files, which Delta readers and VACUUM skip.
 */
export class LocalStore implements ObjectStore {
  readonly root: string;
  readonly uri: string;

  constructor(root: string) {
    this.root = resolve(root);
    this.uri = pathToFileURL(this.root).href;
  }

  /** The absolute filesystem path of a store path; refuses absolute paths and '..' segments. */
  private file(path: string): string {
    const parts = path.split('/').filter((p) => p !== '' && p !== '.');
    if (path.startsWith('/') || parts.includes('..') || path.includes('\\') || path.includes('\0'))
      throw new StorePathError(path, `is not a relative '/'-separated path inside the store ${this.uri}`);
    return join(this.root, ...parts);
  }

  async get(path: string): Promise<Buffer | undefined> {
    try {
      return await readFile(this.file(path));
    } catch (e) {
      if (isCode(e, 'ENOENT')) return undefined;
      throw e;
    }
  }

  async put(path: string, data: Buffer | Uint8Array): Promise<void> {
    return this.writing(() => this.putNow(path, data));
  }

  private async putNow(path: string, data: Buffer | Uint8Array): Promise<void> {
    const target = this.file(path);
    const temp = await this.writeTemp(target, data);
    try {
      await rename(temp, target);
    } catch (e) {
      await unlinkQuietly(temp);
      throw e;
    }
  }

  /**
   * Create `path` only if it does not exist, atomically, and never visible half-written.
   * `open(…, 'wx')` (O_EXCL) alone is atomic but would expose a partial file to a reader that
   * comes between create and the last write, and leave a torn file after a crash. So the bytes go
   * to a temporary file first (flushed with fsync), then `link(temp, target)` publishes them: link
   * fails with EEXIST when the target exists and never replaces it (unlike rename, which would
   * overwrite another writer's commit). Finally the temporary name is removed; the data stays
   * under the target name. (The directory entry is not fsynced: a power loss just after a commit
   * may lose that commit, but never leaves it torn.) Needs a filesystem with hard links.
   */
  async putIfAbsent(path: string, data: Buffer | Uint8Array): Promise<boolean> {
    return this.writing(() => this.putIfAbsentNow(path, data));
  }

  private async putIfAbsentNow(path: string, data: Buffer | Uint8Array): Promise<boolean> {
    const target = this.file(path);
    const temp = await this.writeTemp(target, data);
    try {
      await link(temp, target);
      return true;
    } catch (e) {
      if (isCode(e, 'EEXIST')) return false;
      throw e;
    } finally {
      await unlinkQuietly(temp);
    }
  }

  /** Copy a local file in (temporary copy, then rename), leaving the source where it is. */
  async putFile(path: string, localFile: string): Promise<void> {
    return this.writing(() => this.putFileNow(path, localFile));
  }

  private async putFileNow(path: string, localFile: string): Promise<void> {
    const target = this.file(path);
    await mkdir(dirname(target), { recursive: true });
    const temp = tempName(target);
    try {
      await copyFile(localFile, temp);
      await rename(temp, target);
    } catch (e) {
      await unlinkQuietly(temp);
      if (isCode(e, 'ENOENT') && !(await exists(localFile)))
        throw new StorePathError(localFile, `cannot be stored at ${path}: the local file does not exist`);
      throw e;
    }
  }

  /** The object's own file: DuckDB reads it in place. */
  async localFile(path: string): Promise<string> {
    const file = this.file(path);
    if (!(await exists(file))) throw new StorePathError(path, `does not exist in ${this.uri}`);
    return file;
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    // Walk only the deepest directory the prefix names; the prefix may end inside a file name.
    const slash = prefix.lastIndexOf('/');
    const base = slash < 0 ? '' : prefix.slice(0, slash);
    const out: ObjectInfo[] = [];
    const walk = async (rel: string): Promise<void> => {
      let entries;
      try {
        entries = await readdir(rel ? this.file(rel) : this.root, { withFileTypes: true });
      } catch (e) {
        if (isCode(e, 'ENOENT') || isCode(e, 'ENOTDIR')) return;
        throw e;
      }
      for (const entry of entries) {
        const path = rel ? `${rel}/${entry.name}` : entry.name;
        if (entry.isDirectory()) {
          if (prefix.startsWith(`${path}/`) || path.startsWith(prefix) || `${path}/`.startsWith(prefix)) await walk(path);
        } else if (entry.isFile() && path.startsWith(prefix)) {
          const info = await this.stat(path);
          if (info) out.push(info);
        }
      }
    };
    await walk(base);
    // Lexicographic by UTF-8 bytes, the order object stores list in.
    return out.sort((a, b) => Buffer.compare(Buffer.from(a.path), Buffer.from(b.path)));
  }

  async stat(path: string): Promise<ObjectInfo | undefined> {
    try {
      const s = await stat(this.file(path));
      if (!s.isFile()) return undefined;
      return { path: path.split('/').filter(Boolean).join('/'), size: s.size, modified: Math.floor(s.mtimeMs) };
    } catch (e) {
      if (isCode(e, 'ENOENT') || isCode(e, 'ENOTDIR')) return undefined;
      throw e;
    }
  }

  async delete(path: string): Promise<void> {
    await unlinkQuietly(this.file(path));
  }

  async close(): Promise<void> {
    // Nothing is held open between calls.
  }

  /**
   * Whether Tide can write here: creates the directory if missing, then writes and removes a hidden
   * probe file. `openStore` runs it for a lake opened to write, so a read-only or misplaced lake
   * directory fails at start, naming the directory, instead of at the first commit.
   */
  async checkWritable(): Promise<void> {
    await this.writing(async () => {
      await mkdir(this.root, { recursive: true });
      const probe = join(this.root, `.tide-write-probe-${randomUUID()}`);
      await writeFile(probe, '');
      await unlink(probe);
    });
  }

  /** Runs a write, turning "not allowed to write here" into a ConnectionError naming the lake directory and the fix. */
  private async writing<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      const code = (e as { code?: unknown }).code;
      // ENOENT from mkdir: a recursive mkdir can report a parent it may not create as missing.
      const syscall = (e as { syscall?: unknown }).syscall;
      if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS' || (code === 'ENOENT' && syscall === 'mkdir')) {
        const where = typeof (e as { path?: unknown }).path === 'string' ? (e as { path: string }).path : this.root;
        throw new ConnectionError(
          'lake',
          this.uri,
          `cannot write in the lake directory ${this.root}: ${code} on ${where}${code === 'EROFS' ? ' (a read-only filesystem)' : ''}`,
          `Make ${this.root} (or its parent) writable for the user Tide runs as${typeof process.getuid === 'function' ? ` (uid ${process.getuid()})` : ''}, or set lake.uri to a writable directory`,
          { cause: e, code: 'not-writable' },
        );
      }
      throw e;
    }
  }

  /** Write `data` to a new temporary file next to `target` and fsync it, so that publishing it (link/rename) is durable. */
  private async writeTemp(target: string, data: Buffer | Uint8Array): Promise<string> {
    await mkdir(dirname(target), { recursive: true });
    const temp = tempName(target);
    const handle = await open(temp, 'wx');
    try {
      await handle.writeFile(data);
      await handle.sync();
    } catch (e) {
      await handle.close();
      await unlinkQuietly(temp);
      throw e;
    }
    await handle.close();
    return temp;
  }
}

function tempName(target: string): string {
  const slash = target.lastIndexOf(sep);
  return `${target.slice(0, slash + 1)}.${target.slice(slash + 1)}.${randomUUID()}.tmp`;
}

function isCode(e: unknown, code: string): boolean {
  return typeof e === 'object' && e !== null && (e as { code?: unknown }).code === code;
}

async function exists(file: string): Promise<boolean> {
  try {
    return (await stat(file)).isFile();
  } catch (e) {
    if (isCode(e, 'ENOENT') || isCode(e, 'ENOTDIR')) return false;
    throw e;
  }
}

async function unlinkQuietly(file: string): Promise<void> {
  try {
    await unlink(file);
  } catch (e) {
    // Deleting what is already gone is not an error (ObjectStore.delete's contract).
    if (!isCode(e, 'ENOENT')) throw e;
  }
}

/**
 * The default {@link BlobStore}: files under one folder (`SYNCHAT_DATA_DIR/media`). Writes go to a temporary
 * file in the same folder, are synced, then renamed over the key, so a reader never sees a partial value and a
 * crash leaves at most a stray temporary file. Several processes of one machine may share the folder (gateway
 * processes read, the core process writes). See docs/architecture.md "Media".
 */
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { chmod, mkdir, open, readdir, rename, rm, stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { BlobStore } from '../../core/ports.ts';
import { DISK_FULL_ERRMSG, RET, SynchatError } from '../../protocol/index.ts';
import { PRIVATE_DIR_MODE, PRIVATE_FILE_MODE } from '../private-files.ts';

const KEY = /^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/;
/** Suffix of the temporary file a write renames over its key. */
const TEMP_SUFFIX = '.tmp';
/**
 * A temporary file untouched this long is an orphan of a crashed write, in ms. A live write touches its file
 * until the rename (a 16 MiB chunk is written and synced in well under a second here), and with several nodes
 * sharing the folder another node's write may be in flight while this one starts, so a fresh one is left alone.
 */
export const ORPHAN_TEMP_MIN_AGE_MS = 60_000;
/** Folders {@link LocalBlobStore.recover} works on at once (file system calls run on libuv's 4 threads). */
const RECOVER_WALKERS = 16;

/** A full disk (or quota) becomes ret 9 with an errMsg that says so; any other failure stays as it is. */
function refusalOf(err: unknown): unknown {
  const code = (err as { code?: string }).code;
  return code === 'ENOSPC' || code === 'EDQUOT' ? new SynchatError(RET.SERVER_ERROR, DISK_FULL_ERRMSG) : err;
}

/** What {@link LocalBlobStore.recover} did. */
export interface BlobRecovery {
  /** Orphaned temporary files removed. */
  removedTemps: number;
  /** Files and folders set owner-only. */
  entries: number;
}

/** Blobs as files on the local disk. */
export class LocalBlobStore implements BlobStore {
  readonly name = 'local';
  readonly #root: string;

  /** @param root the folder that holds every blob; created on first write. */
  constructor(root: string) {
    this.#root = root;
  }

  #path(key: string): string {
    // Keys come from the service, never raw from a client; still, no key may leave the root.
    if (!KEY.test(key) || key.split('/').some((p) => p === '.' || p === '..')) throw new Error(`bad blob key: ${key}`);
    return join(this.#root, key);
  }

  #tempFor(path: string): string {
    return `${path}.${randomBytes(6).toString('hex')}${TEMP_SUFFIX}`;
  }

  /**
   * Start-up repair, run by the process that writes (the core): removes the temporary files of writes that crashed
   * before their rename (untouched for `minTempAgeMs`), and sets the root and every folder 0700 and every file
   * 0600 (what an older version made readable to other accounts). Walks the whole tree, {@link RECOVER_WALKERS}
   * folders at a time: measured here, 0.75-0.86 s for 20,000 blobs (40,000 files and folders; 2.9-3.6 s one folder at a time), so
   * the caller runs it beside serving rather than before (a stray temporary file is invisible to `list`).
   */
  async recover(minTempAgeMs = ORPHAN_TEMP_MIN_AGE_MS, nowMs = Date.now()): Promise<BlobRecovery> {
    const done: BlobRecovery = { removedTemps: 0, entries: 0 };
    await mkdir(this.#root, { recursive: true, mode: PRIVATE_DIR_MODE });
    const dirs = [this.#root];
    const visit = async (dir: string): Promise<void> => {
      await chmod(dir, PRIVATE_DIR_MODE);
      done.entries++;
      for (const e of await readdir(dir, { withFileTypes: true })) {
        const path = join(dir, e.name);
        if (e.isDirectory()) dirs.push(path);
        else if (!e.isFile()) continue;
        else if (e.name.endsWith(TEMP_SUFFIX) && nowMs - (await stat(path)).mtimeMs >= minTempAgeMs) {
          await rm(path, { force: true });
          done.removedTemps++;
        } else {
          await chmod(path, PRIVATE_FILE_MODE);
          done.entries++;
        }
      }
    };
    // Walkers take folders from one shared stack; a walker stops when it finds the stack empty while the others
    // may still push, so it waits for them before it gives up.
    let busy = 0;
    const walker = async (): Promise<void> => {
      for (;;) {
        const dir = dirs.pop();
        if (dir === undefined) {
          if (busy === 0) return;
          await new Promise((r) => setImmediate(r));
          continue;
        }
        busy++;
        try {
          await visit(dir);
        } finally {
          busy--;
        }
      }
    };
    await Promise.all(Array.from({ length: RECOVER_WALKERS }, walker));
    return done;
  }

  async put(key: string, bytes: Uint8Array): Promise<void> {
    const path = this.#path(key);
    const tmp = this.#tempFor(path);
    try {
      await mkdir(dirname(path), { recursive: true, mode: PRIVATE_DIR_MODE });
      const fh = await open(tmp, 'w', PRIVATE_FILE_MODE);
      try {
        await fh.writeFile(bytes);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, path);
    } catch (err) {
      // A failed write (a full disk above all) leaves no partial temporary file behind.
      await unlink(tmp).catch(() => undefined);
      throw refusalOf(err);
    }
  }

  async concat(target: string, sources: readonly string[]): Promise<void> {
    const path = this.#path(target);
    await mkdir(dirname(path), { recursive: true, mode: PRIVATE_DIR_MODE });
    const tmp = this.#tempFor(path);
    try {
      const out = createWriteStream(tmp, { mode: PRIVATE_FILE_MODE });
      await pipeline(async function* (paths: string[]) {
        for (const p of paths) for await (const chunk of createReadStream(p)) yield chunk as Buffer;
      }(sources.map((k) => this.#path(k))), out);
      const fh = await open(tmp, 'r+');
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, path);
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      throw refusalOf(err);
    }
  }

  async *read(key: string, start?: number, end?: number): AsyncIterable<Uint8Array> {
    for await (const chunk of createReadStream(this.#path(key), { start, end, highWaterMark: 256 * 1024 })) yield chunk as Buffer;
  }

  filePath(key: string): string {
    return this.#path(key);
  }

  async size(key: string): Promise<number | undefined> {
    try {
      const s = await stat(this.#path(key));
      return s.isFile() ? s.size : undefined;
    } catch (err: any) {
      if (err?.code === 'ENOENT' || err?.code === 'ENOTDIR') return undefined;
      throw err;
    }
  }

  async list(prefix: string): Promise<string[]> {
    try {
      const names = await readdir(this.#path(prefix));
      return names.filter((n) => !n.endsWith(TEMP_SUFFIX));
    } catch (err: any) {
      if (err?.code === 'ENOENT' || err?.code === 'ENOTDIR') return [];
      throw err;
    }
  }

  async delete(key: string): Promise<void> {
    await rm(this.#path(key), { force: true });
  }

  async deletePrefix(prefix: string): Promise<void> {
    await rm(this.#path(prefix), { recursive: true, force: true });
  }
}

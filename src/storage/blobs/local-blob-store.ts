/**
 * The default {@link BlobStore}: files under one folder (`SYNCHAT_DATA_DIR/media`). Writes go to a temporary
 * file in the same folder, are synced, then renamed over the key, so a reader never sees a partial value and a
 * crash leaves at most a stray temporary file. Several processes of one machine may share the folder (gateway
 * processes read, the core process writes). See docs/architecture.md "Media".
 */
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { BlobStore } from '../../core/ports.ts';

const KEY = /^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/;

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
    return `${path}.${randomBytes(6).toString('hex')}.tmp`;
  }

  async put(key: string, bytes: Uint8Array): Promise<void> {
    const path = this.#path(key);
    await mkdir(dirname(path), { recursive: true });
    const tmp = this.#tempFor(path);
    const fh = await open(tmp, 'w');
    try {
      await fh.writeFile(bytes);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path).catch(async (err) => {
      await unlink(tmp).catch(() => undefined);
      throw err;
    });
  }

  async concat(target: string, sources: readonly string[]): Promise<void> {
    const path = this.#path(target);
    await mkdir(dirname(path), { recursive: true });
    const tmp = this.#tempFor(path);
    try {
      const out = createWriteStream(tmp);
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
      throw err;
    }
  }

  async *read(key: string, start?: number, end?: number): AsyncIterable<Uint8Array> {
    for await (const chunk of createReadStream(this.#path(key), { start, end, highWaterMark: 256 * 1024 })) yield chunk as Buffer;
  }

  async get(key: string): Promise<Uint8Array> {
    return readFile(this.#path(key));
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
      return names.filter((n) => !n.endsWith('.tmp'));
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

/**
 * Owner-only modes for what the server stores: the data folder and media folders 0700, database files and
 * blobs 0600, so another account on the machine reads neither messages nor session hashes nor media. Applied
 * when a file or folder is made and, for what an older version left readable, again at start. See
 * docs/architecture.md "Storage on disk".
 */
import { chmodSync, closeSync, existsSync, mkdirSync, openSync } from 'node:fs';

/** Mode of every folder the server makes: owner only. */
export const PRIVATE_DIR_MODE = 0o700;
/** Mode of every file the server makes: owner read and write. */
export const PRIVATE_FILE_MODE = 0o600;

/** Makes `dir` (and missing parents) and sets it to {@link PRIVATE_DIR_MODE}, also when it already existed. */
export function makePrivateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
  chmodSync(dir, PRIVATE_DIR_MODE);
}

/**
 * Sets each existing file of `files` to {@link PRIVATE_FILE_MODE}; with `create`, the first one is made empty
 * with that mode when missing (SQLite then gives its `-wal` and `-shm` files the database file's mode).
 */
export function makePrivateFiles(files: readonly string[], create = false): void {
  if (create && files[0] !== undefined && !existsSync(files[0])) closeSync(openSync(files[0], 'a', PRIVATE_FILE_MODE));
  for (const f of files) if (existsSync(f)) chmodSync(f, PRIVATE_FILE_MODE);
}

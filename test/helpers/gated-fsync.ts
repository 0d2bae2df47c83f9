/**
 * Test side of test/helpers/gated-fsync.cjs: a disk for the SQLite store's `fsyncModule` seam, driven through a
 * folder (so it works for an in-process store's sync thread and for a server child process alike).
 */
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** How long a wait may take before the test fails instead of hanging (not a timing assertion). */
const HANG_GUARD_MS = 15_000;

/** Writes `dir/fsync.cjs`, a module for the `fsyncModule` seam that is `kind` of gated-fsync.cjs on `dir`. */
export function fsyncModuleIn(dir: string, kind: 'held' | 'shadow'): string {
  const file = join(dir, 'fsync.cjs');
  const impl = fileURLToPath(new URL('./gated-fsync.cjs', import.meta.url));
  writeFileSync(file, `module.exports = require(${JSON.stringify(impl)}).${kind}(${JSON.stringify(dir)});\n`);
  return file;
}

/** A disk whose WAL fsyncs the test holds back and releases. */
export interface HeldFsync {
  /** The `fsyncModule` to give the store. */
  module: string;
  /** From now on every fsync parks (before syncing) until {@link HeldFsync.release}. */
  hold(): void;
  release(): void;
  /** How many fsyncs have parked so far. */
  parked(): number;
  /** Resolves once more than `count` fsyncs have parked. */
  waitParked(count: number): Promise<void>;
  /** The file of the last completed fsync, if any. */
  lastSynced(): string | undefined;
}

/** A {@link HeldFsync} whose files live in `dir` (an empty folder of the test's). */
export function heldFsync(dir: string): HeldFsync {
  const hold = join(dir, 'hold');
  const parked = (): number => (existsSync(join(dir, 'parked')) ? Number(readFileSync(join(dir, 'parked'), 'utf8')) : 0);
  return {
    module: fsyncModuleIn(dir, 'held'),
    hold: () => writeFileSync(hold, ''),
    release: () => rmSync(hold, { force: true }),
    parked,
    async waitParked(count) {
      const deadline = Date.now() + HANG_GUARD_MS;
      while (parked() <= count) {
        if (Date.now() > deadline) throw new Error(`no fsync parked within ${HANG_GUARD_MS} ms`);
        await new Promise((r) => setTimeout(r, 5));
      }
    },
    lastSynced() {
      const f = join(dir, 'synced');
      return existsSync(f) ? readFileSync(f, 'utf8').split(' ').slice(1).join(' ') : undefined;
    },
  };
}

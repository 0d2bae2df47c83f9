/**
 * A small tmpfs for tests that fill a disk: mounted on a fresh folder, unmounted after. Mounting needs root (or
 * CAP_SYS_ADMIN); where it is refused the test skips with the reason, except under CI=true, where the run fails
 * instead (as test/helpers/services.ts does for PostgreSQL and Redis).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A mounted tmpfs. */
export interface Tmpfs {
  /** The mount point. */
  dir: string;
  /** Unmounts it (lazily if a file is still open) and removes the folder. */
  unmount(): void;
}

/**
 * Mounts a tmpfs of `sizeBytes` (its root owned by `owner`, e.g. another local service's user; else by this
 * process); returns it, or the reason it cannot be mounted (throws under CI=true).
 */
export function mountTmpfs(sizeBytes: number, owner?: { uid: number; gid: number }): Tmpfs | string {
  const dir = mkdtempSync(join(tmpdir(), 'synchat-tmpfs-'));
  const ownedBy = owner ? `,uid=${owner.uid},gid=${owner.gid}` : '';
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeBytes},mode=0700${ownedBy}`, 'tmpfs', dir], { stdio: 'pipe' });
  } catch (err) {
    rmdirSync(dir);
    const reason = `cannot mount a tmpfs (needs root or CAP_SYS_ADMIN): ${String((err as { stderr?: Buffer }).stderr ?? err).trim()}`;
    if (process.env.CI === 'true') throw new Error(`${reason}; CI=true requires it`);
    return `${reason}: skipped`;
  }
  return {
    dir,
    unmount() {
      execFileSync('umount', ['--lazy', dir], { stdio: 'pipe' });
      rmdirSync(dir);
    },
  };
}

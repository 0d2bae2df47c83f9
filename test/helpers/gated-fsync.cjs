// Disks for the SQLite store's `fsyncModule` seam (the module whose fsyncSync(fd) the store's sync thread calls).
// CommonJS because that thread loads it with require() (wal-syncer.ts runs plain CommonJS); a test hands the store
// a one-line module that calls one of these with its folder (test/helpers/gated-fsync.ts).
// eslint-disable-next-line @typescript-eslint/no-require-imports
const fs = require('node:fs');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { join } = require('node:path');

const nap = new Int32Array(new SharedArrayBuffer(4));

/** Writes `text` to `file` atomically (a reader never sees half of it). */
function put(file, text) {
  fs.writeFileSync(`${file}.tmp`, text);
  fs.renameSync(`${file}.tmp`, file);
}

/**
 * A disk whose fsyncs a test holds back: while `dir/hold` exists each call counts itself in `dir/parked` and
 * waits, without syncing, until the file is gone; after each real fsync `dir/synced` holds `<count> <path>`.
 */
exports.held = (dir) => {
  let parked = 0;
  let synced = 0;
  return {
    fsyncSync(fd) {
      if (fs.existsSync(join(dir, 'hold'))) {
        put(join(dir, 'parked'), String(++parked));
        while (fs.existsSync(join(dir, 'hold'))) Atomics.wait(nap, 0, 0, 2);
      }
      fs.fsyncSync(fd);
      put(join(dir, 'synced'), `${++synced} ${fs.readlinkSync(`/proc/self/fd/${fd}`)}`);
    },
  };
};

/**
 * Records `file` as synced: copies it, as it is now, to `dir/<its name>`. Copies are taken one at a time across
 * threads (a lock folder), so the last copy of a file is the newest; each lands by rename, whole or not at all.
 */
function copyToShadow(dir, file) {
  const lock = join(dir, 'lock');
  for (;;) {
    try {
      fs.mkdirSync(lock);
      break;
    } catch {
      Atomics.wait(nap, 0, 0, 1);
    }
  }
  try {
    const copy = join(dir, file.slice(file.lastIndexOf('/') + 1));
    fs.copyFileSync(file, `${copy}.tmp`);
    fs.renameSync(`${copy}.tmp`, copy);
  } finally {
    fs.rmdirSync(lock);
  }
}
exports.copyToShadow = copyToShadow;

/**
 * A disk that remembers only what was synced: each fsync first copies the file, as it is when the fsync is called,
 * into `dir` ({@link copyToShadow}), then syncs. After a kill -9 those copies are what a disk would hold after a
 * power cut at that moment: every byte written before the file's last fsync began, nothing newer (the page
 * cache, which a kill -9 leaves intact, is what a power cut takes). A write racing the fsync may be copied torn,
 * as a real disk may hold it.
 */
exports.shadow = (dir) => ({
  fsyncSync(fd) {
    copyToShadow(dir, fs.readlinkSync(`/proc/self/fd/${fd}`));
    fs.fsyncSync(fd);
  },
});

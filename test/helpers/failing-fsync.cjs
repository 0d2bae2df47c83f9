// The fsync of a failing disk, for the SQLite store's `fsyncModule` seam: node:fs's own fsyncSync until the file
// named by FAILING_FSYNC_MARKER exists, then EIO (what Linux reports when writeback to the disk failed).
// CommonJS because the store's sync thread loads it with require() (wal-syncer.ts runs plain CommonJS).
// eslint-disable-next-line @typescript-eslint/no-require-imports
const fs = require('node:fs');

exports.fsyncSync = (fd) => {
  if (process.env.FAILING_FSYNC_MARKER && fs.existsSync(process.env.FAILING_FSYNC_MARKER)) {
    throw Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO', errno: -5, syscall: 'fsync' });
  }
  fs.fsyncSync(fd);
};

/**
 * A one-process server on a simulated disk that keeps only what was synced (test/helpers/gated-fsync.cjs
 * `shadow`), for test/helpers/power-cut.ts. Usage: `power-cut-server.ts <dataDir> <fsyncModule>`, the module in
 * the shadow folder; SYNCHAT_SQLITE_SYNCHRONOUS from the environment; prints `{"httpPort":…}` once it listens.
 *
 * Checkpoints: SQLite syncs inside a checkpoint, in the C library, where the seam cannot see it (first the WAL,
 * then, after copying frames into it, the database file). So the store's own checkpoint thread is off
 * (walCheckpointMs 0) and this process checkpoints every CHECKPOINT_MS the way that thread does (PASSIVE), with
 * a copy to the shadow folder at each of those two syncs. A read transaction held across them pins the WAL: the
 * checkpoint copies no frame newer than the WAL's copy, and the writer cannot restart the WAL (write it again
 * from its start) before the database's copy is taken. `checkpoints.json` in the shadow folder counts
 * checkpoints and the WAL restarts seen, for the report.
 */
import { createRequire } from 'node:module';
import { closeSync, openSync, readSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import { buildServer } from '../../src/server/build-server.ts';
import { DEFAULTS, loadConfig } from '../../src/server/config.ts';

/** How often this process checkpoints: often, so that a cut may fall after a WAL restart. */
const CHECKPOINT_MS = 50;
const { copyToShadow } = createRequire(import.meta.url)('./gated-fsync.cjs') as { copyToShadow: (dir: string, file: string) => void };

const [dataDir, fsyncModule] = process.argv.slice(2) as [string, string];
const config = loadConfig(
  { SYNCHAT_SQLITE_SYNCHRONOUS: process.env.SYNCHAT_SQLITE_SYNCHRONOUS },
  { httpPort: 0, tcpPort: 0, workers: 0, dataDir, logLevel: 'silent', passwordLog2N: 10, rateLimit: 'off', maxConnsPerIp: DEFAULTS.maxConns },
);
const server = await buildServer(config, { fsyncModule, walCheckpointMs: 0 });

if (config.sqliteSynchronous === 'FULL') {
  const shadow = dirname(fsyncModule);
  const file = join(dataDir, 'synchat.db');
  const pin = new Database(file, { readonly: true });
  const checkpointer = new Database(file);
  checkpointer.pragma('synchronous = NORMAL');
  const stats = { checkpoints: 0, walRestarts: 0 };
  /** The WAL header's checkpoint sequence number, which each WAL restart increments. */
  const walSequence = (): number => {
    const fd = openSync(`${file}-wal`, 'r');
    const header = Buffer.alloc(16);
    readSync(fd, header, 0, 16, 0);
    closeSync(fd);
    return header.readUInt32BE(12);
  };
  let sequence = -1;
  setInterval(() => {
    pin.exec('BEGIN');
    pin.prepare('SELECT COUNT(*) FROM heads').get();
    try {
      copyToShadow(shadow, `${file}-wal`);
      checkpointer.pragma('wal_checkpoint(PASSIVE)');
      copyToShadow(shadow, file);
      stats.checkpoints++;
    } finally {
      pin.exec('COMMIT');
    }
    const now = walSequence();
    if (sequence >= 0 && now !== sequence) stats.walRestarts++;
    sequence = now;
    writeFileSync(join(shadow, 'checkpoints.json'), JSON.stringify(stats));
  }, CHECKPOINT_MS).unref();
}
process.stdout.write(`${JSON.stringify({ httpPort: server.httpPort })}\n`);

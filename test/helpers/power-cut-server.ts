/**
 * A one-process server on a simulated disk that keeps only what was fsynced (test/helpers/gated-fsync.cjs
 * `shadow`), for test/helpers/power-cut.ts. Usage: `power-cut-server.ts <dataDir> <fsyncModule>`, with
 * SYNCHAT_SQLITE_SYNCHRONOUS taken from the environment; prints `{"httpPort":…}` once it listens. The store runs
 * no checkpoints (walCheckpointMs 0): SQLite syncs the database file inside a checkpoint, where the simulated disk
 * cannot see it (power-cut.ts says what that leaves out).
 */
import { buildServer } from '../../src/server/build-server.ts';
import { DEFAULTS, loadConfig } from '../../src/server/config.ts';

const config = loadConfig(
  { SYNCHAT_SQLITE_SYNCHRONOUS: process.env.SYNCHAT_SQLITE_SYNCHRONOUS },
  { httpPort: 0, tcpPort: 0, workers: 0, dataDir: process.argv[2]!, logLevel: 'silent', passwordLog2N: 10, rateLimit: 'off', maxConnsPerIp: DEFAULTS.maxConns },
);
const server = await buildServer(config, { fsyncModule: process.argv[3]!, walCheckpointMs: 0 });
process.stdout.write(`${JSON.stringify({ httpPort: server.httpPort })}\n`);

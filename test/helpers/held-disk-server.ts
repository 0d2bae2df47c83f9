/**
 * A one-process server whose SQLite store syncs through a disk the test holds (test/helpers/gated-fsync.ts
 * `heldFsync`), ended the way `npm start` ends (src/server/lifecycle.ts). Usage: `held-disk-server.ts <dataDir>
 * <fsyncDir> <drainMs>`; prints `{"httpPort":…,"tcpPort":…}` once it listens.
 */
import { buildServer, makeLogger } from '../../src/server/build-server.ts';
import { loadConfig } from '../../src/server/config.ts';
import { exitWhenDone } from '../../src/server/lifecycle.ts';
import { heldFsync } from './gated-fsync.ts';

const config = loadConfig({}, {
  httpPort: 0,
  tcpPort: 0,
  workers: 0,
  dataDir: process.argv[2]!,
  drainMs: Number(process.argv[4]),
  logLevel: 'silent',
  passwordLog2N: 10,
  rateLimit: 'off',
});
const server = await buildServer(config, { fsyncModule: heldFsync(process.argv[3]!).module });
exitWhenDone(server, makeLogger(config, 'synchat'), { drainMs: config.drainMs });
process.stdout.write(`${JSON.stringify({ httpPort: server.httpPort, tcpPort: server.tcpPort })}\n`);

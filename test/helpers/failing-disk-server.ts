/**
 * A one-process server whose SQLite store syncs through test/helpers/failing-fsync.cjs, ended the way `npm start`
 * ends (src/server/lifecycle.ts). Usage: `failing-disk-server.ts <dataDir>` with FAILING_FSYNC_MARKER set;
 * prints `{"httpPort":…,"tcpPort":…}` once it listens.
 */
import { fileURLToPath } from 'node:url';
import { buildServer, makeLogger } from '../../src/server/build-server.ts';
import { loadConfig } from '../../src/server/config.ts';
import { exitWhenDone } from '../../src/server/lifecycle.ts';

const config = loadConfig({}, {
  httpPort: 0,
  tcpPort: 0,
  workers: 0,
  dataDir: process.argv[2]!,
  logLevel: 'silent',
  passwordLog2N: 10,
  rateLimit: 'off',
});
const server = await buildServer(config, { fsyncModule: fileURLToPath(new URL('./failing-fsync.cjs', import.meta.url)) });
exitWhenDone(server, makeLogger(config, 'synchat'), { drainMs: config.drainMs });
process.stdout.write(`${JSON.stringify({ httpPort: server.httpPort, tcpPort: server.tcpPort })}\n`);

/**
 * `npm start`: reads the environment, then runs one process (SYNCHAT_WORKERS=0) or a core process with gateway
 * processes. The only place that reads process.env.
 */
import { buildServer, makeLogger } from './build-server.ts';
import { isGatewayWorker, runGatewayWorker, startPrimary } from './cluster.ts';
import { ConfigError, loadConfig, type Config } from './config.ts';
import { exitWhenDone } from './lifecycle.ts';

function readConfig(): Config {
  const env = { ...process.env };
  delete env.SYNCHAT_ROLE_GATEWAY;
  try {
    return loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`synchat: ${err.message}`);
      process.exit(2);
    }
    throw err;
  }
}

async function main(): Promise<void> {
  const config = readConfig();
  if (isGatewayWorker()) return runGatewayWorker(config);
  const logger = makeLogger(config, 'synchat');
  const server = config.workers === 0 ? await buildServer(config) : await startPrimary(config, logger);
  logger.info({ url: `http${config.tlsCert ? 's' : ''}://${config.host}:${server.httpPort}`, tcpPort: server.tcpPort, workers: config.workers }, 'Synchat is up');
  exitWhenDone(server, logger, { drainMs: config.drainMs });
}

main().catch((err) => {
  // Unusable TLS files are found at start (src/server/tls.ts): a settings error like the others.
  if (err instanceof ConfigError) {
    console.error(`synchat: ${err.message}`);
    process.exit(2);
  }
  console.error('synchat: failed to start:', err?.message ?? err);
  process.exit(1);
});

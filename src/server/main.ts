/**
 * `npm start`: reads the environment, then runs one process (SYNCHAT_WORKERS=0) or a core process with gateway
 * processes. The only place that reads process.env.
 */
import { buildServer, makeLogger } from './build-server.ts';
import { isGatewayWorker, runGatewayWorker, startPrimary } from './cluster.ts';
import { ConfigError, loadConfig, type Config } from './config.ts';

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
  logger.info({ url: `http://${config.host}:${server.httpPort}`, tcpPort: server.tcpPort, workers: config.workers }, 'Synchat is up');
  let isStopping = false;
  const stop = (signal: string) => {
    if (isStopping) return;
    isStopping = true;
    logger.info({ signal }, 'shutting down');
    void server.close().then(
      () => process.exit(0),
      (err) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

main().catch((err) => {
  console.error('synchat: failed to start:', err?.message ?? err);
  process.exit(1);
});

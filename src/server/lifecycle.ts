/**
 * How a server process ends: on SIGINT/SIGTERM it closes and exits 0; when its store can no longer write durably
 * (a failed WAL fsync) it closes, so the writes in flight are answered (ret 9) and the listeners let go of their
 * connections, and exits 1, for a supervisor to restart it (the restart runs the start-up checks and SQLite's
 * recovery). In cluster mode the gateway processes exit with their core (cluster.ts, `disconnect`). See
 * docs/architecture.md "Storage on disk".
 */
import type pino from 'pino';
import type { Core } from './build-server.ts';

/** Exit code after the store failed. */
export const EXIT_STORE_FAILED = 1;
/** A close that hangs this long after a store failure is cut short by the exit, in ms. */
const FAILED_CLOSE_GUARD_MS = 10_000;

/** Installs the signal and store-failure handlers of a running server (one process, or a cluster's primary). */
export function exitWhenDone(server: { core: Core; close(): Promise<void> }, logger: pino.Logger): void {
  let isStopping = false;
  const stop = (reason: string, code: number) => {
    if (isStopping) return;
    isStopping = true;
    logger.info({ reason }, 'shutting down');
    if (code !== 0) setTimeout(() => process.exit(code), FAILED_CLOSE_GUARD_MS).unref();
    void server.close().then(
      () => process.exit(code),
      (err) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(code || 1);
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT', 0));
  process.on('SIGTERM', () => stop('SIGTERM', 0));
  void server.core.failed.then((err) => {
    logger.fatal({ err }, 'the store cannot write durably any more: exiting, to be restarted');
    stop('store failed', EXIT_STORE_FAILED);
  });
}

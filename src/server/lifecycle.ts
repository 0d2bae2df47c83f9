/**
 * How a server process ends: on SIGTERM it drains (docs/operations.md "Draining and rolling restarts": leaves the
 * directory, spreads 1102 over its clients, lets the writes in flight finish) and exits 0 within `drainMs`, or 1 at
 * that deadline if the drain overran it; on SIGINT it closes at once and exits 0 (a SIGINT during a drain exits at
 * once). SIGHUP to a cluster's primary rolls its gateway processes. When its store can no longer write durably
 * (a failed WAL fsync) it closes, so the writes in flight are answered (ret 9) and the listeners let go of their
 * connections, and exits 1, for a supervisor to restart it (the restart runs the start-up checks and SQLite's
 * recovery). In cluster mode the gateway processes exit with their core (cluster.ts, `disconnect`). See
 * docs/architecture.md "Storage on disk".
 */
import type pino from 'pino';
import type { Core } from './build-server.ts';

/** Exit code after the store failed. */
export const EXIT_STORE_FAILED = 1;
/** Exit code when a drain overran `drainMs` and the deadline cut it short. */
export const EXIT_DRAIN_OVERRAN = 1;
/** A close that hangs this long after a store failure is cut short by the exit, in ms. */
const FAILED_CLOSE_GUARD_MS = 10_000;

/** What {@link exitWhenDone} runs: one process (`buildServer`) or a cluster's primary (`startPrimary`). */
export interface StoppableServer {
  core: Core;
  close(): Promise<void>;
  drainAndClose(drainMs: number): Promise<void>;
  /** Present on a cluster's primary: SIGHUP calls it. */
  rollGateways?(): Promise<number>;
}

/** Installs the signal and store-failure handlers of a running server (one process, or a cluster's primary). */
export function exitWhenDone(server: StoppableServer, logger: pino.Logger, options: { drainMs: number }): void {
  let isStopping = false;
  let isDraining = false;
  const drain = () => {
    if (isStopping) return;
    isStopping = isDraining = true;
    logger.info({ drainMs: options.drainMs }, 'SIGTERM: draining');
    // The hard deadline: whatever still runs then (a write waiting on a stuck disk) does not hold the exit.
    setTimeout(() => {
      logger.error({ drainMs: options.drainMs }, 'the drain overran SYNCHAT_DRAIN_MS: exiting');
      process.exit(EXIT_DRAIN_OVERRAN);
    }, options.drainMs).unref();
    void server.drainAndClose(options.drainMs).then(
      () => {
        logger.info('drained');
        process.exit(0);
      },
      (err) => {
        logger.error({ err }, 'drain failed');
        process.exit(1);
      },
    );
  };
  const stop = (reason: string, code: number) => {
    if (isStopping) {
      if (isDraining && reason === 'SIGINT') process.exit(code);
      return;
    }
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
  process.on('SIGTERM', drain);
  const roll = server.rollGateways?.bind(server);
  if (roll) {
    process.on('SIGHUP', () => {
      if (isStopping) return;
      logger.info('SIGHUP: rolling restart of the gateway processes');
      void roll().catch((err) => logger.error({ err }, 'rolling restart failed'));
    });
  }
  void server.core.failed.then((err) => {
    logger.fatal({ err }, 'the store cannot write durably any more: exiting, to be restarted');
    stop('store failed', EXIT_STORE_FAILED);
  });
}

/**
 * Several processes on one machine: the primary owns the core (SQLite writer, sync service, bus) and forks
 * `workers` gateway processes that hold the connections (HTTP, long-poll, and the long connection). node:cluster
 * shares the listening ports between the gateways. A gateway that dies is replaced; its clients reconnect and
 * resync, so nothing is lost or doubled. SIGHUP to the primary rolls the gateways (one fresh process, then one old
 * one drained, in turn); SIGTERM drains them all. See docs/architecture.md "Processes" and docs/operations.md
 * "Draining and rolling restarts".
 */
import cluster, { type Worker } from 'node:cluster';
import type pino from 'pino';
import { buildCore, drainWindows, buildGateway, gatewayDirectory, makeLogger, type Core, type CoreSeams, type Gateway } from './build-server.ts';
import type { Config } from './config.ts';
import { IpcChatClient, IpcCoreHost } from './ipc.ts';
import { loadTls } from './tls.ts';
import { GatewayOps, NodeMetrics, ProcessMetrics, nodeLabel, type NodeOps, type OpsChannel } from '../ops/index.ts';

/** A running cluster (primary side). */
export interface RunningCluster {
  core: Core;
  /** The node's metrics and snapshot, gathered from every gateway process (`/metrics`, the dashboard). */
  ops: NodeOps;
  httpPort: number;
  tcpPort: number;
  /** Process ids of the gateways serving now (not those draining), for operators and tests. */
  readonly gatewayPids: number[];
  /**
   * Rolling restart of the gateway processes without stopping the node: for each gateway serving when it is
   * called, starts a fresh one, waits until it listens, then drains the old one (SYNCHAT_DRAIN_MS: it closes its
   * listening handles first, so the kernel hands new connections to the others, then spreads 1102 over its
   * clients) and waits for its exit; one at a time. A call while a roll runs returns that roll. Resolves with
   * the number of gateways replaced. SIGHUP to the primary calls it.
   */
  rollGateways(): Promise<number>;
  /** SIGTERM: leaves the directory, drains every gateway at once over 80 % of `drainMs`, then closes the core. */
  drainAndClose(drainMs: number): Promise<void>;
  close(): Promise<void>;
}


/** Starts the primary: the core, then the gateways; resolves when every gateway listens. */
export async function startPrimary(config: Config, logger: pino.Logger, seams: CoreSeams = {}): Promise<RunningCluster> {
  if (config.workers < 1) throw new Error('startPrimary needs workers ≥ 1');
  if (config.httpPort === 0 || config.tcpPort === 0) {
    // Gateways share ports through the primary; an ephemeral port would differ per gateway.
    throw new Error('several gateway processes need fixed SYNCHAT_HTTP_PORT and SYNCHAT_TCP_PORT');
  }
  // Each gateway reads the TLS files itself; unusable ones fail the start here, before any process is forked.
  loadTls(config);
  const core = await buildCore(config, logger, gatewayDirectory(config, () => config), seams);
  // Gateways accept connections themselves (the kernel spreads them). Node's default round-robin makes the
  // primary, which is also the core, accept every connection and pass its handle over IPC: measured, connect +
  // AUTH then ran at ~2,000/s with the core busy accepting while the gateways idled.
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  cluster.setupPrimary({ serialization: 'advanced' });
  const hosts = new Map<Worker, IpcCoreHost>();
  // Gateways' /metrics ask here, and this asks every gateway (src/ops/node-metrics.ts).
  const ops = new NodeMetrics(core.metrics, { node: nodeLabel(config.httpPort), nodeId: core.nodeId, startedAt: core.startedAt, isDraining: () => core.isDraining });
  /** Gateways told to drain: their exit is expected, not replaced. */
  const retiring = new Set<Worker>();
  let isClosing = false;
  let rolling: Promise<number> | undefined;
  const ready = () => core.readiness();

  const fork = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const worker = cluster.fork({ SYNCHAT_ROLE_GATEWAY: '1' });
      hosts.set(worker, new IpcCoreHost(core.service, worker, ready, () => core.reports.stats()));
      const leaveOps = ops.addGateway(worker);
      worker.on('message', (m: any) => {
        if (m && m.t === 'listening') resolve();
        if (m && m.t === 'failed') reject(new Error(`gateway failed to start: ${m.message}`));
      });
      // A message sent to a gateway that has just died (a crash, a kill) fails with EPIPE or ERR_IPC_CHANNEL_CLOSED as
      // an 'error' event; unhandled, it would take the core down with it. The 'exit' below cleans up after it.
      worker.on('error', (err) => logger.warn({ err, pid: worker.process.pid }, 'message to a gateway process failed'));
      worker.once('exit', (code, signal) => {
        hosts.get(worker)?.close();
        hosts.delete(worker);
        leaveOps();
        if (isClosing || retiring.delete(worker)) return;
        logger.error({ pid: worker.process.pid, code, signal }, 'gateway exited; starting another');
        reject(new Error('gateway exited during start'));
        setTimeout(() => void fork().catch((err) => logger.error({ err }, 'gateway restart failed')), 500);
      });
    });

  /** Tells `worker` to drain and resolves at its exit; one that overruns the window by half its grace is killed. */
  const retire = (worker: Worker, drainMs: number): Promise<void> =>
    new Promise<void>((resolve) => {
      retiring.add(worker);
      if (worker.isDead()) return resolve();
      const { spreadMs, graceMs } = drainWindows(drainMs);
      const killer = setTimeout(() => worker.kill('SIGKILL'), spreadMs + graceMs + Math.round(graceMs / 2));
      worker.once('exit', () => {
        clearTimeout(killer);
        resolve();
      });
      worker.send([{ t: 'drain', spreadMs, graceMs }]);
    });

  await Promise.all(Array.from({ length: config.workers }, fork));
  await core.reports.start(() => ops.snapshot());
  await core.announce(gatewayDirectory(config, () => config)());
  logger.info({ workers: config.workers, httpPort: config.httpPort, tcpPort: config.tcpPort }, 'cluster listening');
  return {
    core,
    ops,
    httpPort: config.httpPort,
    tcpPort: config.tcpPort,
    get gatewayPids() {
      return [...hosts.keys()].filter((w) => !retiring.has(w)).map((w) => w.process.pid!);
    },
    rollGateways() {
      rolling ??= (async () => {
        let rolled = 0;
        for (const old of [...hosts.keys()].filter((w) => !retiring.has(w))) {
          if (isClosing) break;
          // The fresh one first: the port never goes without a listener, and the old one's clients have somewhere to go.
          await fork();
          logger.info({ pid: old.process.pid }, 'rolling restart: draining a gateway');
          await retire(old, config.drainMs);
          rolled++;
        }
        logger.info({ rolled }, 'rolling restart done');
        return rolled;
      })().finally(() => {
        rolling = undefined;
      });
      return rolling;
    },
    async drainAndClose(drainMs) {
      isClosing = true;
      await core.startDrain();
      await Promise.all([...hosts.keys()].map((w) => retire(w, drainMs)));
      // The gateways' calls in flight reached the core before they exited; its close lets the queued writes finish.
      await core.close();
    },
    async close() {
      isClosing = true;
      await Promise.all(
        [...hosts.keys()].map(
          (w) =>
            new Promise<void>((resolve) => {
              w.once('exit', () => resolve());
              w.send([{ t: 'shutdown' }]);
              setTimeout(() => w.kill('SIGKILL'), 5000).unref();
            }),
        ),
      );
      await core.close();
    },
  };
}

/** Runs a gateway process (the worker side). */
export async function runGatewayWorker(config: Config): Promise<void> {
  const logger = makeLogger(config, `gateway-${process.pid}`);
  const api = new IpcChatClient(process as unknown as { send(m: unknown): boolean; on(e: 'message', l: (m: any) => void): unknown });
  // The core process is gone (crash, kill -9): a gateway without its core must not hold the ports.
  process.once('disconnect', () => process.exit(1));
  try {
    const channel = process as unknown as OpsChannel;
    const metrics = new ProcessMetrics('gateway');
    const nodeOps = new GatewayOps(metrics, channel);
    const gateway: Gateway = await buildGateway(config, api, logger, undefined, () => api.ready(), { metrics, node: () => nodeOps, adminStats: () => api.adminStats() });
    let exiting: Promise<void> | undefined;
    const drainThenExit = (spreadMs: number, graceMs: number) => {
      exiting ??= gateway
        .drain(spreadMs, graceMs)
        .then(() => gateway.close())
        .finally(() => process.exit(0));
    };
    process.on('message', (batch: any) => {
      if (!Array.isArray(batch)) return;
      const drain = batch.find((m) => m?.t === 'drain');
      if (drain) drainThenExit(drain.spreadMs, drain.graceMs);
      if (batch.some((m) => m?.t === 'shutdown')) void gateway.close().finally(() => process.exit(0));
    });
    // systemd's default KillMode signals every process of the unit, not only the primary: drain as the primary
    // would have told us to (drain() runs once, whoever asks first).
    process.on('SIGTERM', () => {
      const { spreadMs, graceMs } = drainWindows(config.drainMs);
      drainThenExit(spreadMs, graceMs);
    });
    process.send?.({ t: 'listening' });
  } catch (err) {
    process.send?.({ t: 'failed', message: String((err as Error).message) });
    process.exit(1);
  }
}

/** True in a gateway worker process. */
export function isGatewayWorker(): boolean {
  return cluster.isWorker && process.env.SYNCHAT_ROLE_GATEWAY === '1';
}

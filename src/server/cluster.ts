/**
 * Several processes on one machine: the primary owns the core (SQLite writer, sync service, bus) and forks
 * `workers` gateway processes that hold the connections (HTTP, long-poll, and the long connection). node:cluster
 * shares the listening ports between the gateways. A gateway that dies is replaced; its clients reconnect and
 * resync, so nothing is lost or doubled. See docs/architecture.md "Processes".
 */
import cluster, { type Worker } from 'node:cluster';
import type pino from 'pino';
import { buildCore, buildGateway, gatewayDirectory, makeLogger, type Core, type CoreSeams } from './build-server.ts';
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
  const ops = new NodeMetrics(core.metrics, { node: nodeLabel(config.httpPort), nodeId: core.nodeId, startedAt: core.startedAt });
  let isClosing = false;

  const fork = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const worker = cluster.fork({ SYNCHAT_ROLE_GATEWAY: '1' });
      hosts.set(worker, new IpcCoreHost(core.service, worker));
      const leaveOps = ops.addGateway(worker);
      worker.on('message', (m: any) => {
        if (m && m.t === 'listening') resolve();
        if (m && m.t === 'failed') reject(new Error(`gateway failed to start: ${m.message}`));
      });
      worker.once('exit', (code, signal) => {
        hosts.get(worker)?.close();
        hosts.delete(worker);
        leaveOps();
        if (isClosing) return;
        logger.error({ pid: worker.process.pid, code, signal }, 'gateway exited; starting another');
        reject(new Error('gateway exited during start'));
        setTimeout(() => void fork().catch((err) => logger.error({ err }, 'gateway restart failed')), 500);
      });
    });

  await Promise.all(Array.from({ length: config.workers }, fork));
  await core.announce(gatewayDirectory(config, () => config)());
  logger.info({ workers: config.workers, httpPort: config.httpPort, tcpPort: config.tcpPort }, 'cluster listening');
  return {
    core,
    ops,
    httpPort: config.httpPort,
    tcpPort: config.tcpPort,
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
    const gateway = await buildGateway(config, api, logger, undefined, { metrics, node: () => nodeOps });
    process.on('message', (batch: any) => {
      if (Array.isArray(batch) && batch.some((m) => m?.t === 'shutdown')) {
        void gateway.close().finally(() => process.exit(0));
      }
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

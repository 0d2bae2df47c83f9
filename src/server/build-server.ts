/**
 * The composition root: picks the adapters (SQLite + in-process bus by default), builds the service, and puts
 * transports in front of it. `buildCore` and `buildGateway` are the two halves that src/server/cluster.ts runs
 * in separate processes; `buildServer` runs both in one (tests, `SYNCHAT_WORKERS=0`).
 */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { LocalBus } from '../bus/local/local-bus.ts';
import { RedisBus, RedisDirectory, RedisNodeReports, RedisRateCounters, closeRedis, openRedis } from '../bus/redis/index.ts';
import type { Bus, Store } from '../core/ports.ts';
import { ChatService, LocalRateCounters, type ChatApi, type GatewayInfo, type Logger, type Reply } from '../service/index.ts';
import { PostgresStore } from '../storage/postgres/postgres-store.ts';
import { SqliteStore } from '../storage/sqlite/sqlite-store.ts';
import { LocalBlobStore } from '../storage/blobs/local-blob-store.ts';
import { makePrivateDir } from '../storage/private-files.ts';
import { MAX_CHUNK_BYTES } from '../core/media-rules.ts';
import { Connections } from '../transports/conn/connections.ts';
import { Hub } from '../transports/hub.ts';
import { buildHttpTransport } from '../transports/http/http-transport.ts';
import { SynccheckHandler } from '../transports/longpoll/synccheck.ts';
import { portOf, startTcpTransport } from '../transports/tcp/tcp-transport.ts';
import { TimerWheel } from '../transports/timer-wheel.ts';
import { attachWsTransport, parseAllowedOrigins } from '../transports/ws/ws-transport.ts';
import { spreadOver } from '../transports/drain.ts';
import { ConnectionCaps } from '../transports/conn-caps.ts';
import { compileTrustProxy } from '../transports/client-address.ts';
import { adminUsernames, type Config } from './config.ts';
import { NodeReports } from './node-reports.ts';
import { MAX_REPORT_BYTES, MAX_REPORTED_NODES } from '../ops/admin-stats.ts';
import { Readiness, notReady } from './readiness.ts';
import { loadTls } from './tls.ts';
import { NodeMetrics, ProcessMetrics, nodeLabel, type NodeOps, type ProcessRole } from '../ops/index.ts';
import { EdgeStats } from '../transports/edge-stats.ts';
import { gatewayDirectory, isWildcardHost } from './advertised.ts';

export { gatewayDirectory } from './advertised.ts';

/** The core half: storage, bus and the sync service. */
export interface Core {
  service: ChatService;
  store: Store;
  /**
   * Settles when the store can no longer write durably (a failed WAL fsync): every later write is refused, so
   * the process should exit non-zero and be restarted. Never settles otherwise.
   */
  readonly failed: Promise<Error>;
  bus: Bus;
  /** This node's id in the directory of live nodes (several nodes). */
  nodeId: string;
  /** When the core was built, ms since the epoch (the snapshot's `startedAt`). */
  startedAt: number;
  /** This process's metrics (docs/operations.md "Metrics"): the service's figures, read by the node's `/metrics`. */
  metrics: ProcessMetrics;
  /** The admin dashboard's data: this node's report and the other nodes' (started once the node's snapshot exists). */
  reports: NodeReports;
  /** Lists this node's gateways in the directory of live nodes (with Redis; else nothing to do). Never throws. */
  announce(gateways: GatewayInfo[]): Promise<void>;
  /**
   * `/readyz` of this node (docs/operations.md "Health and readiness"): ret 0, or ret 9 naming the first failed
   * check — draining, the store failed, the store did not commit an empty transaction within 2 s, Redis not
   * answering PING. The commit and PING run at most once a second, however many probes come.
   */
  readiness(): Promise<Reply>;
  /** True once {@link Core.startDrain} ran. */
  readonly isDraining: boolean;
  /**
   * The first step of a drain: `/readyz` answers 503 from now on and the node leaves the directory of live nodes
   * (with Redis), so that clients stop being sent here. Serving goes on until {@link Core.close}.
   */
  startDrain(): Promise<void>;
  close(): Promise<void>;
}

/** A gateway: the listeners of one process. */
export interface Gateway {
  httpPort: number;
  tcpPort: number;
  /**
   * Drains this process (docs/operations.md "Draining and rolling restarts"): closes its listeners at once (the
   * kernel hands new connections to the other processes sharing the port), answers `/readyz` 503, sends ERROR 1102
   * to every long connection and ret 1102 to every parked long-poll in random order spread evenly over `spreadMs`
   * (connections and polls arriving meanwhile on kept-alive sockets get 1102 at once; other requests are served
   * with `Connection: close`), and resolves once all were told and no HTTP request is in flight, or after
   * `spreadMs` + `graceMs` at most. {@link Gateway.close} then ends what is left.
   */
  drain(spreadMs: number, graceMs: number): Promise<void>;
  /** Parked long-polls, for metrics and tests. */
  readonly parkedPolls: number;
  /** The long connections (TCP and WS) of this process, for metrics and tests. */
  readonly connections: Pick<Connections, 'size' | 'stats' | 'list'>;
  /** The counts behind this process's connection caps (HTTP sockets and TCP connections), for metrics and tests. */
  readonly caps: Pick<ConnectionCaps, 'total' | 'refusing' | 'countOf'>;
  close(): Promise<void>;
}

/** A whole server in one process. */
export interface RunningServer extends Gateway {
  core: Core;
  /** The node's metrics and snapshot (`/metrics`, the dashboard). */
  ops: NodeOps;
  /**
   * SIGTERM (src/server/lifecycle.ts): leaves the directory, drains the gateway over 80 % of `drainMs`, then closes
   * (in-flight writes finish in `core.close`). The caller bounds the whole by `drainMs`.
   */
  drainAndClose(drainMs: number): Promise<void>;
}

/** The share of the drain window over which 1102s are spread; the rest is for the writes in flight and the exit. */
const DRAIN_SPREAD_SHARE = 0.8;

/** A drain's windows for a process: 1102s spread over the first 80 % of `drainMs`, half the rest for answers in flight. */
export function drainWindows(drainMs: number): { spreadMs: number; graceMs: number } {
  const spreadMs = Math.round(drainMs * DRAIN_SPREAD_SHARE);
  return { spreadMs, graceMs: Math.round((drainMs - spreadMs) / 2) };
}

/**
 * Log fields that hold secrets: sids (the bearer header, AUTH and call bodies), passwords, tokens, cookies, QR login
 * uuids. pino writes `[Redacted]` in their place wherever a log call passes them (docs/operations.md "Heartbeats and
 * logs"); the HTTP transport also strips secret query values from the URLs it logs (loggableUrl).
 */
export const REDACTED_LOG_PATHS: readonly string[] = [
  'req.headers.authorization',
  'req.headers.cookie',
  'res.headers["set-cookie"]',
  'headers.authorization',
  'headers.cookie',
  ...['sid', 'password', 'oldPassword', 'newPassword', 'token', 'uuid', 'cookie', 'authorization'].flatMap((k) => [k, `*.${k}`]),
];

/** The process logger; `destination` defaults to stdout (tests pass a stream to read what was logged). */
export function makeLogger(config: Pick<Config, 'logLevel'>, name: string, destination?: pino.DestinationStream): pino.Logger {
  return pino({ level: config.logLevel, name, redact: [...REDACTED_LOG_PATHS] }, destination);
}

/** The media BlobStore: files under SYNCHAT_MEDIA_DIR (default SYNCHAT_DATA_DIR/media), one folder for all nodes. */
export function mediaBlobs(config: Pick<Config, 'dataDir' | 'mediaDir'>): LocalBlobStore {
  return new LocalBlobStore(config.mediaDir || join(config.dataDir, 'media'));
}

/** The Store: PostgreSQL when SYNCHAT_POSTGRES_URL is set (several nodes), else the embedded SQLite file. */
async function openStore(config: Config, seams: CoreSeams, onFailed: (err: Error) => void): Promise<Store> {
  if (config.postgresUrl) return PostgresStore.open({ url: config.postgresUrl });
  return new SqliteStore({
    file: join(config.dataDir, 'synchat.db'),
    synchronous: config.sqliteSynchronous,
    onSyncFailed: onFailed,
    ...(seams.fsyncModule ? { fsyncModule: seams.fsyncModule } : {}),
    ...(seams.walCheckpointMs !== undefined ? { walCheckpointMs: seams.walCheckpointMs } : {}),
  });
}

/** What a test may swap in the core; production passes none. */
export interface CoreSeams {
  /** The SQLite store's `fsyncModule` (a disk whose fsync fails, parks, or records what it synced). */
  fsyncModule?: string;
  /** The SQLite store's `walCheckpointMs` (0: no checkpoints, for a simulated power cut). */
  walCheckpointMs?: number;
  /** Where buildServer's logs go (a test reads them); default stdout. */
  logDestination?: pino.DestinationStream;
}

/** What several nodes share through Redis: the bus, the throttles and the directory of live nodes. */
interface BetweenNodes {
  bus: RedisBus;
  counters: RedisRateCounters;
  directory: RedisDirectory;
  /** Every live node's latest dashboard report (docs/operations.md "Dashboard"). */
  reports: RedisNodeReports;
  /** Resolves when Redis answers a PING on the commands link; rejects naming what failed. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** `load`: this node's load for the directory's order (attached listeners). */
function betweenNodes(url: string, nodeId: string, logger: Logger, load: () => number, metrics: ProcessMetrics): BetweenNodes {
  const bus = new RedisBus({ url, nodeId, logger, onReceived: metrics.busReceived });
  const commands = openRedis(url, { role: 'commands', logger });
  const counters = new RedisRateCounters({ redis: commands, fallback: new LocalRateCounters(), logger });
  const directory = new RedisDirectory({ redis: commands, logger, load });
  const reports = new RedisNodeReports({ redis: commands, logger, maxBytes: MAX_REPORT_BYTES, maxNodes: MAX_REPORTED_NODES - 1 });
  return {
    bus,
    counters,
    directory,
    reports,
    async ping() {
      // No offline queue (docs/architecture.md "Redis down"): a PING while the link is down fails at once.
      if (!bus.isReady) throw new Error('Redis is unreachable (the bus link is down)');
      try {
        await commands.ping();
      } catch (err) {
        throw new Error(`Redis did not answer PING (${(err as Error).message})`);
      }
    },
    async close() {
      await reports.stop();
      await directory.stop();
      await counters.close();
      await closeRedis(commands);
    },
  };
}

/** Builds storage, bus and service. `role`: this process's part, for the metrics' `process` label. */
export async function buildCore(config: Config, logger: Logger, gateways: (requestHost?: string) => GatewayInfo[], seams: CoreSeams = {}, role: ProcessRole = 'core'): Promise<Core> {
  makePrivateDir(config.dataDir);
  const nodeId = `${hostname()}:${process.pid}:${randomUUID()}`;
  const startedAt = Date.now();
  const metrics = new ProcessMetrics(role);
  let storeFailure: Error | undefined;
  let fail!: (err: Error) => void;
  const failed = new Promise<Error>((resolve) => (fail = resolve));
  void failed.then((err) => (storeFailure = err));
  const store = await openStore(config, seams, fail);
  // The load the directory orders nodes by: listeners attached to this node, counted by the service itself, so no
  // gateway process is asked (docs/operations.md "Draining and rolling restarts").
  let attached = () => 0;
  const shared = config.redisUrl ? betweenNodes(config.redisUrl, nodeId, logger, () => attached(), metrics) : undefined;
  if (shared && isWildcardHost(config.host) && !config.publicUrl) {
    logger.warn({ host: config.host }, `listening on a wildcard address without SYNCHAT_PUBLIC_URL: other nodes list this one by its machine name (${hostname()}); set SYNCHAT_PUBLIC_URL`);
  }
  const bus: Bus = shared?.bus ?? new LocalBus();
  const blobs = mediaBlobs(config);
  // Beside serving, not before it: the walk takes about 40 µs per blob, and a stray temporary file is harmless.
  void blobs.recover().then(
    (r) => logger.info(r, 'media folder checked'),
    (err) => logger.error({ err }, 'media folder check failed'),
  );
  const service = new ChatService({
    ...(shared ? { counters: shared.counters } : {}),
    store,
    bus,
    clock: { now: Date.now },
    logger,
    passwordLog2N: config.passwordLog2N,
    sessionIdleMs: config.sessionIdleDays * 24 * 60 * 60_000,
    isGroupCommit: config.groupCommit === 'on',
    isRateLimited: config.rateLimit === 'on',
    media: {
      blobs,
      maxFileBytes: config.mediaMaxFileBytes,
      maxDailyBytes: config.mediaMaxDailyBytes,
      uploadExpiryMs: config.mediaUploadExpiryMs,
    },
    qrLoginExpiryMs: config.qrLoginExpiryMs,
    observer: metrics,
    gateways: shared ? (requestHost) => shared.directory.gateways(gateways(requestHost)) : gateways,
  });
  attached = () => service.attachedCount;
  let isDraining = false;
  let hasLeft: Promise<void> | undefined;
  const readiness = new Readiness({
    instant: [
      () => {
        if (isDraining) throw new Error('draining');
      },
      () => {
        if (storeFailure) throw new Error(`the store cannot write durably (${storeFailure.message}); the process exits to be restarted`);
      },
    ],
    probed: [
      {
        // An empty transaction takes the writer's turn and, on SQLite, waits for a WAL fsync like any commit: a
        // stuck disk, a dead PostgreSQL link or a wedged writer fails it. A full disk does not (nothing is written):
        // reads still work there, and every node shares PostgreSQL's disk, so taking one node out would not help.
        name: 'the store',
        check: async () => {
          try {
            await store.transaction(async () => undefined);
          } catch (err) {
            throw new Error(`the store could not commit (${(err as { code?: string }).code ?? (err as Error).message})`);
          }
        },
      },
      ...(shared ? [{ name: 'Redis', check: () => shared.ping() }] : []),
    ],
  });
  metrics.watchCore({ opsStats: () => service.opsStats });
  return {
    service,
    store,
    failed,
    bus,
    nodeId,
    startedAt,
    metrics,
    reports: new NodeReports({ nodeId, store: config.postgresUrl ? 'postgres' : 'sqlite', ...(shared ? { shared: shared.reports } : {}), logger }),
    async announce(own) {
      await shared?.directory.start({ nodeId, gateways: own });
    },
    readiness: () => readiness.check(),
    get isDraining() {
      return isDraining;
    },
    startDrain() {
      isDraining = true;
      hasLeft ??= shared ? shared.directory.stop() : Promise.resolve();
      return hasLeft;
    },
    async close() {
      // Leave the directory first, so that clients stop being sent here while the rest shuts down.
      await shared?.close();
      await service.close();
      await bus.close();
      await store.close();
      metrics.close();
    },
  };
}

/** A gateway's `/readyz` wait for its core's answer (over IPC), in ms: a core that does not answer is not ready. */
const CORE_READY_TIMEOUT_MS = 3000;
/** How often a drain looks whether the connections it told have closed and the HTTP requests in flight ended, in ms. */
const DRAIN_POLL_MS = 50;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A gateway's metrics: its process's registry, and the node's figures `/metrics` answers with. */
export interface GatewayOpsWiring {
  metrics: ProcessMetrics;
  /** The node's figures: gathered here (one process) or asked of the core (src/ops/node-metrics.ts). */
  node(): NodeOps;
  /** `/api/admin/stats` (docs/operations.md "Dashboard"): the core's `Core.reports.stats`, here or over IPC. */
  adminStats(): Promise<Reply>;
}

/**
 * Builds and starts the listeners of one process in front of `api`. `tls`: the settings {@link loadTls} read
 * (read here when not given); throws ConfigError when the files are unusable. `ready`: the core's readiness
 * (`Core.readiness`, or over IPC); absent, `/readyz` checks only this process (draining).
 */
export async function buildGateway(
  config: Config,
  api: ChatApi,
  logger: pino.Logger,
  tls = loadTls(config),
  ready?: () => Promise<Reply>,
  ops?: GatewayOpsWiring,
): Promise<Gateway> {
  // One trust function for every edge that reads a request (src/transports/client-address.ts).
  const trustProxy = compileTrustProxy(config.trustProxy);
  const hub = new Hub(api);
  // One count for every listener of this process (src/transports/conn-caps.ts).
  // A trusted proxy's sockets carry many clients: only the total cap applies to them (the proxy caps per client).
  const caps = new ConnectionCaps({ maxPerAddress: config.maxConnsPerIp, maxTotal: config.maxConns, isExempt: (address) => trustProxy(address, 0) });
  const wheel = new TimerWheel({ tickMs: 250 });
  // Answers and deliveries of this process's edges, read by its metrics (docs/operations.md "Metrics").
  const edgeStats = new EdgeStats();
  const synccheck = new SynccheckHandler(api, hub, wheel, edgeStats);
  let isDraining = false;
  let draining: Promise<void> | undefined;
  const coreReady = async (): Promise<Reply> => {
    if (!ready) return { ret: 0, body: '{"ret":0}' };
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<Reply>((resolve) => {
      timer = setTimeout(() => resolve(notReady(`the core process did not answer within ${CORE_READY_TIMEOUT_MS} ms`)), CORE_READY_TIMEOUT_MS);
    });
    try {
      return await Promise.race([ready(), late]);
    } finally {
      clearTimeout(timer);
    }
  };
  const app = buildHttpTransport({
    api,
    synccheck,
    logger: config.logLevel === 'silent' ? false : logger.child({ component: 'http' }),
    bodyLimitBytes: config.bodyLimitBytes,
    timeouts: { headersMs: config.httpHeadersTimeoutMs, requestMs: config.httpRequestTimeoutMs },
    caps,
    ...(tls ? { tls } : {}),
    trustProxy,
    // Gateways read media bytes from the same folder the core writes (one machine); see docs/architecture.md "Media".
    media: { blobs: mediaBlobs(config), maxChunkBytes: MAX_CHUNK_BYTES },
    // The WeChat-web gateway (docs/webwx.md): a translation onto the same API, served by every gateway process.
    webwx: { blobs: mediaBlobs(config), isTls: tls !== undefined },
    ...(config.webRoot ? { web: { rootDir: config.webRoot } } : {}),
    edgeStats,
    ...(ops ? { metrics: { text: () => ops.node().text(), adminToken: config.adminToken } } : {}),
    ...(ops ? { admin: { adminToken: config.adminToken, adminUsers: adminUsernames(config.adminUsers), stats: () => ops.adminStats() } } : {}),
    ready: () => (isDraining ? Promise.resolve(notReady('draining')) : coreReady()),
    isDraining: () => isDraining,
  });
  // HTTP requests in flight (a parked synccheck included), counted to their socket's answer or close: a drain waits
  // for them before Fastify's close, which destroys every socket.
  let requestsInFlight = 0;
  app.addHook('onRequest', (_req, reply, done) => {
    requestsInFlight++;
    reply.raw.once('close', () => requestsInFlight--);
    done();
  });
  const connections = new Connections({
    api,
    hub,
    wheel,
    logger,
    edgeStats,
    limits: {
      maxPacketBytes: config.maxPacketBytes,
      heartbeatMs: config.heartbeatMs,
      heartbeatMinMs: config.heartbeatMinMs,
      heartbeatMaxMs: config.heartbeatMaxMs,
      authTimeoutMs: config.authTimeoutMs,
      outboundBufferBytes: config.outboundBufferBytes,
      outboundHardBytes: config.outboundHardBytes,
      outboundStallMs: config.outboundStallMs,
    },
  });
  const stopWs = attachWsTransport(app.server, connections, { trustProxy, caps, allowedOrigins: parseAllowedOrigins(config.allowedOrigins) });
  await app.listen({ port: config.httpPort, host: config.host });
  const address = app.server.address();
  const httpPort = typeof address === 'object' && address ? address.port : config.httpPort;
  let tcp;
  try {
    tcp = await startTcpTransport(connections, { host: config.host, port: config.tcpPort, caps, ...(tls ? { tls } : {}) });
  } catch (err) {
    await app.close();
    throw err;
  }
  const tcpPort = portOf(tcp);
  ops?.metrics.watchGateway({ connectionStats: () => connections.stats(), parkedPolls: () => synccheck.parked, edgeStats });
  logger.info({ httpPort, tcpPort, isTls: tls !== undefined }, 'gateway listening');
  return {
    httpPort,
    tcpPort,
    connections,
    caps,
    get parkedPolls() {
      return synccheck.parked;
    },
    drain(spreadMs, graceMs) {
      draining ??= (async () => {
        isDraining = true;
        // Close the listening handles first: with node:cluster's shared handles (SCHED_NONE) the kernel then hands
        // every new connection to the processes still listening. Node's close also drops idle keep-alive sockets.
        tcp.close();
        app.server.close();
        const spread = spreadOver([...connections.drain(), ...synccheck.drain()], spreadMs);
        logger.info({ connections: connections.size, parkedPolls: synccheck.parked, spreadMs }, 'draining');
        const untilMs = Date.now() + spreadMs + graceMs;
        await Promise.race([spread.done, sleep(spreadMs + graceMs)]);
        spread.finishNow();
        // The ERRORs leave at the end of their turn and each link closes once flushed; answers in flight finish.
        while ((connections.size > 0 || requestsInFlight > 0) && Date.now() < untilMs) await sleep(DRAIN_POLL_MS);
        logger.info({ connections: connections.size, requestsInFlight }, 'drained');
      })();
      return draining;
    },
    async close() {
      const tcpClosed = new Promise((resolve) => tcp.close(resolve));
      stopWs();
      connections.destroyAll();
      synccheck.closeAll();
      wheel.stop();
      hub.close();
      await Promise.all([app.close(), tcpClosed]);
    },
  };
}

/** Everything in one process. */
export async function buildServer(config: Config, seams: CoreSeams = {}): Promise<RunningServer> {
  const logger = makeLogger(config, 'synchat', seams.logDestination);
  // Unreadable TLS files fail the start before anything is opened.
  const tls = loadTls(config);
  let ports = { httpPort: config.httpPort, tcpPort: config.tcpPort };
  const core = await buildCore(config, logger, gatewayDirectory(config, () => ports), seams, 'single');
  // The node label needs the port, known once listening; /metrics asks for `ops` only after that.
  const started: { ops?: NodeMetrics } = {};
  let gateway: Gateway;
  try {
    gateway = await buildGateway(config, core.service, logger, tls, () => core.readiness(), {
      metrics: core.metrics,
      node: () => {
        if (!started.ops) throw new Error('the server is still starting');
        return started.ops;
      },
      adminStats: () => core.reports.stats(),
    });
  } catch (err) {
    await core.close();
    throw err;
  }
  ports = { httpPort: gateway.httpPort, tcpPort: gateway.tcpPort };
  const ops = new NodeMetrics(core.metrics, { node: nodeLabel(gateway.httpPort), nodeId: core.nodeId, startedAt: core.startedAt, isDraining: () => core.isDraining });
  started.ops = ops;
  await core.reports.start(() => ops.snapshot());
  await core.announce(gatewayDirectory(config, () => ports)());
  return {
    core,
    ops,
    httpPort: gateway.httpPort,
    tcpPort: gateway.tcpPort,
    connections: gateway.connections,
    caps: gateway.caps,
    get parkedPolls() {
      return gateway.parkedPolls;
    },
    drain: (spreadMs, graceMs) => gateway.drain(spreadMs, graceMs),
    async drainAndClose(drainMs) {
      await core.startDrain();
      const { spreadMs, graceMs } = drainWindows(drainMs);
      await gateway.drain(spreadMs, graceMs);
      await gateway.close();
      await core.close();
    },
    async close() {
      await gateway.close();
      await core.close();
    },
  };
}

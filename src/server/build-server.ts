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
import { RedisBus, RedisDirectory, RedisRateCounters, closeRedis, openRedis } from '../bus/redis/index.ts';
import type { Bus, Store } from '../core/ports.ts';
import { ChatService, LocalRateCounters, type ChatApi, type GatewayInfo, type Logger } from '../service/index.ts';
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
import { WS_PATH, attachWsTransport, parseAllowedOrigins } from '../transports/ws/ws-transport.ts';
import { ConnectionCaps } from '../transports/conn-caps.ts';
import { compileTrustProxy } from '../transports/client-address.ts';
import type { Config } from './config.ts';
import { loadTls } from './tls.ts';
import { NodeMetrics, ProcessMetrics, nodeLabel, type NodeOps, type ProcessRole } from '../ops/index.ts';
import { EdgeStats } from '../transports/edge-stats.ts';

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
  /** Lists this node's gateways in the directory of live nodes (with Redis; else nothing to do). Never throws. */
  announce(gateways: GatewayInfo[]): Promise<void>;
  close(): Promise<void>;
}

/** A gateway: the listeners of one process. */
export interface Gateway {
  httpPort: number;
  tcpPort: number;
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

/**
 * The gateway directory for `/api/gateways`, from the listening addresses. With TLS (`SYNCHAT_TLS_CERT`) the URLs
 * are `tls://`, `wss://` and `https://`; the transport names stay `tcp`, `ws` and `http` (PROTOCOL.md).
 */
export function gatewayDirectory(config: Pick<Config, 'host' | 'tlsCert'>, ports: () => { httpPort: number; tcpPort: number }): () => GatewayInfo[] {
  const s = config.tlsCert ? 's' : '';
  return () => {
    const { httpPort, tcpPort } = ports();
    const host = config.host.includes(':') ? `[${config.host}]` : config.host;
    return [
      { transport: 'tcp', url: `${s ? 'tls' : 'tcp'}://${host}:${tcpPort}` },
      { transport: 'ws', url: `ws${s}://${host}:${httpPort}${WS_PATH}` },
      { transport: 'http', url: `http${s}://${host}:${httpPort}` },
    ];
  };
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
  close(): Promise<void>;
}

function betweenNodes(url: string, nodeId: string, logger: Logger, metrics: ProcessMetrics): BetweenNodes {
  const bus = new RedisBus({ url, nodeId, logger, onReceived: metrics.busReceived });
  const commands = openRedis(url, { role: 'commands', logger });
  const counters = new RedisRateCounters({ redis: commands, fallback: new LocalRateCounters(), logger });
  const directory = new RedisDirectory({ redis: commands, logger });
  return {
    bus,
    counters,
    directory,
    async close() {
      await directory.stop();
      await counters.close();
      await closeRedis(commands);
    },
  };
}

/** Builds storage, bus and service. `role`: this process's part, for the metrics' `process` label. */
export async function buildCore(config: Config, logger: Logger, gateways: () => GatewayInfo[], seams: CoreSeams = {}, role: ProcessRole = 'core'): Promise<Core> {
  makePrivateDir(config.dataDir);
  const nodeId = `${hostname()}:${process.pid}:${randomUUID()}`;
  const startedAt = Date.now();
  const metrics = new ProcessMetrics(role);
  let fail!: (err: Error) => void;
  const failed = new Promise<Error>((resolve) => (fail = resolve));
  const store = await openStore(config, seams, fail);
  const shared = config.redisUrl ? betweenNodes(config.redisUrl, nodeId, logger, metrics) : undefined;
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
    gateways: shared ? () => shared.directory.gateways() : gateways,
    observer: metrics,
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
    async announce(own) {
      await shared?.directory.start({ nodeId, gateways: own });
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

/** A gateway's metrics: its process's registry, and the node's figures `/metrics` answers with. */
export interface GatewayOpsWiring {
  metrics: ProcessMetrics;
  /** The node's figures: gathered here (one process) or asked of the core (src/ops/node-metrics.ts). */
  node(): NodeOps;
}

/**
 * Builds and starts the listeners of one process in front of `api`. `tls`: the settings {@link loadTls} read
 * (read here when not given); throws ConfigError when the files are unusable.
 */
export async function buildGateway(config: Config, api: ChatApi, logger: pino.Logger, tls = loadTls(config), ops?: GatewayOpsWiring): Promise<Gateway> {
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
    gateway = await buildGateway(config, core.service, logger, tls, {
      metrics: core.metrics,
      node: () => {
        if (!started.ops) throw new Error('the server is still starting');
        return started.ops;
      },
    });
  } catch (err) {
    await core.close();
    throw err;
  }
  ports = { httpPort: gateway.httpPort, tcpPort: gateway.tcpPort };
  const ops = new NodeMetrics(core.metrics, { node: nodeLabel(gateway.httpPort), nodeId: core.nodeId, startedAt: core.startedAt });
  started.ops = ops;
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
    async close() {
      await gateway.close();
      await core.close();
    },
  };
}

/**
 * ioredis connections set up for a hint path (docs/architecture.md "Between nodes (Redis)"): nothing is buffered
 * while Redis is down, commands in flight fail when the link drops instead of being sent again later, the link
 * comes back with a capped exponential backoff, and an outage is logged once, not once per retry.
 */
import { Redis, type RedisOptions } from 'ioredis';

/** The logging surface the Redis adapters need (pino's). */
export interface RedisLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/** Timings of {@link openRedis}, with units. */
export const REDIS_LINK_DEFAULTS = {
  /** A connect attempt that takes longer is abandoned and retried. */
  connectTimeoutMs: 2000,
  /** Unanswered commands for this long mean a dead link (a hung or partitioned Redis): it is dropped and redialed. */
  socketTimeoutMs: 5000,
  /** First reconnect delay; it doubles per failed attempt up to {@link REDIS_LINK_DEFAULTS.reconnectMaxMs}. */
  reconnectMinMs: 50,
  reconnectMaxMs: 2000,
};

/** Options of {@link openRedis}. */
export interface OpenRedisOptions {
  /** What the connection is for, in log lines (`publisher`, `subscriber`, `commands`). */
  role: string;
  logger: RedisLogger;
  /** Longest delay between reconnect attempts, ms. @default 2000 */
  reconnectMaxMs?: number;
}

/**
 * Opens a connection to `url` (`redis://host:port/db`). Commands fail at once while it is not ready (no offline
 * queue: a caller drops or falls back instead of piling up work for a Redis that may be gone for minutes), and
 * commands in flight when it drops are rejected rather than resent. It reconnects forever until closed
 * ({@link closeRedis}); ioredis does not re-subscribe by itself (the bus does, for the channels it holds now).
 */
export function openRedis(url: string, options: OpenRedisOptions): Redis {
  const maxMs = options.reconnectMaxMs ?? REDIS_LINK_DEFAULTS.reconnectMaxMs;
  const redisOptions: RedisOptions = {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    autoResubscribe: false,
    connectTimeout: REDIS_LINK_DEFAULTS.connectTimeoutMs,
    socketTimeout: REDIS_LINK_DEFAULTS.socketTimeoutMs,
    // Jittered so that nodes cut off by one Redis restart do not all redial in the same millisecond.
    retryStrategy: (attempt) => Math.round(Math.min(maxMs, REDIS_LINK_DEFAULTS.reconnectMinMs * 2 ** Math.min(attempt - 1, 10)) * (0.5 + Math.random() / 2)),
  };
  const conn = new Redis(url, redisOptions);
  let isDown = false;
  const lost = (err: unknown) => {
    if (isDown) return;
    isDown = true;
    options.logger.warn({ err, role: options.role }, 'redis link down: reconnecting with backoff');
  };
  // Without an 'error' listener ioredis prints every failed retry; one line per outage is enough.
  conn.on('error', lost);
  conn.on('close', () => {
    if (!closing.has(conn)) lost(undefined);
  });
  conn.on('ready', () => {
    if (!isDown) return;
    isDown = false;
    options.logger.info({ role: options.role }, 'redis link back');
  });
  return conn;
}

/** Connections being closed on purpose (their 'close' is no outage). */
const closing = new WeakSet<Redis>();

/** Ends a connection: QUIT when it is up (bounded by `timeoutMs`), then closes the socket. Never throws or hangs. */
export async function closeRedis(conn: Redis, timeoutMs = 1000): Promise<void> {
  closing.add(conn);
  if (conn.status === 'ready') await withTimeout(conn.quit(), timeoutMs).catch(() => undefined);
  conn.disconnect();
}

/** Settles like `promise`, or rejects after `ms` (the timer is cleared either way). */
export function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`redis: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Resolves when `conn` is first ready, or after `timeoutMs` (never rejects): what a user of a fresh connection
 * awaits before its first command, so that a node's first requests do not take the fallback path (and log an
 * outage) only because its connection was still being made.
 */
export function firstReady(conn: Redis, timeoutMs: number): Promise<void> {
  if (conn.status === 'ready') return Promise.resolve();
  return new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(timer);
      conn.off('ready', done);
      resolve();
    };
    const timer = setTimeout(done, timeoutMs);
    conn.once('ready', done);
  });
}

/** A connection given by the caller (shared, left open) or made here from a URL (owned: closed with its user). */
export function connectionOf(redis: Redis | string, options: OpenRedisOptions): { conn: Redis; isOwned: boolean } {
  return typeof redis === 'string' ? { conn: openRedis(redis, options), isOwned: true } : { conn: redis, isOwned: false };
}

/** Logs the first failure of an outage and the recovery, not every failed command in between. */
export class OutageLog {
  readonly #logger: RedisLogger;
  readonly #what: string;
  #isDown = false;

  /** `what` names the user in log lines (`rate counters`, `directory`). */
  constructor(logger: RedisLogger, what: string) {
    this.#logger = logger;
    this.#what = what;
  }

  /** True between a failure and the next success. */
  get isDown(): boolean {
    return this.#isDown;
  }

  failed(err: unknown, consequence: string): void {
    if (this.#isDown) return;
    this.#isDown = true;
    this.#logger.warn({ err }, `redis ${this.#what}: Redis unreachable; ${consequence}`);
  }

  succeeded(): void {
    if (!this.#isDown) return;
    this.#isDown = false;
    this.#logger.info({}, `redis ${this.#what}: Redis reachable again`);
  }
}

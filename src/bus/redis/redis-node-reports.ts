/**
 * Every live node's latest report for the admin dashboard (docs/operations.md "Dashboard"; docs/architecture.md
 * "Between nodes (Redis)"): once a second each node writes its report (JSON text this adapter does not read) under
 * a key that expires unless rewritten, and reads back every live node's in the same call, so a dashboard on any
 * node answers from memory. Bounded: a report over `maxBytes` is neither written nor kept, and at most
 * `maxNodes` others are kept. Redis holds nothing that matters here: with Redis down a node reports itself alone.
 */
import type { Redis } from 'ioredis';
import { closeRedis, connectionOf, firstReady, OutageLog, withTimeout, type RedisLogger } from './redis-connection.ts';

/** Options of {@link RedisNodeReports}, with units and defaults. */
export interface RedisNodeReportsOptions {
  /** A connection made with `openRedis` (shared: left open by {@link RedisNodeReports.stop}) or a URL (owned). */
  redis: Redis | string;
  logger: RedisLogger;
  /** Keys: `<prefix>report:<nodeId>` (one per node) and `<prefix>reports` (the set of ids). @default 'synchat:' */
  prefix?: string;
  /** How often a node writes its report and reads the others', ms. @default 1000 */
  intervalMs?: number;
  /** Lifetime of a report unless rewritten, ms: a node gone for this long drops out. @default 5000 */
  ttlMs?: number;
  /** A write unanswered for this long failed, ms. @default 1000 */
  timeoutMs?: number;
  /** Largest report, in bytes of JSON text. @default 65536 */
  maxBytes?: number;
  /** Most other nodes kept (by node id). @default 64 */
  maxNodes?: number;
}

/**
 * Writes this node's report with its TTL (unless ARGV[2] is empty), adds its id to the index, and returns every
 * live id and report, interleaved; ids whose report expired leave the index on the way (no KEYS scan). KEYS: own
 * report, index. ARGV: ttlMs, own report, own id, report key prefix. Reads keys it was not given: standalone
 * Redis only (not Redis Cluster), like the directory's script.
 */
const REPORT_LUA = `if ARGV[2] ~= '' then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[1])
  redis.call('SADD', KEYS[2], ARGV[3])
end
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local report = redis.call('GET', ARGV[4] .. id)
  if report then
    out[#out + 1] = id
    out[#out + 1] = report
  else
    redis.call('SREM', KEYS[2], id)
  end
end
return out`;
const REPORT_COMMAND = 'synchatNodeReport';

type WriteAndRead = (reportKey: string, indexKey: string, ttlMs: number, report: string, nodeId: string, reportPrefix: string) => Promise<string[]>;

/** The other live nodes' reports, kept in memory from Redis. */
export class RedisNodeReports {
  readonly #conn: Redis;
  readonly #isOwned: boolean;
  readonly #reportPrefix: string;
  readonly #indexKey: string;
  readonly #intervalMs: number;
  readonly #ttlMs: number;
  readonly #timeoutMs: number;
  readonly #maxBytes: number;
  readonly #maxNodes: number;
  readonly #outage: OutageLog;
  readonly #writeAndRead: WriteAndRead;
  #nodeId: string | undefined;
  #report: (() => Promise<string>) | undefined;
  /** The others' reports at the last successful read (oldest-first by node id), and when that was (Date.now()). */
  #others: string[] = [];
  #othersAtMs = 0;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;

  constructor(options: RedisNodeReportsOptions) {
    const { conn, isOwned } = connectionOf(options.redis, { role: 'reports', logger: options.logger });
    this.#conn = conn;
    this.#isOwned = isOwned;
    const prefix = options.prefix ?? 'synchat:';
    this.#reportPrefix = prefix + 'report:';
    this.#indexKey = prefix + 'reports';
    this.#intervalMs = options.intervalMs ?? 1000;
    this.#ttlMs = options.ttlMs ?? 5000;
    this.#timeoutMs = options.timeoutMs ?? 1000;
    this.#maxBytes = options.maxBytes ?? 64 * 1024;
    this.#maxNodes = options.maxNodes ?? 64;
    this.#outage = new OutageLog(options.logger, 'node reports');
    conn.defineCommand(REPORT_COMMAND, { numberOfKeys: 2, lua: REPORT_LUA });
    const command = (conn as unknown as Record<string, WriteAndRead>)[REPORT_COMMAND]!;
    this.#writeAndRead = (...args) => command.call(conn, ...args);
  }

  /**
   * Starts writing `report()` as node `nodeId`'s every `intervalMs` (and reading the others'). Resolves after
   * the first round; never throws. A report that fails or is too large is skipped for that round.
   */
  async start(nodeId: string, report: () => Promise<string>): Promise<void> {
    this.#nodeId = nodeId;
    this.#report = report;
    clearInterval(this.#timer);
    this.#timer = setInterval(() => void this.refresh(), this.#intervalMs);
    this.#timer.unref();
    await firstReady(this.#conn, this.#timeoutMs);
    await this.refresh();
  }

  /** The other nodes' latest reports, by node id; none when the last successful read is older than the TTL. */
  others(): string[] {
    return Date.now() - this.#othersAtMs > this.#ttlMs ? [] : [...this.#others];
  }

  /** Writes this node's report and reads the others' now (the timer does this every `intervalMs`). */
  refresh(): Promise<void> {
    this.#running ??= this.#round().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  /** Stops reporting and removes this node's report (best effort, bounded); closes the connection if owned. */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    const nodeId = this.#nodeId;
    this.#nodeId = undefined;
    await this.#running;
    if (nodeId) {
      const removed = this.#conn.multi().del(this.#reportPrefix + nodeId).srem(this.#indexKey, nodeId).exec();
      await withTimeout(removed, this.#timeoutMs).catch(() => undefined);
    }
    if (this.#isOwned) await closeRedis(this.#conn);
  }

  async #round(): Promise<void> {
    const nodeId = this.#nodeId;
    if (!nodeId || !this.#report) return;
    let own = '';
    try {
      own = await this.#report();
    } catch {
      own = ''; // this round reads only; the report's owner logs its own failures
    }
    if (Buffer.byteLength(own) > this.#maxBytes) own = '';
    let reply: string[];
    try {
      reply = await withTimeout(this.#writeAndRead(this.#reportPrefix + nodeId, this.#indexKey, this.#ttlMs, own, nodeId, this.#reportPrefix), this.#timeoutMs);
    } catch (err) {
      this.#outage.failed(err, `the dashboard shows this node alone for now`);
      return;
    }
    this.#outage.succeeded();
    const others: [string, string][] = [];
    for (let i = 0; i + 1 < reply.length; i += 2) {
      const id = reply[i]!;
      const text = reply[i + 1]!;
      if (id !== nodeId && Buffer.byteLength(text) <= this.#maxBytes) others.push([id, text]);
    }
    others.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    this.#others = others.slice(0, this.#maxNodes).map(([, text]) => text);
    this.#othersAtMs = Date.now();
  }
}

/**
 * One entry per live node in Redis, kept fresh with a TTL, and every other node's entry read back
 * (docs/architecture.md "Between nodes (Redis)"): on a timer a node rewrites `<entryPrefix><nodeId>` with its TTL,
 * adds its id to the set `indexKey`, and reads every live entry in the same Lua call, so its users answer from
 * memory. A node that stops refreshing drops out within the TTL; one that stops cleanly removes its entry at once.
 * What an entry says is its user's business: {@link RedisDirectory} (gateways and load) and
 * {@link RedisNodeReports} (dashboard reports) are built on this.
 */
import type { Redis } from 'ioredis';
import { closeRedis, connectionOf, firstReady, OutageLog, withTimeout, type RedisLogger } from './redis-connection.ts';

/** Options of {@link RedisNodeEntries}, with units. */
export interface RedisNodeEntriesOptions<T> {
  /** A connection made with `openRedis` (shared: left open by {@link RedisNodeEntries.stop}) or a URL (owned). */
  redis: Redis | string;
  logger: RedisLogger;
  /** What an owned connection is for, in its log lines (`directory`). */
  role: string;
  /** Who speaks in the outage log lines (`redis <what>: Redis unreachable; …`). */
  what: string;
  /** What the outage log line says happens meanwhile. */
  outageConsequence: string;
  /** Key of a node's entry: this followed by its id (`synchat:node:`). Kept across versions: nodes of the
   * previous version read and write the same keys during a rolling upgrade. */
  entryPrefix: string;
  /** Key of the set of the ids of nodes with an entry (`synchat:nodes`). */
  indexKey: string;
  /** Lifetime of an entry unless rewritten, ms. */
  ttlMs: number;
  /** How often a node rewrites its entry and reads the others', ms. */
  intervalMs: number;
  /** The others' entries are served from the last successful read for this long, then none, ms. */
  staleMs: number;
  /** A round unanswered for this long failed, ms. */
  timeoutMs: number;
  /** Largest entry, in bytes of its text: a larger one is neither written nor kept. @default no bound */
  maxBytes?: number;
  /** Most other nodes kept (the first by node id). @default no bound */
  maxNodes?: number;
  /** An entry read back as its user keeps it, or undefined to drop it (another version's, or garbage). */
  parse: (text: string) => T | undefined;
}

/**
 * Writes this node's entry with its TTL (unless ARGV[2] is empty: that round only reads), adds its id to the
 * index, and returns every live id and entry, interleaved; ids whose entry expired leave the index on the way (so
 * listing needs no KEYS scan). KEYS: own entry, index. ARGV: ttlMs, own entry, own id, entry key prefix. Reads keys
 * it was not given: standalone Redis only (not Redis Cluster).
 */
const ROUND_LUA = `if ARGV[2] ~= '' then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[1])
  redis.call('SADD', KEYS[2], ARGV[3])
end
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local entry = redis.call('GET', ARGV[4] .. id)
  if entry then
    out[#out + 1] = id
    out[#out + 1] = entry
  else
    redis.call('SREM', KEYS[2], id)
  end
end
return out`;
// One name for one script: users sharing a connection define it alike.
const ROUND_COMMAND = 'synchatNodeEntries';

type Round = (entryKey: string, indexKey: string, ttlMs: number, entry: string, nodeId: string, entryPrefix: string) => Promise<string[]>;

/** This node's entry, kept alive in Redis, and the other live nodes' entries, kept in memory. */
export class RedisNodeEntries<T> {
  readonly #conn: Redis;
  readonly #isOwned: boolean;
  readonly #options: RedisNodeEntriesOptions<T>;
  readonly #maxBytes: number;
  readonly #maxNodes: number;
  readonly #outage: OutageLog;
  readonly #round: Round;
  #nodeId: string | undefined;
  #entry: (() => string | Promise<string>) | undefined;
  /** The others' entries at the last successful read (by node id), and when that was (Date.now()). */
  #others: readonly T[] = [];
  #othersAtMs = 0;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;

  constructor(options: RedisNodeEntriesOptions<T>) {
    const { conn, isOwned } = connectionOf(options.redis, { role: options.role, logger: options.logger });
    this.#conn = conn;
    this.#isOwned = isOwned;
    this.#options = options;
    this.#maxBytes = options.maxBytes ?? Infinity;
    this.#maxNodes = options.maxNodes ?? Infinity;
    this.#outage = new OutageLog(options.logger, options.what);
    conn.defineCommand(ROUND_COMMAND, { numberOfKeys: 2, lua: ROUND_LUA });
    const command = (conn as unknown as Record<string, Round>)[ROUND_COMMAND]!;
    this.#round = (...args) => command.call(conn, ...args);
  }

  /**
   * Starts writing `entry()` as node `nodeId`'s every `intervalMs` (and reading the others'). Resolves after the
   * first round; never throws. An entry that fails or is over `maxBytes` is not written that round (the round
   * still reads).
   */
  async start(nodeId: string, entry: () => string | Promise<string>): Promise<void> {
    this.#nodeId = nodeId;
    this.#entry = entry;
    clearInterval(this.#timer);
    this.#timer = setInterval(() => void this.refresh(), this.#options.intervalMs);
    this.#timer.unref();
    await firstReady(this.#conn, this.#options.timeoutMs);
    await this.refresh();
  }

  /** The other nodes' entries by node id; none when the last successful read is older than `staleMs`. */
  others(): readonly T[] {
    return Date.now() - this.#othersAtMs <= this.#options.staleMs ? this.#others : [];
  }

  /** Writes this node's entry and reads the others' now (the timer does this every `intervalMs`); one at a time. */
  refresh(): Promise<void> {
    this.#running ??= this.#runRound().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  /** Stops refreshing and removes this node's entry (best effort, bounded); closes the connection if owned. */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    const nodeId = this.#nodeId;
    this.#nodeId = undefined;
    await this.#running;
    if (nodeId) {
      const removed = this.#conn.multi().del(this.#options.entryPrefix + nodeId).srem(this.#options.indexKey, nodeId).exec();
      await withTimeout(removed, this.#options.timeoutMs).catch(() => undefined);
    }
    if (this.#isOwned) await closeRedis(this.#conn);
  }

  async #runRound(): Promise<void> {
    const nodeId = this.#nodeId;
    if (!nodeId || !this.#entry) return;
    const { entryPrefix, indexKey, ttlMs, timeoutMs } = this.#options;
    let own = '';
    try {
      own = await this.#entry();
    } catch {
      own = ''; // this round reads only; the entry's owner logs its own failures
    }
    if (Buffer.byteLength(own) > this.#maxBytes) own = '';
    let reply: string[];
    try {
      reply = await withTimeout(this.#round(entryPrefix + nodeId, indexKey, ttlMs, own, nodeId, entryPrefix), timeoutMs);
    } catch (err) {
      this.#outage.failed(err, this.#options.outageConsequence);
      return;
    }
    this.#outage.succeeded();
    const others: [string, T][] = [];
    for (let i = 0; i + 1 < reply.length; i += 2) {
      const id = reply[i]!;
      const text = reply[i + 1]!;
      if (id === nodeId || Buffer.byteLength(text) > this.#maxBytes) continue;
      const value = this.#options.parse(text);
      if (value !== undefined) others.push([id, value]);
    }
    others.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    this.#others = others.slice(0, this.#maxNodes).map(([, value]) => value);
    this.#othersAtMs = Date.now();
  }
}

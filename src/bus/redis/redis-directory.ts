/**
 * The directory of live nodes for `/api/gateways` (docs/architecture.md "Between nodes (Redis)"): each node
 * writes its gateways and its load under a key that expires unless refreshed, and reads everyone's on the same
 * timer, so `gateways()` answers from memory, synchronously, least-loaded node first, and a dead node drops out
 * within `ttlMs + refreshMs`; a draining node removes its entry at once (`stop()`).
 */
import type { Redis } from 'ioredis';
import { closeRedis, connectionOf, firstReady, OutageLog, withTimeout, type RedisLogger } from './redis-connection.ts';

/** One listener a client may connect to (the shape `/api/gateways` answers). */
export interface DirectoryGateway {
  transport: 'tcp' | 'ws' | 'http';
  url: string;
}

/** A node and its gateways, as stored in its directory entry. */
export interface DirectoryNode {
  nodeId: string;
  gateways: DirectoryGateway[];
  /** Listeners attached to the node (long connections and parked polls) when it last refreshed; 0 if unknown. */
  load?: number;
}

/** Options of {@link RedisDirectory}, with units and defaults. */
export interface RedisDirectoryOptions {
  /** A connection made with `openRedis` (shared: left open by {@link RedisDirectory.stop}) or a URL (owned). */
  redis: Redis | string;
  logger: RedisLogger;
  /** Keys: `<prefix>node:<nodeId>` (one entry per node) and `<prefix>nodes` (the set of ids). @default 'synchat:' */
  prefix?: string;
  /** Lifetime of a node's entry unless refreshed, ms. @default 15000 */
  ttlMs?: number;
  /** How often a node rewrites its entry and re-reads the others', ms. @default 5000 */
  refreshMs?: number;
  /** Others' gateways are served from the last successful read for this long, then only this node's, ms. @default 30000 */
  staleMs?: number;
  /** A refresh unanswered for this long failed, ms. @default 1000 */
  timeoutMs?: number;
  /** This node's load, written into its entry at each refresh and read for the order of `gateways()`. @default () => 0 */
  load?: () => number;
}

/**
 * Writes this node's entry with its TTL, adds its id to the index, and returns every live entry; ids whose entry
 * expired are removed from the index on the way (so listing needs no KEYS scan). KEYS: own entry, index.
 * ARGV: ttlMs, own entry, own id, entry key prefix. Reads keys it was not given: standalone Redis only (not
 * Redis Cluster).
 */
const REFRESH_LUA = `redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[1])
redis.call('SADD', KEYS[2], ARGV[3])
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local entry = redis.call('GET', ARGV[4] .. id)
  if entry then out[#out + 1] = entry else redis.call('SREM', KEYS[2], id) end
end
return out`;
const REFRESH_COMMAND = 'synchatDirectoryRefresh';

type Refresh = (entryKey: string, indexKey: string, ttlMs: number, entry: string, nodeId: string, entryPrefix: string) => Promise<string[]>;

/** The live nodes' gateways, kept in memory from Redis. */
export class RedisDirectory {
  readonly #conn: Redis;
  readonly #isOwned: boolean;
  readonly #entryPrefix: string;
  readonly #indexKey: string;
  readonly #ttlMs: number;
  readonly #refreshMs: number;
  readonly #staleMs: number;
  readonly #timeoutMs: number;
  readonly #outage: OutageLog;
  readonly #refresh: Refresh;
  readonly #load: () => number;
  #self: DirectoryNode | undefined;
  /** The other nodes at the last successful read, by node id, and when that was (Date.now()). */
  #others: DirectoryNode[] = [];
  #othersAtMs = 0;
  #timer: NodeJS.Timeout | undefined;
  #refreshing: Promise<void> | undefined;

  constructor(options: RedisDirectoryOptions) {
    const { conn, isOwned } = connectionOf(options.redis, { role: 'directory', logger: options.logger });
    this.#conn = conn;
    this.#isOwned = isOwned;
    const prefix = options.prefix ?? 'synchat:';
    this.#entryPrefix = prefix + 'node:';
    this.#indexKey = prefix + 'nodes';
    this.#ttlMs = options.ttlMs ?? 15_000;
    this.#refreshMs = options.refreshMs ?? 5_000;
    this.#staleMs = options.staleMs ?? 30_000;
    this.#timeoutMs = options.timeoutMs ?? 1_000;
    this.#outage = new OutageLog(options.logger, 'directory');
    this.#load = options.load ?? (() => 0);
    conn.defineCommand(REFRESH_COMMAND, { numberOfKeys: 2, lua: REFRESH_LUA });
    const refresh = (conn as unknown as Record<string, Refresh>)[REFRESH_COMMAND]!;
    this.#refresh = (...args) => refresh.call(conn, ...args);
  }

  /**
   * Publishes this node's entry and starts refreshing it (and the list of the others) every `refreshMs`.
   * Resolves after the first attempt; never throws (with Redis down the directory serves this node alone).
   */
  async start(self: DirectoryNode): Promise<void> {
    this.#self = { nodeId: self.nodeId, gateways: [...self.gateways] };
    clearInterval(this.#timer);
    this.#timer = setInterval(() => void this.refresh(), this.#refreshMs);
    this.#timer.unref();
    await firstReady(this.#conn, this.#timeoutMs);
    await this.refresh();
  }

  /**
   * The gateways of this node and of every other node seen live within `staleMs`, least-loaded node first (this
   * node's load read now, the others' as of their last refresh; on a tie this node first, then by node id).
   * `own` replaces this node's stored gateways in the answer (a node on a wildcard address lists the Host its
   * caller reached). After `stop()` (a draining node) this node is not listed.
   */
  gateways(own?: DirectoryGateway[]): DirectoryGateway[] {
    const nodes: { gateways: DirectoryGateway[]; load: number; rank: number }[] = [];
    if (this.#self) nodes.push({ gateways: own ?? this.#self.gateways, load: this.#load(), rank: 0 });
    if (Date.now() - this.#othersAtMs <= this.#staleMs) {
      // #others is sorted by node id: its index keeps that order among equal loads.
      this.#others.forEach((n, i) => nodes.push({ gateways: n.gateways, load: n.load ?? 0, rank: i + 1 }));
    }
    nodes.sort((a, b) => a.load - b.load || a.rank - b.rank);
    return nodes.flatMap((n) => [...n.gateways]);
  }

  /** Rewrites this node's entry and re-reads the others' now (the timer does this every `refreshMs`). */
  refresh(): Promise<void> {
    this.#refreshing ??= this.#runRefresh().finally(() => {
      this.#refreshing = undefined;
    });
    return this.#refreshing;
  }

  /** Stops refreshing and removes this node's entry (best effort, bounded); closes the connection if owned. */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    const self = this.#self;
    this.#self = undefined;
    await this.#refreshing;
    if (self) {
      const removed = this.#conn.multi().del(this.#entryPrefix + self.nodeId).srem(this.#indexKey, self.nodeId).exec();
      await withTimeout(removed, this.#timeoutMs).catch(() => undefined);
    }
    if (this.#isOwned) await closeRedis(this.#conn);
  }

  async #runRefresh(): Promise<void> {
    const self = this.#self;
    if (!self) return;
    let entries: string[];
    try {
      const entry = JSON.stringify({ ...self, load: this.#load() });
      const reply = this.#refresh(this.#entryPrefix + self.nodeId, this.#indexKey, this.#ttlMs, entry, self.nodeId, this.#entryPrefix);
      entries = await withTimeout(reply, this.#timeoutMs);
    } catch (err) {
      this.#outage.failed(err, `serving the other nodes' last known gateways for at most ${this.#staleMs} ms`);
      return;
    }
    this.#outage.succeeded();
    const others: DirectoryNode[] = [];
    for (const text of entries) {
      const node = parseEntry(text);
      if (node && node.nodeId !== self.nodeId) others.push(node);
    }
    others.sort((a, b) => (a.nodeId < b.nodeId ? -1 : a.nodeId > b.nodeId ? 1 : 0));
    this.#others = others;
    this.#othersAtMs = Date.now();
  }
}

/** A stored entry, or undefined if it is not one (written by another version, or garbage). */
function parseEntry(text: string): DirectoryNode | undefined {
  try {
    const v = JSON.parse(text) as DirectoryNode;
    if (typeof v?.nodeId !== 'string' || !Array.isArray(v.gateways)) return undefined;
    const load = Number.isFinite(v.load) && v.load! >= 0 ? v.load! : 0;
    return { nodeId: v.nodeId, gateways: v.gateways.filter((g) => typeof g?.url === 'string' && ['tcp', 'ws', 'http'].includes(g.transport)), load };
  } catch {
    return undefined;
  }
}

/**
 * The directory of live nodes for `/api/gateways` (docs/architecture.md "Between nodes (Redis)"): each node
 * writes its gateways and its load under a key that expires unless refreshed, and reads everyone's on the same
 * timer, so `gateways()` answers from memory, synchronously, least-loaded node first, and a dead node drops out
 * within `ttlMs + refreshMs`; a draining node removes its entry at once (`stop()`). The entries' upkeep is
 * {@link RedisNodeEntries}'s; this class makes and checks the entries and orders the gateways.
 */
import type { Redis } from 'ioredis';
import type { RedisLogger } from './redis-connection.ts';
import { RedisNodeEntries } from './redis-node-entries.ts';

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

/** The live nodes' gateways, kept in memory from Redis. */
export class RedisDirectory {
  readonly #entries: RedisNodeEntries<DirectoryNode>;
  readonly #load: () => number;
  #self: DirectoryNode | undefined;

  constructor(options: RedisDirectoryOptions) {
    const prefix = options.prefix ?? 'synchat:';
    const staleMs = options.staleMs ?? 30_000;
    this.#entries = new RedisNodeEntries({
      redis: options.redis,
      logger: options.logger,
      role: 'directory',
      what: 'directory',
      outageConsequence: `serving the other nodes' last known gateways for at most ${staleMs} ms`,
      entryPrefix: prefix + 'node:',
      indexKey: prefix + 'nodes',
      ttlMs: options.ttlMs ?? 15_000,
      intervalMs: options.refreshMs ?? 5_000,
      staleMs,
      timeoutMs: options.timeoutMs ?? 1_000,
      parse: parseEntry,
    });
    this.#load = options.load ?? (() => 0);
  }

  /**
   * Publishes this node's entry and starts refreshing it (and the list of the others) every `refreshMs`.
   * Resolves after the first attempt; never throws (with Redis down the directory serves this node alone).
   */
  async start(self: DirectoryNode): Promise<void> {
    const own = { nodeId: self.nodeId, gateways: [...self.gateways] };
    this.#self = own;
    await this.#entries.start(own.nodeId, () => JSON.stringify({ ...own, load: this.#load() }));
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
    // others() is sorted by node id: its index keeps that order among equal loads.
    this.#entries.others().forEach((n, i) => nodes.push({ gateways: n.gateways, load: n.load ?? 0, rank: i + 1 }));
    nodes.sort((a, b) => a.load - b.load || a.rank - b.rank);
    return nodes.flatMap((n) => [...n.gateways]);
  }

  /** Rewrites this node's entry and re-reads the others' now (the timer does this every `refreshMs`). */
  refresh(): Promise<void> {
    return this.#entries.refresh();
  }

  /** Stops refreshing and removes this node's entry (best effort, bounded); closes the connection if owned. */
  async stop(): Promise<void> {
    this.#self = undefined;
    await this.#entries.stop();
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

/**
 * Every live node's latest report for the admin dashboard (docs/operations.md "Dashboard"; docs/architecture.md
 * "Between nodes (Redis)"): once a second each node writes its report (JSON text this adapter does not read) under
 * a key that expires unless rewritten, and reads back every live node's in the same call, so a dashboard on any
 * node answers from memory. Bounded: a report over `maxBytes` is neither written nor kept, and at most
 * `maxNodes` others are kept. Redis holds nothing that matters here: with Redis down a node reports itself alone.
 * The entries' upkeep is {@link RedisNodeEntries}'s; this class names the keys and bounds.
 */
import type { Redis } from 'ioredis';
import type { RedisLogger } from './redis-connection.ts';
import { RedisNodeEntries } from './redis-node-entries.ts';

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

/** The other live nodes' reports, kept in memory from Redis. */
export class RedisNodeReports {
  readonly #entries: RedisNodeEntries<string>;

  constructor(options: RedisNodeReportsOptions) {
    const prefix = options.prefix ?? 'synchat:';
    const ttlMs = options.ttlMs ?? 5000;
    this.#entries = new RedisNodeEntries({
      redis: options.redis,
      logger: options.logger,
      role: 'reports',
      what: 'node reports',
      outageConsequence: 'the dashboard shows this node alone for now',
      entryPrefix: prefix + 'report:',
      indexKey: prefix + 'reports',
      ttlMs,
      intervalMs: options.intervalMs ?? 1000,
      staleMs: ttlMs,
      timeoutMs: options.timeoutMs ?? 1000,
      maxBytes: options.maxBytes ?? 64 * 1024,
      maxNodes: options.maxNodes ?? 64,
      // The report's schema is checked by its reader (src/server/node-reports.ts), not here.
      parse: (text) => text,
    });
  }

  /**
   * Starts writing `report()` as node `nodeId`'s every `intervalMs` (and reading the others'). Resolves after
   * the first round; never throws. A report that fails or is too large is skipped for that round.
   */
  start(nodeId: string, report: () => Promise<string>): Promise<void> {
    return this.#entries.start(nodeId, report);
  }

  /** The other nodes' latest reports, by node id; none when the last successful read is older than the TTL. */
  others(): string[] {
    return [...this.#entries.others()];
  }

  /** Writes this node's report and reads the others' now (the timer does this every `intervalMs`). */
  refresh(): Promise<void> {
    return this.#entries.refresh();
  }

  /** Stops reporting and removes this node's report (best effort, bounded); closes the connection if owned. */
  stop(): Promise<void> {
    return this.#entries.stop();
  }
}

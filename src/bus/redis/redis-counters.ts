/**
 * Throttles shared by every node through Redis (docs/architecture.md "Between nodes (Redis)"): fixed windows
 * counted by Redis, so a limit holds for the whole service however requests spread over nodes. While Redis
 * cannot answer, each counter answers from its fallback (this process's memory), so a Redis outage never turns
 * into refused logins or sends, only into per-node limits.
 */
import type { Redis } from 'ioredis';
import { retryAfterSecOf } from '../../core/backoff.ts';
import type { BackoffPolicy, FailureBackoff, RateCounter, RateCounters } from '../../core/ports.ts';
import { closeRedis, connectionOf, firstReady, OutageLog, withTimeout, type RedisLogger } from './redis-connection.ts';

/** Options of {@link RedisRateCounters}, with units and defaults. */
export interface RedisRateCountersOptions {
  /** A connection made with `openRedis` (shared: left open by {@link RedisRateCounters.close}) or a URL (owned). */
  redis: Redis | string;
  /** Answers while Redis does not (the composition root passes `new LocalRateCounters()`). */
  fallback: RateCounters;
  logger: RedisLogger;
  /**
   * Prefix of every key: counters live at `<prefix>rl:<name>:<key>`, backoffs at `<prefix>bo:<name>:{<key>}:n` (failures)
   * and `…:b` (the wait). @default 'synchat:'
   */
  prefix?: string;
  /** A command unanswered for this long is a failure: the fallback answers, ms. @default 500 */
  timeoutMs?: number;
}

/**
 * One INCR per hit; the first hit of a window sets its expiry (PEXPIRE NX, Redis 7), so the window runs from
 * that hit for `windowMs` on Redis's clock (nodes' clocks never enter). Returns the count and the ms left.
 */
const HIT_LUA = `local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1], 'NX')
return {n, redis.call('PTTL', KEYS[1])}`;
/** The count and the ms left of a window, without counting (0 and a negative PTTL when there is none). */
const PEEK_LUA = `return {tonumber(redis.call('GET', KEYS[1]) or '0'), redis.call('PTTL', KEYS[1])}`;
/**
 * One failure of a backoff ({@link BackoffPolicy}): counts it (the count forgotten `forgetMs` after the last one) and
 * sets the wait key to expire when the wait ends. The delay is `backoffDelayMs` of core/backoff.ts, in Lua; the
 * Redis tests check both give the same waits. ARGV: freeFailures, baseDelayMs, maxDelayMs, forgetMs. Returns the ms
 * to wait.
 */
const FAIL_LUA = `local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
local past = n - tonumber(ARGV[1])
if past <= 0 then return 0 end
local delay = math.floor(math.min(tonumber(ARGV[3]), tonumber(ARGV[2]) * 2 ^ math.min(past - 1, 40)))
if delay > 0 then redis.call('SET', KEYS[2], '1', 'PX', delay) end
return delay`;
const HIT_COMMAND = 'synchatRateHit';
const PEEK_COMMAND = 'synchatRatePeek';
const FAIL_COMMAND = 'synchatBackoffFail';

type Script = (key: string, windowMs: number) => Promise<[number, number]>;

/** Seconds to wait, at least 1, for a window with `pttlMs` left. */
function retrySec(pttlMs: number): number {
  return Math.max(1, Math.ceil(pttlMs / 1000));
}

/** Fixed-window throttles counted in Redis, with the same answers as the in-memory `WindowCounter`. */
export class RedisRateCounters implements RateCounters {
  readonly #conn: Redis;
  readonly #isOwned: boolean;
  readonly #fallback: RateCounters;
  readonly #prefix: string;
  readonly #timeoutMs: number;
  readonly #outage: OutageLog;
  readonly #hit: Script;
  readonly #peek: Script;
  readonly #fail: (failuresKey: string, waitKey: string, policy: BackoffPolicy) => Promise<number>;
  /** The first connect (bounded by the timeout): commands wait for it instead of falling back at once. */
  readonly #connected: Promise<void>;

  constructor(options: RedisRateCountersOptions) {
    const { conn, isOwned } = connectionOf(options.redis, { role: 'rate counters', logger: options.logger });
    this.#conn = conn;
    this.#isOwned = isOwned;
    this.#fallback = options.fallback;
    this.#prefix = options.prefix ?? 'synchat:';
    this.#timeoutMs = options.timeoutMs ?? 500;
    this.#outage = new OutageLog(options.logger, 'rate counters');
    this.#connected = firstReady(conn, this.#timeoutMs);
    conn.defineCommand(HIT_COMMAND, { numberOfKeys: 1, lua: HIT_LUA });
    conn.defineCommand(PEEK_COMMAND, { numberOfKeys: 1, lua: PEEK_LUA });
    conn.defineCommand(FAIL_COMMAND, { numberOfKeys: 2, lua: FAIL_LUA });
    const scripts = conn as unknown as Record<string, Script>;
    this.#hit = (key, windowMs) => scripts[HIT_COMMAND]!.call(conn, key, windowMs);
    this.#peek = (key, windowMs) => scripts[PEEK_COMMAND]!.call(conn, key, windowMs);
    const fail = (conn as unknown as Record<string, (...args: (string | number)[]) => Promise<number>>)[FAIL_COMMAND]!;
    this.#fail = (failuresKey, waitKey, p) => fail.call(conn, failuresKey, waitKey, p.freeFailures, p.baseDelayMs, p.maxDelayMs, p.forgetMs);
  }

  /** True while the last Redis command failed and the fallback answers. */
  get isFallingBack(): boolean {
    return this.#outage.isDown;
  }

  counter(name: string, limit: number, windowMs: number): RateCounter {
    const keyOf = (key: string) => `${this.#prefix}rl:${name}:${key}`;
    let local: RateCounter | undefined;
    const fallback = () => (local ??= this.#fallback.counter(name, limit, windowMs));
    return {
      hit: (key, nowMs) =>
        this.#ask(
          () => this.#hit(keyOf(key), windowMs),
          ([count, pttlMs]) => (count > limit ? retrySec(pttlMs) : 0),
          () => fallback().hit(key, nowMs),
        ),
      retryAfterSec: (key, nowMs) =>
        this.#ask(
          () => this.#peek(keyOf(key), windowMs),
          ([count, pttlMs]) => (count >= limit && pttlMs > 0 ? retrySec(pttlMs) : 0),
          () => fallback().retryAfterSec(key, nowMs),
        ),
      clear: (key) =>
        this.#ask(
          () => this.#conn.del(keyOf(key)),
          () => undefined,
          () => fallback().clear(key),
        ),
    };
  }

  backoff(name: string, policy: BackoffPolicy): FailureBackoff {
    // One hash tag per key, so both keys of a backoff live on one Redis Cluster slot.
    const failuresKey = (key: string) => `${this.#prefix}bo:${name}:{${key}}:n`;
    const waitKey = (key: string) => `${this.#prefix}bo:${name}:{${key}}:b`;
    let local: FailureBackoff | undefined;
    const fallback = () => (local ??= this.#fallback.backoff(name, policy));
    return {
      fail: (key, nowMs) =>
        this.#ask(
          () => this.#fail(failuresKey(key), waitKey(key), policy),
          (delayMs) => retryAfterSecOf(delayMs),
          () => fallback().fail(key, nowMs),
        ),
      retryAfterSec: (key, nowMs) =>
        this.#ask(
          () => this.#conn.pttl(waitKey(key)),
          (pttlMs) => retryAfterSecOf(pttlMs),
          () => fallback().retryAfterSec(key, nowMs),
        ),
      clear: (key) =>
        this.#ask(
          () => this.#conn.del(failuresKey(key), waitKey(key)),
          () => undefined,
          () => fallback().clear(key),
        ),
    };
  }

  /** Closes the connection if it was made here from a URL. */
  async close(): Promise<void> {
    if (this.#isOwned) await closeRedis(this.#conn);
  }

  /** Asks Redis (bounded by the timeout); on any failure the fallback answers instead. */
  async #ask<R, T>(command: () => Promise<R>, answer: (reply: R) => T, fallback: () => Promise<T>): Promise<T> {
    await this.#connected;
    let reply: R;
    try {
      reply = await withTimeout(command(), this.#timeoutMs);
    } catch (err) {
      this.#outage.failed(err, 'throttles count in each node’s memory until it is back');
      return fallback();
    }
    this.#outage.succeeded();
    return answer(reply);
  }
}

import { backoffDelayMs, retryAfterSecOf } from '../core/backoff.ts';
import type { BackoffPolicy, FailureBackoff, RateCounter, RateCounters } from '../core/ports.ts';
import { setBounded } from './bounded.ts';

/**
 * Keys one in-memory throttle remembers at most (~100 bytes each): past it the oldest key is forgotten, so
 * failures spread over millions of usernames or addresses cannot grow the process without bound. Forgetting a key
 * only lets it start again from nothing; the Redis throttles of several nodes have no such bound (Redis expires them).
 */
export const THROTTLE_KEYS_MAX = 100_000;

const HOUR_MS = 3_600_000;

/**
 * Per-user rates of the writes that land in other users' logs, with SYNCHAT_RATE_LIMIT=on (like sends; load tests
 * turn them off): one account must not be able to fill other people's logs. Each limit is far above what a person
 * does by hand, and bounds what a script can do with one account (docs/security.md "Abuse of other users' logs"):
 * - contact requests, 60 an hour: adding an address book by hand is a few a minute; a spammer reaches at most 60
 *   strangers' logs an hour (a repeat to the same person appends nothing: one pending request per pair);
 * - group changes (create, members, rename), 60 an hour: a person makes a few a day; each reaches up to 500 logs,
 *   so at most 30,000 entries an hour;
 * - profile (display name) changes, 10 an hour: one reaches every contact's log.
 */
export const WRITE_RATES = {
  contactRequests: { limit: 60, windowMs: HOUR_MS },
  groupChanges: { limit: 60, windowMs: HOUR_MS },
  profileChanges: { limit: 10, windowMs: HOUR_MS },
} as const;

/**
 * Fixed-window counters for throttling (registrations per address, sends per user). Memory is bounded: windows are
 * dropped when they expire, swept lazily, and at most `maxKeys` keys are kept.
 */
export class WindowCounter {
  readonly #limit: number;
  readonly #windowMs: number;
  readonly #maxKeys: number;
  readonly #counts = new Map<string, { count: number; resetAt: number }>();
  #lastSweep = 0;

  /** At most `limit` hits per key per `windowMs`. */
  constructor(limit: number, windowMs: number, maxKeys = THROTTLE_KEYS_MAX) {
    this.#limit = limit;
    this.#windowMs = windowMs;
    this.#maxKeys = maxKeys;
  }

  /** Keys held now (for tests of the bound). */
  get size(): number {
    return this.#counts.size;
  }

  /** Seconds until `key` may try again, or 0 if it is under the limit now. */
  retryAfterSec(key: string, nowMs: number): number {
    const c = this.#counts.get(key);
    if (!c || c.resetAt <= nowMs || c.count < this.#limit) return 0;
    return retryAfterSecOf(c.resetAt - nowMs);
  }

  /** Counts one hit; returns the retry-after seconds if this hit is over the limit, else 0. */
  hit(key: string, nowMs: number): number {
    this.#sweep(nowMs);
    let c = this.#counts.get(key);
    if (!c || c.resetAt <= nowMs) {
      c = { count: 0, resetAt: nowMs + this.#windowMs };
      setBounded(this.#counts, key, c, this.#maxKeys);
    }
    c.count++;
    return c.count > this.#limit ? retryAfterSecOf(c.resetAt - nowMs) : 0;
  }

  /** Forgets a key. */
  clear(key: string): void {
    this.#counts.delete(key);
  }

  #sweep(nowMs: number): void {
    if (nowMs - this.#lastSweep < this.#windowMs) return;
    this.#lastSweep = nowMs;
    for (const [key, c] of this.#counts) if (c.resetAt <= nowMs) this.#counts.delete(key);
  }
}

/**
 * Failures with growing delays ({@link BackoffPolicy}), in this process's memory: failed logins per (username,
 * address) and per address. At most `maxKeys` keys; a key quiet for `forgetMs` is swept.
 */
export class BackoffCounter {
  readonly #policy: BackoffPolicy;
  readonly #maxKeys: number;
  /** key → failures so far, the last one's time, and until when the key waits; most recently failed last. */
  readonly #keys = new Map<string, { failures: number; lastFailAt: number; blockedUntil: number }>();
  #lastSweep = 0;

  constructor(policy: BackoffPolicy, maxKeys = THROTTLE_KEYS_MAX) {
    this.#policy = policy;
    this.#maxKeys = maxKeys;
  }

  /** Keys held now (for tests of the bound). */
  get size(): number {
    return this.#keys.size;
  }

  /** Counts one failure; returns the seconds the key must now wait (0 while its failures are free). */
  fail(key: string, nowMs: number): number {
    this.#sweep(nowMs);
    const prev = this.#live(key, nowMs);
    const failures = (prev?.failures ?? 0) + 1;
    const blockedUntil = nowMs + backoffDelayMs(failures, this.#policy);
    setBounded(this.#keys, key, { failures, lastFailAt: nowMs, blockedUntil }, this.#maxKeys);
    return retryAfterSecOf(blockedUntil - nowMs);
  }

  /** Seconds until `key` may try again, or 0. */
  retryAfterSec(key: string, nowMs: number): number {
    const k = this.#live(key, nowMs);
    return k ? retryAfterSecOf(k.blockedUntil - nowMs) : 0;
  }

  /** Forgets a key. */
  clear(key: string): void {
    this.#keys.delete(key);
  }

  /** The key's record, unless it has been quiet for `forgetMs` (then it starts over). */
  #live(key: string, nowMs: number): { failures: number; lastFailAt: number; blockedUntil: number } | undefined {
    const k = this.#keys.get(key);
    return k && nowMs - k.lastFailAt < this.#policy.forgetMs ? k : undefined;
  }

  #sweep(nowMs: number): void {
    if (nowMs - this.#lastSweep < this.#policy.forgetMs) return;
    this.#lastSweep = nowMs;
    for (const [key, k] of this.#keys) if (nowMs - k.lastFailAt >= this.#policy.forgetMs) this.#keys.delete(key);
  }
}

/** Throttles in this process's memory: the default for one node, and the fallback of shared ones. */
export class LocalRateCounters implements RateCounters {
  counter(_name: string, limit: number, windowMs: number): RateCounter {
    const c = new WindowCounter(limit, windowMs);
    return {
      hit: async (key, nowMs) => c.hit(key, nowMs),
      retryAfterSec: async (key, nowMs) => c.retryAfterSec(key, nowMs),
      clear: async (key) => c.clear(key),
    };
  }

  backoff(_name: string, policy: BackoffPolicy): FailureBackoff {
    const b = new BackoffCounter(policy);
    return {
      fail: async (key, nowMs) => b.fail(key, nowMs),
      retryAfterSec: async (key, nowMs) => b.retryAfterSec(key, nowMs),
      clear: async (key) => b.clear(key),
    };
  }
}

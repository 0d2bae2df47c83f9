import type { RateCounter, RateCounters } from '../core/ports.ts';

/**
 * Fixed-window counters for throttling (failed logins per username and per address, sends per user).
 * Memory is bounded: windows are dropped when they expire, swept lazily.
 */
export class WindowCounter {
  readonly #limit: number;
  readonly #windowMs: number;
  readonly #counts = new Map<string, { count: number; resetAt: number }>();
  #lastSweep = 0;

  /** At most `limit` hits per key per `windowMs`. */
  constructor(limit: number, windowMs: number) {
    this.#limit = limit;
    this.#windowMs = windowMs;
  }

  /** Seconds until `key` may try again, or 0 if it is under the limit now. */
  retryAfterSec(key: string, nowMs: number): number {
    const c = this.#counts.get(key);
    if (!c || c.resetAt <= nowMs || c.count < this.#limit) return 0;
    return Math.max(1, Math.ceil((c.resetAt - nowMs) / 1000));
  }

  /** Counts one hit; returns the retry-after seconds if this hit is over the limit, else 0. */
  hit(key: string, nowMs: number): number {
    this.#sweep(nowMs);
    let c = this.#counts.get(key);
    if (!c || c.resetAt <= nowMs) {
      c = { count: 0, resetAt: nowMs + this.#windowMs };
      this.#counts.set(key, c);
    }
    c.count++;
    return c.count > this.#limit ? Math.max(1, Math.ceil((c.resetAt - nowMs) / 1000)) : 0;
  }

  /** Forgets a key (after a successful login). */
  clear(key: string): void {
    this.#counts.delete(key);
  }

  #sweep(nowMs: number): void {
    if (nowMs - this.#lastSweep < this.#windowMs) return;
    this.#lastSweep = nowMs;
    for (const [key, c] of this.#counts) if (c.resetAt <= nowMs) this.#counts.delete(key);
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
}

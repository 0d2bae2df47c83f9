/**
 * Jittered exponential backoff, so a server restart does not bring every client back in the same second
 * ("equal jitter": half the delay fixed, half random; AWS Architecture Blog, "Exponential Backoff And Jitter").
 */

/** Backoff settings. */
export interface BackoffOptions {
  /** Delay before the first retry, in ms. @default 500 */
  baseMs: number;
  /** Upper bound of the delay, in ms. @default 30000 */
  maxMs: number;
}

/** Defaults of {@link BackoffOptions}. */
export const DEFAULT_BACKOFF: BackoffOptions = { baseMs: 500, maxMs: 30_000 };

/**
 * Delay before retry number `attempt` (0 = first retry): uniformly random in [d/2, d] where
 * d = min(maxMs, baseMs × 2^attempt). `random` returns [0, 1) (injectable for tests).
 */
export function backoffDelay(attempt: number, options: BackoffOptions = DEFAULT_BACKOFF, random: () => number = Math.random): number {
  const d = Math.min(options.maxMs, options.baseMs * 2 ** Math.min(Math.max(0, attempt), 30));
  return Math.round(d / 2 + random() * (d / 2));
}

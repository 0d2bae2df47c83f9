/**
 * Growing delays after failed password checks, pure (docs/security.md "Throttles"). The in-memory and the Redis
 * throttles (src/service/rate-limit.ts, src/bus/redis/redis-counters.ts) both follow {@link backoffDelayMs}.
 */
import type { BackoffPolicy } from './ports.ts';

/**
 * The wait, in ms, that the `failures`-th failure of a key imposes: 0 up to `freeFailures`, then `baseDelayMs`
 * doubling with each further failure, at most `maxDelayMs`.
 */
export function backoffDelayMs(failures: number, policy: BackoffPolicy): number {
  const past = failures - policy.freeFailures;
  if (past <= 0) return 0;
  // 2^40 ms is 35 years: past that the cap has long applied, and the power stays an exact double.
  return Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.min(past - 1, 40));
}

/** Whole seconds to announce for `ms` of waiting (`retryAfterSec`): at least 1 while any wait is left. */
export function retryAfterSecOf(ms: number): number {
  return ms > 0 ? Math.max(1, Math.ceil(ms / 1000)) : 0;
}

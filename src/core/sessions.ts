/**
 * Device-session rules, pure (docs/protocol.md "Accounts"): when a session has been idle too long, and which
 * sessions a login past the per-user cap ends.
 */
import type { SessionRow } from './ports.ts';

/** True when a session last seen at `lastSeenTime` has been idle longer than `idleMs` at `nowMs`. */
export function isIdleExpired(lastSeenTime: number, nowMs: number, idleMs: number): boolean {
  return nowMs - lastSeenTime > idleMs;
}

/**
 * The sessions a new login must end so that the user holds at most `max` with it: the least recently seen first
 * (`lastSeenOf` adds what the service has seen but not written yet). `active` are the user's other active sessions.
 */
export function sessionsOverCap(active: readonly SessionRow[], max: number, lastSeenOf: (s: SessionRow) => number): SessionRow[] {
  const excess = active.length + 1 - max;
  if (excess <= 0) return [];
  return [...active].sort((a, b) => lastSeenOf(a) - lastSeenOf(b) || a.createTime - b.createTime).slice(0, excess);
}

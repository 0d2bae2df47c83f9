/**
 * How often a long connection heartbeats, and how that adapts (docs/sdk.md "Heartbeat"). Pure: no timers, no
 * clock; the transport loop feeds it what happened on the connection.
 *
 * The seed's clients heartbeat every ≈ 27 s (web) and ≈ 5 min (Android). A silent NAT or proxy drops an idle
 * mapping after some period nobody announces; a heartbeat shorter than that keeps the link, a longer one loses it
 * without a word. The mobile profile finds the period like WeChat's "smart heartbeat": it starts at a safe value,
 * grows a step after a few periods the link survived, and after a link died silently at a period it steps back
 * below it and never tries that period again.
 */

/**
 * Share of a period a quiet gap must last to count as surviving it: the wire checks its deadlines on a tick (250 ms)
 * and measures the gap from the last packet either way, so the gap before a heartbeat at period p is a little
 * under p when the previous answer came back a round trip after the previous heartbeat.
 */
const FULL_GAP = 0.9;

/** A heartbeat profile: what to propose and how far to adapt. */
export interface HeartbeatPolicy {
  /** Period the first connection heartbeats at (clamped into [minMs, the agreed period]), in ms. */
  initialMs: number;
  /** Shortest period it shrinks to, in ms. */
  minMs: number;
  /** Longest period it grows to; also the `heartbeatMs` proposed in AUTH (the server clamps it), in ms. */
  maxMs: number;
  /** Growth (and shrink) step, in ms. */
  stepMs: number;
  /** Idle periods the link must survive at one period before the period grows a step. */
  growAfter: number;
}

/** The web client's period, ≈ 27 s as in the seed (under the 30 s idle limit common in proxies); fixed. */
export const WEB_HEARTBEAT: Readonly<HeartbeatPolicy> = { initialMs: 27_000, minMs: 27_000, maxMs: 27_000, stepMs: 1_000, growAfter: 1 };

/**
 * A mobile profile: starts at 1 min, grows a minute after 3 survived periods, up to the seed's ≈ 5 min (the
 * server's default maximum); after a silent death it steps back a minute, never below 20 s (the server's default
 * minimum).
 */
export const MOBILE_HEARTBEAT: Readonly<HeartbeatPolicy> = { initialMs: 60_000, minMs: 20_000, maxMs: 300_000, stepMs: 60_000, growAfter: 3 };

/** Checks a policy; returns the problem, or undefined when it is sound. */
export function heartbeatPolicyProblem(p: HeartbeatPolicy): string | undefined {
  const isMs = (v: number) => Number.isSafeInteger(v) && v > 0;
  if (!isMs(p.initialMs) || !isMs(p.minMs) || !isMs(p.maxMs) || !isMs(p.stepMs)) return 'heartbeat periods must be positive integers (ms)';
  if (!(p.minMs <= p.initialMs && p.initialMs <= p.maxMs)) return 'heartbeat: minMs ≤ initialMs ≤ maxMs';
  if (!Number.isSafeInteger(p.growAfter) || p.growAfter < 1) return 'heartbeat: growAfter must be a positive integer';
  return undefined;
}

/**
 * The adaptive period of one client, kept across its connections. Each connection starts with {@link agreed}
 * (AUTH_OK's heartbeatMs bounds the period from above: the server closes after 2.5 × it without a packet),
 * reports each idle period it survived ({@link survived}) and, when it dies silently, the period it died at
 * ({@link diedSilently}). {@link currentMs} is the period to heartbeat at now.
 */
export class HeartbeatTuner {
  readonly policy: Readonly<HeartbeatPolicy>;
  #currentMs: number;
  /** The agreed period of the current connection: the ceiling of growth. */
  #agreedMs: number;
  /** The shortest period a link died silently at (Infinity: none yet); growth stays below it. */
  #failedMs = Infinity;
  #survived = 0;

  constructor(policy: Readonly<HeartbeatPolicy>) {
    const problem = heartbeatPolicyProblem(policy);
    if (problem) throw new RangeError(problem);
    this.policy = policy;
    this.#currentMs = policy.initialMs;
    this.#agreedMs = policy.maxMs;
  }

  /** The period to heartbeat at now, in ms. */
  get currentMs(): number {
    return this.#currentMs;
  }

  /** The shortest period a link died silently at, in ms (Infinity when none did). */
  get failedMs(): number {
    return this.#failedMs;
  }

  /** What AUTH proposes: the longest period this client would heartbeat at. */
  get proposalMs(): number {
    return this.policy.maxMs;
  }

  /**
   * A connection agreed `agreedMs` (AUTH_OK's heartbeatMs): the period stays at or below it. A server whose minimum
   * is above the policy's range raises the period to its minimum, since that is what it agreed.
   */
  agreed(agreedMs: number): number {
    this.#agreedMs = agreedMs;
    this.#survived = 0;
    this.#currentMs = Math.min(agreedMs, Math.max(this.policy.minMs, this.#currentMs));
    return this.#currentMs;
  }

  /**
   * A HEARTBEAT sent after the link had been quiet for `gapMs` was answered. A gap of (nearly) a whole period counts
   * as one survived period; a shorter one (traffic came between heartbeats) proves nothing. Returns the period now.
   */
  survived(gapMs: number): number {
    if (gapMs < FULL_GAP * this.#currentMs) return this.#currentMs;
    if (++this.#survived < this.policy.growAfter) return this.#currentMs;
    this.#survived = 0;
    const next = Math.min(this.#currentMs + this.policy.stepMs, this.policy.maxMs, this.#agreedMs);
    // Never back to a period a link already died at: the NAT that killed it is likely still there.
    if (next < this.#failedMs) this.#currentMs = next;
    return this.#currentMs;
  }

  /**
   * A link heartbeating at `periodMs` died without a word from the server (no HEARTBEAT_ACK, or closed with no
   * ERROR while a HEARTBEAT was unanswered): remember the period and step back below it. Returns the period now.
   */
  diedSilently(periodMs: number): number {
    this.#survived = 0;
    if (periodMs < this.#failedMs) this.#failedMs = periodMs;
    // Never below the policy's minimum, nor above the agreed period (a server whose range lies below the policy's).
    this.#currentMs = Math.min(this.#agreedMs, Math.max(this.policy.minMs, Math.min(this.#currentMs, periodMs - this.policy.stepMs)));
    return this.#currentMs;
  }
}

/**
 * Who listens for which users' news: one registry (uin → number of attaches) per gateway process, kept by the IPC
 * host in the core (in one process every event reaches the hub, which routes by its own listeners). An attach
 * takes a {@link Subscription}; its `release()` is the only way to undo it, and releasing twice is harmless.
 * See docs/architecture.md "Processes".
 */

/** One attach's hold on a user's news. */
export interface Subscription {
  /** Stops this attach's interest in the user (idempotent). */
  release(): void;
}

/** A subscription whose `release()` runs `onRelease` the first time only. */
export function subscriptionOf(onRelease: () => void): Subscription {
  let isHeld = true;
  return {
    release: () => {
      if (!isHeld) return;
      isHeld = false;
      onRelease();
    },
  };
}

/** Counted subscriptions by uin. */
export class SubscriptionRegistry {
  readonly #counts = new Map<number, number>();

  /** Whether anyone here listens for `uin`. */
  has(uin: number): boolean {
    return this.#counts.has(uin);
  }

  /** Adds one subscription for `uin`. */
  add(uin: number): Subscription {
    this.#counts.set(uin, (this.#counts.get(uin) ?? 0) + 1);
    return subscriptionOf(() => {
      const n = this.#counts.get(uin)! - 1;
      if (n > 0) this.#counts.set(uin, n);
      else this.#counts.delete(uin);
    });
  }

  /** Forgets everything (the listening process is gone). */
  clear(): void {
    this.#counts.clear();
  }
}

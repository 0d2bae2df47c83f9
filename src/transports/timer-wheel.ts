/**
 * A coarse timer wheel for deadlines that are usually pushed back (idle timeouts, long-poll holds): one
 * interval for all of them instead of one timer each. Items keep their own `deadline`; pushing it back costs
 * nothing, and an item found early in its slot is moved to a later one (lazy re-insertion).
 */

/** Something with a deadline. Set `deadline` to Infinity to cancel. */
export interface WheelItem {
  /** ms since epoch; Infinity = cancelled. */
  deadline: number;
  /** Called once when the deadline has passed. */
  onDeadline(): void;
}

/** Timer wheel with `tickMs` resolution. */
export class TimerWheel {
  readonly tickMs: number;
  readonly #slots: WheelItem[][];
  #cursor = 0;
  #cursorTime: number;
  readonly #timer: NodeJS.Timeout;
  readonly #now: () => number;

  /** `slots × tickMs` is the horizon; later deadlines wrap and are re-checked. */
  constructor(opts: { tickMs?: number; slots?: number; now?: () => number } = {}) {
    this.tickMs = opts.tickMs ?? 250;
    this.#slots = Array.from({ length: opts.slots ?? 512 }, () => []);
    this.#now = opts.now ?? Date.now;
    this.#cursorTime = this.#now();
    this.#timer = setInterval(() => this.#advance(), this.tickMs);
    this.#timer.unref();
  }

  /** Schedules an item at its current `deadline`. Schedule an item once; later just change its deadline. */
  add(item: WheelItem): void {
    const ticks = Math.max(1, Math.ceil((item.deadline - this.#cursorTime) / this.tickMs));
    const slot = (this.#cursor + Math.min(ticks, this.#slots.length - 1)) % this.#slots.length;
    this.#slots[slot]!.push(item);
  }

  /** Stops the wheel. */
  stop(): void {
    clearInterval(this.#timer);
  }

  #advance(): void {
    const now = this.#now();
    while (this.#cursorTime + this.tickMs <= now) {
      this.#cursor = (this.#cursor + 1) % this.#slots.length;
      this.#cursorTime += this.tickMs;
      const due = this.#slots[this.#cursor]!;
      if (due.length === 0) continue;
      this.#slots[this.#cursor] = [];
      for (const item of due) {
        if (item.deadline === Infinity) continue;
        if (item.deadline <= this.#cursorTime) {
          try {
            item.onDeadline();
          } catch {
            // A failing callback must not stop the wheel; the owner logs its own errors.
          }
        } else this.add(item);
      }
    }
  }
}

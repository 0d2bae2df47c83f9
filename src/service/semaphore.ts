/** A counting semaphore: at most `max` tasks run at once, the rest wait in call order. */
export class Semaphore {
  readonly #max: number;
  #running = 0;
  readonly #waiting: (() => void)[] = [];

  /** @param max tasks allowed to run at once (at least 1). */
  constructor(max: number) {
    this.#max = Math.max(1, max);
  }

  /** Tasks waiting for a turn. */
  get waiting(): number {
    return this.#waiting.length;
  }

  /** Runs `task` when a turn is free; the turn is given back when it settles, whatever the outcome. */
  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.#running >= this.#max) await new Promise<void>((resolve) => this.#waiting.push(resolve));
    else this.#running++;
    try {
      return await task();
    } finally {
      const next = this.#waiting.shift();
      if (next) next(); // the turn passes on: #running stays the same
      else this.#running--;
    }
  }
}

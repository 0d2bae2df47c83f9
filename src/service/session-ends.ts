/**
 * The last session ends received, for the attaches and authentications in flight when one arrived (the service's
 * check after it holds the user, the hub's check before it registers a listener). A reader takes {@link count}
 * before its round trip and asks {@link since} after it. See docs/architecture.md "Attach without a gap".
 */
export class RecentSessionEnds {
  readonly #capacity: number;
  readonly #ring: ({ sessionId: string; ret: number } | undefined)[];
  #count = 0;

  /** Keeps the last `capacity` ends; a reader that saw more than that go by is answered `unknown`. */
  constructor(capacity: number) {
    this.#capacity = capacity;
    this.#ring = new Array(capacity);
  }

  /** Ends received so far: the mark a reader takes before its round trip. */
  get count(): number {
    return this.#count;
  }

  add(sessionId: string, ret: number): void {
    this.#ring[this.#count++ % this.#capacity] = { sessionId, ret };
  }

  /** Ends may have been lost (a bus gap): every reader in flight is answered `unknown`. */
  forgetAll(): void {
    this.#count += this.#capacity + 1;
  }

  /** The ret of an end of `sessionId` received since `mark`, 0 if none, `unknown` if more went by than are kept. */
  since(mark: number, sessionId: string): number | 'unknown' {
    if (this.#count - mark > this.#capacity) return 'unknown';
    for (let i = mark; i < this.#count; i++) {
      const e = this.#ring[i % this.#capacity]!;
      if (e.sessionId === sessionId) return e.ret;
    }
    return 0;
  }
}

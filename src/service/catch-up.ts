/**
 * Catching up from the store when the bus between nodes may have lost news. The bus is a hint path: a news
 * event lost on the way (Redis down, a dropped subscription) must cost latency, never data. For every user held
 * on this node the sweeper remembers the last head it saw announced; every `intervalMs`, and at once after the
 * bus reports a gap, it reads those users' heads from the store and announces, to this node's listeners only,
 * each head that moved without news. The announcement carries no entries (`prevSeq: -1`), so a long connection
 * sends NOTIFY and a parked synccheck answers: the device then syncs from its own key, the protocol's normal path.
 * See docs/architecture.md "Between nodes".
 */
import type { BusEvent, Store } from '../core/ports.ts';

/** Heads read per store query. */
const CHUNK = 1000;

/** Held users and the last head announced for each. */
export class CatchUp {
  readonly #store: Store;
  readonly #emit: (events: BusEvent[]) => void;
  readonly #held = new Map<number, { count: number; head: number }>();
  readonly #timer: NodeJS.Timeout;
  #sweeping: Promise<void> | undefined;
  #isAgain = false;
  /** Figures for tests and metrics: heads announced without news. */
  readonly stats = { sweeps: 0, announced: 0 };

  constructor(store: Store, emit: (events: BusEvent[]) => void, intervalMs: number) {
    this.#store = store;
    this.#emit = emit;
    this.#timer = setInterval(() => void this.sweep(), intervalMs);
    this.#timer.unref();
  }

  /** A listener on this node holds `uin`, whose head it knows to be `head`; the returned function lets go. */
  hold(uin: number, head: number): () => void {
    const h = this.#held.get(uin);
    if (h) {
      h.count++;
      if (head > h.head) h.head = head;
    } else this.#held.set(uin, { count: 1, head });
    let isHeld = true;
    return () => {
      if (!isHeld) return;
      isHeld = false;
      const cur = this.#held.get(uin);
      if (cur && --cur.count === 0) this.#held.delete(uin);
    };
  }

  /** Learns the heads that news announced (from this node or another). */
  observe(events: readonly BusEvent[]): void {
    for (const ev of events) {
      if (ev.type === 'news') this.#saw(ev.news.uin, ev.news.head);
      else if (ev.type === 'fanout') for (let i = 0; i < ev.fanout.uins.length; i++) this.#saw(ev.fanout.uins[i]!, ev.fanout.seqs[i]!);
    }
  }

  #saw(uin: number, head: number): void {
    const h = this.#held.get(uin);
    if (h && head > h.head) h.head = head;
  }

  /** Reads the held users' heads and announces those that moved unannounced. One sweep at a time. */
  sweep(): Promise<void> {
    if (this.#sweeping) {
      // A gap reported during a sweep may concern users it already read: sweep once more after it.
      this.#isAgain = true;
      return this.#sweeping;
    }
    this.#sweeping = this.#run().finally(() => {
      this.#sweeping = undefined;
      if (this.#isAgain) {
        this.#isAgain = false;
        void this.sweep();
      }
    });
    return this.#sweeping;
  }

  async #run(): Promise<void> {
    this.stats.sweeps++;
    const uins = [...this.#held.keys()];
    for (let i = 0; i < uins.length; i += CHUNK) {
      const chunk = uins.slice(i, i + CHUNK);
      let heads;
      try {
        heads = await this.#store.read.heads(chunk);
      } catch {
        return; // The store is unreachable: the next sweep tries again.
      }
      const events: BusEvent[] = [];
      chunk.forEach((uin, k) => {
        const h = this.#held.get(uin);
        const now = heads[k]!;
        if (!h || now.head <= h.head) return;
        let selector = 0;
        for (const [bit, seq] of Object.entries(now.bySelector)) if (seq > h.head) selector |= Number(bit);
        h.head = now.head;
        events.push({ type: 'news', news: { uin, prevSeq: -1, head: now.head, selector, entries: [] } });
      });
      if (events.length > 0) {
        this.stats.announced += events.length;
        this.#emit(events);
      }
    }
  }

  close(): void {
    clearInterval(this.#timer);
  }
}

/**
 * The in-process Bus: listeners are called synchronously, in publish order. The default for one node;
 * src/bus/redis carries the same events between nodes.
 */
import type { Bus, BusEvent } from '../../core/ports.ts';

/** In-process fan-out. */
export class LocalBus implements Bus {
  readonly name = 'local';
  readonly isShared = false;
  readonly #listeners = new Set<(events: readonly BusEvent[]) => void>();

  publish(events: readonly BusEvent[]): void {
    for (const listener of this.#listeners) {
      try {
        listener(events);
      } catch {
        // Bus contract: delivery is best effort; one failing listener must not stop the others.
      }
    }
  }

  subscribe(listener: (events: readonly BusEvent[]) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** One node: every event is this node's own. */
  hold(_uin: number): () => void {
    return () => {};
  }

  /** Holds mean nothing here. */
  async whenHeld(): Promise<void> {}

  /** In-process delivery loses nothing. */
  onGap(_listener: () => void): () => void {
    return () => {};
  }

  async close(): Promise<void> {
    this.#listeners.clear();
  }
}

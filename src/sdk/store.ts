/**
 * The client's persistent state behind one small interface, so the same client runs with memory (tests, load
 * tool), a file (Node: src/sdk/node/file-store.ts) or IndexedDB (browsers: idb-store.ts).
 */
import type { OutboxItem, SessionState } from './types.ts';

/**
 * Where a client keeps its session, sync position and outbox. Contract: `load` returns what the last completed
 * `save*` calls wrote (a save that resolved survives a restart of the process for durable stores); calls are not
 * concurrent (the client awaits each one), and values are plain JSON data.
 */
export interface ClientStore {
  /** The stored session, or undefined. */
  loadSession(): Promise<SessionState | undefined>;
  /** Replaces the stored session (undefined forgets it: logout, session ended). */
  saveSession(session: SessionState | undefined): Promise<void>;
  /** The stored outbox, in queue order. */
  loadOutbox(): Promise<OutboxItem[]>;
  /** Replaces the stored outbox. */
  saveOutbox(items: readonly OutboxItem[]): Promise<void>;
  /** Releases resources (file handles, database connections). */
  close?(): Promise<void>;
}

/** Keeps everything in memory; deep-copies on the way in and out, so callers cannot alias stored values. */
export class MemoryStore implements ClientStore {
  #session: SessionState | undefined;
  #outbox: OutboxItem[] = [];

  constructor(initial?: { session?: SessionState; outbox?: OutboxItem[] }) {
    this.#session = initial?.session ? structuredClone(initial.session) : undefined;
    this.#outbox = structuredClone(initial?.outbox ?? []);
  }

  async loadSession(): Promise<SessionState | undefined> {
    return this.#session ? structuredClone(this.#session) : undefined;
  }

  async saveSession(session: SessionState | undefined): Promise<void> {
    this.#session = session ? structuredClone(session) : undefined;
  }

  async loadOutbox(): Promise<OutboxItem[]> {
    return structuredClone(this.#outbox);
  }

  async saveOutbox(items: readonly OutboxItem[]): Promise<void> {
    this.#outbox = structuredClone([...items]);
  }
}

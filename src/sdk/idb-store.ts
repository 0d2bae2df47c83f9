/**
 * IndexedDB store for browsers: one database, one object store `kv` holding two records, `session` and `outbox`.
 * Each save is one readwrite transaction that resolves on `complete`, so a resolved save is durable.
 */
import type { ClientStore } from './store.ts';
import type { OutboxItem, SessionState } from './types.ts';

/** Options of {@link IndexedDbStore}. */
export interface IndexedDbStoreOptions {
  /** Database name; one per account or app. @default 'synchat' */
  name?: string;
  /** The IndexedDB factory. @default globalThis.indexedDB (tests pass fake-indexeddb's) */
  indexedDB?: IDBFactory;
}

const OBJECT_STORE = 'kv';

function request<T>(req: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error ?? new Error('IndexedDB request failed'));
  });
}

/** A {@link ClientStore} in IndexedDB. */
export class IndexedDbStore implements ClientStore {
  readonly #name: string;
  readonly #factory: IDBFactory;
  #db: Promise<IDBDatabase> | undefined;

  constructor(options: IndexedDbStoreOptions = {}) {
    this.#name = options.name ?? 'synchat';
    const factory = options.indexedDB ?? (globalThis as { indexedDB?: IDBFactory }).indexedDB;
    if (!factory) throw new Error('IndexedDbStore: no indexedDB here; pass one');
    this.#factory = factory;
  }

  async loadSession(): Promise<SessionState | undefined> {
    return (await this.#get('session')) as SessionState | undefined;
  }

  saveSession(session: SessionState | undefined): Promise<void> {
    return this.#put('session', session);
  }

  async loadOutbox(): Promise<OutboxItem[]> {
    return ((await this.#get('outbox')) as OutboxItem[] | undefined) ?? [];
  }

  saveOutbox(items: readonly OutboxItem[]): Promise<void> {
    return this.#put('outbox', [...items]);
  }

  async close(): Promise<void> {
    const db = this.#db;
    this.#db = undefined;
    if (db) (await db).close();
  }

  #open(): Promise<IDBDatabase> {
    return (this.#db ??= new Promise((resolve, reject) => {
      const req = this.#factory.open(this.#name, 1);
      req.onupgradeneeded = () => {
        if (!req.result.objectStoreNames.contains(OBJECT_STORE)) req.result.createObjectStore(OBJECT_STORE);
      };
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error ?? new Error('IndexedDB open failed'));
    }));
  }

  async #get(key: string): Promise<unknown> {
    const db = await this.#open();
    return request(db.transaction(OBJECT_STORE, 'readonly').objectStore(OBJECT_STORE).get(key));
  }

  async #put(key: string, value: unknown): Promise<void> {
    const db = await this.#open();
    const tx = db.transaction(OBJECT_STORE, 'readwrite');
    const store = tx.objectStore(OBJECT_STORE);
    if (value === undefined) store.delete(key);
    else store.put(value, key);
    await new Promise<void>((resolve, reject) => {
      tx.oncomplete = () => resolve();
      tx.onerror = () => reject(tx.error ?? new Error('IndexedDB write failed'));
      tx.onabort = () => reject(tx.error ?? new Error('IndexedDB write aborted'));
    });
  }
}

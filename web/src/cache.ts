/**
 * The web client's IndexedDB cache: the SDK's session and outbox (this class is the SDK's `ClientStore`), the
 * app state (contacts, groups, conversations) and every message, in one database so that one transaction can
 * hold them together. Saving the session — which carries the SyncKey — first writes every change the app made
 * since the last save, in the same transaction: the stored key never runs ahead of the stored messages, so a
 * reload shows the chat at once and fetches only the delta (docs/web.md "Offline-first").
 */
import type { ClientStore, OutboxItem, SessionState } from '../../src/sdk/index.ts';
import type { AppState, StoredMessage } from './types.ts';

const DB_VERSION = 1;
const KV = 'kv';
const MESSAGES = 'messages';

function request<T>(req: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error ?? new Error('IndexedDB request failed'));
  });
}

function done(tx: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error ?? new Error('IndexedDB write failed'));
    tx.onabort = () => reject(tx.error ?? new Error('IndexedDB write aborted'));
  });
}

/** Sortable key of a message: its conversation, then its msgId padded to 16 digits (msgIds are < 2^53). */
export function messageKey(peer: string, msgId: string): string {
  return `${peer}\u0001${msgId.padStart(16, '0')}`;
}

/** The cache. Writes are buffered in memory and committed together with the next session save (or `flush`). */
export class WebCache implements ClientStore {
  readonly #name: string;
  #db: Promise<IDBDatabase> | undefined;
  #dirtyMessages = new Map<string, StoredMessage>();
  #dirtyState: AppState | undefined;
  #flushTimer: ReturnType<typeof setTimeout> | undefined;
  #chain: Promise<void> = Promise.resolve();

  /** @param name database name. @default 'synchat-web' */
  constructor(name = 'synchat-web') {
    this.#name = name;
  }

  // ---- ClientStore ---------------------------------------------------------------------------------------------

  async loadSession(): Promise<SessionState | undefined> {
    return (await this.#get('session')) as SessionState | undefined;
  }

  /** Writes the session together with every buffered message and state change, atomically. */
  saveSession(session: SessionState | undefined): Promise<void> {
    return this.#write((kv) => {
      if (session) kv.put(session, 'session');
      else kv.delete('session');
    });
  }

  async loadOutbox(): Promise<OutboxItem[]> {
    return ((await this.#get('outbox')) as OutboxItem[] | undefined) ?? [];
  }

  saveOutbox(items: readonly OutboxItem[]): Promise<void> {
    return this.#write((kv) => kv.put([...items], 'outbox'));
  }

  async close(): Promise<void> {
    await this.flush();
    const db = this.#db;
    this.#db = undefined;
    if (db) (await db).close();
  }

  // ---- app data ------------------------------------------------------------------------------------------------

  /** The stored app state, or undefined on a fresh browser. */
  async loadState(): Promise<AppState | undefined> {
    return (await this.#get('state')) as AppState | undefined;
  }

  /** Buffers the app state (the latest call wins); written with the next session save, or within a second. */
  putState(state: AppState): void {
    this.#dirtyState = state;
    this.#scheduleFlush();
  }

  /** Buffers a message (insert or update); written with the next session save, or within a second. */
  putMessage(m: StoredMessage): void {
    this.#dirtyMessages.set(messageKey(m.peer, m.msgId), m);
    this.#scheduleFlush();
  }

  /** A buffered or stored message. */
  async getMessage(peer: string, msgId: string): Promise<StoredMessage | undefined> {
    const key = messageKey(peer, msgId);
    const dirty = this.#dirtyMessages.get(key);
    if (dirty) return dirty;
    const db = await this.#open();
    return (await request(db.transaction(MESSAGES, 'readonly').objectStore(MESSAGES).get(key))) as StoredMessage | undefined;
  }

  /**
   * Up to `limit` messages of `peer` older than `beforeMsgId` (all when absent), oldest first. Buffered changes
   * are written first, so the page is complete.
   */
  async loadPage(peer: string, limit: number, beforeMsgId?: string): Promise<StoredMessage[]> {
    await this.flush();
    const db = await this.#open();
    const lower = messageKey(peer, '0');
    const upper = beforeMsgId ? messageKey(peer, beforeMsgId) : `${peer}\u0002`;
    const range = IDBKeyRange.bound(lower, upper, false, true);
    const out: StoredMessage[] = [];
    await new Promise<void>((resolve, reject) => {
      const req = db.transaction(MESSAGES, 'readonly').objectStore(MESSAGES).openCursor(range, 'prev');
      req.onerror = () => reject(req.error);
      req.onsuccess = () => {
        const cursor = req.result;
        if (!cursor || out.length >= limit) return resolve();
        out.push(cursor.value as StoredMessage);
        cursor.continue();
      };
    });
    return out.reverse();
  }

  /** Counts messages of `peer` after `afterMsgId` that `me` did not send and that are not recalled. */
  async countUnread(peer: string, afterMsgId: string, me: string): Promise<number> {
    await this.flush();
    const db = await this.#open();
    const range = IDBKeyRange.bound(messageKey(peer, afterMsgId || '0'), `${peer}\u0002`, true, true);
    let n = 0;
    await new Promise<void>((resolve, reject) => {
      const req = db.transaction(MESSAGES, 'readonly').objectStore(MESSAGES).openCursor(range);
      req.onerror = () => reject(req.error);
      req.onsuccess = () => {
        const cursor = req.result;
        if (!cursor) return resolve();
        const m = cursor.value as StoredMessage;
        if (m.from !== me && !m.recalled) n++;
        cursor.continue();
      };
    });
    return n;
  }

  /** Forgets everything (logout, another account, a new log epoch). */
  clear(): Promise<void> {
    this.#dirtyMessages.clear();
    this.#dirtyState = undefined;
    return this.#enqueue(async () => {
      const db = await this.#open();
      const tx = db.transaction([KV, MESSAGES], 'readwrite');
      tx.objectStore(KV).clear();
      tx.objectStore(MESSAGES).clear();
      await done(tx);
    });
  }

  /** Forgets the messages and app state but keeps session and outbox (a new log epoch). */
  clearData(): Promise<void> {
    this.#dirtyMessages.clear();
    this.#dirtyState = undefined;
    return this.#enqueue(async () => {
      const db = await this.#open();
      const tx = db.transaction([KV, MESSAGES], 'readwrite');
      tx.objectStore(KV).delete('state');
      tx.objectStore(MESSAGES).clear();
      await done(tx);
    });
  }

  /** Writes buffered changes now. */
  flush(): Promise<void> {
    if (this.#dirtyMessages.size === 0 && !this.#dirtyState) return this.#chain;
    return this.#write(() => {});
  }

  // ---- internals -----------------------------------------------------------------------------------------------

  #scheduleFlush(): void {
    if (this.#flushTimer) return;
    this.#flushTimer = setTimeout(() => {
      this.#flushTimer = undefined;
      void this.flush().catch(() => {});
    }, 1000);
  }

  #enqueue(op: () => Promise<void>): Promise<void> {
    const next = this.#chain.then(op);
    this.#chain = next.catch(() => {});
    return next;
  }

  /** One transaction: the buffered messages and state, then `extra` on the kv store. */
  #write(extra: (kv: IDBObjectStore) => void): Promise<void> {
    return this.#enqueue(async () => {
      const db = await this.#open();
      // Take the buffers only once the database is open, so everything buffered until now goes in.
      const messages = [...this.#dirtyMessages.values()];
      const state = this.#dirtyState;
      this.#dirtyMessages.clear();
      this.#dirtyState = undefined;
      const tx = db.transaction([KV, MESSAGES], 'readwrite');
      const kv = tx.objectStore(KV);
      const store = tx.objectStore(MESSAGES);
      for (const m of messages) store.put(m, messageKey(m.peer, m.msgId));
      if (state) kv.put(state, 'state');
      extra(kv);
      try {
        await done(tx);
      } catch (err) {
        // Put the changes back so a later write retries them (unless newer ones replaced them).
        for (const m of messages) {
          const k = messageKey(m.peer, m.msgId);
          if (!this.#dirtyMessages.has(k)) this.#dirtyMessages.set(k, m);
        }
        this.#dirtyState ??= state;
        throw err;
      }
    });
  }

  #open(): Promise<IDBDatabase> {
    return (this.#db ??= new Promise((resolve, reject) => {
      const req = indexedDB.open(this.#name, DB_VERSION);
      req.onupgradeneeded = () => {
        const db = req.result;
        if (!db.objectStoreNames.contains(KV)) db.createObjectStore(KV);
        if (!db.objectStoreNames.contains(MESSAGES)) db.createObjectStore(MESSAGES);
      };
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error ?? new Error('IndexedDB open failed'));
    }));
  }

  async #get(key: string): Promise<unknown> {
    await this.#chain;
    const db = await this.#open();
    return request(db.transaction(KV, 'readonly').objectStore(KV).get(key));
  }
}

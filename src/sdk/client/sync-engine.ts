/**
 * The sync engine: fetches the log after the client's key (SYNC on the long connection, else `/api/sync`), applies
 * pages and PUSH exactly once and in seq order through `mergeDelta`, moves and persists the key, resets on a new
 * epoch, and acknowledges by presenting the new key (docs/sdk.md "How it stays in sync").
 */
import { RET, SynchatError, mergeDelta, type Entry, type Ret } from '../../protocol/index.ts';
import { WireClosedError, type PushBody, type NotifyBody, type WireConnection } from '../wire.ts';
import { SESSION_ENDED, type ClientContext } from './context.ts';
import { dispatchEntry } from './events.ts';

/**
 * Keeps one client's log applied. At most one sync runs at a time; a request while one runs makes it go round
 * once more. Every applied entry is dispatched as events before the key moves past it.
 */
export class SyncEngine {
  readonly #ctx: ClientContext;
  #syncPromise: Promise<void> | undefined;
  #isSyncDirty = false;
  readonly #onSyncDone = (): void => {
    this.#syncPromise = undefined;
  };

  constructor(ctx: ClientContext) {
    this.#ctx = ctx;
  }

  /** True while a sync runs (a PUSH then is only a hint). */
  get isSyncing(): boolean {
    return this.#syncPromise !== undefined;
  }

  /** Asks for a sync: starts one, or makes the running one go round once more. */
  request(): void {
    this.#isSyncDirty = true;
    if (this.#syncPromise) return;
    this.#syncPromise = this.#run().finally(this.#onSyncDone);
  }

  /** Fetches and applies everything after the current key now; resolves when caught up. */
  async syncNow(): Promise<void> {
    this.request();
    while (this.#syncPromise) await this.#syncPromise;
  }

  /**
   * A PUSH on the current connection (the caller checked that). PROTOCOL.md PUSH: applied only when it directly
   * follows our key, then ACKed. While a SYNC is in flight the server's idea of our key moves with it, so a push
   * then is only a hint: sync again afterwards.
   */
  onPush(conn: WireConnection, body: PushBody): void {
    const ctx = this.#ctx;
    if (!ctx.session) return;
    const key = ctx.session.syncKey;
    if (this.#syncPromise || (body.prevSyncKey !== undefined && body.prevSyncKey !== key)) {
      this.request();
      return;
    }
    const entries = Array.isArray(body.entries) ? body.entries : [];
    this.#apply(key, entries, Number(body.syncKey) || 0);
    if (ctx.session && ctx.session.syncKey > key) conn.ack(ctx.session.syncKey);
  }

  /** A NOTIFY on the current connection: sync unless we already hold its key. */
  onNotify(body: NotifyBody): void {
    const session = this.#ctx.session;
    if (!session) return;
    if (!(Number(body.syncKey) <= session.syncKey)) this.request();
  }

  /** PROTOCOL.md "Epoch": the log was rebuilt; forget the key (start from 0), persist, emit `reset`. */
  resetLog(epoch: string): void {
    const session = this.#ctx.session;
    if (!session) return;
    session.syncKey = 0;
    session.epoch = epoch;
    this.#ctx.persistSession();
    this.#ctx.events.emit('reset', { epoch });
  }

  async #run(): Promise<void> {
    const ctx = this.#ctx;
    const transport = ctx.transport;
    while (this.#isSyncDirty && ctx.session) {
      this.#isSyncDirty = false;
      const wire = transport.authedWire;
      if (!wire && transport.state.transport !== 'http' && transport.isRunning) return;
      try {
        await this.#syncPages(wire);
      } catch (err) {
        if (err instanceof SynchatError && SESSION_ENDED.has(err.ret)) {
          await ctx.endSession(err.ret, err.errMsg);
          return;
        }
        // A transport failure: the connection logic reconnects and syncs again.
        if (wire && wire === transport.wire) transport.scheduleReconnect(`sync failed: ${(err as Error).message}`);
        else if (transport.isRunning && !(err instanceof WireClosedError)) transport.scheduleReconnect(`sync failed: ${(err as Error).message}`);
        return;
      }
    }
  }

  async #syncPages(wire: WireConnection | undefined): Promise<void> {
    const ctx = this.#ctx;
    const limit = ctx.options.syncLimit;
    for (let guard = 0; ctx.session; guard++) {
      const session = ctx.session;
      const key = session.syncKey;
      const body = wire ? await wire.sync(key, limit) : await ctx.http.call('/api/sync', { syncKey: key, limit });
      if (session !== ctx.session || key !== session.syncKey) {
        // The key moved under us (a reset): fetch again from the new key.
        if (guard > 1000) throw new Error('sync: key keeps moving');
        continue;
      }
      if (body?.ret !== 0) {
        // ret 1 with an epoch: our key is ahead of the log (it was restored or rebuilt).
        if (body?.ret === RET.BAD_REQUEST && typeof body.epoch === 'string' && key > 0) {
          this.resetLog(body.epoch);
          continue;
        }
        throw new SynchatError((body?.ret ?? RET.SERVER_ERROR) as Ret, body?.errMsg ?? 'bad sync answer');
      }
      if (typeof body.epoch === 'string' && body.epoch !== session.epoch) {
        // PROTOCOL.md "Epoch": discard the cache and sync again from key 0; this page belongs to the new log.
        this.resetLog(body.epoch);
        continue;
      }
      this.#apply(key, Array.isArray(body.entries) ? body.entries : [], Number(body.syncKey) || 0);
      if (!body.continueFlag) break;
    }
    // Acknowledge by presenting the new key (HTTP: the next synccheck or sync presents it).
    if (wire && ctx.session && wire === ctx.transport.wire) wire.ack(ctx.session.syncKey);
  }

  /** Applies a page that follows `fromKey`: each entry once, in seq order, then the key moves and is persisted. */
  #apply(fromKey: number, entries: readonly Entry[], syncKey: number): void {
    const ctx = this.#ctx;
    const session = ctx.session;
    if (!session || session.syncKey !== fromKey) return;
    const { apply, newKey } = mergeDelta(fromKey, entries);
    for (const e of apply) {
      session.syncKey = e.seq;
      dispatchEntry(ctx, e);
      if (ctx.session !== session) return;
    }
    const next = Math.max(newKey, syncKey);
    if (next > fromKey) {
      session.syncKey = next;
      ctx.persistSession();
      ctx.events.emit('synced', { syncKey: next });
    }
  }
}

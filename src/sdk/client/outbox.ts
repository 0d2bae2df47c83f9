/**
 * The outbox: messages queued for sending, persisted in the store, sent one at a time in queue order while online,
 * retried under the same clientMsgId, turned `failed` on a refusal or an exhausted budget (docs/sdk.md "The
 * outbox").
 */
import { RET, SynchatError } from '../../protocol/index.ts';
import { backoffDelay } from '../backoff.ts';
import type { OutboxItem, OutgoingMessage, SendAnswer } from '../types.ts';
import { SESSION_ENDED, type ClientContext } from './context.ts';

/** Thrown by `sendMessage` / `sendText` / `resend` when the item ends `failed`; carries the item. */
export class SendFailedError extends Error {
  readonly item: OutboxItem;
  readonly ret: number;
  constructor(item: OutboxItem) {
    super(`send ${item.clientMsgId} failed: ${item.lastError?.errMsg ?? 'unknown error'}`);
    this.name = 'SendFailedError';
    this.item = item;
    this.ret = item.lastError?.ret ?? -1;
  }
}

/** A fresh clientMsgId: 16 random bytes as 32 hex digits. */
export function newClientMsgId(): string {
  const bytes = new Uint8Array(16);
  globalThis.crypto.getRandomValues(bytes);
  let s = '';
  for (const b of bytes) s += b.toString(16).padStart(2, '0');
  return s;
}

interface Waiter {
  resolve(item: OutboxItem): void;
  reject(err: Error): void;
}

/**
 * Codes after which a send is worth repeating (the same clientMsgId makes the repeat safe). GOING_AWAY: the server
 * that answered drains (PROTOCOL.md 1102); the repeat goes to another gateway.
 */
const RETRYABLE = new Set<number>([-1, RET.SERVER_ERROR, RET.RATE_LIMITED, RET.GOING_AWAY]);

function errorOf(err: unknown): { ret: number; errMsg: string } {
  if (err instanceof SynchatError) return { ret: err.ret, errMsg: err.errMsg };
  return { ret: -1, errMsg: err instanceof Error ? err.message : String(err) };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * The outbox of one client. Items leave it once sent (SEND_ACK, `/api/sendmsg`, or their own entry in the log);
 * every state change is an `outbox` event and a store write, in that order. Sends go over the authenticated long
 * connection when there is one, else over HTTP.
 */
export class Outbox {
  readonly #ctx: ClientContext;
  #items: OutboxItem[] = [];
  #isFlushing = false;
  readonly #waiters = new Map<string, Waiter[]>();
  readonly #writeItems = (): Promise<void> => this.#ctx.store.saveOutbox(this.#items.map((i) => ({ ...i })));

  constructor(ctx: ClientContext) {
    this.#ctx = ctx;
  }

  /** Copies of the items, in queue order: items not yet sent and failed ones. */
  snapshot(): OutboxItem[] {
    return this.#items.map((i) => ({ ...i }));
  }

  /**
   * Adds items loaded from the store (ones not already queued in this process). An item that was on the wire when
   * the process stopped goes again under the same clientMsgId.
   */
  restore(items: readonly OutboxItem[]): void {
    const known = new Set(this.#items.map((i) => i.clientMsgId));
    for (const item of items) if (!known.has(item.clientMsgId)) this.#items.push(item.state === 'sending' ? { ...item, state: 'queued' } : item);
  }

  /** Queues a message (or finds the item of its clientMsgId); resolves with a copy once it is stored. */
  async queue(msg: OutgoingMessage): Promise<OutboxItem> {
    const clientMsgId = msg.clientMsgId ?? newClientMsgId();
    const existing = this.#items.find((i) => i.clientMsgId === clientMsgId);
    if (existing) return { ...existing };
    const item: OutboxItem = {
      clientMsgId,
      to: msg.to,
      type: msg.type,
      content: msg.content,
      ...(msg.mediaId ? { mediaId: msg.mediaId } : {}),
      state: 'queued',
      attempts: 0,
      queuedAt: Date.now(),
    };
    this.#items.push(item);
    this.#ctx.events.emit('outbox', { ...item });
    await this.#save();
    void this.flush();
    return { ...item };
  }

  /** Resolves with the item once sent; rejects with {@link SendFailedError} when it fails or is discarded. */
  waitFor(clientMsgId: string): Promise<OutboxItem> {
    return new Promise((resolve, reject) => {
      const list = this.#waiters.get(clientMsgId);
      if (list) list.push({ resolve, reject });
      else this.#waiters.set(clientMsgId, [{ resolve, reject }]);
    });
  }

  /** Puts a `failed` item back in the queue with a fresh attempt budget and the same clientMsgId; resolves when sent. */
  async resend(clientMsgId: string): Promise<OutboxItem> {
    const item = this.#items.find((i) => i.clientMsgId === clientMsgId);
    if (!item) throw new Error(`resend: no outbox item ${clientMsgId}`);
    if (item.state === 'failed') {
      item.state = 'queued';
      item.attempts = 0;
      this.#ctx.events.emit('outbox', { ...item });
      await this.#save();
    }
    const done = this.waitFor(clientMsgId);
    void this.flush();
    return done;
  }

  /** Drops an item that is not on the wire (queued or failed); true when one was dropped. */
  async discard(clientMsgId: string): Promise<boolean> {
    const i = this.#items.findIndex((x) => x.clientMsgId === clientMsgId && x.state !== 'sending');
    if (i < 0) return false;
    const [item] = this.#items.splice(i, 1);
    await this.#save();
    for (const w of this.#takeWaiters(clientMsgId)) w.reject(new SendFailedError({ ...item!, lastError: { ret: -1, errMsg: 'discarded' } }));
    return true;
  }

  /** Marks an item sent (from its SEND_ACK, or from its own entry arriving in the log first). */
  matchSent(clientMsgId: string, answer: SendAnswer): void {
    const i = this.#items.findIndex((x) => x.clientMsgId === clientMsgId);
    if (i < 0) return;
    const item = this.#items[i]!;
    if (item.state === 'sent') return;
    Object.assign(item, { state: 'sent', msgId: answer.msgId, seq: answer.seq, createTime: answer.createTime, duplicate: answer.duplicate });
    delete item.lastError;
    this.#items.splice(i, 1);
    void this.#save();
    const copy = { ...item };
    this.#ctx.events.emit('outbox', copy);
    for (const w of this.#takeWaiters(clientMsgId)) w.resolve(copy);
  }

  /** Sends queued items one at a time, in order, while online (one flush at a time; later calls return at once). */
  async flush(): Promise<void> {
    if (this.#isFlushing) return;
    this.#isFlushing = true;
    const ctx = this.#ctx;
    try {
      for (;;) {
        if (!ctx.transport.isRunning || ctx.transport.state.state !== 'online' || !ctx.session) return;
        const item = this.#items.find((x) => x.state === 'queued');
        if (!item) return;
        item.state = 'sending';
        item.attempts++;
        ctx.events.emit('outbox', { ...item });
        const body = { clientMsgId: item.clientMsgId, to: item.to, type: item.type, content: item.content, ...(item.mediaId ? { mediaId: item.mediaId } : {}) };
        let answer: any;
        let error: { ret: number; errMsg: string } | undefined;
        try {
          const wire = ctx.transport.authedWire;
          answer = wire ? await wire.send(body) : await ctx.http.call('/api/sendmsg', body);
          if (answer?.ret !== 0) error = { ret: answer?.ret ?? RET.SERVER_ERROR, errMsg: answer?.errMsg ?? 'bad answer' };
        } catch (err) {
          error = errorOf(err);
        }
        if (item.state !== 'sending') continue; // its log entry arrived first and marked it sent
        if (!error) {
          this.matchSent(item.clientMsgId, { msgId: String(answer.msgId), seq: answer.seq, createTime: answer.createTime, duplicate: !!answer.duplicate });
          continue;
        }
        item.lastError = error;
        if (SESSION_ENDED.has(error.ret)) {
          item.state = 'queued';
          item.attempts--;
          await this.#save();
          await ctx.endSession(error.ret, error.errMsg);
          return;
        }
        if (!RETRYABLE.has(error.ret) || item.attempts >= ctx.options.maxSendAttempts) {
          this.#markFailed(item, error);
          continue;
        }
        item.state = 'queued';
        ctx.events.emit('outbox', { ...item });
        void this.#save();
        const retryAfterMs = error.ret === RET.RATE_LIMITED && Number(answer?.retryAfterSec) > 0 ? Number(answer.retryAfterSec) * 1000 : 0;
        await sleep(Math.max(retryAfterMs, backoffDelay(item.attempts - 1, ctx.backoff, ctx.random)));
      }
    } finally {
      this.#isFlushing = false;
    }
  }

  #takeWaiters(clientMsgId: string): Waiter[] {
    const list = this.#waiters.get(clientMsgId) ?? [];
    this.#waiters.delete(clientMsgId);
    return list;
  }

  #markFailed(item: OutboxItem, error: { ret: number; errMsg: string }): void {
    item.state = 'failed';
    item.lastError = error;
    void this.#save();
    const copy = { ...item };
    this.#ctx.events.emit('outbox', copy);
    for (const w of this.#takeWaiters(item.clientMsgId)) w.reject(new SendFailedError(copy));
  }

  #save(): Promise<void> {
    return this.#ctx.enqueueStore(this.#writeItems);
  }
}

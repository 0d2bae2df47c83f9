/**
 * SynchatClient: one logged-in device. Finds a gateway, holds a long connection (TCP in Node, WebSocket in
 * browsers) or falls back to HTTP long-poll, applies the user's sync log exactly once and in order, acknowledges
 * by presenting the new key, keeps an outbox that survives restarts, and exposes every API call. See docs/sdk.md.
 *
 * This class is the public surface: session, API calls and events. The work is done by its parts in ./client/:
 * `outbox.ts` (queue, retries, failed/resend, persistence), `sync-engine.ts` (pages and PUSH exactly once, epoch
 * reset, ACK), `transport-loop.ts` (gateways, long connection ↔ long-poll, backoff), `events.ts` (entry → typed
 * events), sharing one `ClientContext` (`context.ts`).
 */
import { LIMITS, MSG_TYPE, RET, SynchatError, type Ret } from '../protocol/index.ts';
import { backoffDelay } from './backoff.ts';
import type { HttpClient } from './http.ts';
import { MediaClient, type MediaClientOptions } from './media.ts';
import type {
  ClientEvents,
  ConnectionState,
  ContactList,
  DeviceSession,
  Gateway,
  LoginAnswer,
  OutboxItem,
  OutgoingMessage,
  QrAskingDevice,
  QrLoginTicket,
  SessionState,
  TransportName,
} from './types.ts';
import type { ErrorBody, NotifyBody, PushBody, WireConnection, WireHandler } from './wire.ts';
import { ClientContext, SESSION_ENDED } from './client/context.ts';
import type { ClientOptions } from './client/options.ts';
import { SendFailedError, newClientMsgId } from './client/outbox.ts';

export type { ClientOptions };
export { SendFailedError };

/**
 * A Synchat client for one device. Typical use:
 * ```ts
 * const client = new SynchatClient({ baseUrl, connectors: nodeConnectors() });
 * await client.login('alice', 'secret-password', { deviceId: 'laptop' });
 * client.on('message', (m) => console.log(m.from, m.content));
 * await client.start();
 * await client.sendText('bob', 'hi');
 * ```
 * Events are typed ({@link ClientEvents}) and fire synchronously, in log order.
 */
export class SynchatClient implements WireHandler {
  /** The HTTP side (base URL, current sid, raw requests) — used by the media module for chunk uploads. */
  readonly http: HttpClient;
  readonly #ctx: ClientContext;
  #isLoaded = false;

  constructor(options: ClientOptions) {
    this.#ctx = new ClientContext(options);
    this.http = this.#ctx.http;
  }

  // ---- events and state -------------------------------------------------------------------------------------

  /** Adds a listener; returns a function that removes it. */
  on<K extends keyof ClientEvents>(event: K, listener: (payload: ClientEvents[K]) => void): () => void {
    return this.#ctx.events.on(event, listener);
  }

  /** Adds a listener that runs once. */
  once<K extends keyof ClientEvents>(event: K, listener: (payload: ClientEvents[K]) => void): () => void {
    return this.#ctx.events.once(event, listener);
  }

  /** Removes a listener. */
  off<K extends keyof ClientEvents>(event: K, listener: (payload: ClientEvents[K]) => void): void {
    this.#ctx.events.off(event, listener);
  }

  /** The connection state now. */
  get connection(): ConnectionState {
    return { ...this.#ctx.transport.state };
  }

  /**
   * The period the long connection heartbeats at now, in ms (adaptive with `MOBILE_HEARTBEAT`; docs/sdk.md
   * "Heartbeat"); undefined without an authenticated long connection.
   */
  get heartbeatMs(): number | undefined {
    return this.#ctx.transport.authedWire?.heartbeatIntervalMs;
  }

  /** The transport in use while online. */
  get transport(): TransportName | undefined {
    const state = this.#ctx.transport.state;
    return state.state === 'online' ? state.transport : undefined;
  }

  /** The session (copy), once logged in or restored. */
  get session(): SessionState | undefined {
    return this.#ctx.session ? { ...this.#ctx.session } : undefined;
  }

  /** The bearer token, once logged in or restored. */
  get sid(): string | undefined {
    return this.#ctx.session?.sid;
  }

  /** This user's username, once logged in or restored. */
  get username(): string | undefined {
    return this.#ctx.session?.username;
  }

  /** The key of everything applied so far. */
  get syncKey(): number {
    return this.#ctx.session?.syncKey ?? 0;
  }

  /**
   * The base URL of the HTTP API that requests go to now: `baseUrl` from the options until it fails, then another
   * node's (docs/sdk.md "Several nodes").
   */
  get baseUrl(): string {
    return this.http.baseUrl;
  }

  /** The outbox now (copies), in queue order: items not yet sent and failed ones. */
  get outbox(): OutboxItem[] {
    return this.#ctx.outbox.snapshot();
  }

  /** True between `start()` and `stop()` (or the end of the session). */
  get isRunning(): boolean {
    return this.#ctx.transport.isRunning;
  }

  /** Resolves when the client is online (at once if it is). */
  whenOnline(): Promise<ConnectionState> {
    if (this.#ctx.transport.state.state === 'online') return Promise.resolve(this.connection);
    return new Promise((resolve) => {
      const off = this.on('connection', (s) => {
        if (s.state === 'online') {
          off();
          resolve(s);
        }
      });
    });
  }

  // ---- session ----------------------------------------------------------------------------------------------

  /** Loads session and outbox from the store (once); returns the session, if one is stored. */
  async restore(): Promise<SessionState | undefined> {
    if (!this.#isLoaded) {
      this.#isLoaded = true;
      const ctx = this.#ctx;
      const [session, outbox] = await Promise.all([ctx.store.loadSession(), ctx.store.loadOutbox()]);
      ctx.session ??= session;
      ctx.outbox.restore(outbox);
      this.http.sid = ctx.session?.sid;
    }
    return this.session;
  }

  /** `POST /api/register` → `{uin}`. */
  async register(username: string, password: string, displayName: string): Promise<{ uin: number }> {
    return this.#checked(await this.http.call('/api/register', { username, password, displayName }));
  }

  /**
   * `POST /api/login`; stores the session. A device whose store already holds a position for this user and epoch
   * keeps it; otherwise it starts at key 0 (its whole log) or, with `isHistoryFromStart: false`, at the head.
   */
  async login(username: string, password: string, device: { deviceId?: string; deviceName?: string } = {}): Promise<LoginAnswer> {
    await this.restore();
    const ctx = this.#ctx;
    const deviceId = device.deviceId ?? ctx.session?.deviceId ?? `sdk-${newClientMsgId().slice(0, 12)}`;
    const body = { username, password, deviceId, ...(device.deviceName ? { deviceName: device.deviceName } : {}) };
    const answer = this.#checked(await this.http.call('/api/login', body)) as LoginAnswer;
    await this.#adoptLogin(answer, deviceId);
    return answer;
  }

  /** Stores the session of a login (password or QR): a store holding this user's log at this epoch keeps its position. */
  async #adoptLogin(answer: LoginAnswer, deviceId: string): Promise<void> {
    const ctx = this.#ctx;
    const old = ctx.session;
    const isSameLog = old && old.uin === answer.uin && old.epoch === answer.epoch && old.syncKey <= answer.syncKey;
    ctx.session = {
      sid: answer.sid,
      uin: answer.uin,
      username: answer.username,
      displayName: answer.displayName,
      deviceId,
      syncKey: isSameLog ? old.syncKey : ctx.options.isHistoryFromStart === false ? answer.syncKey : 0,
      epoch: answer.epoch,
    };
    this.http.sid = answer.sid;
    await ctx.enqueueStore(() => ctx.store.saveSession(ctx.session));
  }

  /**
   * `POST /api/qrlogin/new`: a uuid for this (not logged-in) device to show as a QR code (docs/sdk.md "QR login");
   * then {@link waitQrLogin}. Ask again once it expires.
   */
  async qrLoginNew(device: { deviceId?: string; deviceName?: string } = {}): Promise<QrLoginTicket> {
    await this.restore();
    const deviceId = device.deviceId ?? this.#ctx.session?.deviceId ?? `sdk-${newClientMsgId().slice(0, 12)}`;
    const body = { deviceId, ...(device.deviceName ? { deviceName: device.deviceName } : {}) };
    const answer = this.#checked(await this.http.call('/api/qrlogin/new', body));
    return { uuid: answer.uuid, expiresAt: answer.expiresAt, deviceId };
  }

  /**
   * Long-polls a {@link qrLoginNew} ticket until a logged-in device confirms it, then stores the session as
   * {@link login} does and resolves with it. `onScanned` is told the scanning user's display name (the screen may
   * say "confirm on your phone"). Rejects with SynchatError(3) when the code expires, with the signal's reason when
   * aborted, and with the server's error otherwise; network failures are retried until the code expires.
   */
  async waitQrLogin(ticket: QrLoginTicket, options: { signal?: AbortSignal; onScanned?: (displayName: string) => void } = {}): Promise<LoginAnswer> {
    let state: 'waiting' | 'scanned' = 'waiting';
    for (let failures = 0; ; ) {
      options.signal?.throwIfAborted();
      const timeout = LIMITS.defaultQrPollTimeoutMs;
      let body: any;
      try {
        const query = { uuid: ticket.uuid, timeout, state };
        // The server answers by `timeout`; past it plus a grace period the network is dead.
        body = (await this.http.request('/api/qrlogin/poll', { method: 'GET', query, isAuthed: false, signal: options.signal, timeoutMs: timeout + 10_000 })).body;
      } catch (err) {
        if (options.signal?.aborted || Date.now() > ticket.expiresAt) throw err;
        await abortableDelay(backoffDelay(failures++), options.signal);
        continue;
      }
      failures = 0;
      if (body?.ret === RET.RATE_LIMITED) {
        await abortableDelay(Math.max(1, body.retryAfterSec ?? 1) * 1000, options.signal);
        continue;
      }
      this.#checked(body);
      if (body.state === 'expired') throw new SynchatError(RET.NOT_FOUND, 'the QR code expired: ask for a new one');
      if (body.state === 'scanned' && state === 'waiting') {
        state = 'scanned';
        options.onScanned?.(body.displayName);
      }
      if (body.state === 'confirmed') {
        const answer: LoginAnswer = { sid: body.sid, uin: body.uin, username: body.username, displayName: body.displayName, syncKey: body.syncKey, epoch: body.epoch };
        await this.restore();
        await this.#adoptLogin(answer, ticket.deviceId);
        return answer;
      }
    }
  }

  /** `POST /api/qrlogin/scan` (logged in): which device asks to log in as this user. Does not confirm. */
  async scanQrLogin(uuid: string): Promise<QrAskingDevice> {
    const r = await this.call('/api/qrlogin/scan', { uuid });
    return { deviceName: r.deviceName, createTime: r.createTime, expiresAt: r.expiresAt };
  }

  /** `POST /api/qrlogin/confirm` (logged in, after {@link scanQrLogin}): the asking device becomes a session of this user. */
  async confirmQrLogin(uuid: string): Promise<QrAskingDevice> {
    const r = await this.call('/api/qrlogin/confirm', { uuid });
    return { deviceName: r.deviceName, createTime: r.createTime, expiresAt: r.expiresAt };
  }

  /** Uses an existing session (e.g. from QR login). Stores it. */
  async useSession(session: SessionState): Promise<void> {
    await this.restore();
    const ctx = this.#ctx;
    ctx.session = { ...session };
    this.http.sid = session.sid;
    await ctx.enqueueStore(() => ctx.store.saveSession(ctx.session));
  }

  /**
   * `POST /api/logout`; stops the client and forgets the session (the outbox stays in the store). With
   * `everywhere`, every other session of this user ends too (ret 1101 on those devices).
   */
  async logout(options: { everywhere?: boolean } = {}): Promise<void> {
    // Close the long connection first: the server ends it with ERROR 1100, which is no news to us.
    this.#ctx.transport.halt('logging out');
    try {
      if (this.#ctx.session) this.#checked(await this.http.call('/api/logout', options.everywhere ? { everywhere: true } : {}));
    } finally {
      await this.#ctx.forgetSession();
    }
  }

  // ---- running ----------------------------------------------------------------------------------------------

  /**
   * Connects and keeps connected until `stop()`: long connection if one can be made, else HTTP long-poll (trying
   * the long connection again later), reconnecting with jittered exponential backoff. Resolves after the first
   * attempt (online, or offline with a retry scheduled). Throws when there is no session.
   */
  async start(): Promise<void> {
    await this.restore();
    if (!this.#ctx.session) throw new Error('SynchatClient.start: not logged in (call login, useSession or restore first)');
    if (this.#ctx.transport.isRunning) return;
    await this.#ctx.transport.start();
  }

  /** Closes the connection and stops every timer; pending store writes finish before it resolves. */
  async stop(): Promise<void> {
    this.#ctx.transport.halt('stopped');
    await this.#ctx.storeIdle;
  }

  /** `stop()`, then closes the store. */
  async close(): Promise<void> {
    await this.stop();
    await this.#ctx.store.close?.();
  }

  /** Fetches and applies everything after the current key now; resolves when caught up. */
  sync(): Promise<void> {
    return this.#ctx.sync.syncNow();
  }

  // ---- API calls --------------------------------------------------------------------------------------------

  /**
   * Calls any API path: over the long connection (CALL) when one is up, else over HTTP. Resolves with the answer
   * body; throws {@link SynchatError} when `ret ≠ 0` (and ends the client on 1100/1101), or the transport's error.
   */
  async call<T = any>(path: string, body: unknown = {}): Promise<T> {
    const wire = this.#ctx.transport.wire;
    const answer = wire?.isAuthed ? await wire.call(path, body) : await this.http.call(path, body);
    return this.#checked(answer) as T;
  }

  /** `GET /api/gateways`; the answer also refreshes the client's directory (unless `gateways` was given). */
  async gateways(): Promise<Gateway[]> {
    const { gateways } = this.#checked(await this.http.call('/api/gateways', {})) as { gateways: Gateway[] };
    this.#ctx.gateways.replace(gateways);
    return gateways;
  }

  /** `POST /api/sessions`: this user's active device sessions. */
  async listSessions(): Promise<DeviceSession[]> {
    return (await this.call<{ sessions: DeviceSession[] }>('/api/sessions', {})).sessions;
  }

  /**
   * `POST /api/password`: replaces this user's password. Every other session of the user ends (1101 there); this
   * one stays. Throws {@link SynchatError} ret 4 for a wrong `oldPassword`, ret 1 for a refused `newPassword`
   * (too short, too common, the username), ret 1205 while failed tries make this address wait.
   */
  async changePassword(oldPassword: string, newPassword: string): Promise<void> {
    await this.call('/api/password', { oldPassword, newPassword });
  }

  /** `POST /api/sessions/revoke`: ends another device's session (1101 there). */
  async revokeSession(sessionId: string): Promise<void> {
    await this.call('/api/sessions/revoke', { sessionId });
  }

  /** `POST /api/contacts/request`. */
  async requestContact(username: string, note?: string): Promise<void> {
    await this.call('/api/contacts/request', note === undefined ? { username } : { username, note });
  }

  /** `POST /api/contacts/accept`. */
  async acceptContact(username: string): Promise<void> {
    await this.call('/api/contacts/accept', { username });
  }

  /** `POST /api/contacts/decline`. */
  async declineContact(username: string): Promise<void> {
    await this.call('/api/contacts/decline', { username });
  }

  /** `POST /api/contacts/remove`. */
  async removeContact(username: string): Promise<void> {
    await this.call('/api/contacts/remove', { username });
  }

  /**
   * `POST /api/contacts/block`: nothing `username` does reaches this account any more (every device; they are not
   * told). This user's devices get a `contact` event with `blocked: true`.
   */
  async blockUser(username: string): Promise<void> {
    await this.call('/api/contacts/block', { username });
  }

  /** `POST /api/contacts/unblock`: ends a block; this user's devices get a `contact` event with `blocked: false`. */
  async unblockUser(username: string): Promise<void> {
    await this.call('/api/contacts/unblock', { username });
  }

  /** `POST /api/contacts/list`: contacts, pending requests both ways, groups, and whom this user blocked. */
  async listContacts(): Promise<ContactList> {
    const { ret: _ret, ...list } = await this.call<ContactList & { ret: number }>('/api/contacts/list', {});
    return list;
  }

  /** `POST /api/users/lookup`. */
  async lookupUser(username: string): Promise<{ username: string; displayName: string }> {
    const { username: u, displayName } = await this.call('/api/users/lookup', { username });
    return { username: u, displayName };
  }

  /** `POST /api/profile`: changes this user's display name. */
  async setProfile(displayName: string): Promise<void> {
    await this.call('/api/profile', { displayName });
  }

  /** `POST /api/groups/create` → the group id (`@@<digits>`). */
  async createGroup(name: string, members: string[]): Promise<string> {
    return (await this.call<{ groupId: string }>('/api/groups/create', { name, members })).groupId;
  }

  /** `POST /api/groups/members`. */
  async changeGroupMembers(groupId: string, change: { add?: string[]; remove?: string[] }): Promise<void> {
    await this.call('/api/groups/members', { groupId, ...change });
  }

  /** `POST /api/groups/rename`. */
  async renameGroup(groupId: string, name: string): Promise<void> {
    await this.call('/api/groups/rename', { groupId, name });
  }

  /** `POST /api/read`: marks a conversation read up to `msgId`. */
  async markRead(peer: string, msgId: string): Promise<void> {
    await this.call('/api/read', { peer, msgId });
  }

  /** `POST /api/revoke`: recalls one of this user's messages (within 120 s). */
  async revoke(msgId: string): Promise<void> {
    await this.call('/api/revoke', { msgId });
  }

  // ---- media ------------------------------------------------------------------------------------------------

  /**
   * A {@link MediaClient} bound to this client: `sendImage`, `sendVoice`, `sendFile` upload in parallel chunks
   * (with progress and resume) and then send through this client's outbox, so the message keeps one
   * clientMsgId across retries like any other.
   */
  media(options: Pick<MediaClientOptions, 'concurrency' | 'chunkSize' | 'attempts'> = {}): MediaClient {
    return new MediaClient({
      ...options,
      baseUrl: () => this.baseUrl,
      sid: () => this.sid ?? '',
      fetch: this.#ctx.options.fetch,
      sendmsg: async (to, type, content, mediaId) => {
        const item = await this.sendMessage({ to, type, content, mediaId });
        return { msgId: item.msgId!, seq: item.seq!, createTime: item.createTime!, duplicate: item.duplicate };
      },
    });
  }

  // ---- outbox -----------------------------------------------------------------------------------------------

  /** Queues a text message and resolves when it is sent; see {@link sendMessage}. */
  sendText(to: string, content: string, clientMsgId?: string): Promise<OutboxItem> {
    return this.sendMessage({ to, type: MSG_TYPE.TEXT, content, clientMsgId });
  }

  /**
   * Queues a message (persisted in the store, so it goes out after a restart too) and resolves with the item once
   * the server committed it; rejects with {@link SendFailedError} when it turns `failed` (a refusal such as ret 4,
   * or `maxSendAttempts` transport failures). The `outbox` event reports every state, `queued` first, for local
   * echo. Queuing the same clientMsgId twice waits for the one item.
   */
  async sendMessage(msg: OutgoingMessage): Promise<OutboxItem> {
    const item = await this.queueMessage(msg);
    if (item.state === 'sent') return item;
    if (item.state === 'failed') throw new SendFailedError(item);
    return this.#ctx.outbox.waitFor(item.clientMsgId);
  }

  /** Queues a message and resolves once it is stored in the outbox (not waiting for the server). */
  async queueMessage(msg: OutgoingMessage): Promise<OutboxItem> {
    await this.restore();
    return this.#ctx.outbox.queue(msg);
  }

  /** Puts a `failed` item back in the queue with a fresh attempt budget and the same clientMsgId; resolves when sent. */
  resend(clientMsgId: string): Promise<OutboxItem> {
    return this.#ctx.outbox.resend(clientMsgId);
  }

  /** Drops an item that is not on the wire (queued or failed); true when one was dropped. */
  discard(clientMsgId: string): Promise<boolean> {
    return this.#ctx.outbox.discard(clientMsgId);
  }

  // ---- WireHandler: the client's connections report to its transport loop; these forward to it (kept so the
  // ---- class still serves as a handler, as it did before the split) ----------------------------------------

  /** @internal */
  onPush(conn: WireConnection, body: PushBody): void {
    this.#ctx.transport.onPush(conn, body);
  }

  /** @internal */
  onNotify(conn: WireConnection, body: NotifyBody): void {
    this.#ctx.transport.onNotify(conn, body);
  }

  /** @internal */
  onServerError(conn: WireConnection, body: ErrorBody): void {
    this.#ctx.transport.onServerError(conn, body);
  }

  /** @internal */
  onClose(conn: WireConnection, reason: string): void {
    this.#ctx.transport.onClose(conn, reason);
  }

  // ---- answers ----------------------------------------------------------------------------------------------

  /** The body when `ret` is 0; else throws its {@link SynchatError} (and ends the session on 1100/1101). */
  #checked(body: any): any {
    if (body && body.ret === 0) return body;
    const ret = (typeof body?.ret === 'number' ? body.ret : RET.SERVER_ERROR) as Ret;
    const err = new SynchatError(ret, body?.errMsg ?? 'bad answer', body?.retryAfterSec ? { retryAfterSec: body.retryAfterSec } : undefined);
    if (SESSION_ENDED.has(ret) && this.#ctx.session) void this.#ctx.endSession(ret, err.errMsg);
    throw err;
  }
}

/** Waits `ms`, or rejects with the signal's reason once it aborts. */
function abortableDelay(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    signal?.throwIfAborted();
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    function onAbort(): void {
      clearTimeout(timer);
      reject(signal!.reason);
    }
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

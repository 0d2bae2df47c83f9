/**
 * SynchatClient: one logged-in device. Finds a gateway, holds a long connection (TCP in Node, WebSocket in
 * browsers) or falls back to HTTP long-poll, applies the user's sync log exactly once and in order, acknowledges
 * by presenting the new key, keeps an outbox that survives restarts, and exposes every API call. See docs/sdk.md.
 */
import { MSG_TYPE, RET, SynchatError, mergeDelta, type Entry, type Ret } from '../protocol/index.ts';
import { DEFAULT_BACKOFF, backoffDelay, type BackoffOptions } from './backoff.ts';
import { Emitter } from './emitter.ts';
import { HttpClient, type FetchLike } from './http.ts';
import { MediaClient, type MediaClientOptions } from './media.ts';
import { MemoryStore, type ClientStore } from './store.ts';
import type {
  ClientEvents,
  ConnectionState,
  ContactList,
  DeviceSession,
  Gateway,
  LoginAnswer,
  OutboxItem,
  OutgoingMessage,
  SendAnswer,
  SessionState,
  TransportName,
} from './types.ts';
import { WireClosedError, WireConnection, type Connector, type ErrorBody, type NotifyBody, type PushBody, type WireHandler, type WireOptions } from './wire.ts';
import { hasGlobalWebSocket, webSocketConnector } from './ws-link.ts';

/** Options of {@link SynchatClient}. */
export interface ClientOptions {
  /** Base URL of the HTTP API, e.g. `http://127.0.0.1:8080` (no trailing `/api`). */
  baseUrl: string;
  /** Where session, sync key and outbox live. @default new MemoryStore() */
  store?: ClientStore;
  /**
   * Long-connection transports in order of preference. @default `[webSocketConnector()]` when a global
   * WebSocket exists, else `[]` (HTTP long-poll only). In Node use `nodeConnectors()` from src/sdk/node (TCP
   * first, then WebSocket through the `ws` package).
   */
  connectors?: Connector[];
  /** Use these gateways instead of asking `GET /api/gateways`. */
  gateways?: Gateway[];
  /** `fetch` to use. @default globalThis.fetch */
  fetch?: FetchLike;
  /** Reconnect backoff. @default { baseMs: 500, maxMs: 30000 } */
  backoff?: Partial<BackoffOptions>;
  /** While on long-poll, first delay before trying the long connection again, in ms (doubles, jittered, up to backoff.maxMs). @default 5000 */
  longConnectionRetryMs?: number;
  /** synccheck hold, in ms. @default 25000 */
  synccheckTimeoutMs?: number;
  /** Entries per sync page. @default 200 */
  syncLimit?: number;
  /** Automatic send attempts of one outbox item before it turns `failed`. @default 5 */
  maxSendAttempts?: number;
  /** Options of each long connection (timeouts, ticker). */
  wire?: WireOptions;
  /** Random source in [0, 1) for jitter (tests). @default Math.random */
  random?: () => number;
  /**
   * Where a device with no stored position starts: `true` syncs its whole log from key 0 (contacts, groups and
   * history, paged), as a chat app wants; `false` starts at the server's head (load tools, bots). @default true
   */
  isHistoryFromStart?: boolean;
}

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

interface Waiter {
  resolve(item: OutboxItem): void;
  reject(err: Error): void;
}

/** Codes after which a send is worth repeating (the same clientMsgId makes the repeat safe). */
const RETRYABLE = new Set<number>([-1, RET.SERVER_ERROR, RET.RATE_LIMITED]);
const SESSION_ENDED = new Set<number>([RET.NOT_LOGGED_IN, RET.SESSION_REPLACED]);

function newClientMsgId(): string {
  const bytes = new Uint8Array(16);
  globalThis.crypto.getRandomValues(bytes);
  let s = '';
  for (const b of bytes) s += b.toString(16).padStart(2, '0');
  return s;
}

function errorOf(err: unknown): { ret: number; errMsg: string } {
  if (err instanceof SynchatError) return { ret: err.ret, errMsg: err.errMsg };
  return { ret: -1, errMsg: err instanceof Error ? err.message : String(err) };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

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
  readonly #o: Required<Pick<ClientOptions, 'synccheckTimeoutMs' | 'syncLimit' | 'maxSendAttempts' | 'longConnectionRetryMs'>> & ClientOptions;
  readonly #store: ClientStore;
  readonly #connectors: Connector[];
  readonly #backoff: BackoffOptions;
  readonly #random: () => number;
  readonly #events: Emitter<ClientEvents>;
  #session: SessionState | undefined;
  #isLoaded = false;
  #isRunning = false;
  /** Bumped by start/stop: async flows of an older run see a different value and quit. */
  #run = 0;
  #state: ConnectionState = { state: 'offline', reason: 'not started' };
  #wire: WireConnection | undefined;
  #pollAbort: AbortController | undefined;
  /** Bumped whenever long-poll stops; a poll loop of an older value quits. */
  #pollGen = 0;
  #reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  #longRetryTimer: ReturnType<typeof setTimeout> | undefined;
  #reconnectAttempt = 0;
  #longRetryAttempt = 0;
  #isConnecting = false;
  #syncPromise: Promise<void> | undefined;
  #isSyncDirty = false;
  #outbox: OutboxItem[] = [];
  #isFlushing = false;
  readonly #waiters = new Map<string, Waiter[]>();
  #storeChain: Promise<void> = Promise.resolve();
  #isSessionDirty = false;

  constructor(options: ClientOptions) {
    this.#o = {
      synccheckTimeoutMs: 25_000,
      syncLimit: 200,
      maxSendAttempts: 5,
      longConnectionRetryMs: 5_000,
      ...options,
    };
    this.http = new HttpClient(options.baseUrl, options.fetch);
    this.#store = options.store ?? new MemoryStore();
    this.#connectors = options.connectors ?? (hasGlobalWebSocket() ? [webSocketConnector()] : []);
    this.#backoff = { ...DEFAULT_BACKOFF, ...options.backoff };
    this.#random = options.random ?? Math.random;
    this.#events = new Emitter<ClientEvents>((err) => {
      // A listener of 'error' that throws is not reported again (no loop).
      if (this.#events.hasListeners('error')) queueMicrotask(() => this.#events.emit('error', err instanceof Error ? err : new Error(String(err))));
    });
  }

  // ---- events and state -------------------------------------------------------------------------------------

  /** Adds a listener; returns a function that removes it. */
  on<K extends keyof ClientEvents>(event: K, listener: (payload: ClientEvents[K]) => void): () => void {
    return this.#events.on(event, listener);
  }

  /** Adds a listener that runs once. */
  once<K extends keyof ClientEvents>(event: K, listener: (payload: ClientEvents[K]) => void): () => void {
    return this.#events.once(event, listener);
  }

  /** Removes a listener. */
  off<K extends keyof ClientEvents>(event: K, listener: (payload: ClientEvents[K]) => void): void {
    this.#events.off(event, listener);
  }

  /** The connection state now. */
  get connection(): ConnectionState {
    return { ...this.#state };
  }

  /** The transport in use while online. */
  get transport(): TransportName | undefined {
    return this.#state.state === 'online' ? this.#state.transport : undefined;
  }

  /** The session (copy), once logged in or restored. */
  get session(): SessionState | undefined {
    return this.#session ? { ...this.#session } : undefined;
  }

  /** The bearer token, once logged in or restored. */
  get sid(): string | undefined {
    return this.#session?.sid;
  }

  /** This user's username, once logged in or restored. */
  get username(): string | undefined {
    return this.#session?.username;
  }

  /** The key of everything applied so far. */
  get syncKey(): number {
    return this.#session?.syncKey ?? 0;
  }

  /** The base URL of the HTTP API. */
  get baseUrl(): string {
    return this.http.baseUrl;
  }

  /** The outbox now (copies), in queue order: items not yet sent and failed ones. */
  get outbox(): OutboxItem[] {
    return this.#outbox.map((i) => ({ ...i }));
  }

  /** True between `start()` and `stop()` (or the end of the session). */
  get isRunning(): boolean {
    return this.#isRunning;
  }

  /** Resolves when the client is online (at once if it is). */
  whenOnline(): Promise<ConnectionState> {
    if (this.#state.state === 'online') return Promise.resolve(this.connection);
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
      const [session, outbox] = await Promise.all([this.#store.loadSession(), this.#store.loadOutbox()]);
      this.#session ??= session;
      // An item that was on the wire when the process stopped goes again under the same clientMsgId.
      const known = new Set(this.#outbox.map((i) => i.clientMsgId));
      for (const item of outbox) if (!known.has(item.clientMsgId)) this.#outbox.push(item.state === 'sending' ? { ...item, state: 'queued' } : item);
      this.http.sid = this.#session?.sid;
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
    const deviceId = device.deviceId ?? this.#session?.deviceId ?? `sdk-${newClientMsgId().slice(0, 12)}`;
    const body = { username, password, deviceId, ...(device.deviceName ? { deviceName: device.deviceName } : {}) };
    const answer = this.#checked(await this.http.call('/api/login', body)) as LoginAnswer;
    const old = this.#session;
    const isSameLog = old && old.uin === answer.uin && old.epoch === answer.epoch && old.syncKey <= answer.syncKey;
    this.#session = {
      sid: answer.sid,
      uin: answer.uin,
      username: answer.username,
      displayName: answer.displayName,
      deviceId,
      syncKey: isSameLog ? old.syncKey : this.#o.isHistoryFromStart === false ? answer.syncKey : 0,
      epoch: answer.epoch,
    };
    this.http.sid = answer.sid;
    await this.#enqueueStore(() => this.#store.saveSession(this.#session));
    return answer;
  }

  /** Uses an existing session (e.g. from QR login). Stores it. */
  async useSession(session: SessionState): Promise<void> {
    await this.restore();
    this.#session = { ...session };
    this.http.sid = session.sid;
    await this.#enqueueStore(() => this.#store.saveSession(this.#session));
  }

  /** `POST /api/logout`; stops the client and forgets the session (the outbox stays in the store). */
  async logout(): Promise<void> {
    // Close the long connection first: the server ends it with ERROR 1100, which is no news to us.
    this.#halt('logging out');
    try {
      if (this.#session) this.#checked(await this.http.call('/api/logout', {}));
    } finally {
      await this.#forgetSession();
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
    if (!this.#session) throw new Error('SynchatClient.start: not logged in (call login, useSession or restore first)');
    if (this.#isRunning) return;
    this.#isRunning = true;
    this.#run++;
    this.#reconnectAttempt = 0;
    await this.#connect(this.#run);
  }

  /** Closes the connection and stops every timer; pending store writes finish before it resolves. */
  async stop(): Promise<void> {
    this.#halt('stopped');
    await this.#storeChain;
  }

  /** `stop()`, then closes the store. */
  async close(): Promise<void> {
    await this.stop();
    await this.#store.close?.();
  }

  /** Fetches and applies everything after the current key now; resolves when caught up. */
  async sync(): Promise<void> {
    this.#requestSync();
    while (this.#syncPromise) await this.#syncPromise;
  }

  // ---- API calls --------------------------------------------------------------------------------------------

  /**
   * Calls any API path: over the long connection (CALL) when one is up, else over HTTP. Resolves with the answer
   * body; throws {@link SynchatError} when `ret ≠ 0` (and ends the client on 1100/1101), or the transport's error.
   */
  async call<T = any>(path: string, body: unknown = {}): Promise<T> {
    const wire = this.#wire;
    const answer = wire?.isAuthed ? await wire.call(path, body) : await this.http.call(path, body);
    return this.#checked(answer) as T;
  }

  /** `GET /api/gateways`. */
  async gateways(): Promise<Gateway[]> {
    return (this.#checked(await this.http.call('/api/gateways', {})) as { gateways: Gateway[] }).gateways;
  }

  /** `POST /api/sessions`: this user's active device sessions. */
  async listSessions(): Promise<DeviceSession[]> {
    return (await this.call<{ sessions: DeviceSession[] }>('/api/sessions', {})).sessions;
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

  /** `POST /api/contacts/list`: contacts, pending requests both ways, and groups. */
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
      baseUrl: this.baseUrl,
      sid: () => this.sid ?? '',
      fetch: this.#o.fetch,
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
    return this.#waitFor(item.clientMsgId);
  }

  /** Queues a message and resolves once it is stored in the outbox (not waiting for the server). */
  async queueMessage(msg: OutgoingMessage): Promise<OutboxItem> {
    await this.restore();
    const clientMsgId = msg.clientMsgId ?? newClientMsgId();
    const existing = this.#outbox.find((i) => i.clientMsgId === clientMsgId);
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
    this.#outbox.push(item);
    this.#events.emit('outbox', { ...item });
    await this.#saveOutbox();
    void this.#flushOutbox();
    return { ...item };
  }

  /** Puts a `failed` item back in the queue with a fresh attempt budget and the same clientMsgId; resolves when sent. */
  async resend(clientMsgId: string): Promise<OutboxItem> {
    const item = this.#outbox.find((i) => i.clientMsgId === clientMsgId);
    if (!item) throw new Error(`resend: no outbox item ${clientMsgId}`);
    if (item.state === 'failed') {
      item.state = 'queued';
      item.attempts = 0;
      this.#events.emit('outbox', { ...item });
      await this.#saveOutbox();
    }
    const done = this.#waitFor(clientMsgId);
    void this.#flushOutbox();
    return done;
  }

  /** Drops an item that is not on the wire (queued or failed); true when one was dropped. */
  async discard(clientMsgId: string): Promise<boolean> {
    const i = this.#outbox.findIndex((x) => x.clientMsgId === clientMsgId && x.state !== 'sending');
    if (i < 0) return false;
    const [item] = this.#outbox.splice(i, 1);
    await this.#saveOutbox();
    for (const w of this.#takeWaiters(clientMsgId)) w.reject(new SendFailedError({ ...item!, lastError: { ret: -1, errMsg: 'discarded' } }));
    return true;
  }

  // ---- WireHandler (server packets on the current connection) ----------------------------------------------

  /** @internal */
  onPush(conn: WireConnection, body: PushBody): void {
    if (conn !== this.#wire || !this.#session) return;
    const key = this.#session.syncKey;
    // PROTOCOL.md PUSH: applied only when it directly follows our key. While a SYNC is in flight the server's
    // idea of our key moves with it, so a push then is only a hint: sync again afterwards.
    if (this.#syncPromise || (body.prevSyncKey !== undefined && body.prevSyncKey !== key)) {
      this.#requestSync();
      return;
    }
    const entries = Array.isArray(body.entries) ? body.entries : [];
    this.#apply(key, entries, Number(body.syncKey) || 0);
    if (this.#session && this.#session.syncKey > key) conn.ack(this.#session.syncKey);
  }

  /** @internal */
  onNotify(conn: WireConnection, body: NotifyBody): void {
    if (conn !== this.#wire || !this.#session) return;
    if (!(Number(body.syncKey) <= this.#session.syncKey)) this.#requestSync();
  }

  /** @internal */
  onServerError(conn: WireConnection, body: ErrorBody): void {
    if (conn !== this.#wire) return;
    if (SESSION_ENDED.has(body.ret)) void this.#endSession(body.ret, body.errMsg);
    else this.#events.emit('error', new SynchatError(body.ret as Ret, body.errMsg));
  }

  /** @internal */
  onClose(conn: WireConnection, reason: string): void {
    if (conn !== this.#wire) return;
    this.#wire = undefined;
    if (!this.#isRunning) return;
    this.#scheduleReconnect(`connection lost: ${reason}`);
  }

  // ---- connecting -------------------------------------------------------------------------------------------

  #setState(next: ConnectionState): void {
    const s = this.#state;
    if (s.state === next.state && s.transport === next.transport && s.reason === next.reason && s.retryInMs === next.retryInMs) return;
    this.#state = next;
    this.#events.emit('connection', { ...next });
  }

  async #connect(run: number): Promise<void> {
    if (run !== this.#run || this.#isConnecting) return;
    this.#isConnecting = true;
    try {
      this.#setState({ state: 'connecting' });
      const gateways = await this.#findGateways();
      if (run !== this.#run) return;
      if (gateways && (await this.#tryLongConnection(run, gateways))) return;
      if (run !== this.#run) return;
      // The long connection cannot be made: long-poll, if HTTP answers at all.
      const reason = await this.#tryLongPoll(run);
      if (reason === undefined || run !== this.#run) return;
      this.#scheduleReconnect(reason);
    } finally {
      this.#isConnecting = false;
    }
  }

  async #findGateways(): Promise<Gateway[] | undefined> {
    if (this.#o.gateways) return this.#o.gateways;
    if (this.#connectors.length === 0) return [];
    try {
      const r = await this.http.call('/api/gateways', {});
      return r?.ret === 0 && Array.isArray(r.gateways) ? r.gateways : [];
    } catch {
      return undefined;
    }
  }

  /** Tries each connector that has a gateway; true when one authenticated and the client is online on it. */
  async #tryLongConnection(run: number, gateways: Gateway[], isBackground = false): Promise<boolean> {
    for (const connector of this.#connectors) {
      for (const gw of gateways) {
        if (gw.transport !== connector.transport) continue;
        if (run !== this.#run || !this.#session) return false;
        if (!isBackground) this.#setState({ state: 'connecting', transport: connector.transport });
        const conn = new WireConnection(this, this.#o.wire);
        try {
          await conn.open(connector.connect, gw.url);
          const ok = await conn.auth(this.#session.sid, this.#session.syncKey);
          if (run !== this.#run || !this.#session) {
            conn.close('stopped');
            return false;
          }
          if (ok.ret !== 0) {
            conn.close(`AUTH refused: ${ok.errMsg}`);
            if (SESSION_ENDED.has(ok.ret)) {
              await this.#endSession(ok.ret, ok.errMsg ?? '');
              return true;
            }
            // ret 1: our key is ahead of the log (restored from a backup): start over from key 0.
            if (ok.ret === RET.BAD_REQUEST && this.#session.syncKey > 0) this.#resetLog((ok as { epoch?: string }).epoch ?? '');
            continue;
          }
          this.#goOnlineOnWire(conn, connector.transport, ok.epoch, ok.syncKey);
          return true;
        } catch {
          conn.close('connect failed');
        }
      }
    }
    return false;
  }

  #goOnlineOnWire(conn: WireConnection, transport: TransportName, epoch: string, head: number): void {
    this.#stopPolling();
    this.#clearLongRetry();
    const session = this.#session!;
    if (session.epoch !== epoch) this.#resetLog(epoch);
    this.#wire = conn;
    this.#reconnectAttempt = 0;
    this.#longRetryAttempt = 0;
    this.#setState({ state: 'online', transport });
    // Always sync once after (re)connecting: it also re-aligns the server's view of our key on this connection.
    void head;
    this.#requestSync();
    void this.#flushOutbox();
  }

  /** Starts long-poll if HTTP answers; returns undefined when online on HTTP, else the failure reason. */
  async #tryLongPoll(run: number): Promise<string | undefined> {
    const session = this.#session;
    if (!session) return 'no session';
    this.#setState({ state: 'connecting', transport: 'http' });
    let r: any;
    try {
      // A zero-hold synccheck: proves the server answers, checks the session and epoch, and acknowledges our key.
      r = await this.http.synccheck(session.syncKey, 0);
    } catch (err) {
      return `server unreachable: ${(err as Error).message}`;
    }
    if (run !== this.#run || !this.#session) return undefined;
    if (r?.ret !== 0) {
      if (SESSION_ENDED.has(r?.ret)) {
        await this.#endSession(r.ret, r.errMsg);
        return undefined;
      }
      if (r?.ret === RET.BAD_REQUEST && typeof r.epoch === 'string') this.#resetLog(r.epoch);
      return `synccheck refused: ${r?.errMsg ?? 'bad answer'}`;
    }
    if (typeof r.epoch === 'string' && r.epoch !== this.#session.epoch) this.#resetLog(r.epoch);
    this.#reconnectAttempt = 0;
    this.#setState({ state: 'online', transport: 'http' });
    this.#requestSync();
    void this.#flushOutbox();
    void this.#pollLoop(run, ++this.#pollGen);
    this.#scheduleLongRetry(run);
    return undefined;
  }

  async #pollLoop(run: number, gen: number): Promise<void> {
    {
      while (run === this.#run && gen === this.#pollGen && this.#session && !this.#wire) {
        const ac = new AbortController();
        this.#pollAbort = ac;
        let r: any;
        try {
          r = await this.http.synccheck(this.#session.syncKey, this.#o.synccheckTimeoutMs, ac.signal);
        } catch (err) {
          if (ac.signal.aborted || run !== this.#run) return;
          this.#scheduleReconnect(`long-poll failed: ${(err as Error).message}`);
          return;
        } finally {
          if (this.#pollAbort === ac) this.#pollAbort = undefined;
        }
        if (run !== this.#run || gen !== this.#pollGen || !this.#session || this.#wire) return;
        if (r?.ret !== 0) {
          if (SESSION_ENDED.has(r?.ret)) return void (await this.#endSession(r.ret, r.errMsg));
          if (r?.ret === RET.BAD_REQUEST && typeof r.epoch === 'string') {
            this.#resetLog(r.epoch);
            continue;
          }
          this.#scheduleReconnect(`synccheck failed: ${r?.errMsg ?? 'bad answer'}`);
          return;
        }
        if (typeof r.epoch === 'string' && r.epoch !== this.#session.epoch) this.#resetLog(r.epoch);
        if (r.selector > 0 || r.syncKey > this.#session.syncKey) await this.sync();
      }
    }
  }

  #stopPolling(): void {
    this.#pollGen++;
    this.#pollAbort?.abort();
    this.#pollAbort = undefined;
  }

  #scheduleReconnect(reason: string): void {
    if (!this.#isRunning) return;
    this.#stopPolling();
    this.#clearLongRetry();
    const wire = this.#wire;
    this.#wire = undefined;
    wire?.close(reason);
    if (this.#reconnectTimer) return;
    const delay = backoffDelay(this.#reconnectAttempt++, this.#backoff, this.#random);
    this.#setState({ state: 'offline', reason, retryInMs: delay });
    const run = this.#run;
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = undefined;
      void this.#connect(run);
    }, delay);
  }

  /** While on long-poll: try the long connection again later, with growing jittered delays. */
  #scheduleLongRetry(run: number): void {
    if (this.#connectors.length === 0 || this.#longRetryTimer) return;
    const delay = backoffDelay(this.#longRetryAttempt++, { baseMs: this.#o.longConnectionRetryMs, maxMs: Math.max(this.#backoff.maxMs, this.#o.longConnectionRetryMs) }, this.#random);
    this.#longRetryTimer = setTimeout(async () => {
      this.#longRetryTimer = undefined;
      if (run !== this.#run || this.#wire || this.#isConnecting) return;
      const gateways = await this.#findGateways();
      if (run !== this.#run || this.#wire) return;
      this.#isConnecting = true;
      try {
        if (gateways && (await this.#tryLongConnection(run, gateways, true))) return;
      } finally {
        this.#isConnecting = false;
      }
      // Still no long connection: stay on long-poll and try again later.
      if (run === this.#run && !this.#wire && this.#state.state === 'online' && this.#state.transport === 'http') this.#scheduleLongRetry(run);
    }, delay);
  }

  #clearLongRetry(): void {
    if (this.#longRetryTimer) clearTimeout(this.#longRetryTimer);
    this.#longRetryTimer = undefined;
  }

  #halt(reason: string): void {
    this.#isRunning = false;
    this.#run++;
    this.#stopPolling();
    this.#clearLongRetry();
    if (this.#reconnectTimer) clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = undefined;
    const wire = this.#wire;
    this.#wire = undefined;
    wire?.close(reason);
    this.#setState({ state: 'offline', reason });
  }

  async #endSession(ret: number, errMsg: string): Promise<void> {
    if (!this.#session) return;
    await this.#forgetSession(`session ended (${ret})`);
    this.#events.emit('sessionEnded', { ret, errMsg });
  }

  async #forgetSession(reason = 'logged out'): Promise<void> {
    this.#halt(reason);
    this.#session = undefined;
    this.http.sid = undefined;
    await this.#enqueueStore(() => this.#store.saveSession(undefined));
  }

  // ---- sync -------------------------------------------------------------------------------------------------

  #requestSync(): void {
    this.#isSyncDirty = true;
    if (this.#syncPromise) return;
    this.#syncPromise = this.#runSync().finally(() => {
      this.#syncPromise = undefined;
    });
  }

  async #runSync(): Promise<void> {
    while (this.#isSyncDirty && this.#session) {
      this.#isSyncDirty = false;
      const wire = this.#wire?.isAuthed ? this.#wire : undefined;
      if (!wire && this.#state.transport !== 'http' && this.#isRunning) return;
      try {
        await this.#syncPages(wire);
      } catch (err) {
        if (err instanceof SynchatError && SESSION_ENDED.has(err.ret)) {
          await this.#endSession(err.ret, err.errMsg);
          return;
        }
        // A transport failure: the connection logic reconnects and syncs again.
        if (wire && wire === this.#wire) this.#scheduleReconnect(`sync failed: ${(err as Error).message}`);
        else if (this.#isRunning && !(err instanceof WireClosedError)) this.#scheduleReconnect(`sync failed: ${(err as Error).message}`);
        return;
      }
    }
  }

  async #syncPages(wire: WireConnection | undefined): Promise<void> {
    for (let guard = 0; this.#session; guard++) {
      const session = this.#session;
      const key = session.syncKey;
      const body = wire ? await wire.sync(key, this.#o.syncLimit) : await this.http.call('/api/sync', { syncKey: key, limit: this.#o.syncLimit });
      if (session !== this.#session || key !== session.syncKey) {
        // The key moved under us (a reset): fetch again from the new key.
        if (guard > 1000) throw new Error('sync: key keeps moving');
        continue;
      }
      if (body?.ret !== 0) {
        // ret 1 with an epoch: our key is ahead of the log (it was restored or rebuilt).
        if (body?.ret === RET.BAD_REQUEST && typeof body.epoch === 'string' && key > 0) {
          this.#resetLog(body.epoch);
          continue;
        }
        throw new SynchatError((body?.ret ?? RET.SERVER_ERROR) as Ret, body?.errMsg ?? 'bad sync answer');
      }
      if (typeof body.epoch === 'string' && body.epoch !== session.epoch) {
        // PROTOCOL.md "Epoch": discard the cache and sync again from key 0; this page belongs to the new log.
        this.#resetLog(body.epoch);
        continue;
      }
      this.#apply(key, Array.isArray(body.entries) ? body.entries : [], Number(body.syncKey) || 0);
      if (!body.continueFlag) break;
    }
    // Acknowledge by presenting the new key (HTTP: the next synccheck or sync presents it).
    if (wire && this.#session && wire === this.#wire) wire.ack(this.#session.syncKey);
  }

  /** Applies a page that follows `fromKey`: each entry once, in seq order, then the key moves and is persisted. */
  #apply(fromKey: number, entries: readonly Entry[], syncKey: number): void {
    const session = this.#session;
    if (!session || session.syncKey !== fromKey) return;
    const { apply, newKey } = mergeDelta(fromKey, entries);
    for (const e of apply) {
      session.syncKey = e.seq;
      this.#emitEntry(e);
      if (this.#session !== session) return;
    }
    const next = Math.max(newKey, syncKey);
    if (next > fromKey) {
      session.syncKey = next;
      this.#persistSession();
      this.#events.emit('synced', { syncKey: next });
    }
  }

  #emitEntry(e: Entry): void {
    this.#events.emit('entry', e);
    switch (e.kind) {
      case 'msg':
        if (e.from === this.#session?.username) this.#matchSent(e.clientMsgId, { msgId: e.msgId, seq: e.seq, createTime: e.createTime, duplicate: false });
        this.#events.emit('message', e);
        break;
      case 'read':
        this.#events.emit(e.by === this.#session?.username ? 'read' : 'receipt', e);
        break;
      case 'revoke':
        this.#events.emit('recall', e);
        break;
      case 'contact':
        this.#events.emit('contact', e);
        break;
      case 'contactRequest':
        this.#events.emit('contactRequest', e);
        break;
      case 'group':
        this.#events.emit('group', e);
        break;
    }
  }

  #resetLog(epoch: string): void {
    const session = this.#session;
    if (!session) return;
    session.syncKey = 0;
    session.epoch = epoch;
    this.#persistSession();
    this.#events.emit('reset', { epoch });
  }

  // ---- outbox internals -------------------------------------------------------------------------------------

  #waitFor(clientMsgId: string): Promise<OutboxItem> {
    return new Promise((resolve, reject) => {
      const list = this.#waiters.get(clientMsgId);
      if (list) list.push({ resolve, reject });
      else this.#waiters.set(clientMsgId, [{ resolve, reject }]);
    });
  }

  #takeWaiters(clientMsgId: string): Waiter[] {
    const list = this.#waiters.get(clientMsgId) ?? [];
    this.#waiters.delete(clientMsgId);
    return list;
  }

  /** Marks an item sent (from its SEND_ACK, or from its own entry arriving in the log first). */
  #matchSent(clientMsgId: string, answer: SendAnswer): void {
    const i = this.#outbox.findIndex((x) => x.clientMsgId === clientMsgId);
    if (i < 0) return;
    const item = this.#outbox[i]!;
    if (item.state === 'sent') return;
    Object.assign(item, { state: 'sent', msgId: answer.msgId, seq: answer.seq, createTime: answer.createTime, duplicate: answer.duplicate });
    delete item.lastError;
    this.#outbox.splice(i, 1);
    void this.#saveOutbox();
    const copy = { ...item };
    this.#events.emit('outbox', copy);
    for (const w of this.#takeWaiters(clientMsgId)) w.resolve(copy);
  }

  #markFailed(item: OutboxItem, error: { ret: number; errMsg: string }): void {
    item.state = 'failed';
    item.lastError = error;
    void this.#saveOutbox();
    const copy = { ...item };
    this.#events.emit('outbox', copy);
    for (const w of this.#takeWaiters(item.clientMsgId)) w.reject(new SendFailedError(copy));
  }

  /** Sends queued items one at a time, in order, while online. */
  async #flushOutbox(): Promise<void> {
    if (this.#isFlushing) return;
    this.#isFlushing = true;
    try {
      for (;;) {
        if (!this.#isRunning || this.#state.state !== 'online' || !this.#session) return;
        const item = this.#outbox.find((x) => x.state === 'queued');
        if (!item) return;
        item.state = 'sending';
        item.attempts++;
        this.#events.emit('outbox', { ...item });
        const body = { clientMsgId: item.clientMsgId, to: item.to, type: item.type, content: item.content, ...(item.mediaId ? { mediaId: item.mediaId } : {}) };
        let answer: any;
        let error: { ret: number; errMsg: string } | undefined;
        try {
          const wire = this.#wire?.isAuthed ? this.#wire : undefined;
          answer = wire ? await wire.send(body) : await this.http.call('/api/sendmsg', body);
          if (answer?.ret !== 0) error = { ret: answer?.ret ?? RET.SERVER_ERROR, errMsg: answer?.errMsg ?? 'bad answer' };
        } catch (err) {
          error = errorOf(err);
        }
        if (item.state !== 'sending') continue; // its log entry arrived first and marked it sent
        if (!error) {
          this.#matchSent(item.clientMsgId, { msgId: String(answer.msgId), seq: answer.seq, createTime: answer.createTime, duplicate: !!answer.duplicate });
          continue;
        }
        item.lastError = error;
        if (SESSION_ENDED.has(error.ret)) {
          item.state = 'queued';
          item.attempts--;
          await this.#saveOutbox();
          await this.#endSession(error.ret, error.errMsg);
          return;
        }
        if (!RETRYABLE.has(error.ret) || item.attempts >= this.#o.maxSendAttempts) {
          this.#markFailed(item, error);
          continue;
        }
        item.state = 'queued';
        this.#events.emit('outbox', { ...item });
        void this.#saveOutbox();
        const retryAfterMs = error.ret === RET.RATE_LIMITED && Number(answer?.retryAfterSec) > 0 ? Number(answer.retryAfterSec) * 1000 : 0;
        await sleep(Math.max(retryAfterMs, backoffDelay(item.attempts - 1, this.#backoff, this.#random)));
      }
    } finally {
      this.#isFlushing = false;
    }
  }

  // ---- store ------------------------------------------------------------------------------------------------

  /** Store calls never overlap (the ClientStore contract): they run one after another on one chain. */
  #enqueueStore(op: () => Promise<void>): Promise<void> {
    const next = this.#storeChain.then(op).catch((err) => {
      this.#events.emit('error', err instanceof Error ? err : new Error(String(err)));
    });
    this.#storeChain = next;
    return next;
  }

  #persistSession(): void {
    if (this.#isSessionDirty) return;
    this.#isSessionDirty = true;
    void this.#enqueueStore(() => {
      this.#isSessionDirty = false;
      return this.#session ? this.#store.saveSession({ ...this.#session }) : Promise.resolve();
    });
  }

  #saveOutbox(): Promise<void> {
    return this.#enqueueStore(() => this.#store.saveOutbox(this.#outbox.map((i) => ({ ...i }))));
  }

  #checked(body: any): any {
    if (body && body.ret === 0) return body;
    const ret = (typeof body?.ret === 'number' ? body.ret : RET.SERVER_ERROR) as Ret;
    const err = new SynchatError(ret, body?.errMsg ?? 'bad answer', body?.retryAfterSec ? { retryAfterSec: body.retryAfterSec } : undefined);
    if (SESSION_ENDED.has(ret) && this.#session) void this.#endSession(ret, err.errMsg);
    throw err;
  }
}

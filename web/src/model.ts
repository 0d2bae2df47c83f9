/**
 * The web client's model: one SynchatClient (WebSocket, long-poll fallback), the IndexedDB cache, and the state
 * the views render — contacts, groups, conversations, the loaded window of each open chat, and local echoes of
 * messages still in the outbox or uploading. Every sync entry is folded in exactly once (entries at or below
 * `state.appliedSeq` are skipped), so the same account in several browsers converges. See docs/web.md.
 */
import { MSG_TYPE, SynchatClient, type ConnectionState, type DeviceSession, type Entry, type LoginAnswer, type MsgEntry, type OutboxItem, type QrAskingDevice, type QrLoginTicket } from '../../src/sdk/index.ts';
import { MediaClient, type UploadProgress } from '../../src/sdk/media.ts';
import { BoundedCache } from './bounded-cache.ts';
import { WebCache } from './cache.ts';
import { compareMsgId, deviceNameOf, isGroupPeer, maxMsgId, previewOf } from './format.ts';
import type { AppState, Conversation, StoredMessage, ViewMessage } from './types.ts';

/** Messages per page read from the cache. */
const PAGE_SIZE = 50;
/** PROTOCOL.md `/api/revoke`: the sender may recall within 120 s. */
export const RECALL_WINDOW_MS = 120_000;
/**
 * Object URLs of fetched media kept (thumbnails mostly, ~20–50 KB each; an original only once opened): four pages of
 * a chat full of images. One pushed out is revoked: an image already shown stays painted, and a view mounted again
 * fetches it again (useMediaUrl asks on mount).
 */
const MEDIA_URLS_MAX = 200;
/** `/api/media/info` answers kept (a few dozen bytes each). */
const MEDIA_INFOS_MAX = 1000;

interface ChatWindow {
  messages: StoredMessage[];
  hasMore: boolean;
  isLoading: boolean;
}

interface Pending extends ViewMessage {
  queuedAt: number;
  /** A media message not yet uploaded keeps its bytes here, so a retry can upload again. */
  upload?: { blob: Blob; mime: string; name?: string; durationMs?: number };
}

function freshState(owner: string): AppState {
  return { owner, appliedSeq: 0, contacts: {}, groups: {}, conversations: {}, requests: {}, outgoing: {}, names: {} };
}

function newClientMsgId(): string {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
}

/** A stable id for this browser (each browser is one device). */
function browserDeviceId(): string {
  const KEY = 'synchat.deviceId';
  let id = localStorage.getItem(KEY);
  if (!id) {
    id = `web-${newClientMsgId().slice(0, 16)}`;
    localStorage.setItem(KEY, id);
  }
  return id;
}

function mergeMessages(older: StoredMessage[], newer: StoredMessage[]): StoredMessage[] {
  const byId = new Map<string, StoredMessage>();
  for (const m of older) byId.set(m.msgId, m);
  for (const m of newer) byId.set(m.msgId, m);
  return [...byId.values()].sort((a, b) => compareMsgId(a.msgId, b.msgId));
}

/** The app's state and actions. Views subscribe and re-render on `version` changes. */
export class ChatModel {
  readonly client: SynchatClient;
  readonly cache: WebCache;
  readonly media: MediaClient;
  state: AppState = freshState('');
  connection: ConnectionState = { state: 'connecting' };
  /** True once the client was online at least once since start (the banner says "lost" rather than "connecting"). */
  hasBeenOnline = false;
  /** Bumped on every change; views compare it. */
  version = 0;
  activePeer: string | undefined;
  /** Set when the server ended this session (another device logged it out). */
  endedReason: string | undefined;
  readonly #windows = new Map<string, ChatWindow>();
  readonly #pending = new Map<string, Pending>();
  readonly #listeners = new Set<() => void>();
  /** Object URLs of fetched media (each holds its blob): the most recently shown {@link MEDIA_URLS_MAX}, others revoked. */
  readonly #mediaUrls = new BoundedCache<string>(MEDIA_URLS_MAX, (url) => URL.revokeObjectURL(url));
  readonly #localMediaUrls = new Map<string, string>();
  readonly #mediaInfos = new BoundedCache<{ size?: number; name?: string; mime?: string }>(MEDIA_INFOS_MAX);
  readonly #lookups = new Set<string>();
  #isNotifyQueued = false;
  #readTimer: ReturnType<typeof setTimeout> | undefined;
  #offs: (() => void)[] = [];

  constructor(baseUrl = location.origin) {
    this.cache = new WebCache();
    const wsUrl = baseUrl.replace(/^http/, 'ws') + '/ws';
    this.client = new SynchatClient({
      baseUrl,
      store: this.cache,
      // Same origin as the page, whatever host name the server believes it has.
      gateways: [
        { transport: 'ws', url: wsUrl },
        { transport: 'http', url: baseUrl },
      ],
      backoff: { baseMs: 500, maxMs: 10_000 },
    });
    this.media = new MediaClient({
      baseUrl,
      sid: () => this.client.sid ?? '',
      sendmsg: async (to, type, content, mediaId) => {
        const item = await this.client.sendMessage({ to, type, content, mediaId });
        return { msgId: item.msgId!, seq: item.seq!, createTime: item.createTime! };
      },
    });
    this.#wire();
  }

  // ---- subscription ------------------------------------------------------------------------------------------

  /** Calls `fn` after changes (batched per microtask); returns the unsubscribe function. */
  subscribe(fn: () => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  #changed(): void {
    this.version++;
    if (this.#isNotifyQueued) return;
    this.#isNotifyQueued = true;
    queueMicrotask(() => {
      this.#isNotifyQueued = false;
      this.#updateTitle();
      for (const fn of this.#listeners) fn();
    });
  }

  // ---- session -----------------------------------------------------------------------------------------------

  /** This user's username ('' when logged out). */
  get me(): string {
    return this.client.username ?? '';
  }

  /** True while a session exists. */
  get isLoggedIn(): boolean {
    return !!this.client.session;
  }

  /** Restores a stored session and shows the cached chat at once; connects in the background. */
  async boot(): Promise<boolean> {
    const session = await this.client.restore();
    if (!session) return false;
    const state = await this.cache.loadState();
    if (state && state.owner === session.username) {
      this.state = state;
    } else {
      // A session without its cache (cleared storage): take the whole log again.
      this.state = freshState(session.username);
      await this.client.useSession({ ...session, syncKey: 0 });
    }
    this.#seedPending();
    this.#changed();
    void this.#start();
    return true;
  }

  /** `register` then `login`: registering signs you in. */
  async register(username: string, password: string, displayName: string): Promise<void> {
    await this.client.register(username, password, displayName);
    await this.login(username, password);
  }

  /** Logs this browser in as a device of `username`. A first login here downloads the account's whole log. */
  async login(username: string, password: string): Promise<void> {
    this.endedReason = undefined;
    const answer = await this.client.login(username, password, { deviceId: browserDeviceId(), deviceName: deviceNameOf(navigator.userAgent) });
    await this.#afterLogin(answer);
  }

  /** A QR code that a logged-in device confirms to log this browser in (docs/web.md "QR login"). */
  qrLoginNew(): Promise<QrLoginTicket> {
    return this.client.qrLoginNew({ deviceId: browserDeviceId(), deviceName: deviceNameOf(navigator.userAgent) });
  }

  /** Waits until `ticket` is confirmed, then goes on as after a password login (rejects with ret 3 at expiry). */
  async waitQrLogin(ticket: QrLoginTicket, options: { signal?: AbortSignal; onScanned?: (displayName: string) => void }): Promise<void> {
    this.endedReason = undefined;
    await this.#afterLogin(await this.client.waitQrLogin(ticket, options));
  }

  /** Which device asks to log in with this QR code (nothing is confirmed yet). */
  scanQrLogin(uuid: string): Promise<QrAskingDevice> {
    return this.client.scanQrLogin(uuid);
  }

  /** Logs the scanned device in as this user. */
  confirmQrLogin(uuid: string): Promise<QrAskingDevice> {
    return this.client.confirmQrLogin(uuid);
  }

  /** After a login (password or QR): this user's cache, or a fresh one and the whole log. */
  async #afterLogin(answer: LoginAnswer): Promise<void> {
    const state = await this.cache.loadState();
    if (state && state.owner === answer.username) {
      this.state = state;
    } else {
      await this.cache.clearData();
      this.state = freshState(answer.username);
      // The SDK starts a new device at the head of the log; the web client wants the history, so it syncs from 0.
      await this.client.useSession({ ...this.client.session!, syncKey: 0 });
    }
    this.state.names[answer.username] = answer.displayName;
    this.#seedPending();
    this.#changed();
    void this.#start();
    if ('Notification' in window && Notification.permission === 'default') void Notification.requestPermission().catch(() => {});
  }

  /**
   * Logs out this device and forgets everything this browser cached; with `everywhere`, every other device of
   * this user is logged out too.
   */
  async logout(options: { everywhere?: boolean } = {}): Promise<void> {
    try {
      await this.client.logout(options);
    } catch {
      // Offline or already ended: forget locally anyway.
    }
    await this.#forget();
  }

  async #forget(): Promise<void> {
    await this.client.stop();
    await this.cache.clear();
    this.state = freshState('');
    this.#windows.clear();
    this.#pending.clear();
    this.#mediaUrls.clear();
    this.#mediaInfos.clear();
    this.activePeer = undefined;
    this.hasBeenOnline = false;
    this.#changed();
  }

  async #start(): Promise<void> {
    try {
      await this.client.start();
    } catch (err) {
      this.connection = { state: 'offline', reason: (err as Error).message };
      this.#changed();
    }
  }

  // ---- SDK events --------------------------------------------------------------------------------------------

  #wire(): void {
    const c = this.client;
    this.#offs.push(
      c.on('entry', (e) => this.#applyEntry(e)),
      c.on('outbox', (item) => this.#onOutbox(item)),
      c.on('connection', (s) => {
        this.connection = s;
        if (s.state === 'online') {
          this.hasBeenOnline = true;
          void this.#reconcileContacts();
        }
        this.#changed();
      }),
      c.on('sessionEnded', (e) => {
        this.endedReason = e.ret === 1101 ? 'This device was logged out from another device.' : 'Your session ended. Please log in again.';
        void this.#forget();
      }),
      c.on('reset', () => {
        const owner = this.state.owner;
        this.state = freshState(owner);
        this.#windows.clear();
        void this.cache.clearData();
        this.#changed();
      }),
      c.on('synced', () => this.cache.putState(this.state)),
    );
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden) this.#scheduleRead();
      this.#changed();
    });
  }

  #applyEntry(e: Entry): void {
    const s = this.state;
    if (e.seq <= s.appliedSeq) return; // already folded in (a re-delivered page after a reload)
    switch (e.kind) {
      case 'msg':
        this.#onMessage(e);
        break;
      case 'read': {
        const conv = s.conversations[e.peer];
        if (!conv) break;
        if (e.by === this.me) {
          conv.readUpTo = maxMsgId(conv.readUpTo, e.msgId);
          if (!conv.last || compareMsgId(conv.readUpTo, conv.last.msgId) >= 0) conv.unread = 0;
          else void this.#recount(e.peer);
        } else {
          conv.peerReadUpTo = maxMsgId(conv.peerReadUpTo, e.msgId);
        }
        break;
      }
      case 'revoke':
        void this.#onRecall(e.peer, e.msgId);
        break;
      case 'contactRequest':
        s.requests[e.from] = { from: e.from, note: e.note, time: Date.now() };
        if (e.displayName) s.names[e.from] = e.displayName;
        this.#notify(e.displayName ?? e.from, `wants to be your contact${e.note ? `: ${e.note}` : ''}`, 'contacts');
        break;
      case 'contact':
        if (e.blocked !== undefined) {
          // A block or unblock from one of my devices; a block also ended any pending request between us.
          this.#setBlocked(e.username, e.blocked);
          s.names[e.username] = e.displayName;
          if (!e.blocked) break;
        }
        delete s.requests[e.username];
        delete s.outgoing[e.username];
        if (e.removed) {
          delete s.contacts[e.username];
        } else {
          s.contacts[e.username] = { username: e.username, displayName: e.displayName };
          s.names[e.username] = e.displayName;
          this.#ensureConversation(e.username, e.seq);
        }
        break;
      case 'group': {
        const isMember = !e.removed && e.members.includes(this.me);
        if (!isMember) {
          delete s.groups[e.groupId];
          delete s.conversations[e.groupId];
          if (this.activePeer === e.groupId) this.activePeer = undefined;
        } else {
          s.groups[e.groupId] = { groupId: e.groupId, name: e.name, members: e.members };
          this.#ensureConversation(e.groupId, e.seq);
          for (const u of e.members) this.#lookupName(u);
        }
        break;
      }
    }
    s.appliedSeq = e.seq;
    this.cache.putState(s);
    this.#changed();
  }

  #ensureConversation(peer: string, _seq: number): Conversation {
    const s = this.state;
    let conv = s.conversations[peer];
    if (!conv) {
      // Contact and group entries carry no time: place the conversation where it happened in the log, after every
      // message seen so far (Date.now() would sort a whole history replayed on a new device by replay time).
      conv = { peer, isGroup: isGroupPeer(peer), lastTime: s.logTime ?? 0, unread: 0, readUpTo: '', peerReadUpTo: '' };
      s.conversations[peer] = conv;
    }
    return conv;
  }

  #onMessage(e: MsgEntry): void {
    const me = this.me;
    const peer = e.peer || (e.from === me ? e.to : e.from);
    const stored: StoredMessage = {
      peer,
      msgId: e.msgId,
      clientMsgId: e.clientMsgId,
      from: e.from,
      type: e.type,
      content: e.content,
      ...(e.mediaId ? { mediaId: e.mediaId } : {}),
      createTime: e.createTime,
    };
    this.cache.putMessage(stored);
    this.state.logTime = Math.max(this.state.logTime ?? 0, e.createTime);
    const conv = this.#ensureConversation(peer, e.seq);
    if (!conv.last || compareMsgId(e.msgId, conv.last.msgId) > 0) {
      conv.last = { from: e.from, type: e.type, content: e.content, msgId: e.msgId };
      conv.lastTime = Math.max(conv.lastTime, e.createTime);
    }
    const pending = this.#pending.get(e.clientMsgId);
    if (e.from === me && pending) {
      if (pending.localUrl && e.mediaId) this.#localMediaUrls.set(e.mediaId, pending.localUrl);
      this.#pending.delete(e.clientMsgId);
    }
    const win = this.#windows.get(peer);
    if (win) win.messages = mergeMessages(win.messages, [stored]);
    if (e.from === me && compareMsgId(e.msgId, conv.readUpTo || '0') > 0) {
      // Replying means having read what came before: every device folds this the same way.
      conv.readUpTo = e.msgId;
      conv.unread = 0;
    } else if (e.from !== me && e.type !== MSG_TYPE.SYSTEM && compareMsgId(e.msgId, conv.readUpTo || '0') > 0) {
      conv.unread++;
      if (this.activePeer === peer && !document.hidden) this.#scheduleRead();
      // Live messages only: a first sync of old history must not ring.
      if (Date.now() - e.createTime < 60_000) this.#notify(this.nameOf(e.from) + (conv.isGroup ? ` · ${this.titleOf(peer)}` : ''), previewOf(e.type, e.content), peer);
    }
    if (!isGroupPeer(peer)) this.#lookupName(peer);
  }

  async #onRecall(peer: string, msgId: string): Promise<void> {
    const conv = this.state.conversations[peer];
    if (conv?.last?.msgId === msgId) conv.last = { ...conv.last, recalled: true };
    const win = this.#windows.get(peer);
    if (win) win.messages = win.messages.map((m) => (m.msgId === msgId ? { ...m, recalled: true } : m));
    const m = await this.cache.getMessage(peer, msgId);
    if (m && !m.recalled) {
      this.cache.putMessage({ ...m, recalled: true });
      if (conv && m.from !== this.me && compareMsgId(msgId, conv.readUpTo || '0') > 0 && conv.unread > 0) {
        conv.unread--;
        this.cache.putState(this.state);
      }
    }
    this.#changed();
  }

  async #recount(peer: string): Promise<void> {
    const conv = this.state.conversations[peer];
    if (!conv) return;
    const n = await this.cache.countUnread(peer, conv.readUpTo, this.me);
    if (this.state.conversations[peer] === conv) {
      conv.unread = n;
      this.cache.putState(this.state);
      this.#changed();
    }
  }

  #onOutbox(item: OutboxItem): void {
    let p = this.#pending.get(item.clientMsgId);
    if (!p) {
      if (item.state === 'sent') return; // its log entry already replaced the echo
      p = this.#pendingOf(item);
      this.#pending.set(item.clientMsgId, p);
      const conv = this.#ensureConversation(item.to, 0);
      conv.lastTime = Math.max(conv.lastTime, item.queuedAt);
    }
    p.status = item.state === 'failed' ? 'failed' : item.state === 'sent' ? 'sent' : 'sending';
    if (item.msgId) p.msgId = item.msgId;
    if (item.createTime) p.createTime = item.createTime;
    p.error = item.lastError?.errMsg;
    this.#changed();
  }

  #pendingOf(item: OutboxItem): Pending {
    return {
      peer: item.to,
      clientMsgId: item.clientMsgId,
      from: this.me,
      type: item.type,
      content: item.content,
      ...(item.mediaId ? { mediaId: item.mediaId } : {}),
      createTime: item.queuedAt,
      queuedAt: item.queuedAt,
      status: item.state === 'failed' ? 'failed' : 'sending',
    };
  }

  /** Local echoes for what the stored outbox still holds (after a reload). */
  #seedPending(): void {
    for (const item of this.client.outbox) if (!this.#pending.has(item.clientMsgId) && item.state !== 'sent') this.#pending.set(item.clientMsgId, this.#pendingOf(item));
  }

  async #reconcileContacts(): Promise<void> {
    try {
      const list = await this.client.listContacts();
      const s = this.state;
      for (const c of list.contacts) {
        s.names[c.username] = c.displayName;
        if (!s.contacts[c.username]) s.contacts[c.username] = { username: c.username, displayName: c.displayName };
        this.#ensureConversation(c.username, 0);
      }
      const incoming = new Set(list.incoming.map((r) => r.username));
      for (const r of list.incoming) {
        s.names[r.username] = r.displayName;
        s.requests[r.username] ??= { from: r.username, note: r.note, time: Date.now() };
      }
      for (const u of Object.keys(s.requests)) if (!incoming.has(u)) delete s.requests[u];
      s.outgoing = Object.fromEntries(list.outgoing.map((r) => [r.username, { note: r.note, time: s.outgoing[r.username]?.time ?? Date.now() }]));
      for (const r of list.outgoing) s.names[r.username] = r.displayName;
      s.blocked = Object.fromEntries(list.blocked.map((u) => [u.username, true as const]));
      for (const u of list.blocked) s.names[u.username] = u.displayName;
      this.cache.putState(s);
      this.#changed();
    } catch {
      // Offline again; the next online transition retries.
    }
  }

  #lookupName(username: string): void {
    if (this.state.names[username] || this.#lookups.has(username) || !username) return;
    this.#lookups.add(username);
    void this.client
      .lookupUser(username)
      .then((u) => {
        this.state.names[u.username] = u.displayName;
        this.cache.putState(this.state);
        this.#changed();
      })
      .catch(() => this.#lookups.delete(username));
  }

  // ---- notifications and title -------------------------------------------------------------------------------

  #notify(title: string, body: string, tag: string): void {
    if (!document.hidden) return;
    if (!('Notification' in window) || Notification.permission !== 'granted') return;
    try {
      const n = new Notification(title, { body, tag, silent: false });
      n.onclick = () => {
        window.focus();
        if (tag !== 'contacts') this.open(tag);
        n.close();
      };
    } catch {
      // Some browsers only allow notifications from a service worker; the title badge still shows.
    }
  }

  /** Total unread messages. */
  get unreadTotal(): number {
    let n = 0;
    for (const c of Object.values(this.state.conversations)) n += c.unread;
    return n;
  }

  #updateTitle(): void {
    const n = this.unreadTotal;
    const title = n > 0 ? `(${n > 99 ? '99+' : n}) Synchat` : 'Synchat';
    if (document.title !== title) document.title = title;
  }

  // ---- queries -----------------------------------------------------------------------------------------------

  /** Display name of a user (or the username until known). */
  nameOf(username: string): string {
    if (username === this.me && !this.state.names[username]) return this.client.session?.displayName ?? username;
    return this.state.names[username] ?? username;
  }

  /** Title of a conversation. */
  titleOf(peer: string): string {
    if (isGroupPeer(peer)) return this.state.groups[peer]?.name ?? 'Group';
    return this.nameOf(peer);
  }

  /** Conversations, most recent activity first. */
  conversations(): Conversation[] {
    return Object.values(this.state.conversations).sort((a, b) => b.lastTime - a.lastTime || a.peer.localeCompare(b.peer));
  }

  /** Messages of the open window of `peer` plus local echoes, oldest first, each with its send state. */
  messagesOf(peer: string): ViewMessage[] {
    const win = this.#windows.get(peer);
    const conv = this.state.conversations[peer];
    const me = this.me;
    const out: ViewMessage[] = (win?.messages ?? []).map((m) => {
      if (m.from !== me) return m;
      const isRead = !!conv && !conv.isGroup && !!conv.peerReadUpTo && compareMsgId(m.msgId, conv.peerReadUpTo) <= 0;
      return { ...m, status: isRead ? 'read' : 'sent' };
    });
    const pending = [...this.#pending.values()].filter((p) => p.peer === peer).sort((a, b) => a.queuedAt - b.queuedAt);
    return out.concat(pending);
  }

  /** Whether older messages may exist in the cache for `peer`. */
  hasMore(peer: string): boolean {
    return this.#windows.get(peer)?.hasMore ?? false;
  }

  /** True while the first page of `peer` loads. */
  isLoading(peer: string): boolean {
    return this.#windows.get(peer)?.isLoading ?? true;
  }

  /** An object URL showing a media object (the thumbnail, or the original), fetched with the session's token. */
  mediaUrl(mediaId: string, variant: 'thumb' | 'original'): Promise<string> {
    const local = this.#localMediaUrls.get(mediaId);
    if (local) return Promise.resolve(local);
    return this.#mediaUrls.get(`${mediaId}/${variant}`, () =>
      fetch(`${this.client.baseUrl}/api/media/${encodeURIComponent(mediaId)}${variant === 'thumb' ? '/thumb' : ''}`, {
        headers: { authorization: `Bearer ${this.client.sid ?? ''}` },
      }).then(async (res) => {
        if (!res.ok) throw new Error(`media ${res.status}`);
        return URL.createObjectURL(await res.blob());
      }),
    );
  }

  /** Size and name of a stored media object (`/api/media/info`), cached. */
  mediaInfo(mediaId: string): Promise<{ size?: number; name?: string; mime?: string }> {
    return this.#mediaInfos.get(mediaId, () => this.client.call('/api/media/info', { mediaId }));
  }

  /** Recall is offered on my own sent messages for two minutes. */
  canRecall(m: ViewMessage, now = Date.now()): boolean {
    return m.from === this.me && !!m.msgId && !m.recalled && m.status !== 'failed' && m.status !== 'sending' && now - m.createTime < RECALL_WINDOW_MS;
  }

  // ---- actions -----------------------------------------------------------------------------------------------

  /** Opens a conversation: loads its latest page from the cache and marks it read. */
  open(peer: string | undefined): void {
    this.activePeer = peer;
    if (peer && !this.#windows.has(peer)) {
      const win: ChatWindow = { messages: [], hasMore: true, isLoading: true };
      this.#windows.set(peer, win);
      void this.cache.loadPage(peer, PAGE_SIZE).then(
        (page) => {
          win.messages = mergeMessages(page, win.messages);
          win.hasMore = page.length >= PAGE_SIZE;
          win.isLoading = false;
          this.#scheduleRead();
          this.#changed();
        },
        () => {
          win.isLoading = false;
          this.#changed();
        },
      );
    }
    this.#scheduleRead();
    this.#changed();
  }

  /** Loads the previous page of `peer` from the cache; resolves with how many were added. */
  async loadOlder(peer: string): Promise<number> {
    const win = this.#windows.get(peer);
    if (!win || !win.hasMore || win.isLoading) return 0;
    win.isLoading = true;
    try {
      const first = win.messages[0]?.msgId;
      const page = await this.cache.loadPage(peer, PAGE_SIZE, first);
      win.messages = mergeMessages(page, win.messages);
      win.hasMore = page.length >= PAGE_SIZE;
      return page.length;
    } finally {
      win.isLoading = false;
      this.#changed();
    }
  }

  #scheduleRead(): void {
    if (this.#readTimer) return;
    this.#readTimer = setTimeout(() => {
      this.#readTimer = undefined;
      const peer = this.activePeer;
      if (!peer || document.hidden) return;
      const conv = this.state.conversations[peer];
      const last = conv?.last;
      if (!conv || !last) return;
      if (conv.unread === 0 && compareMsgId(last.msgId, conv.readUpTo || '0') <= 0) return;
      conv.unread = 0;
      conv.readUpTo = maxMsgId(conv.readUpTo, last.msgId);
      this.cache.putState(this.state);
      this.#changed();
      // Only what others sent needs a marker; the server keeps the highest one.
      void this.client.markRead(peer, last.msgId).catch(() => {});
    }, 250);
  }

  /** Queues a text message (it waits in the outbox while offline). */
  async sendText(peer: string, text: string): Promise<void> {
    const content = text.replace(/\s+$/, '');
    if (!content.trim()) return;
    await this.client.queueMessage({ to: peer, type: MSG_TYPE.TEXT, content });
  }

  /** Uploads a picked, pasted, dropped or recorded file with progress, then queues its message. */
  async sendMedia(peer: string, blob: Blob, kind: 'image' | 'voice' | 'file', opts: { name?: string; durationMs?: number } = {}): Promise<void> {
    const type = kind === 'image' ? MSG_TYPE.IMAGE : kind === 'voice' ? MSG_TYPE.VOICE : MSG_TYPE.FILE;
    const mime = (blob.type || (kind === 'voice' ? 'audio/webm' : 'application/octet-stream')).split(';')[0]!.trim();
    const name = opts.name ?? (blob instanceof File ? blob.name : undefined);
    const clientMsgId = newClientMsgId();
    const now = Date.now();
    const p: Pending = {
      peer,
      clientMsgId,
      from: this.me,
      type,
      content: kind === 'voice' ? String(Math.round(opts.durationMs ?? 0)) : kind === 'file' ? (name ?? 'file') : '',
      createTime: now,
      queuedAt: now,
      status: 'sending',
      progress: 0,
      ...(kind === 'image' ? { localUrl: URL.createObjectURL(blob) } : {}),
      ...(name ? { fileName: name } : {}),
      fileSize: blob.size,
      upload: { blob, mime, ...(name ? { name } : {}), ...(opts.durationMs !== undefined ? { durationMs: opts.durationMs } : {}) },
    };
    this.#pending.set(clientMsgId, p);
    const conv = this.#ensureConversation(peer, 0);
    conv.lastTime = Math.max(conv.lastTime, now);
    this.#changed();
    await this.#upload(p);
  }

  async #upload(p: Pending): Promise<void> {
    const up = p.upload;
    if (!up) return;
    p.status = 'sending';
    p.error = undefined;
    this.#changed();
    try {
      const media = await this.media.upload(up.blob, {
        mime: up.mime,
        ...(up.name ? { name: up.name } : {}),
        onProgress: (pr: UploadProgress) => {
          p.progress = pr.totalBytes ? pr.sentBytes / pr.totalBytes : 1;
          this.#changed();
        },
      });
      p.mediaId = media.mediaId;
      if (p.localUrl) this.#localMediaUrls.set(media.mediaId, p.localUrl);
      delete p.upload;
      p.progress = 1;
      await this.client.queueMessage({ to: p.peer, type: p.type, content: p.content, mediaId: media.mediaId, clientMsgId: p.clientMsgId });
    } catch (err) {
      p.status = 'failed';
      p.error = (err as Error).message;
      this.#changed();
    }
  }

  /** Sends a failed message again under the same clientMsgId (or uploads its media again). */
  async resend(clientMsgId: string): Promise<void> {
    const p = this.#pending.get(clientMsgId);
    if (p?.upload) return this.#upload(p);
    try {
      await this.client.resend(clientMsgId);
    } catch {
      // It failed again: its outbox event shows it.
    }
  }

  /** Drops a failed message. */
  async discard(clientMsgId: string): Promise<void> {
    this.#pending.delete(clientMsgId);
    await this.client.discard(clientMsgId);
    this.#changed();
  }

  /** Recalls one of my messages (within two minutes). */
  async recall(msgId: string): Promise<void> {
    await this.client.revoke(msgId);
  }

  /** Asks `username` to become a contact. */
  async requestContact(username: string, note: string): Promise<void> {
    const u = username.trim().toLowerCase();
    await this.client.requestContact(u, note.trim() || undefined);
    this.state.outgoing[u] = { note, time: Date.now() };
    this.cache.putState(this.state);
    this.#changed();
  }

  /** Looks a user up by username. */
  lookup(username: string): Promise<{ username: string; displayName: string }> {
    return this.client.lookupUser(username.trim().toLowerCase());
  }

  /** Accepts a contact request. */
  async accept(username: string): Promise<void> {
    await this.client.acceptContact(username);
  }

  /** Declines a contact request. */
  async decline(username: string): Promise<void> {
    await this.client.declineContact(username);
    delete this.state.requests[username];
    this.cache.putState(this.state);
    this.#changed();
  }

  /** True when I blocked `username`. */
  isBlocked(username: string): boolean {
    return this.state.blocked?.[username] === true;
  }

  /**
   * Blocks `username` (every device of mine; nothing they do reaches me, and they are not told) or ends the
   * block. Shown at once; my other devices learn it from the log.
   */
  async setBlock(username: string, isBlocking: boolean): Promise<void> {
    await (isBlocking ? this.client.blockUser(username) : this.client.unblockUser(username));
    this.#setBlocked(username, isBlocking);
    this.cache.putState(this.state);
    this.#changed();
  }

  #setBlocked(username: string, isBlocked: boolean): void {
    const blocked = (this.state.blocked ??= {});
    if (isBlocked) blocked[username] = true;
    else delete blocked[username];
  }

  /** Creates a group with some of my contacts; resolves with its id. */
  async createGroup(name: string, members: string[]): Promise<string> {
    const id = await this.client.createGroup(name, members);
    return id;
  }

  /** Adds or removes members. */
  async changeMembers(groupId: string, change: { add?: string[]; remove?: string[] }): Promise<void> {
    await this.client.changeGroupMembers(groupId, change);
  }

  /** Leaves a group. */
  async leaveGroup(groupId: string): Promise<void> {
    await this.client.changeGroupMembers(groupId, { remove: [this.me] });
  }

  /** Renames a group. */
  async renameGroup(groupId: string, name: string): Promise<void> {
    await this.client.renameGroup(groupId, name);
  }

  /** My devices. */
  listSessions(): Promise<DeviceSession[]> {
    return this.client.listSessions();
  }

  /** Logs out another device. */
  revokeSession(sessionId: string): Promise<void> {
    return this.client.revokeSession(sessionId);
  }

  /** Changes the password; every other device of this user is logged out, this one stays. */
  changePassword(oldPassword: string, newPassword: string): Promise<void> {
    return this.client.changePassword(oldPassword, newPassword);
  }
}

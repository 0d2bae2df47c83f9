/**
 * ChatService: the imperative shell over the pure core. Authenticates, validates, runs writes through group
 * commit, reads committed state, and publishes post-commit events on the bus. Implements {@link ChatApi} for
 * transports in this process; the IPC host in src/server serves the same API to gateway processes. The calls
 * themselves live by area in accounts.ts, messages.ts, contacts.ts and groups.ts, over a shared
 * {@link ServiceContext}. See docs/architecture.md "service".
 */
import type { Bus, BusEvent, Clock, RateCounters, SessionRow, Store } from '../core/ports.ts';
import { isProofOfLoss, selectorAfter } from '../core/rules.ts';
import { isIdleExpired } from '../core/sessions.ts';
import { RET, SynchatError, isCallPath } from '../protocol/index.ts';
import { AccountCalls } from './accounts.ts';
import { AvatarCalls } from './avatars.ts';
import type { AttachReply, CallContext, ChatApi, PendingReply, Reply } from './api.ts';
import { ContactCalls } from './contacts.ts';
import { CACHE_LIMITS, ServiceContext, fail, tokenHashOf, type Body, type CacheLimits, type Handlers, type Logger } from './context.ts';
import { CatchUp } from './catch-up.ts';
import { GroupCommit } from './group-commit.ts';
import { GroupCalls } from './groups.ts';
import { MediaService, type MediaOptions } from './media.ts';
import { MessageCalls } from './messages.ts';
import { QrLoginCalls } from './qr-login.ts';
import { LocalRateCounters } from './rate-limit.ts';
import { subscriptionOf, type Subscription, type SubscriptionRegistry } from './subscriptions.ts';
import { validateCall } from './validate.ts';
import { RecentSessionEnds } from './session-ends.ts';
import type { ServiceObserver } from './observer.ts';

export type { Logger } from './context.ts';

/** A gateway in the directory (`/api/gateways`). */
export interface GatewayInfo {
  transport: 'ws' | 'tcp' | 'http';
  url: string;
}

/** Options of {@link ChatService}. */
export interface ServiceOptions {
  store: Store;
  bus: Bus;
  clock: Clock;
  logger: Logger;
  /** scrypt cost as log2(N) (config.ts DEFAULTS.passwordLog2N has the measured figures). */
  passwordLog2N: number;
  /** A session unused for longer than this, in ms, ends with 1100 (config.ts DEFAULTS.sessionIdleDays). */
  sessionIdleMs: number;
  /** Bounds of the in-memory caches. @default {@link CACHE_LIMITS} */
  cacheLimits?: Partial<CacheLimits>;
  /** Gather concurrent writes into one transaction. @default true */
  isGroupCommit: boolean;
  /** Throttle sends, registrations and writes into other users' logs (failed logins are always throttled). @default true */
  isRateLimited: boolean;
  /** Where throttles count. @default this process's memory ({@link LocalRateCounters}) */
  counters?: RateCounters;
  /**
   * The gateway directory, least-loaded node first; `requestHost` is the Host the caller reached (HTTP), which a
   * node listening on a wildcard address without a public URL advertises for itself.
   */
  gateways: (requestHost?: string) => GatewayInfo[];
  /** Media uploads and reads; without it the media calls answer ret 1. */
  media?: MediaOptions;
  /** How long a QR login's uuid lives, in ms (config.ts DEFAULTS.qrLoginExpiryMs; docs/protocol.md "QR login"). */
  qrLoginExpiryMs: number;
  /** Told of sends, batches and sync pages as they happen (metrics: src/ops); absent: nothing is timed. */
  observer?: ServiceObserver;
  /**
   * With a bus between nodes: how often the held users' heads are checked against the store, in ms, so news the
   * bus lost still reaches them (see catch-up.ts). @default 5000
   */
  catchUpMs?: number;
}

/**
 * With a bus between nodes, a cached session is read again after this long, in ms: its end travels as a bus
 * event, which can be lost, so another node's logout or revoke takes effect here within this time at worst.
 */
const SHARED_SESSION_RECHECK_MS = 30_000;
/**
 * Session ends remembered for the authentications in flight (see RecentSessionEnds): one is a store read
 * or two; more ends than this during one means a mass logout, and then the session is read again.
 */
const RECENT_ENDS = 4096;
/** How often acknowledged keys and last-seen times are written. */
const TOUCH_FLUSH_MS = 1000;
/**
 * Sessions written per flush, at most (the rest wait for the next): one UPDATE per session lands on a page of its
 * own (~4 KB of WAL each), and a storm of 50,000 reconnecting devices made one flush a transaction of 50,000
 * UPDATEs that held the core's event loop for seconds (attaches queued behind it hit the 10 s AUTH deadline).
 * 5,000 a second bounds a flush to tens of ms; a session's key is kept in memory until written.
 */
const TOUCH_BATCH_MAX = 5000;

/** Refuses an ended session with the ret it ended with. */
function failIfEnded(session: SessionRow): void {
  if (session.endedRet === RET.SESSION_REPLACED) fail(RET.SESSION_REPLACED, 'session replaced or revoked');
  if (session.endedRet !== 0) fail(RET.NOT_LOGGED_IN, 'session ended');
}

function okBody(fields: Record<string, unknown>): string {
  return JSON.stringify({ ret: RET.OK, ...fields });
}

function errorReply(err: SynchatError): Reply {
  const body = JSON.stringify({ ret: err.ret, errMsg: err.errMsg, ...err.data });
  const retryAfterSec = typeof err.data?.retryAfterSec === 'number' ? err.data.retryAfterSec : undefined;
  return { ret: err.ret, body, retryAfterSec };
}

/** The sync service. */
export class ChatService implements ChatApi {
  readonly #o: ServiceOptions;
  readonly #c: ServiceContext;
  readonly #accounts: AccountCalls;
  readonly #qrLogins: QrLoginCalls;
  readonly #handlers: Handlers;
  /**
   * Sessions by bearer token, at most `cacheLimits.sessions`, oldest dropped first (a miss reads the store).
   * Keyed by the token itself, so a call costs a map lookup, not a SHA-256. Ended sessions are marked from the
   * bus's `sessionEnded` events, after commit.
   */
  readonly #sessions = new Map<string, { session: SessionRow; readAt: number }>();
  /** sessionId → bearer token of a cached session, to apply a `sessionEnded` event. */
  readonly #sids = new Map<string, string>();
  /** The last {@link RECENT_ENDS} session ends received. */
  readonly #ends = new RecentSessionEnds(RECENT_ENDS);
  readonly #touchTimer: NodeJS.Timeout;
  /** This node's event listeners (transports here, the IPC hosts of gateway processes). */
  readonly #listeners = new Set<(events: readonly BusEvent[]) => void>();
  /** Attaches whose subscription is held now (long connections and parked polls of every gateway of this node). */
  #attachedCount = 0;
  /** With a bus between nodes: news the bus lost, found in the store. */
  readonly #catchUp: CatchUp | undefined;
  /** Users with an attach held now → how many (a user counts once in `usersOnline` however many devices). */
  readonly #online = new Map<number, number>();

  constructor(options: ServiceOptions) {
    this.#o = options;
    let context: ServiceContext | undefined;
    const gc = new GroupCommit(options.store, {
      isEnabled: options.isGroupCommit,
      maxBatch: 2000,
      publish: (events) => {
        // Listeners time commit → delivery from it (docs/operations.md "Metrics"), on other nodes too.
        const committedAt = options.clock.now();
        for (const ev of events) {
          if (ev.type === 'news') ev.news.committedAt = committedAt;
          else if (ev.type === 'fanout') ev.fanout.committedAt = committedAt;
        }
        options.bus.publish(events);
      },
      ...(options.observer ? { onDurable: options.observer.batchDurable.bind(options.observer) } : {}),
      onError: (err) => {
        options.logger.error({ err }, 'batch rolled back');
        context?.forgetCaches();
      },
    });
    const media = options.media
      ? new MediaService(options.media, { store: options.store, clock: options.clock, logger: options.logger, run: (job) => gc.run(job) })
      : undefined;
    const cacheLimits = { ...CACHE_LIMITS, ...options.cacheLimits };
    this.#c = context = new ServiceContext({ ...options, counters: options.counters ?? new LocalRateCounters(), cacheLimits }, gc, media);
    this.#accounts = new AccountCalls(this.#c);
    this.#qrLogins = new QrLoginCalls(this.#c, this.#accounts, options.qrLoginExpiryMs);
    this.#handlers = {
      ...this.#accounts.handlers(),
      ...this.#qrLogins.handlers(),
      ...new MessageCalls(this.#c).handlers(),
      ...new ContactCalls(this.#c).handlers(),
      ...new GroupCalls(this.#c).handlers(),
      ...new AvatarCalls(this.#c).handlers(),
      ...(media
        ? {
            '/api/media/init': (s: SessionRow, b: Body) => media.init(s, b),
            '/api/media/chunk': (s: SessionRow, b: Body) => media.putChunk(s, b),
            '/api/media/complete': (s: SessionRow, b: Body) => media.complete(s, b),
            '/api/media/info': (s: SessionRow, b: Body) => media.info(s, b),
            '/api/media/message': (s: SessionRow, b: Body) => media.ofMessage(s, b),
          }
        : {}),
    };
    if (options.bus.isShared) {
      this.#catchUp = new CatchUp(options.store, (events) => this.#deliver(events), options.catchUpMs ?? 5000);
      options.bus.onGap(() => {
        // Whatever ended or moved while the link was down: sessions are read again, heads are checked.
        this.#sessions.clear();
        this.#sids.clear();
        // Ends may have been lost too: an authentication in flight reads its session again (RecentSessionEnds.since).
        this.#ends.forgetAll();
        void this.#catchUp!.sweep();
      });
    }
    options.bus.subscribe((events) => {
      this.#onCommitted(events);
      this.#catchUp?.observe(events);
      this.#deliver(events);
    });
    this.#touchTimer = setInterval(() => void this.#flushTouches(), TOUCH_FLUSH_MS);
    this.#touchTimer.unref();
  }

  /** Group-commit figures (batches, jobs, largest batch). */
  get commitStats(): Readonly<{ batches: number; jobs: number; maxBatch: number }> {
    return this.#c.gc.stats;
  }

  // ---- ChatApi ---------------------------------------------------------------------------------------------

  async call(path: string, rawBody: unknown, ctx: CallContext): Promise<Reply> {
    try {
      if (!isCallPath(path)) fail(RET.NOT_FOUND, `no such call: ${path}`);
      const body = validateCall(path, rawBody);
      let result: Record<string, unknown> | string;
      if (path === '/api/register') result = await this.#accounts.register(body, ctx);
      else if (path === '/api/login') result = await this.#accounts.login(body, ctx);
      else if (path === '/api/qrlogin/new') result = await this.#qrLogins.create(body, ctx);
      // As a call (the long connection's CALL op) a poll answers at once; over HTTP it is held (pollQrLogin).
      else if (path === '/api/qrlogin/poll') result = await this.#qrLogins.poll({ ...body, timeout: 0 }, ctx).answer;
      else if (path === '/api/gateways') result = { gateways: this.#o.gateways(ctx.host) };
      else {
        const handler = this.#handlers[path];
        if (!handler) fail(RET.BAD_REQUEST, `${path} is served by its transport, not as a call`);
        const session = await this.#authenticate(ctx.sid);
        result = await handler(session, body, ctx);
      }
      return { ret: RET.OK, body: typeof result === 'string' ? result : okBody(result) };
    } catch (err) {
      if (err instanceof SynchatError) return errorReply(err);
      this.#c.logger.error({ err, path, requestId: ctx.requestId }, 'call failed');
      return errorReply(new SynchatError(RET.SERVER_ERROR));
    }
  }

  /**
   * {@link ChatApi.attach}. The subscription is taken from `registry` (the IPC host passes its gateway's) after
   * authentication and before the head is read, so a listener misses no commit.
   */
  async attach(sid: string, syncKey: number | undefined, _ip: string, registry?: SubscriptionRegistry): Promise<AttachReply> {
    let subscription: Subscription | undefined;
    try {
      const ends = this.#ends.count;
      const session = await this.#authenticate(sid);
      // The bus brings this user's news from other nodes while held; in one process every event reaches the hub,
      // which routes by its own listeners, so only the IPC host counts a registry.
      const releaseBus = this.#o.bus.hold(session.uin);
      const forGateway = registry?.add(session.uin);
      let heads;
      try {
        // The session may have ended while it was authenticated (a cached session, a store read in flight). An
        // end received from now on reaches the attach's listener (docs/architecture.md "Attach"): the gateway's
        // registry now holds the user, and the hub that registers the listener looks back to its mark, taken
        // before this call. So an end received before this line is refused here.
        await this.#refuseIfEnded(session, ends);
        await this.#o.bus.whenHeld();
        heads = (await this.#c.store.read.heads([session.uin]))[0]!;
      } catch (err) {
        releaseBus();
        forGateway?.release();
        throw err;
      }
      const releaseCatchUp = this.#catchUp?.hold(session.uin, heads.head);
      this.#attachedCount++;
      const uin = session.uin;
      this.#online.set(uin, (this.#online.get(uin) ?? 0) + 1);
      subscription = subscriptionOf(() => {
        this.#attachedCount--;
        const held = this.#online.get(uin)!;
        if (held > 1) this.#online.set(uin, held - 1);
        else this.#online.delete(uin);
        releaseBus();
        forGateway?.release();
        releaseCatchUp?.();
      });
      const read = this.#c.store.read;
      const username = await this.#c.username(session.uin, read);
      let epoch = await this.#c.epochOf(session.uin);
      if (isProofOfLoss(syncKey, heads.head)) epoch = await this.#c.renewEpoch(session.uin, epoch, heads.head);
      else if (syncKey !== undefined) this.#c.ack(session.sessionId, syncKey);
      return {
        ret: RET.OK,
        sessionId: session.sessionId,
        uin: session.uin,
        username,
        head: heads.head,
        epoch,
        selector: syncKey === undefined ? 0 : selectorAfter(heads, syncKey),
        subscription,
      };
    } catch (err) {
      subscription?.release();
      if (err instanceof SynchatError) return { ret: err.ret, errMsg: err.errMsg };
      this.#c.logger.error({ err }, 'attach failed');
      return { ret: RET.SERVER_ERROR, errMsg: 'server error' };
    }
  }

  /** {@link ChatApi.pollQrLogin}. */
  pollQrLogin(query: unknown, ctx: CallContext): PendingReply {
    let cancel = (): void => {};
    const reply = (async (): Promise<Reply> => {
      try {
        const poll = this.#qrLogins.poll(validateCall('/api/qrlogin/poll', query), ctx);
        cancel = poll.cancel;
        return { ret: RET.OK, body: okBody(await poll.answer) };
      } catch (err) {
        if (err instanceof SynchatError) return errorReply(err);
        this.#c.logger.error({ err, requestId: ctx.requestId }, 'QR login poll failed');
        return errorReply(new SynchatError(RET.SERVER_ERROR));
      }
    })();
    return { reply, cancel: () => cancel() };
  }

  async checkSession(sid: string | undefined): Promise<Reply> {
    try {
      const session = await this.#authenticate(sid);
      // Whose session it is: the admin dashboard admits the users named in SYNCHAT_ADMIN_USERS (a cached name).
      return { ret: RET.OK, body: okBody({ uin: session.uin, username: await this.#c.username(session.uin, this.#c.store.read) }) };
    } catch (err) {
      if (err instanceof SynchatError) return errorReply(err);
      this.#c.logger.error({ err }, 'session check failed');
      return errorReply(new SynchatError(RET.SERVER_ERROR));
    }
  }

  ack(sessionId: string, syncKey: number): void {
    this.#c.ack(sessionId, syncKey);
  }

  onEvents(listener: (events: readonly BusEvent[]) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Listeners attached to this node now: one per authenticated long connection and per parked synccheck, over
   * every gateway process (the IPC host attaches through here). The directory orders nodes by it.
   */
  get attachedCount(): number {
    return this.#attachedCount;
  }

  /** QR login polls running now, held or being answered (at most MAX_PARKED_QR_POLLS), for tests and metrics. */
  get qrLoginPolls(): number {
    return this.#qrLogins.polls;
  }

  /** Entries in each in-memory cache (bounded by `cacheLimits`), for tests and metrics. */
  get cacheSizes(): Readonly<Record<string, number>> {
    return { sessions: this.#sessions.size, sids: this.#sids.size, ...this.#c.cacheSizes };
  }

  /**
   * Counts for metrics (src/ops reads them at scrape time): users with an attached device on this node now, and
   * totals since start of accepted sends, log entries appended and group-commit batches.
   */
  get opsStats(): { usersOnline: number; sends: number; appends: number; batches: number; syncEntries: number } {
    const gc = this.#c.gc.stats;
    return { usersOnline: this.#online.size, sends: this.#c.opsCounts.sends, appends: gc.appends, batches: gc.batches, syncEntries: this.#c.opsCounts.syncEntries };
  }

  /** Figures of the catch-up sweeps (with a bus between nodes). */
  get catchUpStats(): Readonly<{ sweeps: number; announced: number }> | undefined {
    return this.#catchUp?.stats;
  }

  #deliver(events: readonly BusEvent[]): void {
    for (const listener of this.#listeners) {
      try {
        listener(events);
      } catch (err) {
        // One failing listener must not keep the others from their events.
        this.#c.logger.error({ err }, 'event listener failed');
      }
    }
  }

  /** Writes pending acks, waits for queued writes, stops timers. Does not close the store. */
  async close(): Promise<void> {
    clearInterval(this.#touchTimer);
    this.#catchUp?.close();
    await this.#c.media?.close();
    await this.#flushTouches(true);
    await this.#c.gc.idle();
  }

  // ---- helpers ---------------------------------------------------------------------------------------------

  async #authenticate(sid: string | undefined): Promise<SessionRow> {
    if (!sid) fail(RET.NOT_LOGGED_IN, 'not logged in: send Authorization: Bearer <sid>');
    const cached = this.#sessions.get(sid);
    let session = cached?.session;
    const now = this.#c.clock.now();
    if (!session || (this.#o.bus.isShared && now - cached!.readAt > SHARED_SESSION_RECHECK_MS)) {
      session = await this.#readSession(sid);
      this.#cacheSession(sid, session, now);
    }
    failIfEnded(session);
    if (isIdleExpired(this.#c.lastSeenOf(session), now, this.#o.sessionIdleMs)) await this.#endIdle(session, now);
    // "Seen" is any authenticated call, attach or ack (ack records it itself).
    this.#c.seen(session, now);
    return session;
  }

  /**
   * Ends a session unused for longer than `sessionIdleMs` (1100), in the store so that it is gone on every node,
   * unless the store says another node saw it since; then it is used as usual.
   */
  async #endIdle(session: SessionRow, now: number): Promise<void> {
    const stored = await this.#c.store.read.getSession(session.sessionId);
    session.lastSeenTime = Math.max(session.lastSeenTime, stored?.lastSeenTime ?? 0);
    if (!isIdleExpired(this.#c.lastSeenOf(session), now, this.#o.sessionIdleMs)) return;
    await this.#c.gc.run(async (tx, fx) => {
      const row = await tx.getSession(session.sessionId);
      if (row?.endedRet === 0) await this.#c.endSessionInTx(tx, fx, row, RET.NOT_LOGGED_IN);
    });
    session.endedRet = RET.NOT_LOGGED_IN;
    const days = Math.round(this.#o.sessionIdleMs / 86_400_000);
    fail(RET.NOT_LOGGED_IN, `session ended: unused for more than ${days} days; log in again`);
  }

  async #flushTouches(isAll = false): Promise<void> {
    const touches = this.#c.touches;
    while (touches.size > 0) {
      const updates: { sessionId: string; ackedKey: number; lastSeenTime: number }[] = [];
      for (const t of touches.values()) {
        updates.push(t);
        if (updates.length === TOUCH_BATCH_MAX) break;
      }
      for (const t of updates) touches.delete(t.sessionId);
      const isWritten = await this.#c.gc.run((tx) => tx.touchSessions(updates)).then(
        () => true,
        (err) => {
          this.#c.logger.warn({ err }, 'ack flush failed: kept for the next one');
          this.#requeueTouches(updates);
          return false;
        },
      );
      if (!isAll || !isWritten) return;
    }
  }

  /**
   * Puts back the updates of a flush that failed (a full disk, say), merged into any newer ones, so a later flush
   * writes them (they were dropped: a device's acknowledged key and last-seen time went back after a restart).
   */
  #requeueTouches(updates: readonly { sessionId: string; ackedKey: number; lastSeenTime: number }[]): void {
    const touches = this.#c.touches;
    for (const u of updates) {
      const newer = touches.get(u.sessionId);
      if (newer) {
        newer.ackedKey = Math.max(newer.ackedKey, u.ackedKey);
        newer.lastSeenTime = Math.max(newer.lastSeenTime, u.lastSeenTime);
      } else if (touches.size < this.#c.options.cacheLimits.touches) touches.set(u.sessionId, u);
    }
  }

  /**
   * The session of `sid` from the store. An end published while the read was in flight may not be in what it
   * read (the read began before the commit): it is applied from the ends received meanwhile, so the cache never
   * holds an ended session as live (a later end marks the cached row through `#sids`).
   */
  async #readSession(sid: string): Promise<SessionRow> {
    for (;;) {
      const ends = this.#ends.count;
      const session = await this.#c.store.read.getSessionByToken(tokenHashOf(sid));
      if (!session) fail(RET.NOT_LOGGED_IN, 'not logged in or session ended');
      const ret = this.#ends.since(ends, session.sessionId);
      if (ret === 'unknown') continue;
      if (ret !== 0 && session.endedRet === 0) session.endedRet = ret;
      return session;
    }
  }

  /** Fails if `session` ended: marked on the row, or an end received since `ends` (read again if too many). */
  async #refuseIfEnded(session: SessionRow, ends: number): Promise<void> {
    const ret = this.#ends.since(ends, session.sessionId);
    if (ret === 'unknown') {
      const stored = await this.#c.store.read.getSession(session.sessionId);
      if (!stored) fail(RET.NOT_LOGGED_IN, 'not logged in or session ended');
      failIfEnded(stored);
    } else if (ret !== 0) session.endedRet = ret;
    failIfEnded(session);
  }

  #cacheSession(sid: string, session: SessionRow, readAt: number): void {
    this.#sessions.delete(sid);
    if (this.#sessions.size >= this.#c.options.cacheLimits.sessions) {
      const [oldSid, old] = this.#sessions.entries().next().value as [string, { session: SessionRow }];
      this.#sessions.delete(oldSid);
      this.#sids.delete(old.session.sessionId);
    }
    this.#sessions.set(sid, { session, readAt });
    this.#sids.set(session.sessionId, sid);
  }

  /** After commit: a cached session that ended answers its next call with the ret it ended with. */
  #onCommitted(events: readonly BusEvent[]): void {
    for (const ev of events) {
      if (ev.type !== 'sessionEnded') continue;
      this.#ends.add(ev.ended.sessionId, ev.ended.ret);
      const sid = this.#sids.get(ev.ended.sessionId);
      const cached = sid === undefined ? undefined : this.#sessions.get(sid);
      if (cached) cached.session.endedRet = ev.ended.ret;
    }
  }
}

/**
 * ChatService: the imperative shell over the pure core. Authenticates, validates, runs writes through group
 * commit, reads committed state, and publishes post-commit events on the bus. Implements {@link ChatApi} for
 * transports in this process; the IPC host in src/server serves the same API to gateway processes.
 * See docs/architecture.md "service".
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Bus, BusEvent, Clock, ContactRow, SessionRow, Store, StoreReader, StoreTx, UserRow } from '../core/ports.ts';
import {
  checkMembersChange,
  checkRecall,
  checkSendContent,
  foldUsername,
  groupAddress,
  isAcceptedContact,
  nextOwner,
  parseGroupAddress,
  selectorAfter,
  clampSyncLimit,
  isNewerReadMarker,
} from '../core/rules.ts';
import { RET, SynchatError, isCallPath, type CallPath } from '../protocol/index.ts';
import type { AttachReply, CallContext, ChatApi, Reply } from './api.ts';
import { GroupCommit, type Effects } from './group-commit.ts';
import { hashPassword, verifyPassword } from './passwords.ts';
import { MediaService, type MediaOptions } from './media.ts';
import { WindowCounter } from './rate-limit.ts';
import { SubscriptionRegistry, type Subscription } from './subscriptions.ts';
import { validateCall } from './validate.ts';

/** The logging surface the service needs (pino's). */
export interface Logger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

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
  /** scrypt cost as log2(N). @default 14 (16 MiB, tens of ms) */
  passwordLog2N: number;
  /** Gather concurrent writes into one transaction. @default true */
  isGroupCommit: boolean;
  /** Throttle sends per user (failed logins are always throttled). @default true */
  isRateLimited: boolean;
  /** The gateway directory. */
  gateways: () => GatewayInfo[];
  /** Media uploads and reads; without it the media calls answer ret 1. */
  media?: MediaOptions;
}

type Body = Record<string, any>;
type Handler = (session: SessionRow, body: Body, ctx: CallContext) => Promise<Record<string, unknown> | string>;

/** Failed-login throttle: per username and per address, in a 15-minute window. */
const LOGIN_FAILURES_PER_NAME = 10;
const LOGIN_FAILURES_PER_IP = 100;
const LOGIN_WINDOW_MS = 15 * 60_000;
/** Sends per user per 10 s when rate limiting is on. */
const SENDS_PER_WINDOW = 300;
const SEND_WINDOW_MS = 10_000;
/** Sessions kept in memory (~0.3 KB each); past this the oldest cached one is dropped. */
const SESSION_CACHE_MAX = 200_000;
/** Accepted contact pairs remembered for the send path (a SQL lookup per send was ~2% of the core's time). */
const CONTACT_CACHE_MAX = 500_000;
/** How often acknowledged keys and last-seen times are written. */
const TOUCH_FLUSH_MS = 1000;

/** Matches nothing; verifying against it costs as much as a real check, so unknown names are not revealed by timing. */
let dummyHash: Promise<string> | undefined;

function tokenHashOf(sid: string): string {
  return createHash('sha256').update(sid).digest('base64url');
}

function okBody(fields: Record<string, unknown>): string {
  return JSON.stringify({ ret: RET.OK, ...fields });
}

function errorReply(err: SynchatError): Reply {
  const body = JSON.stringify({ ret: err.ret, errMsg: err.errMsg, ...err.data });
  const retryAfterSec = typeof err.data?.retryAfterSec === 'number' ? err.data.retryAfterSec : undefined;
  return { ret: err.ret, body, retryAfterSec };
}

function fail(ret: SynchatError['ret'], errMsg: string, data?: Record<string, unknown>): never {
  throw new SynchatError(ret, errMsg, data);
}

/** The sync service. */
export class ChatService implements ChatApi {
  readonly #o: ServiceOptions;
  readonly #gc: GroupCommit;
  /**
   * Sessions by bearer token, at most {@link SESSION_CACHE_MAX}, oldest dropped first (a miss reads the store).
   * Keyed by the token itself, so a call costs a map lookup, not a SHA-256. Ended sessions are marked from the
   * bus's `sessionEnded` events, after commit.
   */
  readonly #sessions = new Map<string, SessionRow>();
  /** sessionId → bearer token of a cached session, to apply a `sessionEnded` event. */
  readonly #sids = new Map<string, string>();
  readonly #usernames = new Map<number, string>();
  /** uin → log epoch (set at registration; nothing at run time changes it). */
  readonly #epochs = new Map<number, string>();
  /** username → uin. Both never change once committed, so the caches need no invalidation but a rollback's. */
  readonly #uins = new Map<string, number>();
  /**
   * Accepted contact pairs (`uin:peerUin`) seen by send checks, at most {@link CONTACT_CACHE_MAX}, oldest dropped
   * first. Every contact write goes through {@link ChatService.#putContact} / {@link ChatService.#deleteContact},
   * which forget the pair; a rolled-back batch clears it all.
   */
  readonly #contacts = new Set<string>();
  /** In-process listeners' subscriptions. */
  readonly #listening = new SubscriptionRegistry();
  readonly #touches = new Map<string, { sessionId: string; ackedKey: number; lastSeenTime: number }>();
  readonly #failuresByName = new WindowCounter(LOGIN_FAILURES_PER_NAME, LOGIN_WINDOW_MS);
  readonly #failuresByIp = new WindowCounter(LOGIN_FAILURES_PER_IP, LOGIN_WINDOW_MS);
  readonly #sends = new WindowCounter(SENDS_PER_WINDOW, SEND_WINDOW_MS);
  readonly #touchTimer: NodeJS.Timeout;
  readonly #handlers: Partial<Record<CallPath, Handler>>;
  readonly #media: MediaService | undefined;

  constructor(options: ServiceOptions) {
    this.#o = options;
    this.#gc = new GroupCommit(options.store, {
      isEnabled: options.isGroupCommit,
      maxBatch: 2000,
      publish: (events) => options.bus.publish(events),
      onError: (err) => {
        options.logger.error({ err }, 'batch rolled back');
        // A rolled-back batch may have cached a user it inserted; forget everything it could have taught us.
        this.#usernames.clear();
        this.#epochs.clear();
        this.#uins.clear();
        this.#contacts.clear();
      },
    });
    options.bus.subscribe((events) => this.#onCommitted(events));
    this.#touchTimer = setInterval(() => void this.#flushTouches(), TOUCH_FLUSH_MS);
    this.#touchTimer.unref();
    this.#handlers = {
      '/api/logout': (s) => this.#logout(s),
      '/api/sync': (s, b) => this.#sync(s, b),
      '/api/sendmsg': (s, b) => this.#sendmsg(s, b),
      '/api/read': (s, b) => this.#read(s, b),
      '/api/revoke': (s, b) => this.#revoke(s, b),
      '/api/contacts/request': (s, b) => this.#contactRequest(s, b),
      '/api/contacts/accept': (s, b) => this.#contactAccept(s, b),
      '/api/contacts/decline': (s, b) => this.#contactDecline(s, b),
      '/api/contacts/remove': (s, b) => this.#contactRemove(s, b),
      '/api/contacts/list': (s) => this.#contactList(s),
      '/api/users/lookup': (s, b) => this.#lookup(s, b),
      '/api/profile': (s, b) => this.#profile(s, b),
      '/api/groups/create': (s, b) => this.#groupCreate(s, b),
      '/api/groups/members': (s, b) => this.#groupMembers(s, b),
      '/api/groups/rename': (s, b) => this.#groupRename(s, b),
      '/api/sessions': (s) => this.#sessionList(s),
      '/api/sessions/revoke': (s, b) => this.#sessionRevoke(s, b),
    };
    this.#media = options.media
      ? new MediaService(options.media, { store: options.store, clock: options.clock, logger: options.logger, run: (job) => this.#gc.run(job) })
      : undefined;
    const media = this.#media;
    if (media) {
      Object.assign(this.#handlers, {
        '/api/media/init': (s: SessionRow, b: Body) => media.init(s, b),
        '/api/media/chunk': (s: SessionRow, b: Body) => media.putChunk(s, b),
        '/api/media/complete': (s: SessionRow, b: Body) => media.complete(s, b),
        '/api/media/info': (s: SessionRow, b: Body) => media.info(s, b),
      });
    }
  }

  /** Group-commit figures (batches, jobs, largest batch). */
  get commitStats(): Readonly<{ batches: number; jobs: number; maxBatch: number }> {
    return this.#gc.stats;
  }

  // ---- ChatApi ---------------------------------------------------------------------------------------------

  async call(path: string, rawBody: unknown, ctx: CallContext): Promise<Reply> {
    try {
      if (!isCallPath(path)) fail(RET.NOT_FOUND, `no such call: ${path}`);
      const body = validateCall(path, rawBody);
      let result: Record<string, unknown> | string;
      if (path === '/api/register') result = await this.#register(body);
      else if (path === '/api/login') result = await this.#login(body, ctx);
      else if (path === '/api/gateways') result = { gateways: this.#o.gateways() };
      else {
        const handler = this.#handlers[path];
        if (!handler) fail(RET.BAD_REQUEST, `${path} is served by its transport, not as a call`);
        const session = await this.#authenticate(ctx.sid);
        result = await handler(session, body, ctx);
      }
      return { ret: RET.OK, body: typeof result === 'string' ? result : okBody(result) };
    } catch (err) {
      if (err instanceof SynchatError) return errorReply(err);
      this.#o.logger.error({ err, path, requestId: ctx.requestId }, 'call failed');
      return errorReply(new SynchatError(RET.SERVER_ERROR));
    }
  }

  /**
   * {@link ChatApi.attach}. The subscription is taken from `registry` (the IPC host passes its gateway's) after
   * authentication and before the head is read, so a listener misses no commit.
   */
  async attach(sid: string, syncKey: number | undefined, _ip: string, registry: SubscriptionRegistry = this.#listening): Promise<AttachReply> {
    let subscription: Subscription | undefined;
    try {
      const session = await this.#authenticate(sid);
      subscription = registry.add(session.uin);
      const heads = (await this.#o.store.read.heads([session.uin]))[0]!;
      const read = this.#o.store.read;
      const username = await this.#username(session.uin, read);
      const epoch = await this.#epochOf(session.uin);
      if (syncKey !== undefined && syncKey <= heads.head) this.ack(session.sessionId, syncKey);
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
      this.#o.logger.error({ err }, 'attach failed');
      return { ret: RET.SERVER_ERROR, errMsg: 'server error' };
    }
  }

  /** Users with a listener in this process (in-process transports; the IPC host keeps one registry per gateway). */
  get listeningUsers(): number {
    return this.#listening.users;
  }

  ack(sessionId: string, syncKey: number): void {
    const prev = this.#touches.get(sessionId);
    const now = this.#o.clock.now();
    if (prev) {
      prev.ackedKey = Math.max(prev.ackedKey, syncKey);
      prev.lastSeenTime = now;
    } else this.#touches.set(sessionId, { sessionId, ackedKey: syncKey, lastSeenTime: now });
  }

  onEvents(listener: (events: readonly BusEvent[]) => void): () => void {
    return this.#o.bus.subscribe(listener);
  }

  /** Writes pending acks, waits for queued writes, stops timers. Does not close the store. */
  async close(): Promise<void> {
    clearInterval(this.#touchTimer);
    await this.#media?.close();
    await this.#flushTouches();
    await this.#gc.idle();
  }

  // ---- helpers ---------------------------------------------------------------------------------------------

  async #authenticate(sid: string | undefined): Promise<SessionRow> {
    if (!sid) fail(RET.NOT_LOGGED_IN, 'not logged in: send Authorization: Bearer <sid>');
    let session = this.#sessions.get(sid);
    if (!session) {
      session = await this.#o.store.read.getSessionByToken(tokenHashOf(sid));
      if (!session) fail(RET.NOT_LOGGED_IN, 'not logged in or session ended');
      this.#cacheSession(sid, session);
    }
    if (session.endedRet === RET.SESSION_REPLACED) fail(RET.SESSION_REPLACED, 'session replaced or revoked');
    if (session.endedRet !== 0) fail(RET.NOT_LOGGED_IN, 'session ended');
    return session;
  }

  async #user(uin: number, tx: StoreReader = this.#o.store.read): Promise<UserRow> {
    const user = await tx.getUser(uin);
    if (!user) throw new Error(`user ${uin} vanished`);
    this.#usernames.set(uin, user.username);
    this.#epochs.set(uin, user.epoch);
    return user;
  }

  /** A user's log epoch, cached: every attach (synccheck, long connection) and sync answers it. */
  async #epochOf(uin: number): Promise<string> {
    return this.#epochs.get(uin) ?? (await this.#user(uin)).epoch;
  }

  async #username(uin: number, tx: StoreReader): Promise<string> {
    return this.#usernames.get(uin) ?? (await this.#user(uin, tx)).username;
  }

  /** The uin of a (folded) username, cached: the send path's recipient lookup was 7% of a send's CPU. */
  async #uinOf(username: string, tx: StoreReader): Promise<number | undefined> {
    const cached = this.#uins.get(username);
    if (cached !== undefined) return cached;
    const user = await tx.getUserByName(username);
    if (!user) return undefined;
    this.#uins.set(username, user.uin);
    this.#usernames.set(user.uin, user.username);
    return user.uin;
  }

  async #flushTouches(): Promise<void> {
    if (this.#touches.size === 0) return;
    const updates = [...this.#touches.values()];
    this.#touches.clear();
    await this.#gc.run((tx) => tx.touchSessions(updates)).catch((err) => this.#o.logger.warn({ err }, 'ack flush failed'));
  }

  #cacheSession(sid: string, session: SessionRow): void {
    if (this.#sessions.size >= SESSION_CACHE_MAX) {
      const [oldSid, old] = this.#sessions.entries().next().value as [string, SessionRow];
      this.#sessions.delete(oldSid);
      this.#sids.delete(old.sessionId);
    }
    this.#sessions.set(sid, session);
    this.#sids.set(session.sessionId, sid);
  }

  /** After commit: a cached session that ended answers its next call with the ret it ended with. */
  #onCommitted(events: readonly BusEvent[]): void {
    for (const ev of events) {
      if (ev.type !== 'sessionEnded') continue;
      const sid = this.#sids.get(ev.ended.sessionId);
      const cached = sid === undefined ? undefined : this.#sessions.get(sid);
      if (cached) cached.endedRet = ev.ended.ret;
    }
  }

  /** Whether `uin` may write to `peerUin` directly (an accepted contact), remembered once seen. */
  async #isContact(tx: StoreTx, uin: number, peerUin: number): Promise<boolean> {
    const key = `${uin}:${peerUin}`;
    if (this.#contacts.has(key)) return true;
    if (!isAcceptedContact(await tx.getContact(uin, peerUin))) return false;
    if (this.#contacts.size >= CONTACT_CACHE_MAX) this.#contacts.delete(this.#contacts.values().next().value!);
    this.#contacts.add(key);
    return true;
  }

  #putContact(tx: StoreTx, row: ContactRow): Promise<void> {
    this.#contacts.delete(`${row.uin}:${row.peerUin}`);
    return tx.putContact(row);
  }

  #deleteContact(tx: StoreTx, uin: number, peerUin: number): Promise<void> {
    this.#contacts.delete(`${uin}:${peerUin}`);
    return tx.deleteContact(uin, peerUin);
  }

  /** Ends a session (the cache learns it from the `sessionEnded` event once the batch commits). */
  #endSessionInTx(tx: StoreTx, fx: Effects, session: SessionRow, ret: number): Promise<void> {
    fx.sessionEnded(session.sessionId, session.uin, ret);
    return tx.endSession(session.sessionId, ret);
  }

  // ---- accounts --------------------------------------------------------------------------------------------

  async #register(b: Body): Promise<Record<string, unknown>> {
    const username = foldUsername(b.username);
    const displayName = b.displayName.trim();
    if (!displayName) fail(RET.BAD_REQUEST, 'displayName: must not be blank');
    if (await this.#o.store.read.getUserByName(username)) fail(RET.CONFLICT, 'username is taken');
    const pwHash = await hashPassword(b.password, this.#o.passwordLog2N);
    const uin = await this.#gc.run(async (tx) => {
      if (await tx.getUserByName(username)) fail(RET.CONFLICT, 'username is taken');
      return tx.insertUser({
        username,
        displayName,
        pwHash,
        epoch: randomBytes(8).toString('hex'),
        createTime: this.#o.clock.now(),
      });
    });
    return { uin };
  }

  async #login(b: Body, ctx: CallContext): Promise<Record<string, unknown>> {
    const username = foldUsername(b.username);
    const now = this.#o.clock.now();
    const wait = Math.max(this.#failuresByName.retryAfterSec(username, now), this.#failuresByIp.retryAfterSec(ctx.ip, now));
    if (wait > 0) fail(RET.RATE_LIMITED, 'too many failed logins; try again later', { retryAfterSec: wait });
    const user = await this.#o.store.read.getUserByName(username);
    dummyHash ??= hashPassword('synchat-dummy-password', this.#o.passwordLog2N);
    const isValid = user ? await verifyPassword(b.password, user.pwHash) : (await verifyPassword(b.password, await dummyHash), false);
    if (!user || !isValid) {
      this.#failuresByName.hit(username, now);
      this.#failuresByIp.hit(ctx.ip, now);
      // PROTOCOL.md login: one errMsg for a wrong username and a wrong password.
      fail(RET.FORBIDDEN, 'wrong username or password');
    }
    this.#failuresByName.clear(username);
    const sid = randomBytes(32).toString('base64url');
    const session: SessionRow = {
      sessionId: randomBytes(12).toString('base64url'),
      tokenHash: tokenHashOf(sid),
      uin: user.uin,
      deviceId: b.deviceId,
      deviceName: b.deviceName ?? b.deviceId,
      createTime: now,
      lastSeenTime: now,
      ackedKey: 0,
      endedRet: 0,
    };
    const heads = await this.#gc.run(async (tx, fx) => {
      // A new login of the same device replaces its old session (ret 1101 on the old one).
      for (const old of await tx.listSessions(user.uin)) {
        if (old.endedRet === 0 && old.deviceId === session.deviceId) await this.#endSessionInTx(tx, fx, old, RET.SESSION_REPLACED);
      }
      await tx.insertSession(session);
      return (await tx.heads([user.uin]))[0]!;
    });
    this.#usernames.set(user.uin, user.username);
    return { sid, uin: user.uin, username: user.username, displayName: user.displayName, syncKey: heads.head, epoch: user.epoch };
  }

  async #logout(s: SessionRow): Promise<Record<string, unknown>> {
    await this.#gc.run((tx, fx) => this.#endSessionInTx(tx, fx, s, RET.NOT_LOGGED_IN));
    return {};
  }

  async #sessionList(s: SessionRow): Promise<Record<string, unknown>> {
    const rows = await this.#o.store.read.listSessions(s.uin);
    const sessions = rows
      .filter((r) => r.endedRet === 0)
      .map((r) => ({
        sessionId: r.sessionId,
        deviceId: r.deviceId,
        deviceName: r.deviceName,
        createTime: r.createTime,
        lastSeenTime: Math.max(r.lastSeenTime, this.#touches.get(r.sessionId)?.lastSeenTime ?? 0),
        ackedKey: Math.max(r.ackedKey, this.#touches.get(r.sessionId)?.ackedKey ?? 0),
        isCurrent: r.sessionId === s.sessionId,
      }));
    return { sessions };
  }

  async #sessionRevoke(s: SessionRow, b: Body): Promise<Record<string, unknown>> {
    await this.#gc.run(async (tx, fx) => {
      const target = await tx.getSession(b.sessionId);
      if (!target || target.uin !== s.uin || target.endedRet !== 0) fail(RET.NOT_FOUND, 'no such active session');
      await this.#endSessionInTx(tx, fx, target, target.sessionId === s.sessionId ? RET.NOT_LOGGED_IN : RET.SESSION_REPLACED);
    });
    return {};
  }

  async #profile(s: SessionRow, b: Body): Promise<Record<string, unknown>> {
    const displayName = String(b.displayName).trim();
    if (!displayName) fail(RET.BAD_REQUEST, 'displayName: must not be blank');
    await this.#gc.run(async (tx, fx) => {
      const me = await this.#username(s.uin, tx);
      await tx.setDisplayName(s.uin, displayName);
      const peers = (await tx.listContacts(s.uin)).filter((c) => c.state === 'accepted').map((c) => c.peerUin);
      await fx.appendEach([s.uin, ...peers], 'contact', { username: me, displayName });
    });
    return {};
  }

  async #lookup(_s: SessionRow, b: Body): Promise<Record<string, unknown>> {
    const user = await this.#o.store.read.getUserByName(foldUsername(b.username));
    if (!user) fail(RET.NOT_FOUND, 'no such user');
    return { username: user.username, displayName: user.displayName };
  }

  // ---- sync ------------------------------------------------------------------------------------------------

  async #sync(s: SessionRow, b: Body): Promise<string> {
    const key: number = b.syncKey;
    const limit = clampSyncLimit(b.limit);
    const epoch = await this.#epochOf(s.uin);
    const { head } = (await this.#o.store.read.heads([s.uin]))[0]!;
    if (key > head) {
      fail(RET.BAD_REQUEST, `syncKey ${key} is ahead of this log (head ${head}); check epoch and sync from 0`, { epoch });
    }
    // One page plus one row tells whether more remain, without counting the log.
    const rows = await this.#o.store.readLog(s.uin, key, limit + 1);
    const continueFlag = rows.length > limit;
    if (continueFlag) rows.pop();
    const newKey = rows.length ? rows[rows.length - 1]!.seq : key;
    this.ack(s.sessionId, key);
    let entries = '';
    for (let i = 0; i < rows.length; i++) entries += (i ? ',' : '') + rows[i]!.json;
    return `{"ret":0,"entries":[${entries}],"syncKey":${newKey},"continueFlag":${continueFlag},"epoch":${JSON.stringify(epoch)}}`;
  }

  // ---- messages --------------------------------------------------------------------------------------------

  async #sendmsg(s: SessionRow, b: Body): Promise<Record<string, unknown>> {
    const refusal = checkSendContent(b.type, b.content, b.mediaId);
    if (refusal) fail(refusal.ret, refusal.errMsg);
    if (this.#o.isRateLimited) {
      const wait = this.#sends.hit(String(s.uin), this.#o.clock.now());
      if (wait > 0) fail(RET.RATE_LIMITED, 'sending too fast', { retryAfterSec: wait });
    }
    return this.#gc.run(async (tx, fx) => {
      const dup = await tx.findSend(s.uin, b.clientMsgId);
      // PROTOCOL.md sendmsg: a repeat of (sender, clientMsgId), whatever its content, returns the first answer.
      if (dup) return { msgId: String(dup.msgId), seq: dup.senderSeq, createTime: dup.createTime, duplicate: true };
      const me = await this.#username(s.uin, tx);
      const groupId = parseGroupAddress(b.to);
      let to: string;
      let toUin = 0;
      let recipients: { uin: number; peer: string }[];
      if (groupId !== undefined) {
        const members = await tx.getMembers(groupId);
        if (!members.includes(s.uin)) fail(RET.FORBIDDEN, 'not a member of this group');
        to = groupAddress(groupId);
        recipients = members.map((uin) => ({ uin, peer: to }));
      } else {
        to = foldUsername(b.to);
        const peerUin = await this.#uinOf(to, tx);
        if (peerUin === undefined) fail(RET.FORBIDDEN, 'not a contact');
        toUin = peerUin;
        if (peerUin === s.uin) recipients = [{ uin: s.uin, peer: to }];
        else {
          if (!(await this.#isContact(tx, s.uin, peerUin))) fail(RET.FORBIDDEN, 'not a contact');
          recipients = [
            { uin: s.uin, peer: to },
            { uin: peerUin, peer: me },
          ];
        }
      }
      // A media message: the sender may use this media, and from now on this conversation may read it.
      if (b.mediaId) {
        if (!this.#media) fail(RET.BAD_REQUEST, 'media is not enabled on this server');
        await this.#media.checkSend(tx, s.uin, b.type, b.mediaId);
        await this.#media.recordSend(tx, b.mediaId, s.uin, toUin, groupId ?? 0);
      }
      const msgId = await tx.nextMsgId();
      const createTime = this.#o.clock.now();
      const shared = {
        msgId: String(msgId),
        clientMsgId: b.clientMsgId,
        from: me,
        to,
        type: b.type,
        content: b.content,
        ...(b.mediaId ? { mediaId: b.mediaId } : {}),
        createTime,
      };
      let senderSeq = 0;
      if (groupId !== undefined) {
        // Group fan-out: every member's entry differs only in seq, so the body is encoded once.
        const uins = recipients.map((r) => r.uin);
        const seqs = await fx.appendEach(uins, 'msg', { ...shared, peer: to });
        senderSeq = seqs[uins.indexOf(s.uin)]!;
      } else {
        for (const r of recipients) {
          const seq = await fx.append(r.uin, 'msg', { ...shared, peer: r.peer });
          if (r.uin === s.uin) senderSeq = seq;
        }
      }
      await tx.insertMessage({
        msgId,
        fromUin: s.uin,
        clientMsgId: b.clientMsgId,
        to,
        toUin,
        groupId: groupId ?? 0,
        type: b.type,
        content: b.content,
        mediaId: b.mediaId ?? null,
        createTime,
        senderSeq,
        revoked: false,
      });
      return { msgId: String(msgId), seq: senderSeq, createTime, duplicate: false };
    });
  }

  async #read(s: SessionRow, b: Body): Promise<Record<string, unknown>> {
    const msgId = Number(b.msgId);
    await this.#gc.run(async (tx, fx) => {
      const me = await this.#username(s.uin, tx);
      const msg = await tx.getMessage(msgId);
      const groupId = parseGroupAddress(b.peer);
      let peer: string;
      let receiptUin = 0;
      if (groupId !== undefined) {
        if (!msg || msg.groupId !== groupId || !(await tx.getMembers(groupId)).includes(s.uin)) fail(RET.NOT_FOUND, 'no such message in this conversation');
        peer = groupAddress(groupId);
      } else {
        peer = foldUsername(b.peer);
        const other = await tx.getUserByName(peer);
        const isBetween =
          msg && other && msg.groupId === 0 &&
          ((msg.fromUin === s.uin && msg.toUin === other.uin) || (msg.fromUin === other.uin && msg.toUin === s.uin));
        if (!isBetween) fail(RET.NOT_FOUND, 'no such message in this conversation');
        if (other!.uin !== s.uin) receiptUin = other!.uin;
      }
      if (!isNewerReadMarker(await tx.getReadMarker(s.uin, peer), msgId)) return;
      await tx.setReadMarker({ uin: s.uin, peer, msgId });
      await fx.append(s.uin, 'read', { peer, msgId: String(msgId), by: me });
      // PROTOCOL.md read: in a direct chat the peer gets a receipt.
      if (receiptUin) await fx.append(receiptUin, 'read', { peer: me, msgId: String(msgId), by: me });
    });
    return {};
  }

  async #revoke(s: SessionRow, b: Body): Promise<Record<string, unknown>> {
    const msgId = Number(b.msgId);
    await this.#gc.run(async (tx, fx) => {
      const msg = await tx.getMessage(msgId);
      const refusal = checkRecall(msg, s.uin, this.#o.clock.now());
      if (refusal) fail(refusal.ret, refusal.errMsg);
      if (msg!.revoked) return;
      await tx.setRevoked(msgId);
      if (msg!.groupId) {
        const peer = groupAddress(msg!.groupId);
        await fx.appendEach(await tx.getMembers(msg!.groupId), 'revoke', { msgId: String(msgId), peer });
      } else {
        const me = await this.#username(s.uin, tx);
        await fx.append(s.uin, 'revoke', { msgId: String(msgId), peer: msg!.to });
        if (msg!.toUin !== s.uin) await fx.append(msg!.toUin, 'revoke', { msgId: String(msgId), peer: me });
      }
    });
    return {};
  }

  // ---- contacts --------------------------------------------------------------------------------------------

  async #otherUser(tx: StoreTx, s: SessionRow, name: string): Promise<UserRow> {
    const other = await tx.getUserByName(foldUsername(name));
    if (!other) fail(RET.NOT_FOUND, 'no such user');
    if (other.uin === s.uin) fail(RET.BAD_REQUEST, 'that is you');
    return other;
  }

  async #contactRequest(s: SessionRow, b: Body): Promise<Record<string, unknown>> {
    await this.#gc.run(async (tx, fx) => {
      const other = await this.#otherUser(tx, s, b.username);
      const mine = await tx.getContact(s.uin, other.uin);
      if (mine?.state === 'accepted') fail(RET.CONFLICT, 'already a contact');
      const me = await this.#user(s.uin, tx);
      const now = this.#o.clock.now();
      if (mine?.state === 'incoming') {
        // They asked first: asking back accepts.
        await this.#makeContacts(tx, fx, me, other, now);
        return;
      }
      const note = b.note ?? '';
      await this.#putContact(tx, { uin: s.uin, peerUin: other.uin, state: 'outgoing', note, updateTime: now });
      await this.#putContact(tx, { uin: other.uin, peerUin: s.uin, state: 'incoming', note, updateTime: now });
      await fx.append(other.uin, 'contactRequest', { from: me.username, displayName: me.displayName, note });
    });
    return {};
  }

  async #makeContacts(tx: StoreTx, fx: Effects, me: UserRow, other: UserRow, now: number): Promise<void> {
    await this.#putContact(tx, { uin: me.uin, peerUin: other.uin, state: 'accepted', note: '', updateTime: now });
    await this.#putContact(tx, { uin: other.uin, peerUin: me.uin, state: 'accepted', note: '', updateTime: now });
    await fx.append(me.uin, 'contact', { username: other.username, displayName: other.displayName });
    await fx.append(other.uin, 'contact', { username: me.username, displayName: me.displayName });
  }

  async #contactAccept(s: SessionRow, b: Body): Promise<Record<string, unknown>> {
    await this.#gc.run(async (tx, fx) => {
      const other = await this.#otherUser(tx, s, b.username);
      const mine = await tx.getContact(s.uin, other.uin);
      if (mine?.state === 'accepted') fail(RET.CONFLICT, 'already a contact');
      if (mine?.state !== 'incoming') fail(RET.NOT_FOUND, 'no pending request from that user');
      await this.#makeContacts(tx, fx, await this.#user(s.uin, tx), other, this.#o.clock.now());
    });
    return {};
  }

  async #contactDecline(s: SessionRow, b: Body): Promise<Record<string, unknown>> {
    await this.#gc.run(async (tx, fx) => {
      const other = await this.#otherUser(tx, s, b.username);
      const mine = await tx.getContact(s.uin, other.uin);
      if (mine?.state !== 'incoming') fail(RET.NOT_FOUND, 'no pending request from that user');
      await this.#deleteContact(tx, s.uin, other.uin);
      await this.#deleteContact(tx, other.uin, s.uin);
      // Own other devices drop the request too.
      await fx.append(s.uin, 'contact', { username: other.username, displayName: other.displayName, removed: true });
    });
    return {};
  }

  async #contactRemove(s: SessionRow, b: Body): Promise<Record<string, unknown>> {
    await this.#gc.run(async (tx, fx) => {
      const other = await this.#otherUser(tx, s, b.username);
      const mine = await tx.getContact(s.uin, other.uin);
      if (!mine) fail(RET.NOT_FOUND, 'not a contact');
      const me = await this.#user(s.uin, tx);
      await this.#deleteContact(tx, s.uin, other.uin);
      await this.#deleteContact(tx, other.uin, s.uin);
      await fx.append(s.uin, 'contact', { username: other.username, displayName: other.displayName, removed: true });
      if (mine.state === 'accepted') {
        await fx.append(other.uin, 'contact', { username: me.username, displayName: me.displayName, removed: true });
      }
    });
    return {};
  }

  async #contactList(s: SessionRow): Promise<Record<string, unknown>> {
    const read = this.#o.store.read;
    const rows = await read.listContacts(s.uin);
    const users = new Map((await read.getUsers(rows.map((r) => r.peerUin))).map((u) => [u.uin, u]));
    const pick = (state: string) =>
      rows
        .filter((r) => r.state === state && users.has(r.peerUin))
        .map((r) => ({ username: users.get(r.peerUin)!.username, displayName: users.get(r.peerUin)!.displayName, note: r.note }));
    const groups = [];
    for (const gid of await read.listGroups(s.uin)) {
      const g = await read.getGroup(gid);
      if (g) groups.push({ groupId: groupAddress(gid), name: g.name });
    }
    return { contacts: pick('accepted'), incoming: pick('incoming'), outgoing: pick('outgoing'), groups };
  }

  // ---- groups ----------------------------------------------------------------------------------------------

  async #contactsByName(tx: StoreTx, s: SessionRow, names: readonly string[]): Promise<UserRow[]> {
    const users: UserRow[] = [];
    for (const name of new Set(names.map(foldUsername))) {
      const u = await tx.getUserByName(name);
      if (!u) fail(RET.NOT_FOUND, `no such user: ${name}`);
      if (u.uin !== s.uin && !isAcceptedContact(await tx.getContact(s.uin, u.uin))) fail(RET.FORBIDDEN, `not a contact: ${name}`);
      users.push(u);
    }
    return users;
  }

  /** Appends the group as it now is to every member's log, and a removal to each of `removed`. */
  async #announceGroup(tx: StoreTx, fx: Effects, groupId: number, removed: readonly number[] = []): Promise<void> {
    const g = (await tx.getGroup(groupId))!;
    const members = await tx.getMembers(groupId);
    const names: string[] = [];
    for (const uin of members) names.push(await this.#username(uin, tx));
    await fx.appendEach(members, 'group', { groupId: groupAddress(groupId), name: g.name, members: names, owner: await this.#username(g.ownerUin, tx) });
    if (removed.length > 0) await fx.appendEach(removed, 'group', { groupId: groupAddress(groupId), name: g.name, members: names, removed: true });
  }

  async #groupCreate(s: SessionRow, b: Body): Promise<Record<string, unknown>> {
    const name = String(b.name).trim();
    if (!name) fail(RET.BAD_REQUEST, 'name: must not be blank');
    const groupId = await this.#gc.run(async (tx, fx) => {
      const others = (await this.#contactsByName(tx, s, b.members)).filter((u) => u.uin !== s.uin);
      const now = this.#o.clock.now();
      const id = await tx.nextGroupId();
      await tx.putGroup({ groupId: id, name, ownerUin: s.uin, createTime: now });
      await tx.addMembers(id, [s.uin], now);
      await tx.addMembers(id, others.map((u) => u.uin), now);
      await this.#announceGroup(tx, fx, id);
      return id;
    });
    return { groupId: groupAddress(groupId) };
  }

  async #groupMembers(s: SessionRow, b: Body): Promise<Record<string, unknown>> {
    const groupId = parseGroupAddress(b.groupId)!;
    await this.#gc.run(async (tx, fx) => {
      const g = await tx.getGroup(groupId);
      const members = g ? await tx.getMembers(groupId) : [];
      if (!g || !members.includes(s.uin)) fail(RET.FORBIDDEN, 'not a member of this group');
      const add = (await this.#contactsByName(tx, s, b.add ?? [])).map((u) => u.uin).filter((u) => !members.includes(u));
      const remove: number[] = [];
      for (const name of b.remove ?? []) {
        const u = await tx.getUserByName(foldUsername(name));
        if (u && members.includes(u.uin)) remove.push(u.uin);
      }
      const refusal = checkMembersChange({ byUin: s.uin, ownerUin: g.ownerUin, members, add, remove });
      if (refusal) fail(refusal.ret, refusal.errMsg);
      if (add.length === 0 && remove.length === 0) return;
      const now = this.#o.clock.now();
      await tx.removeMembers(groupId, remove);
      await tx.addMembers(groupId, add, now);
      const owner = nextOwner(g.ownerUin, await tx.getMembers(groupId));
      if (owner !== g.ownerUin) await tx.putGroup({ ...g, ownerUin: owner });
      await this.#announceGroup(tx, fx, groupId, remove);
    });
    return {};
  }

  async #groupRename(s: SessionRow, b: Body): Promise<Record<string, unknown>> {
    const groupId = parseGroupAddress(b.groupId)!;
    const name = String(b.name).trim();
    if (!name) fail(RET.BAD_REQUEST, 'name: must not be blank');
    await this.#gc.run(async (tx, fx) => {
      const g = await tx.getGroup(groupId);
      if (!g || !(await tx.getMembers(groupId)).includes(s.uin)) fail(RET.FORBIDDEN, 'not a member of this group');
      await tx.putGroup({ ...g, name });
      await this.#announceGroup(tx, fx, groupId);
    });
    return {};
  }
}

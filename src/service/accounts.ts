/**
 * Accounts and device sessions: register (throttled per address), login (failures throttled per username and
 * address, and per address), password change, logout (here or everywhere), the device list and remote logout,
 * profile and lookup. See docs/protocol.md "Accounts" and docs/security.md.
 */
import { randomBytes } from 'node:crypto';
import type { BackoffPolicy, FailureBackoff, Heads, RateCounter, SessionRow, StoreTx, UserRow } from '../core/ports.ts';
import { unblockedRecipients } from '../core/decisions.ts';
import { foldUsername } from '../core/rules.ts';
import { isIdleExpired, sessionsOverCap } from '../core/sessions.ts';
import { RET } from '../protocol/index.ts';
import type { CallContext } from './api.ts';
import { fail, newEpoch, shownName, tokenHashOf, type Body, type Handlers, type ServiceContext } from './context.ts';
import type { Effects } from './group-commit.ts';
import { passwordProblem } from './password-policy.ts';
import { hashPassword, needsRehash, verifyPassword } from './passwords.ts';
import { WRITE_RATES } from './rate-limit.ts';

/**
 * Failed password checks (login, `/api/password`) of one username from one address: 5 free (typos), then 1 s, 2 s,
 * 4 s … at most 10 min between tries; forgotten after an hour without a failure, and at a success. Counted per
 * address too, so failures elsewhere never make the owner wait (docs/security.md "Throttles").
 */
const FAILURES_BY_NAME_AND_IP: BackoffPolicy = { freeFailures: 5, baseDelayMs: 1000, maxDelayMs: 10 * 60_000, forgetMs: 60 * 60_000 };
/**
 * Failed password checks from one address, whatever the username (one address guessing many accounts): 20 free,
 * then the same growing delays. Not forgotten at a success, or an attacker's own account would reset it.
 */
const FAILURES_BY_IP: BackoffPolicy = { freeFailures: 20, baseDelayMs: 1000, maxDelayMs: 10 * 60_000, forgetMs: 60 * 60_000 };
/** Registrations per address per hour (with SYNCHAT_RATE_LIMIT=on): an address cannot mint accounts in bulk. */
const REGISTRATIONS_PER_IP = 10;
const REGISTRATION_WINDOW_MS = 60 * 60_000;
/**
 * Active sessions one user may hold: a login past it ends the least recently seen (1101). Bounds the rows, the
 * device list and what one stolen password can keep open; 50 is far above the devices one person uses.
 */
export const MAX_SESSIONS_PER_USER = 50;

/** Matches nothing; verifying against it costs as much as a real check, so unknown names are not revealed by timing. */
let dummyHash: Promise<string> | undefined;

/** Accounts and sessions. */
export class AccountCalls {
  readonly #c: ServiceContext;
  readonly #failuresByNameAndIp: FailureBackoff;
  readonly #failuresByIp: FailureBackoff;
  readonly #registrations: RateCounter;
  readonly #profileChanges: RateCounter;

  constructor(c: ServiceContext) {
    this.#c = c;
    this.#failuresByNameAndIp = c.options.counters.backoff('loginFailuresByNameAndIp', FAILURES_BY_NAME_AND_IP);
    this.#failuresByIp = c.options.counters.backoff('loginFailuresByIp', FAILURES_BY_IP);
    this.#registrations = c.options.counters.counter('registrationsByIp', REGISTRATIONS_PER_IP, REGISTRATION_WINDOW_MS);
    this.#profileChanges = c.options.counters.counter('profileChanges', WRITE_RATES.profileChanges.limit, WRITE_RATES.profileChanges.windowMs);
  }

  /** The calls this area serves. */
  handlers(): Handlers {
    return {
      '/api/logout': (s, b) => this.#logout(s, b),
      '/api/password': (s, b, ctx) => this.#changePassword(s, b, ctx),
      '/api/sessions': (s) => this.#sessionList(s),
      '/api/sessions/revoke': (s, b) => this.#sessionRevoke(s, b),
      '/api/profile': (s, b) => this.#profile(s, b),
      '/api/users/lookup': (s, b) => this.#lookup(s, b),
    };
  }

  /** `/api/register` (no session needed). */
  async register(b: Body, ctx: CallContext): Promise<Record<string, unknown>> {
    const username = foldUsername(b.username);
    const displayName = shownName('displayName', b.displayName);
    const problem = passwordProblem(b.password, username);
    if (problem) fail(RET.BAD_REQUEST, problem);
    if (this.#c.options.isRateLimited) {
      const wait = await this.#registrations.hit(ctx.ip, this.#c.clock.now());
      if (wait > 0) fail(RET.RATE_LIMITED, 'too many registrations from this address; try again later', { retryAfterSec: wait });
    }
    if (await this.#c.store.read.getUserByName(username)) fail(RET.CONFLICT, 'username is taken');
    const pwHash = await hashPassword(b.password, this.#c.options.passwordLog2N);
    const uin = await this.#c.gc.run(async (tx) => {
      if (await tx.getUserByName(username)) fail(RET.CONFLICT, 'username is taken');
      return tx.insertUser({
        username,
        displayName,
        pwHash,
        epoch: newEpoch(),
        createTime: this.#c.clock.now(),
      });
    });
    return { uin };
  }

  /** `/api/login` (no session needed). */
  async login(b: Body, ctx: CallContext): Promise<Record<string, unknown>> {
    const username = foldUsername(b.username);
    const now = this.#c.clock.now();
    await this.#checkThrottles(username, ctx.ip, now);
    const user = await this.#c.store.read.getUserByName(username);
    const log2N = this.#c.options.passwordLog2N;
    dummyHash ??= hashPassword('synchat-dummy-password', log2N);
    const isValid = user ? await verifyPassword(b.password, user.pwHash) : (await verifyPassword(b.password, await dummyHash), false);
    if (!user || !isValid) {
      await this.#countFailure(username, ctx.ip, now);
      // PROTOCOL.md login: one errMsg for a wrong username and a wrong password.
      fail(RET.FORBIDDEN, 'wrong username or password');
    }
    await this.#failuresByNameAndIp.clear(nameAndIp(username, ctx.ip));
    // The stored hash carries its cost: one below the setting is replaced while the password is at hand.
    const rehash = needsRehash(user.pwHash, log2N) ? await hashPassword(b.password, log2N) : undefined;
    const { sid, session } = this.newSession(user.uin, b.deviceId, b.deviceName, now);
    const heads = await this.#c.gc.run(async (tx, fx) => {
      // Unless the password changed since it was checked (then the new hash stays).
      if (rehash && (await tx.getUser(user.uin))?.pwHash === user.pwHash) await tx.setPasswordHash(user.uin, rehash);
      return this.openSessionInTx(tx, fx, session);
    });
    return this.loginAnswer(user, sid, heads);
  }

  /**
   * A new session of `uin` on this device (login, QR login: docs/protocol.md "QR login") and its bearer token,
   * which is answered once and never stored (the row keeps its SHA-256). The device name is checked like every
   * shown name; without one the device id is shown.
   */
  newSession(uin: number, deviceId: string, deviceName: string | undefined, now: number): { sid: string; session: SessionRow } {
    const sid = randomBytes(32).toString('base64url');
    const session: SessionRow = {
      sessionId: randomBytes(12).toString('base64url'),
      tokenHash: tokenHashOf(sid),
      uin,
      deviceId,
      deviceName: deviceName ? shownName('deviceName', deviceName) : deviceId,
      createTime: now,
      lastSeenTime: now,
      ackedKey: 0,
      endedRet: 0,
    };
    return { sid, session };
  }

  /**
   * Stores a {@link newSession} inside a write job and returns the user's heads: a session of the same device ends
   * (ret 1101 on it), and past {@link MAX_SESSIONS_PER_USER} the least recently seen of the others end too.
   */
  async openSessionInTx(tx: StoreTx, fx: Effects, session: SessionRow): Promise<Heads> {
    const others: SessionRow[] = [];
    for (const old of await tx.listSessions(session.uin)) {
      if (old.endedRet !== 0) continue;
      if (old.deviceId === session.deviceId) await this.#c.endSessionInTx(tx, fx, old, RET.SESSION_REPLACED);
      else others.push(old);
    }
    for (const old of sessionsOverCap(others, MAX_SESSIONS_PER_USER, (s) => this.#c.lastSeenOf(s))) {
      await this.#c.endSessionInTx(tx, fx, old, RET.SESSION_REPLACED);
    }
    await tx.insertSession(session);
    return (await tx.heads([session.uin]))[0]!;
  }

  /** The answer of a login (PROTOCOL.md `/api/login`), also a confirmed QR login's. */
  loginAnswer(user: UserRow, sid: string, heads: Heads): Record<string, unknown> {
    this.#c.rememberUsername(user.uin, user.username);
    return { sid, uin: user.uin, username: user.username, displayName: user.displayName, syncKey: heads.head, epoch: user.epoch };
  }

  /** `/api/logout`: this session ends (1100); with `everywhere`, every other one of the user too (1101 there). */
  async #logout(s: SessionRow, b: Body): Promise<Record<string, unknown>> {
    await this.#c.gc.run(async (tx, fx) => {
      if (b.everywhere === true) await this.#endOtherSessions(tx, fx, s);
      await this.#c.endSessionInTx(tx, fx, s, RET.NOT_LOGGED_IN);
    });
    return {};
  }

  /**
   * `/api/password`: the old password checked (a wrong one counts as a failed login), the new one refused if
   * common, then in one write the new hash and the end of every other session (1101 on every transport).
   */
  async #changePassword(s: SessionRow, b: Body, ctx: CallContext): Promise<Record<string, unknown>> {
    const user = await this.#c.user(s.uin);
    const problem = passwordProblem(b.newPassword, user.username);
    if (problem) fail(RET.BAD_REQUEST, problem.replace(/^password:/, 'newPassword:'));
    const now = this.#c.clock.now();
    await this.#checkThrottles(user.username, ctx.ip, now);
    if (!(await verifyPassword(b.oldPassword, user.pwHash))) {
      await this.#countFailure(user.username, ctx.ip, now);
      fail(RET.FORBIDDEN, 'oldPassword: wrong password');
    }
    await this.#failuresByNameAndIp.clear(nameAndIp(user.username, ctx.ip));
    const pwHash = await hashPassword(b.newPassword, this.#c.options.passwordLog2N);
    await this.#c.gc.run(async (tx, fx) => {
      // Two changes at once: the second was checked against a hash that is gone.
      if ((await tx.getUser(s.uin))?.pwHash !== user.pwHash) fail(RET.CONFLICT, 'the password changed meanwhile; try again');
      await tx.setPasswordHash(s.uin, pwHash);
      await this.#endOtherSessions(tx, fx, s);
    });
    return {};
  }

  /** Ends every active session of `s`'s user but `s` (1101: revoked). */
  async #endOtherSessions(tx: StoreTx, fx: Effects, s: SessionRow): Promise<void> {
    for (const other of await tx.listSessions(s.uin)) {
      if (other.endedRet === 0 && other.sessionId !== s.sessionId) await this.#c.endSessionInTx(tx, fx, other, RET.SESSION_REPLACED);
    }
  }

  /** Refuses (1205) a password check while this username from this address, or this address, must wait. */
  async #checkThrottles(username: string, ip: string, now: number): Promise<void> {
    const [byNameAndIp, byIp] = await Promise.all([
      this.#failuresByNameAndIp.retryAfterSec(nameAndIp(username, ip), now),
      this.#failuresByIp.retryAfterSec(ip, now),
    ]);
    const wait = Math.max(byNameAndIp, byIp);
    if (wait > 0) fail(RET.RATE_LIMITED, 'too many failed logins; try again later', { retryAfterSec: wait });
  }

  async #countFailure(username: string, ip: string, now: number): Promise<void> {
    await Promise.all([this.#failuresByNameAndIp.fail(nameAndIp(username, ip), now), this.#failuresByIp.fail(ip, now)]);
  }

  async #sessionList(s: SessionRow): Promise<Record<string, unknown>> {
    const rows = await this.#c.store.read.listSessions(s.uin);
    const now = this.#c.clock.now();
    const sessions = rows
      .filter((r) => r.endedRet === 0 && !isIdleExpired(this.#c.lastSeenOf(r), now, this.#c.options.sessionIdleMs))
      .map((r) => ({
        sessionId: r.sessionId,
        deviceId: r.deviceId,
        deviceName: r.deviceName,
        createTime: r.createTime,
        lastSeenTime: this.#c.lastSeenOf(r),
        ackedKey: Math.max(r.ackedKey, this.#c.touches.get(r.sessionId)?.ackedKey ?? 0),
        isCurrent: r.sessionId === s.sessionId,
      }));
    return { sessions };
  }

  async #sessionRevoke(s: SessionRow, b: Body): Promise<Record<string, unknown>> {
    await this.#c.gc.run(async (tx, fx) => {
      const target = await tx.getSession(b.sessionId);
      if (!target || target.uin !== s.uin || target.endedRet !== 0) fail(RET.NOT_FOUND, 'no such active session');
      await this.#c.endSessionInTx(tx, fx, target, target.sessionId === s.sessionId ? RET.NOT_LOGGED_IN : RET.SESSION_REPLACED);
    });
    return {};
  }

  async #profile(s: SessionRow, b: Body): Promise<Record<string, unknown>> {
    const displayName = shownName('displayName', b.displayName);
    await this.#c.throttle(this.#profileChanges, s.uin, 'profile changes');
    await this.#c.gc.run(async (tx, fx) => {
      const me = await this.#c.username(s.uin, tx);
      const peers = (await tx.listContacts(s.uin)).filter((c) => c.state === 'accepted').map((c) => c.peerUin);
      // Contacts who blocked this user are not told (docs/protocol.md "Blocking").
      const told = unblockedRecipients([s.uin, ...peers], s.uin, await tx.blockersAmong(s.uin, peers));
      await fx.lock(told);
      await tx.setDisplayName(s.uin, displayName);
      await fx.appendEach(told, 'contact', { username: me, displayName });
    });
    return {};
  }

  async #lookup(_s: SessionRow, b: Body): Promise<Record<string, unknown>> {
    const user = await this.#c.store.read.getUserByName(foldUsername(b.username));
    if (!user) fail(RET.NOT_FOUND, 'no such user');
    return { username: user.username, displayName: user.displayName };
  }
}

/** The key of the per-(username, address) throttle. */
function nameAndIp(username: string, ip: string): string {
  return `${username}|${ip}`;
}

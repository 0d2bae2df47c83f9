/**
 * Accounts and device sessions: register, login (throttled per username and address), logout, the device list and
 * remote logout, profile and lookup. See docs/protocol.md "Accounts".
 */
import { randomBytes } from 'node:crypto';
import type { RateCounter, SessionRow } from '../core/ports.ts';
import { foldUsername } from '../core/rules.ts';
import { RET } from '../protocol/index.ts';
import type { CallContext } from './api.ts';
import { fail, tokenHashOf, type Body, type Handlers, type ServiceContext } from './context.ts';
import { hashPassword, verifyPassword } from './passwords.ts';

/** Failed-login throttle: per username and per address, in a 15-minute window. */
const LOGIN_FAILURES_PER_NAME = 10;
const LOGIN_FAILURES_PER_IP = 100;
const LOGIN_WINDOW_MS = 15 * 60_000;

/** Matches nothing; verifying against it costs as much as a real check, so unknown names are not revealed by timing. */
let dummyHash: Promise<string> | undefined;

/** Accounts and sessions. */
export class AccountCalls {
  readonly #c: ServiceContext;
  readonly #failuresByName: RateCounter;
  readonly #failuresByIp: RateCounter;

  constructor(c: ServiceContext) {
    this.#c = c;
    this.#failuresByName = c.options.counters.counter('loginFailuresByName', LOGIN_FAILURES_PER_NAME, LOGIN_WINDOW_MS);
    this.#failuresByIp = c.options.counters.counter('loginFailuresByIp', LOGIN_FAILURES_PER_IP, LOGIN_WINDOW_MS);
  }

  /** The calls this area serves. */
  handlers(): Handlers {
    return {
      '/api/logout': (s) => this.#logout(s),
      '/api/sessions': (s) => this.#sessionList(s),
      '/api/sessions/revoke': (s, b) => this.#sessionRevoke(s, b),
      '/api/profile': (s, b) => this.#profile(s, b),
      '/api/users/lookup': (s, b) => this.#lookup(s, b),
    };
  }

  /** `/api/register` (no session needed). */
  async register(b: Body): Promise<Record<string, unknown>> {
    const username = foldUsername(b.username);
    const displayName = b.displayName.trim();
    if (!displayName) fail(RET.BAD_REQUEST, 'displayName: must not be blank');
    if (await this.#c.store.read.getUserByName(username)) fail(RET.CONFLICT, 'username is taken');
    const pwHash = await hashPassword(b.password, this.#c.options.passwordLog2N);
    const uin = await this.#c.gc.run(async (tx) => {
      if (await tx.getUserByName(username)) fail(RET.CONFLICT, 'username is taken');
      return tx.insertUser({
        username,
        displayName,
        pwHash,
        epoch: randomBytes(8).toString('hex'),
        createTime: this.#c.clock.now(),
      });
    });
    return { uin };
  }

  /** `/api/login` (no session needed). */
  async login(b: Body, ctx: CallContext): Promise<Record<string, unknown>> {
    const username = foldUsername(b.username);
    const now = this.#c.clock.now();
    const wait = Math.max(await this.#failuresByName.retryAfterSec(username, now), await this.#failuresByIp.retryAfterSec(ctx.ip, now));
    if (wait > 0) fail(RET.RATE_LIMITED, 'too many failed logins; try again later', { retryAfterSec: wait });
    const user = await this.#c.store.read.getUserByName(username);
    dummyHash ??= hashPassword('synchat-dummy-password', this.#c.options.passwordLog2N);
    const isValid = user ? await verifyPassword(b.password, user.pwHash) : (await verifyPassword(b.password, await dummyHash), false);
    if (!user || !isValid) {
      await Promise.all([this.#failuresByName.hit(username, now), this.#failuresByIp.hit(ctx.ip, now)]);
      // PROTOCOL.md login: one errMsg for a wrong username and a wrong password.
      fail(RET.FORBIDDEN, 'wrong username or password');
    }
    await this.#failuresByName.clear(username);
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
    const heads = await this.#c.gc.run(async (tx, fx) => {
      // A new login of the same device replaces its old session (ret 1101 on the old one).
      for (const old of await tx.listSessions(user.uin)) {
        if (old.endedRet === 0 && old.deviceId === session.deviceId) await this.#c.endSessionInTx(tx, fx, old, RET.SESSION_REPLACED);
      }
      await tx.insertSession(session);
      return (await tx.heads([user.uin]))[0]!;
    });
    this.#c.rememberUsername(user.uin, user.username);
    return { sid, uin: user.uin, username: user.username, displayName: user.displayName, syncKey: heads.head, epoch: user.epoch };
  }

  async #logout(s: SessionRow): Promise<Record<string, unknown>> {
    await this.#c.gc.run((tx, fx) => this.#c.endSessionInTx(tx, fx, s, RET.NOT_LOGGED_IN));
    return {};
  }

  async #sessionList(s: SessionRow): Promise<Record<string, unknown>> {
    const rows = await this.#c.store.read.listSessions(s.uin);
    const sessions = rows
      .filter((r) => r.endedRet === 0)
      .map((r) => ({
        sessionId: r.sessionId,
        deviceId: r.deviceId,
        deviceName: r.deviceName,
        createTime: r.createTime,
        lastSeenTime: Math.max(r.lastSeenTime, this.#c.touches.get(r.sessionId)?.lastSeenTime ?? 0),
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
    const displayName = String(b.displayName).trim();
    if (!displayName) fail(RET.BAD_REQUEST, 'displayName: must not be blank');
    await this.#c.gc.run(async (tx, fx) => {
      const me = await this.#c.username(s.uin, tx);
      const peers = (await tx.listContacts(s.uin)).filter((c) => c.state === 'accepted').map((c) => c.peerUin);
      await fx.lock([s.uin, ...peers]);
      await tx.setDisplayName(s.uin, displayName);
      await fx.appendEach([s.uin, ...peers], 'contact', { username: me, displayName });
    });
    return {};
  }

  async #lookup(_s: SessionRow, b: Body): Promise<Record<string, unknown>> {
    const user = await this.#c.store.read.getUserByName(foldUsername(b.username));
    if (!user) fail(RET.NOT_FOUND, 'no such user');
    return { username: user.username, displayName: user.displayName };
  }
}

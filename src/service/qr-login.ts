/**
 * QR login (docs/protocol.md "QR login"): a device that is not logged in asks for a uuid (`new`) and long-polls it;
 * a logged-in user scans it (and is shown which device asks), then confirms; the asking device's next poll collects
 * a new session of that user, once. The rules are src/core/qr-login.ts; here the rows are loaded and stored (in the
 * Store, so every node sees them), polls are parked, and the throttles count.
 */
import { randomBytes } from 'node:crypto';
import type { BackoffPolicy, FailureBackoff, QrLoginRow, RateCounter } from '../core/ports.ts';
import {
  decideQrConfirm,
  decideQrScan,
  isQrPollAnswered,
  qrAskingDevice,
  qrLoginView,
  qrPollHoldMs,
  type QrLoginView,
  type QrPollKnownState,
} from '../core/qr-login.ts';
import type { Refusal } from '../core/rules.ts';
import { RET } from '../protocol/index.ts';
import type { AccountCalls } from './accounts.ts';
import type { CallContext } from './api.ts';
import { fail, shownName, type Body, type Handlers, type ServiceContext } from './context.ts';

/**
 * uuids one address may ask for per minute (with SYNCHAT_RATE_LIMIT=on): a login screen asks for one when it opens
 * and one per expiry (minutes), so 20 lets a dozen devices behind one address log in at once, and bounds the rows
 * one address can make (each is a write) to 20 a minute.
 */
const NEW_PER_IP = { limit: 20, windowMs: 60_000 };
/**
 * Polls one address may make per minute (with SYNCHAT_RATE_LIMIT=on): a waiting device polls about twice a minute
 * (a poll is held 25 s) plus one per state change, so 600 serves a few hundred devices behind one NAT.
 */
const POLLS_PER_IP = { limit: 600, windowMs: 60_000 };
/** Scans and confirms one user may make per minute (with SYNCHAT_RATE_LIMIT=on): a person confirms a few a day. */
const SCANS_PER_USER = { limit: 30, windowMs: 60_000 };
/**
 * Polls of unknown uuids from one address (always counted): 20 free (a device polling a uuid removed after it
 * expired), then growing waits. 128-bit uuids cannot be guessed anyway; this keeps a guesser from costing reads.
 */
const UNKNOWN_BY_IP: BackoffPolicy = { freeFailures: 20, baseDelayMs: 1000, maxDelayMs: 10 * 60_000, forgetMs: 60 * 60_000 };
/**
 * Polls held at once by this node: each is a few promises, a timer and a map entry, about 3.3 KB of heap (measured:
 * 5,000 polls held on one uuid, +16 MB after GC), so the bound costs at most ~33 MB. Past it a poll is refused with
 * 1205 (retry in 1 s) instead of growing the core's memory without bound.
 */
export const MAX_PARKED_QR_POLLS = 10_000;
/**
 * With a bus between nodes, a held poll reads its login again this often, in ms: a scan or confirm on another node
 * reaches it within this time (one primary-key read per held poll per interval). On one node every scan and confirm
 * passes through this service, which wakes the poll at once.
 */
const SHARED_RECHECK_MS = 1000;
/** How long an expired login is kept (so that a late poll hears `expired`, not "no such login"), in ms. */
const KEEP_EXPIRED_MS = 10 * 60_000;
/** Expired logins removed by each `new` at most: cleanup rides on the writes that make rows, so an idle server writes nothing. */
const DELETE_PER_NEW = 100;

/** A poll in progress: its answer, and how to stop it when the client went away. */
export interface QrPoll {
  answer: Promise<Record<string, unknown>>;
  cancel(): void;
}

/** The QR login calls. */
export class QrLoginCalls {
  readonly #c: ServiceContext;
  readonly #accounts: AccountCalls;
  readonly #expiryMs: number;
  readonly #newByIp: RateCounter;
  readonly #pollsByIp: RateCounter;
  readonly #scans: RateCounter;
  readonly #unknownByIp: FailureBackoff;
  /** uuid → wake functions of the polls held on it. */
  readonly #waiters = new Map<string, Set<() => void>>();
  /** Logins moved by this node since start (scans, confirms): a poll whose read overlapped one reads again. */
  #moves = 0;
  #polls = 0;

  /** `expiryMs`: how long a uuid lives (config.ts DEFAULTS.qrLoginExpiryMs). */
  constructor(c: ServiceContext, accounts: AccountCalls, expiryMs: number) {
    this.#c = c;
    this.#accounts = accounts;
    this.#expiryMs = expiryMs;
    const counters = c.options.counters;
    this.#newByIp = counters.counter('qrLoginNewByIp', NEW_PER_IP.limit, NEW_PER_IP.windowMs);
    this.#pollsByIp = counters.counter('qrLoginPollsByIp', POLLS_PER_IP.limit, POLLS_PER_IP.windowMs);
    this.#scans = counters.counter('qrLoginScans', SCANS_PER_USER.limit, SCANS_PER_USER.windowMs);
    this.#unknownByIp = counters.backoff('qrLoginUnknownByIp', UNKNOWN_BY_IP);
  }

  /** The calls that need a session. */
  handlers(): Handlers {
    return {
      '/api/qrlogin/scan': (s, b) => this.#scan(s.uin, b),
      '/api/qrlogin/confirm': (s, b) => this.#confirm(s.uin, b),
    };
  }

  /** Polls running now (held or being answered). */
  get polls(): number {
    return this.#polls;
  }

  /** `/api/qrlogin/new` (no session): a fresh uuid for this device, valid `expiryMs`. */
  async create(b: Body, ctx: CallContext): Promise<Record<string, unknown>> {
    // Checked now, not when the session is made: a name that would be refused never reaches a QR code.
    const deviceName = b.deviceName ? shownName('deviceName', b.deviceName) : b.deviceId;
    const now = this.#c.clock.now();
    await this.#limitByIp(this.#newByIp, ctx.ip, now, 'too many QR codes from this address');
    const row: QrLoginRow = {
      uuid: randomBytes(16).toString('hex'),
      deviceId: b.deviceId,
      deviceName,
      createTime: now,
      expireTime: now + this.#expiryMs,
      state: 'waiting',
      scannerUin: 0,
      scanTime: 0,
    };
    await this.#c.gc.run(async (tx) => {
      await tx.deleteExpiredQrLogins(now - KEEP_EXPIRED_MS, DELETE_PER_NEW);
      await tx.insertQrLogin(row);
    });
    return { uuid: row.uuid, expiresAt: row.expireTime };
  }

  /**
   * `/api/qrlogin/poll` (no session): answers when the login is no longer in the state the device last saw
   * (`b.state`, default `waiting`), when it expires, or after `b.timeout` ms (clamped; 0 answers at once). A
   * `confirmed` answer carries the new session, made here, once: of two polls that see the confirm, one collects
   * it and the other hears `expired`. A cancelled poll collects nothing.
   */
  poll(b: Body, ctx: CallContext): QrPoll {
    let isCancelled = false;
    let wake: (() => void) | undefined;
    const answer = (async () => {
      if (this.#polls >= MAX_PARKED_QR_POLLS) fail(RET.RATE_LIMITED, 'too many QR logins waiting on this server; try again', { retryAfterSec: 1 });
      this.#polls++;
      try {
        const known: QrPollKnownState = b.state ?? 'waiting';
        const start = this.#c.clock.now();
        const holdUntil = start + qrPollHoldMs(b.timeout);
        await this.#limitByIp(this.#pollsByIp, ctx.ip, start, 'too many QR login polls from this address');
        let moves = this.#moves;
        let row = await this.#readForPoll(b.uuid, ctx.ip, start);
        for (;;) {
          const now = this.#c.clock.now();
          const view = qrLoginView(row, now);
          if (isQrPollAnswered(view, known) || now >= holdUntil) return await this.#answer(row, view, now);
          if (moves !== this.#moves) {
            // A login moved here while the read was in flight (a network store): it may be this one, so read again
            // rather than sleep through its wake-up.
            moves = this.#moves;
            row = (await this.#c.store.read.getQrLogin(row.uuid)) ?? { ...row, state: 'claimed' };
            continue;
          }
          let waitMs = Math.min(holdUntil, row.expireTime) - now;
          if (this.#c.options.bus.isShared) waitMs = Math.min(waitMs, SHARED_RECHECK_MS);
          await new Promise<void>((resolve) => {
            const timer = setTimeout(done, waitMs);
            const waiters = this.#waitersOf(row.uuid);
            function done(): void {
              clearTimeout(timer);
              waiters.delete(done);
              resolve();
            }
            waiters.add(done);
            wake = done;
          });
          this.#dropWaitersIfNone(row.uuid);
          if (isCancelled) return {};
          moves = this.#moves;
          // Removed meanwhile (long expired): the device is told it expired.
          row = (await this.#c.store.read.getQrLogin(row.uuid)) ?? { ...row, state: 'claimed' };
        }
      } finally {
        this.#polls--;
      }
    })();
    return {
      answer,
      cancel: () => {
        isCancelled = true;
        wake?.();
      },
    };
  }

  /** The answer of a poll that sees `view`; `confirmed` collects the session (or hears `expired` if another poll did). */
  async #answer(row: QrLoginRow, view: QrLoginView, now: number): Promise<Record<string, unknown>> {
    if (view.state === 'scanned') return { state: 'scanned', displayName: (await this.#c.user(view.scannerUin)).displayName };
    if (view.state !== 'confirmed') return { state: view.state };
    const user = await this.#c.user(view.uin);
    const { sid, session } = this.#accounts.newSession(user.uin, row.deviceId, row.deviceName, now);
    const heads = await this.#c.gc.run(async (tx, fx) => {
      const isMine = await tx.updateQrLogin(row.uuid, 'confirmed', { state: 'claimed', scannerUin: row.scannerUin, scanTime: row.scanTime });
      return isMine ? this.#accounts.openSessionInTx(tx, fx, session) : undefined;
    });
    if (!heads) return { state: 'expired' };
    return { state: 'confirmed', ...this.#accounts.loginAnswer(user, sid, heads) };
  }

  /** `/api/qrlogin/scan`: the scanning user is shown which device asks; the login is not confirmed. */
  async #scan(uin: number, b: Body): Promise<Record<string, unknown>> {
    await this.#c.throttle(this.#scans, uin, 'QR scans');
    const row = await this.#move(b.uuid, (r, now) => decideQrScan(r, uin, now), (r, now) => ({ state: 'scanned', scannerUin: uin, scanTime: now }), 'waiting', (d) => d.isNew);
    return qrAskingDevice(row);
  }

  /** `/api/qrlogin/confirm`: the asking device's next poll collects a session of this user. */
  async #confirm(uin: number, b: Body): Promise<Record<string, unknown>> {
    await this.#c.throttle(this.#scans, uin, 'QR confirms');
    const row = await this.#move(b.uuid, (r, now) => decideQrConfirm(r, uin, now), (r) => ({ state: 'confirmed', scannerUin: uin, scanTime: r.scanTime }), 'scanned', () => true);
    return qrAskingDevice(row);
  }

  /**
   * Reads a login in a write job, decides, and moves it out of `from` when `isMove` says so, with a compare-and-set:
   * a move that another transaction (on another node) made first is decided again from the row it left. After the
   * commit the polls held here wake.
   */
  async #move<D extends { ok: true }>(
    uuid: string,
    decide: (row: QrLoginRow | undefined, now: number) => D | Refusal,
    to: (row: QrLoginRow, now: number) => Pick<QrLoginRow, 'state' | 'scannerUin' | 'scanTime'>,
    from: QrLoginRow['state'],
    isMove: (d: D) => boolean,
  ): Promise<QrLoginRow> {
    const now = this.#c.clock.now();
    const { row, isMoved } = await this.#c.gc.run(async (tx) => {
      for (;;) {
        const r = await tx.getQrLogin(uuid);
        const d = decide(r, now);
        if (!d.ok) fail(d.ret, d.errMsg);
        if (!isMove(d)) return { row: r!, isMoved: false };
        if (await tx.updateQrLogin(uuid, from, to(r!, now))) return { row: r!, isMoved: true };
      }
    });
    if (isMoved) this.#wake(uuid);
    return row;
  }

  /** The login of a poll; an unknown uuid counts against the address and is refused (3). */
  async #readForPoll(uuid: string, ip: string, now: number): Promise<QrLoginRow> {
    const wait = await this.#unknownByIp.retryAfterSec(ip, now);
    if (wait > 0) fail(RET.RATE_LIMITED, 'too many polls of unknown QR logins from this address; try again later', { retryAfterSec: wait });
    const row = await this.#c.store.read.getQrLogin(uuid);
    if (row) return row;
    await this.#unknownByIp.fail(ip, now);
    fail(RET.NOT_FOUND, 'no such QR login');
  }

  async #limitByIp(counter: RateCounter, ip: string, now: number, what: string): Promise<void> {
    if (!this.#c.options.isRateLimited) return;
    const wait = await counter.hit(ip, now);
    if (wait > 0) fail(RET.RATE_LIMITED, `${what}; try again in ${wait} s`, { retryAfterSec: wait });
  }

  #waitersOf(uuid: string): Set<() => void> {
    let set = this.#waiters.get(uuid);
    if (!set) this.#waiters.set(uuid, (set = new Set()));
    return set;
  }

  #dropWaitersIfNone(uuid: string): void {
    if (this.#waiters.get(uuid)?.size === 0) this.#waiters.delete(uuid);
  }

  /** Wakes the polls held on `uuid` (each reads its login again). */
  #wake(uuid: string): void {
    this.#moves++;
    for (const done of [...(this.#waiters.get(uuid) ?? [])]) done();
  }
}

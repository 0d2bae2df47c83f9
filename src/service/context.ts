/**
 * What the service's call areas (accounts, messages, contacts, groups) share: the ports, group commit, media, and
 * the caches of facts that never change once committed or that every write forgets. See docs/architecture.md
 * "service".
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Bus, Clock, ContactRow, RateCounter, RateCounters, SessionRow, Store, StoreReader, StoreTx, UserRow } from '../core/ports.ts';
import { checkShownName, isAcceptedContact } from '../core/rules.ts';
import { RET, SynchatError, type CallPath } from '../protocol/index.ts';
import type { CallContext } from './api.ts';
import type { Effects, GroupCommit } from './group-commit.ts';
import type { MediaService } from './media.ts';
import type { ServiceObserver } from './observer.ts';
import { setBounded } from './bounded.ts';

/** The logging surface the service needs (pino's). */
export interface Logger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/** A validated request body. */
export type Body = Record<string, any>;
/** One authenticated call: the result's fields (or a ready JSON answer). */
export type Handler = (session: SessionRow, body: Body, ctx: CallContext) => Promise<Record<string, unknown> | string>;
/** The calls one area serves. */
export type Handlers = Partial<Record<CallPath, Handler>>;

/** Throws the expected refusal `ret` (the call's answer). */
export function fail(ret: SynchatError['ret'], errMsg: string, data?: Record<string, unknown>): never {
  throw new SynchatError(ret, errMsg, data);
}

/** A name other users are shown, checked ({@link checkShownName}) and trimmed; refused with ret 1 otherwise. */
export function shownName(field: string, raw: string): string {
  const name = checkShownName(field, raw);
  if (typeof name !== 'string') fail(name.ret, name.errMsg);
  return name;
}

/** A fresh log epoch (opaque to clients; docs/protocol.md "Epoch"): at registration, and each time a log is renewed. */
export function newEpoch(): string {
  return randomBytes(8).toString('hex');
}

/** The stored form of a bearer token: its SHA-256 (the token itself is never stored). */
export function tokenHashOf(sid: string): string {
  return createHash('sha256').update(sid).digest('base64url');
}

/** Accepted contact pairs remembered for the send path (a SQL lookup per send was ~2% of the core's time). */
const CONTACT_CACHE_MAX = 500_000;

/** Bounds of the service's in-memory caches, in entries (tests lower them to drive past them). */
export interface CacheLimits {
  /** Sessions by bearer token (~0.3 KB each); past it the oldest cached is dropped (a miss reads the store). */
  sessions: number;
  /** Users' names, epochs and name → uin (~0.1 KB each, per map); past it the oldest is dropped. */
  users: number;
  /**
   * Sessions with an acknowledged key or last-seen time not yet written (one flush a second writes up to 5,000).
   * Past it, news of a session not already waiting is dropped: both are advisory (the device list, idle expiry at
   * a resolution of days), and a storm of millions of reconnecting devices must not grow the process without bound.
   */
  touches: number;
}

/** @see CacheLimits */
export const CACHE_LIMITS: CacheLimits = { sessions: 200_000, users: 200_000, touches: 200_000 };

/**
 * A session's last-seen time is written at most this often, in ms: every call sees it, and one UPDATE per call
 * would double the writes of a busy device for a time that only matters at a resolution of days (idle expiry).
 */
const SEEN_RESOLUTION_MS = 60_000;

/** The settings the call areas read. */
export interface ContextOptions {
  store: Store;
  bus: Bus;
  clock: Clock;
  logger: Logger;
  /** scrypt cost as log2(N). */
  passwordLog2N: number;
  /** Throttle sends and writes into other users' logs per user (rate-limit.ts WRITE_RATES). */
  isRateLimited: boolean;
  /** Where throttles count (shared between nodes, or this process's memory). */
  counters: RateCounters;
  /** @see CacheLimits */
  cacheLimits: CacheLimits;
  /** A session unused for longer than this, in ms, ends (1100) at its next use and leaves the device list. */
  sessionIdleMs: number;
  /** Told of sends and sync pages (metrics); absent: nothing is timed. */
  observer?: ServiceObserver;
}

/** Shared state of one ChatService. */
export class ServiceContext {
  readonly options: ContextOptions;
  readonly store: Store;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly gc: GroupCommit;
  readonly media: MediaService | undefined;
  /** Acknowledged keys and last-seen times not yet written, by sessionId (written once a second). */
  readonly touches = new Map<string, { sessionId: string; ackedKey: number; lastSeenTime: number }>();
  /** Totals since start for metrics ({@link ChatService.opsStats}): accepted sends, entries answered in sync pages. */
  readonly opsCounts = { sends: 0, syncEntries: 0 };
  /** uin → username, at most `cacheLimits.users` (as are the two below). */
  readonly #usernames = new Map<number, string>();
  /**
   * uin → log epoch (set at registration, renewed by {@link ServiceContext.renewEpoch}); not kept with a bus between
   * nodes, whose renewals this node would not hear of.
   */
  readonly #epochs = new Map<number, string>();
  /** Epoch renewals committed by this process: a read of an epoch that a renewal overlapped is not cached. */
  #renewals = 0;
  /**
   * uin → the epoch this process renewed the user's log to. A later proof for the same user comes from a device
   * still holding a key from before that renewal (only another restore, which restarts the server, could issue a
   * key past the head again), so it changes nothing.
   */
  readonly #renewed = new Map<number, string>();
  /** username → uin. Both never change once committed, so the caches need no invalidation but a rollback's. */
  readonly #uins = new Map<string, number>();
  /**
   * Accepted contact pairs (`uin:peerUin`) seen by send checks, at most {@link CONTACT_CACHE_MAX}, oldest dropped
   * first. Every contact write goes through {@link ServiceContext.putContact} / {@link ServiceContext.deleteContact},
   * which forget the pair; a rolled-back batch clears it all.
   */
  readonly #contacts = new Set<string>();

  constructor(options: ContextOptions, gc: GroupCommit, media: MediaService | undefined) {
    this.options = options;
    this.store = options.store;
    this.clock = options.clock;
    this.logger = options.logger;
    this.gc = gc;
    this.media = media;
  }

  /** A rolled-back batch may have taught the caches something it inserted: forget all of it. */
  forgetCaches(): void {
    this.#usernames.clear();
    this.#epochs.clear();
    this.#uins.clear();
    this.#contacts.clear();
  }

  /** Entries in each cache, for tests of the bounds and for metrics. */
  get cacheSizes(): { usernames: number; epochs: number; renewed: number; uins: number; contacts: number; touches: number } {
    return { usernames: this.#usernames.size, epochs: this.#epochs.size, renewed: this.#renewed.size, uins: this.#uins.size, contacts: this.#contacts.size, touches: this.touches.size };
  }

  /** Records a device's acknowledged key and last-seen time (written by the next touch flush). */
  ack(sessionId: string, syncKey: number): void {
    this.#touch(sessionId, syncKey, this.clock.now());
  }

  /**
   * Records that `session` (the cached row, updated in place) was used at `now`: written by a touch flush at most
   * once a minute. Idle expiry reads it back through {@link ServiceContext.lastSeenOf}.
   */
  seen(session: SessionRow, now: number): void {
    if (now - session.lastSeenTime < SEEN_RESOLUTION_MS) return;
    session.lastSeenTime = now;
    this.#touch(session.sessionId, 0, now);
  }

  /** A session's last-seen time: the stored one, or a later one not written yet. */
  lastSeenOf(session: SessionRow): number {
    return Math.max(session.lastSeenTime, this.touches.get(session.sessionId)?.lastSeenTime ?? 0);
  }

  #touch(sessionId: string, syncKey: number, now: number): void {
    const prev = this.touches.get(sessionId);
    if (prev) {
      prev.ackedKey = Math.max(prev.ackedKey, syncKey);
      prev.lastSeenTime = now;
    } else if (this.touches.size < this.options.cacheLimits.touches) {
      this.touches.set(sessionId, { sessionId, ackedKey: syncKey, lastSeenTime: now });
    }
  }

  async user(uin: number, tx: StoreReader = this.store.read): Promise<UserRow> {
    const user = await tx.getUser(uin);
    if (!user) throw new Error(`user ${uin} vanished`);
    this.rememberUsername(uin, user.username);
    return user;
  }

  /** Remembers a committed user's name. */
  rememberUsername(uin: number, username: string): void {
    setBounded(this.#usernames, uin, username, this.options.cacheLimits.users);
  }

  /** A user's log epoch, cached: every attach (synccheck, long connection) and sync answers it. */
  async epochOf(uin: number): Promise<string> {
    const cached = this.#epochs.get(uin);
    if (cached !== undefined) return cached;
    const renewals = this.#renewals;
    const { epoch } = await this.user(uin);
    if (!this.options.bus.isShared && renewals === this.#renewals) setBounded(this.#epochs, uin, epoch, this.options.cacheLimits.users);
    return epoch;
  }

  /**
   * After a proof of loss at `head` (`isProofOfLoss`, core/rules.ts): gives `uin`'s log a new epoch in a write
   * through group commit, once: not if its epoch is no longer `was` (a concurrent proof renewed it) nor if this
   * process renewed it before (see `#renewed`). Returns the log's epoch now; the cache forgets the old one after
   * the commit.
   */
  async renewEpoch(uin: number, was: string, head: number): Promise<string> {
    if (this.#renewed.has(uin)) return this.epochOf(uin);
    const epoch = newEpoch();
    const renewed = await this.gc.run((tx) => tx.renewEpochs(epoch, { uin, was }));
    this.#renewals++;
    this.#epochs.delete(uin);
    if (!renewed) return this.epochOf(uin);
    setBounded(this.#renewed, uin, epoch, this.options.cacheLimits.users);
    this.logger.warn({ uin, head, was, epoch }, 'a device presented a key ahead of its log (a restored backup?): epoch renewed');
    return epoch;
  }

  async username(uin: number, tx: StoreReader): Promise<string> {
    return this.#usernames.get(uin) ?? (await this.user(uin, tx)).username;
  }

  /** The uin of a (folded) username, cached: the send path's recipient lookup was 7% of a send's CPU. */
  async uinOf(username: string, tx: StoreReader): Promise<number | undefined> {
    const cached = this.#uins.get(username);
    if (cached !== undefined) return cached;
    const user = await tx.getUserByName(username);
    if (!user) return undefined;
    setBounded(this.#uins, username, user.uin, this.options.cacheLimits.users);
    this.rememberUsername(user.uin, user.username);
    return user.uin;
  }

  /** Whether `uin` may write to `peerUin` directly (an accepted contact), remembered once seen. */
  async isContact(tx: StoreTx, uin: number, peerUin: number): Promise<boolean> {
    // Other nodes change contacts without telling this one's cache: with a bus between nodes, always ask the store.
    if (this.options.bus.isShared) return isAcceptedContact(await tx.getContact(uin, peerUin));
    const key = `${uin}:${peerUin}`;
    if (this.#contacts.has(key)) return true;
    if (!isAcceptedContact(await tx.getContact(uin, peerUin))) return false;
    if (this.#contacts.size >= CONTACT_CACHE_MAX) this.#contacts.delete(this.#contacts.values().next().value!);
    this.#contacts.add(key);
    return true;
  }

  putContact(tx: StoreTx, row: ContactRow): Promise<void> {
    this.#contacts.delete(`${row.uin}:${row.peerUin}`);
    return tx.putContact(row);
  }

  deleteContact(tx: StoreTx, uin: number, peerUin: number): Promise<void> {
    this.#contacts.delete(`${uin}:${peerUin}`);
    return tx.deleteContact(uin, peerUin);
  }

  /**
   * Counts one call of `uin` on `counter` when rate limiting is on (SYNCHAT_RATE_LIMIT); past its limit, refuses
   * with 1205 and `retryAfterSec`, saying `what` is too fast.
   */
  async throttle(counter: RateCounter, uin: number, what: string): Promise<void> {
    if (!this.options.isRateLimited) return;
    const wait = await counter.hit(String(uin), this.clock.now());
    if (wait > 0) fail(RET.RATE_LIMITED, `${what} too fast; try again in ${wait} s`, { retryAfterSec: wait });
  }

  /** Ends a session (the session cache learns it from the `sessionEnded` event once the batch commits). */
  endSessionInTx(tx: StoreTx, fx: Effects, session: SessionRow, ret: number): Promise<void> {
    fx.sessionEnded(session.sessionId, session.uin, ret);
    return tx.endSession(session.sessionId, ret);
  }
}

/**
 * The ports the sync engine is run through: Store (durable state), Bus (post-commit fan-out), counters for
 * throttling, Clock. Types, and the one error a store may throw to ask for a job to run again
 * ({@link LockConflict}): adapters in src/storage and src/bus implement them; src/service drives them. See
 * docs/architecture.md "Ports".
 */
import type { EntryKind } from '../protocol/index.ts';

/** A registered account. */
export interface UserRow {
  uin: number;
  /** Case-folded, `^[a-z0-9_]{3,32}$`. */
  username: string;
  displayName: string;
  /** `scrypt$N$r$p$salt$hash`, base64url parts. */
  pwHash: string;
  /** Opaque; changes only when the log may have lost entries. */
  epoch: string;
  createTime: number;
}

/** Per-user log heads: the last seq overall and the last seq of each selector bit. */
export interface Heads {
  head: number;
  /** selector bit → last seq that set it. */
  bySelector: Record<number, number>;
}

/** One device session. The bearer token itself is never stored, only its SHA-256. */
export interface SessionRow {
  /** Public id (shown in the device list, used to revoke). */
  sessionId: string;
  tokenHash: string;
  uin: number;
  deviceId: string;
  deviceName: string;
  createTime: number;
  lastSeenTime: number;
  /** The highest SyncKey this device has presented. */
  ackedKey: number;
  /** 0 while active; else the ret a later call gets (1100 logged out, 1101 replaced/revoked). */
  endedRet: number;
}

/** A stored message (the log holds one entry per participant; this is the shared record). */
export interface MessageRow {
  msgId: number;
  fromUin: number;
  clientMsgId: string;
  /** The address as sent: a username or group id. */
  to: string;
  /** Direct chat: the recipient's uin; group: 0. */
  toUin: number;
  /** Group number (without `@@`), or 0 for a direct chat. */
  groupId: number;
  type: number;
  content: string;
  mediaId: string | null;
  createTime: number;
  /** Seq of the entry in the sender's log: the answer to a duplicate send. */
  senderSeq: number;
  revoked: boolean;
}

/** One side of a contact relation. */
export interface ContactRow {
  uin: number;
  peerUin: number;
  /** `accepted`, `outgoing` (uin asked peer) or `incoming` (peer asked uin). */
  state: 'accepted' | 'outgoing' | 'incoming';
  note: string;
  updateTime: number;
}

/** A group chat. */
export interface GroupRow {
  groupId: number;
  name: string;
  ownerUin: number;
  createTime: number;
}

/** One log entry as stored: `json` is the full entry, `seq` and `kind` included. */
export interface LogRow {
  uin: number;
  seq: number;
  kind: string;
  json: string;
}

/** A read marker: the last msgId a user has read in a conversation. */
export interface ReadMarkerRow {
  uin: number;
  peer: string;
  msgId: number;
}

/** A chunked upload in progress (`pending`) or finished (`done`, kept until expiry so `complete` can repeat). */
export interface MediaUploadRow {
  uploadId: string;
  uin: number;
  /** Lowercase hex SHA-256 of the whole file, as declared at init and verified at complete. */
  sha256: string;
  size: number;
  chunkSize: number;
  /** The MIME type the client declared (checked against the bytes at complete). */
  mime: string;
  /** Original file name (made safe), or ''. */
  name: string;
  state: 'pending' | 'done';
  mediaId: string | null;
  createTime: number;
  /** Last init/complete on it; expiry counts from here. */
  updateTime: number;
}

/** Stored content, shared by every media object of the same SHA-256 (de-duplication). */
export interface MediaBlobRow {
  sha256: string;
  /** Size of the uploaded bytes. */
  size: number;
  kind: 'image' | 'voice' | 'file';
  /** MIME type detected from the bytes (of the served original). */
  mime: string;
  /** Size of the served original (images are re-encoded when they carry metadata). */
  servedBytes: number;
  width: number;
  height: number;
  /** 0 when there is no thumbnail. */
  thumbBytes: number;
  thumbMime: string;
  createTime: number;
}

/** One user's handle on stored content: what `mediaId` names. */
export interface MediaRow {
  mediaId: string;
  /** The uploader. */
  uin: number;
  sha256: string;
  /** Original file name (made safe), or ''. */
  name: string;
  createTime: number;
  /** Bytes that counted against the uploader's daily limit (0 for an instant upload). */
  countedBytes: number;
}

/** A conversation a media object was sent in: a group (`groupId`), or a direct chat of `uinA` ≤ `uinB`. */
export interface MediaSendRow {
  groupId: number;
  uinA: number;
  uinB: number;
}

/**
 * A QR login (docs/protocol.md "QR login"): a device not logged in asked for it; a logged-in user scans it, then
 * confirms, and the asking device collects its session once (`claimed`). The rules are src/core/qr-login.ts.
 */
export interface QrLoginRow {
  /** 32 hex digits, 128 random bits: the secret the QR code shows. */
  uuid: string;
  /** The asking device, as its session will record it. */
  deviceId: string;
  deviceName: string;
  createTime: number;
  /** After it (ms), the uuid can no longer be scanned, confirmed or collected. */
  expireTime: number;
  state: 'waiting' | 'scanned' | 'confirmed' | 'claimed';
  /** The user who scanned it; 0 before. */
  scannerUin: number;
  /** When it was scanned; 0 before. */
  scanTime: number;
}

/** An entry to append to one user's log: the store gives it the next seq of that log. */
export interface NewEntry {
  uin: number;
  kind: EntryKind;
  /** The entry's own fields as JSON object text, without `seq` and `kind` (a fan-out encodes them once). */
  fields: string;
}

/**
 * What may be read, inside a write transaction (seeing its own earlier writes) or outside one (committed and
 * durable state only). Async so that a network database (PostgreSQL) can implement it; the embedded adapter
 * answers at once.
 */
export interface StoreReader {
  getUser(uin: number): Promise<UserRow | undefined>;
  getUserByName(username: string): Promise<UserRow | undefined>;
  getUsers(uins: readonly number[]): Promise<UserRow[]>;

  getSessionByToken(tokenHash: string): Promise<SessionRow | undefined>;
  getSession(sessionId: string): Promise<SessionRow | undefined>;
  listSessions(uin: number): Promise<SessionRow[]>;

  /** Log heads of several users, in the order asked (a user without entries has head 0). */
  heads(uins: readonly number[]): Promise<Heads[]>;

  getMessage(msgId: number): Promise<MessageRow | undefined>;
  findSend(fromUin: number, clientMsgId: string): Promise<MessageRow | undefined>;

  getContact(uin: number, peerUin: number): Promise<ContactRow | undefined>;
  listContacts(uin: number): Promise<ContactRow[]>;

  /** True when `uin` has blocked `blockedUin` (docs/protocol.md "Blocking"). */
  isBlocked(uin: number, blockedUin: number): Promise<boolean>;
  /** Whom `uin` has blocked, oldest block first. */
  listBlocked(uin: number): Promise<number[]>;
  /**
   * Which of `uins` have blocked `blockedUin` (their logs get nothing `blockedUin` does), in uin order. Costs about
   * one lookup per asked uin at most, however many users blocked `blockedUin` (a spammer blocked by thousands still
   * sends to a group of 500 in bounded time).
   */
  blockersAmong(blockedUin: number, uins: readonly number[]): Promise<number[]>;

  getGroup(groupId: number): Promise<GroupRow | undefined>;
  /** Member uins in join order. */
  getMembers(groupId: number): Promise<number[]>;
  /** Groups the user belongs to. */
  listGroups(uin: number): Promise<number[]>;

  getReadMarker(uin: number, peer: string): Promise<number>;

  // ---- media (docs/protocol.md "Media") ----
  getUpload(uploadId: string): Promise<MediaUploadRow | undefined>;
  /** The user's pending upload of this content, if any (resume). */
  findPendingUpload(uin: number, sha256: string, size: number): Promise<MediaUploadRow | undefined>;
  /** Uploads (pending or done) last touched before `beforeTime`, oldest first, at most `limit`. */
  listStaleUploads(beforeTime: number, limit: number): Promise<MediaUploadRow[]>;
  /** Bytes a user started uploading since `sinceTime`: pending uploads plus counted completed media. */
  usedUploadBytes(uin: number, sinceTime: number): Promise<number>;
  getMediaBlob(sha256: string): Promise<MediaBlobRow | undefined>;
  getMedia(mediaId: string): Promise<MediaRow | undefined>;
  /** Media objects of this content, the user's own first, at most `limit`. */
  findMediaBySha(sha256: string, preferUin: number, limit: number): Promise<MediaRow[]>;
  /** Conversations the media object was sent in. */
  listMediaSends(mediaId: string): Promise<MediaSendRow[]>;

  // ---- QR login (docs/protocol.md "QR login") ----
  getQrLogin(uuid: string): Promise<QrLoginRow | undefined>;
}

/**
 * Thrown by {@link StoreTx.lockLogs} when the locks asked for cannot be taken now without risking a deadlock
 * (another node holds one, and this transaction already holds a higher uin's). Nothing of the job that asked was
 * written (it locks before its first write), so the job runs again, first in the next transaction.
 */
export class LockConflict extends Error {
  constructor(uins: readonly number[]) {
    super(`logs of users ${uins.slice(0, 5).join(',')}${uins.length > 5 ? ',…' : ''} are locked by another writer`);
    this.name = 'LockConflict';
  }
}

/** Everything a write transaction may do: read (its own writes included) and write. */
export interface StoreTx extends StoreReader {
  /**
   * Takes the write locks of these users' logs until the transaction ends. A job calls it with every user it
   * will append to, before its first write (it may call it again before that write, for users it learned of
   * later). A store with one writer does nothing. A networked store takes the locks in uin order, waiting
   * only while every lock it holds is on a lower uin (so writers on several nodes never deadlock); a lock it
   * cannot take in order without waiting throws {@link LockConflict}. Allocating ids after this call
   * ({@link StoreTx.nextMsgId}) orders them as the logs are ordered.
   */
  lockLogs(uins: readonly number[]): Promise<void>;
  /** Inserts a user and returns its new uin. Fails (throws) on a duplicate username: check first. */
  insertUser(user: Omit<UserRow, 'uin'>): Promise<number>;
  setDisplayName(uin: number, displayName: string): Promise<void>;
  /** Replaces a user's password hash (a password change, or a rehash at a higher cost). */
  setPasswordHash(uin: number, pwHash: string): Promise<void>;
  /**
   * Gives logs a new epoch (docs/protocol.md "Epoch"): every user's when `only` is omitted (after a backup is
   * restored), else `only.uin`'s if its epoch is still `only.was` (two proofs of the same loss renew once).
   * Returns how many users got it.
   */
  renewEpochs(epoch: string, only?: { uin: number; was: string }): Promise<number>;

  insertSession(session: SessionRow): Promise<void>;
  endSession(sessionId: string, ret: number): Promise<void>;
  /** Records acknowledged keys and last-seen times; keys only grow. */
  touchSessions(updates: readonly { sessionId: string; ackedKey: number; lastSeenTime: number }[]): Promise<void>;

  /**
   * Appends entries to users' logs and returns the stored rows in the same order. The store allocates the
   * seqs: each entry gets its user's head + 1 (entries of one user in call order), is encoded once with its
   * seq and kind first (`encodeEntry`), and moves that user's head and the head of its kind's selector bit.
   * Seqs of a user are dense: a rolled-back append leaves the head where it was. Every user appended to must
   * have been locked first ({@link StoreTx.lockLogs}); a networked adapter refuses an append to an unlocked log.
   */
  append(entries: readonly NewEntry[]): Promise<LogRow[]>;

  /**
   * Next msgId: unique, and greater than the msgId of every committed message whose logs this transaction has
   * locked (so, taken after {@link StoreTx.lockLogs}, msgIds increase in each conversation's log order even with
   * writers on several nodes).
   */
  nextMsgId(): Promise<number>;
  insertMessage(msg: MessageRow): Promise<void>;
  setRevoked(msgId: number): Promise<void>;

  putContact(row: ContactRow): Promise<void>;
  deleteContact(uin: number, peerUin: number): Promise<void>;
  /** Records that `uin` blocked `blockedUin` (idempotent: a repeat keeps the first time). */
  putBlock(uin: number, blockedUin: number, createTime: number): Promise<void>;
  /** Ends a block (a missing one is ignored). */
  deleteBlock(uin: number, blockedUin: number): Promise<void>;

  nextGroupId(): Promise<number>;
  putGroup(group: GroupRow): Promise<void>;
  addMembers(groupId: number, uins: readonly number[], joinTime: number): Promise<void>;
  removeMembers(groupId: number, uins: readonly number[]): Promise<void>;

  setReadMarker(row: ReadMarkerRow): Promise<void>;

  // ---- media (docs/protocol.md "Media") ----
  insertUpload(row: MediaUploadRow): Promise<void>;
  /** Marks an upload done with its media id (a repeated `complete` answers the same). */
  finishUpload(uploadId: string, mediaId: string, updateTime: number): Promise<void>;
  /** Records activity on an upload (expiry counts from its last activity). */
  touchUpload(uploadId: string, updateTime: number): Promise<void>;
  deleteUpload(uploadId: string): Promise<void>;
  /** Inserts a blob row; a row for the same sha256 already there is kept. */
  insertMediaBlob(row: MediaBlobRow): Promise<void>;
  insertMedia(row: MediaRow): Promise<void>;
  /** Records a send (idempotent). */
  addMediaSend(mediaId: string, send: MediaSendRow): Promise<void>;

  // ---- QR login (docs/protocol.md "QR login") ----
  insertQrLogin(row: QrLoginRow): Promise<void>;
  /**
   * Moves a QR login from state `from` to `to.state` (with the scanner when scanned) and returns true, or returns
   * false and changes nothing when its state is no longer `from`. Atomic against the same call in another
   * transaction, on another node too (a networked store re-checks `from` under the row's lock): of two racing
   * confirms, or two polls collecting one session, exactly one sees true.
   */
  updateQrLogin(uuid: string, from: QrLoginRow['state'], to: Pick<QrLoginRow, 'state' | 'scannerUin' | 'scanTime'>): Promise<boolean>;
  /** Removes up to `limit` QR logins that expired before `beforeTime`, and returns how many it removed. */
  deleteExpiredQrLogins(beforeTime: number, limit: number): Promise<number>;
}

/**
 * Durable state. Contract (tested for every adapter by test/storage/store.case.ts):
 * - `transaction(fn)` runs fn against one write transaction; it commits only if fn resolves, and a resolved
 *   `transaction` means the commit is durable (the embedded default syncs to disk). If fn rejects, nothing of
 *   it is kept. A networked store may run fn again from the start after a serialization failure or a
 *   deadlock that rolled the transaction back: only the last run counts.
 * - With `concurrency` 1 (the embedded store), transactions run one at a time, in call order: a `transaction`
 *   called while another runs waits for it. A transaction whose function finished and committed no longer holds
 *   the next one back while it waits for its sync to disk (pipelined group commit, docs/architecture.md "Group
 *   commit"), and transactions become durable, and resolve, in the order they ran. A networked store may run up
 *   to `concurrency` transactions at once (they start in call order); they are isolated by the log locks
 *   ({@link StoreTx.lockLogs}) exactly as transactions of different nodes are.
 * - Reads outside a transaction (`read`, `readLog`) see only committed and durable state: never an entry that
 *   a power loss could still take back.
 * - `readLog` returns entries with seq > afterSeq ascending, at most `limit`, reading only that page.
 */
export interface Store {
  readonly name: string;
  /** Transactions that may run at once (see above): 1 = one at a time, in call order. */
  readonly concurrency: number;
  transaction<T>(fn: (tx: StoreTx) => Promise<T>): Promise<T>;
  /** A read-only view of committed, durable state. */
  readonly read: StoreReader;
  readLog(uin: number, afterSeq: number, limit: number): Promise<LogRow[]>;
  close(): Promise<void>;
}

/** News for one user after a commit. */
export interface NewsEvent {
  uin: number;
  /** The user's head before this commit's entries. */
  prevSeq: number;
  /** The head after. */
  head: number;
  /** Selector bits of the new entries. */
  selector: number;
  /** The new entries, JSON, ascending. */
  entries: string[];
  /** When the commit became durable, ms since the epoch (metrics time commit → delivery); absent on catch-up news. */
  committedAt?: number;
}

/**
 * The same entry appended to several users' logs in one commit (a group fan-out): one event with the body once,
 * instead of one {@link NewsEvent} per member. Listeners expand it for the users they hold:
 * `encodeEntry(seqs[i], kind, fields)` is exactly what `uins[i]`'s log stored, and that user's head before it
 * was `seqs[i] - 1`.
 */
export interface FanoutEvent {
  kind: EntryKind;
  /** The selector bit of `kind`. */
  selector: number;
  /** The entry's own fields as JSON object text, without `seq` and `kind`. */
  fields: string;
  /** Recipients in ascending order (so a listener finds one by binary search). */
  uins: number[];
  /** `seqs[i]` is the seq the entry got in `uins[i]`'s log. */
  seqs: number[];
  /** When the commit became durable, ms since the epoch (metrics time commit → delivery). */
  committedAt?: number;
}

/** A session that ended (logout, replaced, revoked): its connections close with `ret`. */
export interface SessionEndedEvent {
  sessionId: string;
  uin: number;
  ret: number;
}

/**
 * What the bus carries. Events about one user come in that user's log order: a `fanout` for a user lies between
 * that user's `news` events exactly where its entry lies in the log.
 */
export type BusEvent =
  | { type: 'news'; news: NewsEvent }
  | { type: 'fanout'; fanout: FanoutEvent }
  | { type: 'sessionEnded'; ended: SessionEndedEvent };

/**
 * Post-commit fan-out. Contract: `publish` is called only after the commit it describes; delivery is best
 * effort and, per user (and for session ends), in publish order per publisher: a lost event costs latency, never
 * data (the next sync finds it).
 * Listeners get this node's own events at once, in publish order, and other nodes' events (a bus between nodes)
 * for the users this node holds ({@link Bus.hold}) and every `sessionEnded`.
 */
export interface Bus {
  readonly name: string;
  /** True when events cross nodes (they can be late or lost, and other nodes write the same logs). */
  readonly isShared: boolean;
  publish(events: readonly BusEvent[]): void;
  /** Registers a listener; returns the function that removes it. */
  subscribe(listener: (events: readonly BusEvent[]) => void): () => void;
  /**
   * This node wants `uin`'s news from other nodes until the returned function is called (counted: each hold
   * is released once). The in-process bus has no other nodes and ignores it.
   */
  hold(uin: number): () => void;
  /**
   * Resolves once every hold taken so far is in effect (a bus between nodes has subscribed), or at once when the
   * link is down. An attach awaits it before reading the head, so no other node's commit falls between the two.
   */
  whenHeld(): Promise<void>;
  /**
   * Called when events from other nodes may have been lost (the link to them was down and is back): listeners
   * catch up from the store. Returns the function that removes it.
   */
  onGap(listener: () => void): () => void;
  close(): Promise<void>;
}

/** A throttle: at most a limit of hits per key per window. Shared between nodes when a bus between them has one. */
export interface RateCounter {
  /** Counts one hit; resolves to the seconds to wait if this hit is over the limit, else 0. */
  hit(key: string, nowMs: number): Promise<number>;
  /** Seconds until `key` may try again, or 0 if it is under the limit now. */
  retryAfterSec(key: string, nowMs: number): Promise<number>;
  /** Forgets a key (after a successful login). */
  clear(key: string): Promise<void>;
}

/**
 * Growing delays after failures (docs/security.md "Throttles"): the first `freeFailures` failures of a key cost
 * nothing; each later one makes the key wait `baseDelayMs` × 2^(k−1) for the k-th failure past the free ones, at
 * most `maxDelayMs`. A key with no failure for `forgetMs` starts again from nothing. See `backoffDelayMs`
 * (core/backoff.ts), which every implementation follows.
 */
export interface BackoffPolicy {
  freeFailures: number;
  baseDelayMs: number;
  maxDelayMs: number;
  forgetMs: number;
}

/** A failure throttle with growing delays ({@link BackoffPolicy}). Shared between nodes like {@link RateCounter}. */
export interface FailureBackoff {
  /** Counts one failure; resolves to the seconds `key` must now wait before its next try (0 while failures are free). */
  fail(key: string, nowMs: number): Promise<number>;
  /** Seconds until `key` may try again, or 0. */
  retryAfterSec(key: string, nowMs: number): Promise<number>;
  /** Forgets a key (after a success). */
  clear(key: string): Promise<void>;
}

/** Makes the throttles: one counter per name (`sends`, `registrations`, ...), one backoff per name (`loginFailuresByIp`, ...). */
export interface RateCounters {
  counter(name: string, limit: number, windowMs: number): RateCounter;
  backoff(name: string, policy: BackoffPolicy): FailureBackoff;
}

/**
 * Bytes of media, by key (`/`-separated, `[A-Za-z0-9._/-]`). Local disk by default (src/storage/blobs); an object
 * store can implement it. Contract:
 * - `put` is atomic: a reader sees the whole new value or the old one (or none), never a part; two puts of the
 *   same key race harmlessly, the last one wins.
 * - `concat` writes `target` as the given keys' bytes in order, atomically (object stores: a compose/multipart copy).
 * - `read` streams `[start, end]` inclusive (whole value by default); `size` is undefined for a missing key.
 * - `delete` and `deletePrefix` ignore missing keys.
 * Metadata (who may read what) lives in the {@link Store}, never here.
 */
export interface BlobStore {
  readonly name: string;
  put(key: string, bytes: Uint8Array): Promise<void>;
  concat(target: string, sources: readonly string[]): Promise<void>;
  read(key: string, start?: number, end?: number): AsyncIterable<Uint8Array>;
  /**
   * A local file path of the value, for a library that reads files (the image decoder reads only what it decodes,
   * instead of holding a whole upload in memory). The path of a key not stored yet, beside a stored one (same
   * folder), may be written by such a library. A store whose values are not local files would copy into one.
   */
  filePath(key: string): string;
  size(key: string): Promise<number | undefined>;
  /** Keys directly under `prefix/` (one level), names only. */
  list(prefix: string): Promise<string[]>;
  delete(key: string): Promise<void>;
  deletePrefix(prefix: string): Promise<void>;
}

/** Time and randomness, injected so the core stays pure and tests stay deterministic. */
export interface Clock {
  now(): number;
}

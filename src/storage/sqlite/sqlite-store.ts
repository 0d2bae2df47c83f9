/**
 * The embedded Store on SQLite (better-sqlite3 12.x). One writer connection (WAL, `synchronous=FULL` by default:
 * a committed transaction survives power loss) and one read-only connection, so reads never see a write that
 * is not yet committed. See docs/architecture.md "storage".
 */
import Database from 'better-sqlite3';
import { DISK_FULL_ERRMSG, RET, SELECTOR_OF_KIND, SynchatError, encodeEntry } from '../../protocol/index.ts';
import type {
  ContactRow,
  GroupRow,
  Heads,
  LogRow,
  MediaBlobRow,
  MediaRow,
  MediaSendRow,
  MediaUploadRow,
  MessageRow,
  QrLoginRow,
  NewEntry,
  SessionRow,
  Store,
  StoreReader,
  StoreTx,
  UserRow,
} from '../../core/ports.ts';
import { toContact, toMedia, toMediaBlob, toMessage, toQrLogin, toSession, toUpload, toUser } from '../rows.ts';
import { makePrivateFiles } from '../private-files.ts';
import { MIGRATIONS } from './migrations.ts';
import { WalSyncer } from './wal-syncer.ts';

/**
 * {@link SqliteStore.blockersAmong} reads a user's blockers in full below this many, and past it looks up only the
 * asked uins (see there).
 */
const FEW_BLOCKERS = 64;

/**
 * Users whose log heads the writer keeps in memory (see {@link SqliteStoreOptions.headCacheMax}). A cached head is a
 * number and a few selector keys, ~200 bytes with its map entry, so at most ~20 MB; without a bound the cache held
 * every user who ever received an entry. A head evicted costs one indexed read of `heads` when next written.
 */
const HEAD_CACHE_MAX = 100_000;

/** Options of the embedded store. */
export interface SqliteStoreOptions {
  /** Database file; `:memory:` is refused because the reader needs the same file. */
  file: string;
  /**
   * `FULL` (default): a finished transaction survives power loss; the WAL is synced on a helper thread, not
   * inside COMMIT on the event loop (see wal-syncer.ts). `NORMAL` survives a process crash but not power loss.
   */
  synchronous?: 'FULL' | 'NORMAL' | 'OFF';
  /**
   * The module whose `fsyncSync(fd)` syncs the WAL (with `FULL`), loaded by the sync thread: a package name or an
   * absolute path. The seam through which a test gives the store a disk whose fsync fails. @default 'node:fs'
   */
  fsyncModule?: string;
  /**
   * How often (ms) the helper thread checkpoints the WAL into the database (with `FULL`); 0 never does, for a test
   * whose simulated disk sees only the syncs made through `fsyncModule` (see wal-syncer.ts). @default 1000
   */
  walCheckpointMs?: number;
  /**
   * Called once, when a WAL sync failed: the store refuses every later write (see {@link SqliteStore.transaction}),
   * so the process should exit and be restarted, which runs the start-up recovery.
   */
  onSyncFailed?: (err: Error) => void;
  /**
   * Users whose log heads the writer caches; past it the longest-cached go after each commit (a transaction's own
   * users stay until it ends). @default 100000
   */
  headCacheMax?: number;
}

type Row = Record<string, any>;

/**
 * A user with entries committed but not yet synced to disk: reads clamp the user's log to `durable`, the head
 * as of the last synced transaction. `tx` is the last transaction that moved the head; several may be waiting
 * for their sync at once (pipelined group commit), and they become durable in the order they committed.
 */
interface NotDurable {
  durable: number;
  tx: number;
}

/** Prepared statements and row mapping over one connection. */
class SqliteAccess implements StoreTx {
  /** Writer only: head cache, valid because this connection is the only writer. Cleared on rollback. */
  readonly #heads: Map<number, Heads> | undefined;
  /** Users whose head moved in the open transaction → their head before it first moved. */
  readonly #headsBefore = new Map<number, number>();
  /** Reader only: users whose newer entries are committed but not yet synced to disk (see {@link NotDurable}). */
  readonly #clamp: Map<number, NotDurable> | undefined;
  #msgId = -1;
  #groupId = -1;
  readonly #s: Record<string, Database.Statement>;
  readonly #headCacheMax: number;

  constructor(db: Database.Database, isWriter: boolean, clamp?: Map<number, NotDurable>, headCacheMax = HEAD_CACHE_MAX) {
    this.#heads = isWriter ? new Map() : undefined;
    this.#headCacheMax = headCacheMax;
    this.#clamp = clamp;
    const p = (sql: string): Database.Statement => db.prepare(sql);
    this.#s = {
      user: p('SELECT * FROM users WHERE uin = ?'),
      userByName: p('SELECT * FROM users WHERE username = ?'),
      insertUser: p(
        'INSERT INTO users (username, display_name, pw_hash, epoch, create_time) VALUES (?, ?, ?, ?, ?) RETURNING uin',
      ),
      setDisplayName: p('UPDATE users SET display_name = ? WHERE uin = ?'),
      setPasswordHash: p('UPDATE users SET pw_hash = ? WHERE uin = ?'),
      renewEpoch: p('UPDATE users SET epoch = ? WHERE uin = ? AND epoch = ?'),
      renewEpochs: p('UPDATE users SET epoch = ?'),
      heads: p('SELECT head, by_selector FROM heads WHERE uin = ?'),
      setHeads: p(
        `INSERT INTO heads (uin, head, by_selector) VALUES (?, ?, ?)
         ON CONFLICT (uin) DO UPDATE SET head = excluded.head, by_selector = excluded.by_selector`,
      ),
      sessionByToken: p('SELECT * FROM sessions WHERE token_hash = ?'),
      session: p('SELECT * FROM sessions WHERE session_id = ?'),
      sessionsOf: p('SELECT * FROM sessions WHERE uin = ? ORDER BY create_time'),
      insertSession: p(
        `INSERT INTO sessions (session_id, token_hash, uin, device_id, device_name, create_time, last_seen_time, acked_key, ended_ret)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      endSession: p('UPDATE sessions SET ended_ret = ? WHERE session_id = ? AND ended_ret = 0'),
      touchSession: p(
        'UPDATE sessions SET acked_key = MAX(acked_key, ?), last_seen_time = MAX(last_seen_time, ?) WHERE session_id = ?',
      ),
      appendLog: p('INSERT INTO log (uin, seq, kind, json) VALUES (?, ?, ?, ?)'),
      readLog: p('SELECT uin, seq, kind, json FROM log WHERE uin = ? AND seq > ? ORDER BY seq LIMIT ?'),
      maxMsgId: p('SELECT COALESCE(MAX(msg_id), 0) AS m FROM messages'),
      message: p('SELECT * FROM messages WHERE msg_id = ?'),
      findSend: p('SELECT * FROM messages WHERE from_uin = ? AND client_msg_id = ?'),
      insertMessage: p(
        `INSERT INTO messages (msg_id, from_uin, client_msg_id, to_addr, to_uin, group_id, type, content, media_id, create_time, sender_seq, revoked)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      setRevoked: p('UPDATE messages SET revoked = 1 WHERE msg_id = ?'),
      contact: p('SELECT * FROM contacts WHERE uin = ? AND peer_uin = ?'),
      contactsOf: p('SELECT * FROM contacts WHERE uin = ? ORDER BY update_time'),
      putContact: p(
        `INSERT INTO contacts (uin, peer_uin, state, note, update_time) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (uin, peer_uin) DO UPDATE SET state = excluded.state, note = excluded.note, update_time = excluded.update_time`,
      ),
      deleteContact: p('DELETE FROM contacts WHERE uin = ? AND peer_uin = ?'),
      isBlocked: p('SELECT 1 AS b FROM blocks WHERE uin = ? AND blocked_uin = ?'),
      blockedBy: p('SELECT blocked_uin FROM blocks WHERE uin = ? ORDER BY create_time, blocked_uin'),
      blockersOf: p('SELECT uin FROM blocks WHERE blocked_uin = ? ORDER BY uin LIMIT ?'),
      blockersAmong: p('SELECT uin FROM blocks WHERE blocked_uin = ? AND uin IN (SELECT value FROM json_each(?)) ORDER BY uin'),
      putBlock: p('INSERT INTO blocks (uin, blocked_uin, create_time) VALUES (?, ?, ?) ON CONFLICT (uin, blocked_uin) DO NOTHING'),
      deleteBlock: p('DELETE FROM blocks WHERE uin = ? AND blocked_uin = ?'),
      maxGroupId: p('SELECT COALESCE(MAX(group_id), 0) AS m FROM chat_groups'),
      group: p('SELECT * FROM chat_groups WHERE group_id = ?'),
      putGroup: p(
        `INSERT INTO chat_groups (group_id, name, owner_uin, create_time) VALUES (?, ?, ?, ?)
         ON CONFLICT (group_id) DO UPDATE SET name = excluded.name, owner_uin = excluded.owner_uin`,
      ),
      members: p('SELECT uin FROM group_members WHERE group_id = ? ORDER BY join_seq'),
      addMember: p(
        `INSERT OR IGNORE INTO group_members (group_id, uin, join_time, join_seq)
         VALUES (?, ?, ?, (SELECT COALESCE(MAX(join_seq), 0) + 1 FROM group_members WHERE group_id = ?))`,
      ),
      removeMember: p('DELETE FROM group_members WHERE group_id = ? AND uin = ?'),
      groupsOf: p('SELECT group_id FROM group_members WHERE uin = ? ORDER BY group_id'),
      upload: p('SELECT * FROM media_uploads WHERE upload_id = ?'),
      pendingUpload: p(
        `SELECT * FROM media_uploads WHERE uin = ? AND sha256 = ? AND size = ? AND state = 'pending' ORDER BY create_time LIMIT 1`,
      ),
      insertUpload: p(
        `INSERT INTO media_uploads (upload_id, uin, sha256, size, chunk_size, mime, name, state, media_id, create_time, update_time)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      finishUpload: p(`UPDATE media_uploads SET state = 'done', media_id = ?, update_time = ? WHERE upload_id = ?`),
      touchUpload: p('UPDATE media_uploads SET update_time = MAX(update_time, ?) WHERE upload_id = ?'),
      deleteUpload: p('DELETE FROM media_uploads WHERE upload_id = ?'),
      staleUploads: p('SELECT * FROM media_uploads WHERE update_time < ? ORDER BY update_time LIMIT ?'),
      pendingBytes: p(`SELECT COALESCE(SUM(size), 0) AS n FROM media_uploads WHERE uin = ? AND state = 'pending' AND create_time >= ?`),
      countedBytes: p('SELECT COALESCE(SUM(counted_bytes), 0) AS n FROM media WHERE uin = ? AND create_time >= ?'),
      mediaBlob: p('SELECT * FROM media_blobs WHERE sha256 = ?'),
      insertMediaBlob: p(
        `INSERT OR IGNORE INTO media_blobs (sha256, size, kind, mime, served_bytes, width, height, thumb_bytes, thumb_mime, create_time)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      media: p('SELECT * FROM media WHERE media_id = ?'),
      mediaBySha: p('SELECT * FROM media WHERE sha256 = ? ORDER BY uin = ? DESC, create_time LIMIT ?'),
      insertMedia: p('INSERT INTO media (media_id, uin, sha256, name, create_time, counted_bytes) VALUES (?, ?, ?, ?, ?, ?)'),
      mediaSends: p('SELECT group_id, uin_a, uin_b FROM media_sends WHERE media_id = ?'),
      addMediaSend: p('INSERT OR IGNORE INTO media_sends (media_id, group_id, uin_a, uin_b) VALUES (?, ?, ?, ?)'),
      qrLogin: p('SELECT * FROM qr_logins WHERE uuid = ?'),
      insertQrLogin: p(
        `INSERT INTO qr_logins (uuid, device_id, device_name, create_time, expire_time, state, scanner_uin, scan_time)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      updateQrLogin: p('UPDATE qr_logins SET state = ?, scanner_uin = ?, scan_time = ? WHERE uuid = ? AND state = ?'),
      deleteExpiredQrLogins: p('DELETE FROM qr_logins WHERE uuid IN (SELECT uuid FROM qr_logins WHERE expire_time < ? ORDER BY expire_time LIMIT ?)'),
      readMarker: p('SELECT msg_id FROM read_markers WHERE uin = ? AND peer = ?'),
      setReadMarker: p(
        `INSERT INTO read_markers (uin, peer, msg_id) VALUES (?, ?, ?)
         ON CONFLICT (uin, peer) DO UPDATE SET msg_id = MAX(msg_id, excluded.msg_id)`,
      ),
    };
  }

  /** Forgets cached heads and counters (after a rollback). */
  resetCaches(): void {
    this.#heads?.clear();
    this.#headsBefore.clear();
    this.#msgId = -1;
    this.#groupId = -1;
  }

  readLogSync(uin: number, afterSeq: number, limit: number): LogRow[] {
    const rows = this.#s.readLog!.all(uin, afterSeq, limit) as LogRow[];
    const durable = this.#clamp?.get(uin)?.durable;
    // Never hand out an entry that a power loss could still take back (see SqliteStore.transaction).
    return durable === undefined ? rows : rows.filter((r) => r.seq <= durable);
  }

  async getUser(uin: number): Promise<UserRow | undefined> {
    return toUser(this.#s.user!.get(uin) as Row | undefined);
  }
  async getUserByName(username: string): Promise<UserRow | undefined> {
    return toUser(this.#s.userByName!.get(username) as Row | undefined);
  }
  async getUsers(uins: readonly number[]): Promise<UserRow[]> {
    const out: UserRow[] = [];
    for (const uin of uins) {
      const u = toUser(this.#s.user!.get(uin) as Row | undefined);
      if (u) out.push(u);
    }
    return out;
  }
  async insertUser(user: Omit<UserRow, 'uin'>): Promise<number> {
    const r = this.#s.insertUser!.get(user.username, user.displayName, user.pwHash, user.epoch, user.createTime) as Row;
    return r.uin as number;
  }
  async setDisplayName(uin: number, displayName: string): Promise<void> {
    this.#s.setDisplayName!.run(displayName, uin);
  }

  async setPasswordHash(uin: number, pwHash: string): Promise<void> {
    this.#s.setPasswordHash!.run(pwHash, uin);
  }

  async renewEpochs(epoch: string, only?: { uin: number; was: string }): Promise<number> {
    return (only ? this.#s.renewEpoch!.run(epoch, only.uin, only.was) : this.#s.renewEpochs!.run(epoch)).changes;
  }

  async getSessionByToken(tokenHash: string): Promise<SessionRow | undefined> {
    return toSession(this.#s.sessionByToken!.get(tokenHash) as Row | undefined);
  }
  async getSession(sessionId: string): Promise<SessionRow | undefined> {
    return toSession(this.#s.session!.get(sessionId) as Row | undefined);
  }
  async listSessions(uin: number): Promise<SessionRow[]> {
    return (this.#s.sessionsOf!.all(uin) as Row[]).map((r) => toSession(r)!);
  }
  async insertSession(s: SessionRow): Promise<void> {
    this.#s.insertSession!.run(s.sessionId, s.tokenHash, s.uin, s.deviceId, s.deviceName, s.createTime, s.lastSeenTime, s.ackedKey, s.endedRet);
  }
  async endSession(sessionId: string, ret: number): Promise<void> {
    this.#s.endSession!.run(ret, sessionId);
  }
  async touchSessions(updates: readonly { sessionId: string; ackedKey: number; lastSeenTime: number }[]): Promise<void> {
    for (const u of updates) this.#s.touchSession!.run(u.ackedKey, u.lastSeenTime, u.sessionId);
  }

  #headsSync(uin: number): Heads {
    const cached = this.#heads?.get(uin);
    if (cached) return cached;
    const r = this.#s.heads!.get(uin) as Row | undefined;
    const heads: Heads = r ? { head: r.head, bySelector: JSON.parse(r.by_selector) } : { head: 0, bySelector: {} };
    this.#heads?.set(uin, heads);
    const durable = this.#clamp?.get(uin)?.durable;
    if (durable !== undefined && heads.head > durable) heads.head = durable;
    return heads;
  }
  async heads(uins: readonly number[]): Promise<Heads[]> {
    return uins.map((uin) => {
      const h = this.#headsSync(uin);
      return { head: h.head, bySelector: { ...h.bySelector } };
    });
  }
  async append(entries: readonly NewEntry[]): Promise<LogRow[]> {
    const rows: LogRow[] = new Array(entries.length);
    for (let i = 0; i < entries.length; i++) {
      const { uin, kind, fields } = entries[i]!;
      const heads = this.#headsSync(uin);
      const seq = heads.head + 1;
      const json = encodeEntry(seq, kind, fields);
      this.#s.appendLog!.run(uin, seq, kind, json);
      if (!this.#headsBefore.has(uin)) this.#headsBefore.set(uin, heads.head);
      heads.head = seq;
      const bit = SELECTOR_OF_KIND[kind] ?? 0;
      if (bit) heads.bySelector[bit] = seq;
      rows[i] = { uin, seq, kind, json };
    }
    return rows;
  }

  /**
   * Writes the heads changed in this transaction, once per user (a group fan-out or a batch of sends touches a
   * user many times; measured: one UPDATE per append was 5% of a send's CPU). Called just before COMMIT; returns
   * each changed user's head before and after the transaction.
   */
  flushHeads(): Map<number, { before: number; after: number }> {
    const changed = new Map<number, { before: number; after: number }>();
    for (const [uin, before] of this.#headsBefore) {
      const heads = this.#heads!.get(uin)!;
      this.#s.setHeads!.run(uin, heads.head, JSON.stringify(heads.bySelector));
      changed.set(uin, { before, after: heads.head });
    }
    this.#headsBefore.clear();
    this.#trimHeads();
    return changed;
  }

  /** Users whose heads the writer caches now. */
  get cachedHeads(): number {
    return this.#heads?.size ?? 0;
  }

  /** Drops the longest-cached heads past the bound; called once the transaction's moved heads are written. */
  #trimHeads(): void {
    if (!this.#heads) return;
    for (const uin of this.#heads.keys()) {
      if (this.#heads.size <= this.#headCacheMax) break;
      this.#heads.delete(uin);
    }
  }

  /** One writer connection: nothing else can write a log, so there is nothing to lock. */
  async lockLogs(_uins: readonly number[]): Promise<void> {}

  async nextMsgId(): Promise<number> {
    if (this.#msgId < 0) this.#msgId = (this.#s.maxMsgId!.get() as Row).m as number;
    return ++this.#msgId;
  }
  async getMessage(msgId: number): Promise<MessageRow | undefined> {
    return toMessage(this.#s.message!.get(msgId) as Row | undefined);
  }
  async findSend(fromUin: number, clientMsgId: string): Promise<MessageRow | undefined> {
    return toMessage(this.#s.findSend!.get(fromUin, clientMsgId) as Row | undefined);
  }
  async insertMessage(m: MessageRow): Promise<void> {
    this.#s.insertMessage!.run(m.msgId, m.fromUin, m.clientMsgId, m.to, m.toUin, m.groupId, m.type, m.content, m.mediaId, m.createTime, m.senderSeq, m.revoked ? 1 : 0);
  }
  async setRevoked(msgId: number): Promise<void> {
    this.#s.setRevoked!.run(msgId);
  }

  async getContact(uin: number, peerUin: number): Promise<ContactRow | undefined> {
    return toContact(this.#s.contact!.get(uin, peerUin) as Row | undefined);
  }
  async listContacts(uin: number): Promise<ContactRow[]> {
    return (this.#s.contactsOf!.all(uin) as Row[]).map((r) => toContact(r)!);
  }
  async putContact(c: ContactRow): Promise<void> {
    this.#s.putContact!.run(c.uin, c.peerUin, c.state, c.note, c.updateTime);
  }
  async deleteContact(uin: number, peerUin: number): Promise<void> {
    this.#s.deleteContact!.run(uin, peerUin);
  }

  async isBlocked(uin: number, blockedUin: number): Promise<boolean> {
    return this.#s.isBlocked!.get(uin, blockedUin) !== undefined;
  }
  async listBlocked(uin: number): Promise<number[]> {
    return (this.#s.blockedBy!.all(uin) as Row[]).map((r) => r.blocked_uin as number);
  }
  async blockersAmong(blockedUin: number, uins: readonly number[]): Promise<number[]> {
    if (uins.length === 0) return [];
    // Most users are blocked by nobody or a few: read them all (one index range) and filter here, 4.5 µs for a
    // group of 500. Past FEW_BLOCKERS, look up only the asked uins (one index probe each): 0.28 ms for 500 members
    // of a sender blocked by 5,000, where reading those 5,000 took 1.7 ms (and grows with them).
    const few = this.#s.blockersOf!.all(blockedUin, FEW_BLOCKERS) as Row[];
    if (few.length < FEW_BLOCKERS) return few.map((r) => r.uin as number).filter((u) => uins.includes(u));
    return (this.#s.blockersAmong!.all(blockedUin, JSON.stringify(uins)) as Row[]).map((r) => r.uin as number);
  }
  async putBlock(uin: number, blockedUin: number, createTime: number): Promise<void> {
    this.#s.putBlock!.run(uin, blockedUin, createTime);
  }
  async deleteBlock(uin: number, blockedUin: number): Promise<void> {
    this.#s.deleteBlock!.run(uin, blockedUin);
  }

  async nextGroupId(): Promise<number> {
    if (this.#groupId < 0) this.#groupId = (this.#s.maxGroupId!.get() as Row).m as number;
    return ++this.#groupId;
  }
  async getGroup(groupId: number): Promise<GroupRow | undefined> {
    const r = this.#s.group!.get(groupId) as Row | undefined;
    return r ? { groupId: r.group_id, name: r.name, ownerUin: r.owner_uin, createTime: r.create_time } : undefined;
  }
  async putGroup(g: GroupRow): Promise<void> {
    this.#s.putGroup!.run(g.groupId, g.name, g.ownerUin, g.createTime);
  }
  async getMembers(groupId: number): Promise<number[]> {
    return (this.#s.members!.all(groupId) as Row[]).map((r) => r.uin as number);
  }
  async addMembers(groupId: number, uins: readonly number[], joinTime: number): Promise<void> {
    for (const uin of uins) this.#s.addMember!.run(groupId, uin, joinTime, groupId);
  }
  async removeMembers(groupId: number, uins: readonly number[]): Promise<void> {
    for (const uin of uins) this.#s.removeMember!.run(groupId, uin);
  }
  async listGroups(uin: number): Promise<number[]> {
    return (this.#s.groupsOf!.all(uin) as Row[]).map((r) => r.group_id as number);
  }

  async getReadMarker(uin: number, peer: string): Promise<number> {
    const r = this.#s.readMarker!.get(uin, peer) as Row | undefined;
    return r ? (r.msg_id as number) : 0;
  }
  async setReadMarker(row: { uin: number; peer: string; msgId: number }): Promise<void> {
    this.#s.setReadMarker!.run(row.uin, row.peer, row.msgId);
  }

  async getUpload(uploadId: string): Promise<MediaUploadRow | undefined> {
    return toUpload(this.#s.upload!.get(uploadId) as Row | undefined);
  }
  async findPendingUpload(uin: number, sha256: string, size: number): Promise<MediaUploadRow | undefined> {
    return toUpload(this.#s.pendingUpload!.get(uin, sha256, size) as Row | undefined);
  }
  async insertUpload(u: MediaUploadRow): Promise<void> {
    this.#s.insertUpload!.run(u.uploadId, u.uin, u.sha256, u.size, u.chunkSize, u.mime, u.name, u.state, u.mediaId, u.createTime, u.updateTime);
  }
  async finishUpload(uploadId: string, mediaId: string, updateTime: number): Promise<void> {
    this.#s.finishUpload!.run(mediaId, updateTime, uploadId);
  }
  async touchUpload(uploadId: string, updateTime: number): Promise<void> {
    this.#s.touchUpload!.run(updateTime, uploadId);
  }
  async deleteUpload(uploadId: string): Promise<void> {
    this.#s.deleteUpload!.run(uploadId);
  }
  async listStaleUploads(beforeTime: number, limit: number): Promise<MediaUploadRow[]> {
    return (this.#s.staleUploads!.all(beforeTime, limit) as Row[]).map((r) => toUpload(r)!);
  }
  async usedUploadBytes(uin: number, sinceTime: number): Promise<number> {
    const pending = (this.#s.pendingBytes!.get(uin, sinceTime) as Row).n as number;
    const counted = (this.#s.countedBytes!.get(uin, sinceTime) as Row).n as number;
    return pending + counted;
  }
  async getMediaBlob(sha256: string): Promise<MediaBlobRow | undefined> {
    return toMediaBlob(this.#s.mediaBlob!.get(sha256) as Row | undefined);
  }
  async insertMediaBlob(b: MediaBlobRow): Promise<void> {
    this.#s.insertMediaBlob!.run(b.sha256, b.size, b.kind, b.mime, b.servedBytes, b.width, b.height, b.thumbBytes, b.thumbMime, b.createTime);
  }
  async getMedia(mediaId: string): Promise<MediaRow | undefined> {
    return toMedia(this.#s.media!.get(mediaId) as Row | undefined);
  }
  async findMediaBySha(sha256: string, preferUin: number, limit: number): Promise<MediaRow[]> {
    return (this.#s.mediaBySha!.all(sha256, preferUin, limit) as Row[]).map((r) => toMedia(r)!);
  }
  async insertMedia(m: MediaRow): Promise<void> {
    this.#s.insertMedia!.run(m.mediaId, m.uin, m.sha256, m.name, m.createTime, m.countedBytes);
  }
  async listMediaSends(mediaId: string): Promise<MediaSendRow[]> {
    return (this.#s.mediaSends!.all(mediaId) as Row[]).map((r) => ({ groupId: r.group_id, uinA: r.uin_a, uinB: r.uin_b }));
  }
  async addMediaSend(mediaId: string, s: MediaSendRow): Promise<void> {
    this.#s.addMediaSend!.run(mediaId, s.groupId, s.uinA, s.uinB);
  }
  async getQrLogin(uuid: string): Promise<QrLoginRow | undefined> {
    return toQrLogin(this.#s.qrLogin!.get(uuid) as Row | undefined);
  }
  async insertQrLogin(q: QrLoginRow): Promise<void> {
    this.#s.insertQrLogin!.run(q.uuid, q.deviceId, q.deviceName, q.createTime, q.expireTime, q.state, q.scannerUin, q.scanTime);
  }
  async updateQrLogin(uuid: string, from: QrLoginRow['state'], to: Pick<QrLoginRow, 'state' | 'scannerUin' | 'scanTime'>): Promise<boolean> {
    return this.#s.updateQrLogin!.run(to.state, to.scannerUin, to.scanTime, uuid, from).changes === 1;
  }
  async deleteExpiredQrLogins(beforeTime: number, limit: number): Promise<number> {
    return this.#s.deleteExpiredQrLogins!.run(beforeTime, limit).changes;
  }
}

/**
 * Runs `PRAGMA quick_check` (every page's b-tree structure, no index-to-table cross check) and throws an error
 * naming the file when it finds a problem, so a corrupt page stops the start instead of failing the first request
 * that reads it. It reads the whole file once; measured here with the file in the page cache: 11-15 ms on the
 * long-log test's size (100,000 entries, 8.9 MB), 140-152 ms on 1,000,000 entries (92 MB), about 1.5 s per GB
 * (a full `integrity_check` took 2.7 times as long: 394 ms at 92 MB). From a cold disk it is bound by read speed.
 */
function checkIntegrity(db: Database.Database, file: string): void {
  let problems: string[];
  try {
    problems = (db.pragma('quick_check(5)') as { quick_check: string }[]).map((r) => r.quick_check);
  } catch (err) {
    problems = [(err as Error).message];
  }
  if (problems.length === 1 && problems[0] === 'ok') return;
  throw new Error(
    `${file} is corrupt (SQLite quick_check: ${problems.join('; ')}); the server will not start on it: restore the file from a backup, or move it away to start empty`,
  );
}

/** Opens (and migrates) a database file, after checking its integrity. */
function openDatabase(file: string, synchronous: string): Database.Database {
  let db: Database.Database;
  try {
    db = new Database(file);
  } catch (err) {
    throw new Error(`${file} cannot be opened as a database: ${(err as Error).message}`);
  }
  try {
    checkIntegrity(db, file);
  } catch (err) {
    db.close();
    throw err;
  }
  db.pragma('journal_mode = WAL');
  db.pragma(`synchronous = ${synchronous === 'NORMAL-ASYNC-FULL' ? 'NORMAL' : synchronous}`);
  db.pragma('foreign_keys = OFF');
  db.pragma('busy_timeout = 5000');
  // Checkpoints run on a helper thread (wal-syncer.ts) when the WAL is synced there; else SQLite's own. No
  // journal_size_limit: truncating the WAL made later appends allocate blocks again, and a COMMIT then waited
  // on the file system's journal behind the checkpoint's fsync (measured: single COMMITs of 400+ ms).
  db.pragma(`wal_autocheckpoint = ${synchronous === 'NORMAL-ASYNC-FULL' ? 0 : 4000}`);
  const version = db.pragma('user_version', { simple: true }) as number;
  if (version > MIGRATIONS.length) {
    db.close();
    throw new Error(`${file} has schema version ${version}, newer than this server knows (${MIGRATIONS.length})`);
  }
  for (let v = version; v < MIGRATIONS.length; v++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[v]!);
      db.pragma(`user_version = ${v + 1}`);
    })();
  }
  return db;
}

/** The embedded default Store. */
export class SqliteStore implements Store {
  readonly name = 'sqlite';
  /** One writer connection: one transaction at a time, pipelined with the previous one's sync. */
  readonly concurrency = 1;
  readonly #writer: Database.Database;
  readonly #reader: Database.Database;
  readonly #w: SqliteAccess;
  readonly #r: SqliteAccess;
  readonly #syncer: WalSyncer | undefined;
  /** Users whose newest committed entries are not yet on disk. */
  readonly #notDurable = new Map<number, NotDurable>();
  /** Settles when the transaction that runs now has committed or rolled back (not when it is durable). */
  #turn: Promise<void> = Promise.resolve();
  #txCount = 0;
  /** Set when a WAL sync failed: what was committed may not be on disk, so nothing more is accepted. */
  #broken: Error | undefined;
  readonly #onSyncFailed: ((err: Error) => void) | undefined;

  constructor(opts: SqliteStoreOptions) {
    if (opts.file === ':memory:') throw new Error('SqliteStore needs a file: the read connection opens it too');
    const isFull = (opts.synchronous ?? 'FULL') === 'FULL';
    // Owner-only before SQLite opens it: the -wal and -shm files it makes take the database file's mode.
    makePrivateFiles([opts.file, `${opts.file}-wal`, `${opts.file}-shm`], true);
    this.#writer = openDatabase(opts.file, isFull ? 'NORMAL-ASYNC-FULL' : opts.synchronous!);
    this.#reader = new Database(opts.file, { readonly: true });
    this.#reader.pragma('busy_timeout = 5000');
    this.#w = new SqliteAccess(this.#writer, true, undefined, opts.headCacheMax);
    this.#r = new SqliteAccess(this.#reader, false, this.#notDurable);
    this.#syncer = isFull ? new WalSyncer(opts.file, opts.walCheckpointMs, opts.fsyncModule) : undefined;
    this.#onSyncFailed = opts.onSyncFailed;
  }

  get read(): StoreReader {
    return this.#r;
  }

  /** Users whose log heads the writer caches now (bounded by {@link SqliteStoreOptions.headCacheMax}). */
  get cachedHeads(): number {
    return this.#w.cachedHeads;
  }

  async transaction<T>(fn: (tx: StoreTx) => Promise<T>): Promise<T> {
    // Store contract: one transaction runs at a time, in call order. The next one may start as soon as this one
    // has committed; this one then waits for its WAL sync while the next runs (pipelined group commit).
    const prev = this.#turn;
    let release!: () => void;
    this.#turn = new Promise<void>((r) => (release = r));
    await prev;
    let result: T;
    let changed: Map<number, { before: number; after: number }>;
    const txId = ++this.#txCount;
    try {
      if (this.#broken) throw this.#broken;
      this.#writer.exec('BEGIN IMMEDIATE');
      result = await fn(this.#w);
      changed = this.#w.flushHeads();
      this.#writer.exec('COMMIT');
    } catch (err) {
      if (this.#writer.inTransaction) this.#writer.exec('ROLLBACK');
      this.#w.resetCaches();
      release();
      // Only here, after the rollback: inside the transaction a job must not take it for its own refusal.
      throw (err as { code?: string }).code === 'SQLITE_FULL' ? new SynchatError(RET.SERVER_ERROR, DISK_FULL_ERRMSG) : err;
    }
    if (!this.#syncer) {
      release();
      return result;
    }
    for (const [uin, { before }] of changed) {
      const nd = this.#notDurable.get(uin);
      if (nd) nd.tx = txId;
      else this.#notDurable.set(uin, { durable: before, tx: txId });
    }
    release();
    // Store contract: resolved = durable. The event loop stays free while the disk syncs.
    try {
      await this.#syncer.sync();
      // An earlier transaction's sync failed: this one's frames may sit behind pages the kernel dropped.
      if (this.#broken) throw this.#broken;
    } catch (err) {
      if (err === this.#broken) throw err;
      // A failed fsync may have dropped dirty pages (PostgreSQL's "fsyncgate"): retrying cannot prove them
      // durable, so the store refuses all further writes, and tells its owner, who exits (a restart recovers).
      if (!this.#broken) {
        this.#broken = new Error(`WAL sync failed; restart the server: ${(err as Error).message}`);
        this.#onSyncFailed?.(this.#broken);
      }
      throw this.#broken;
    } finally {
      // Syncs finish in commit order: a user last moved by a later transaction is durable up to this one's head.
      for (const [uin, { after }] of changed) {
        const nd = this.#notDurable.get(uin);
        if (!nd) continue;
        if (nd.tx === txId) this.#notDurable.delete(uin);
        else nd.durable = after;
      }
    }
    return result;
  }

  async readLog(uin: number, afterSeq: number, limit: number): Promise<LogRow[]> {
    return this.#r.readLogSync(uin, afterSeq, limit);
  }

  async close(): Promise<void> {
    await this.#turn;
    await this.#syncer?.close();
    this.#reader.close();
    this.#writer.close();
  }
}

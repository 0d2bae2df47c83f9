/**
 * The Store on PostgreSQL (node-postgres), for several nodes writing the same logs. Selected by
 * `SYNCHAT_POSTGRES_URL`. See docs/scaling.md and docs/architecture.md "Storage".
 *
 * - One writer connection per node (more with `writers`, isolated by the log locks as other nodes' are) runs
 *   this node's transactions; group commit puts many jobs in each. A transaction commits with
 *   `synchronous_commit = on`: resolved = durable.
 * - Appends lock the users' `heads` rows (`SELECT ... FOR UPDATE`, in uin order) and allocate seqs from them
 *   in memory; log rows, heads and messages are written in bulk just before COMMIT (one statement per table,
 *   not one round trip per row). A lock that would be taken out of uin order is only tried (`SKIP LOCKED`):
 *   if another writer holds it, {@link LockConflict} sends the job to the front of the next batch, so writers
 *   never wait in a cycle. A user's next seq is drawn only under the lock its previous writer held until
 *   COMMIT, so a seq is visible only once every lower seq of that user is committed.
 * - Serialization failures and deadlocks (which the lock order should prevent) roll back and run the
 *   transaction again.
 * - Reads outside a transaction use a small pool and see committed (= durable) state.
 */
import pg from 'pg';
import { DISK_FULL_ERRMSG, RET, SELECTOR_OF_KIND, SynchatError, encodeEntry } from '../../protocol/index.ts';
import {
  LockConflict,
  type ContactRow,
  type GroupRow,
  type Heads,
  type LogRow,
  type MediaBlobRow,
  type MediaRow,
  type MediaSendRow,
  type MediaUploadRow,
  type MessageRow,
  type NewEntry,
  type QrLoginRow,
  type SessionRow,
  type Store,
  type StoreReader,
  type StoreTx,
  type UserRow,
} from '../../core/ports.ts';
import { toContact, toMedia, toMediaBlob, toMessage, toQrLogin, toSession, toUpload, toUser, type Row } from '../rows.ts';
import { MIGRATIONS } from './migrations.ts';

/** Options of the PostgreSQL store. */
export interface PostgresStoreOptions {
  /** `postgres://user@host:port/database`. */
  url: string;
  /** Connections for reads outside transactions. @default 8 */
  readPoolSize?: number;
  /** Attempts of a transaction that meets serialization failures or deadlocks. @default 5 */
  maxAttempts?: number;
  /**
   * Writer connections, so transactions that may run at once. @default 1: measured on 2 cores (2026-12-03, direct
   * 1:1, one node), 4 writers did worse than one (p99 1.2 s at 1,000 msgs/s against 1,288 msgs/s sustained at
   * p99 ≤ 200 ms): a node's own batches, each holding its users' locks until COMMIT, queued behind one another.
   */
  writers?: number;
}

/** BIGINT and NUMERIC columns as JavaScript numbers (uins, seqs, msgIds and byte counts stay below 2^53). */
const TYPES = {
  getTypeParser: (oid: number, format?: 'text' | 'binary') =>
    oid === 20 || oid === 1700 ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format as 'text'),
};

/** SQLSTATEs that mean "run the transaction again": serialization_failure, deadlock_detected. */
const RETRYABLE = new Set(['40001', '40P01']);

/** The advisory lock key that serializes migrations between nodes starting at once. */
const MIGRATION_LOCK = 0x53594e43; // "SYNC"

/** Something that runs SQL: the pool (reads) or the writer connection (inside a transaction). */
interface Queryable {
  query(text: string, values?: unknown[]): Promise<pg.QueryResult>;
}

async function rows(q: Queryable, text: string, values: unknown[]): Promise<Row[]> {
  return (await q.query(text, values)).rows;
}

async function one(q: Queryable, text: string, values: unknown[]): Promise<Row | undefined> {
  return (await q.query(text, values)).rows[0];
}

function toHeads(r: Row | undefined): Heads {
  return r ? { head: r.head, bySelector: JSON.parse(r.by_selector) } : { head: 0, bySelector: {} };
}

/** Every read, over the pool (committed state) or over the writer inside a transaction (its own writes too). */
class PgReader implements StoreReader {
  protected readonly q: Queryable;
  constructor(q: Queryable) {
    this.q = q;
  }

  async getUser(uin: number): Promise<UserRow | undefined> {
    return toUser(await one(this.q, 'SELECT * FROM users WHERE uin = $1', [uin]));
  }
  async getUserByName(username: string): Promise<UserRow | undefined> {
    return toUser(await one(this.q, 'SELECT * FROM users WHERE username = $1', [username]));
  }
  async getUsers(uins: readonly number[]): Promise<UserRow[]> {
    const found = await rows(this.q, 'SELECT * FROM users WHERE uin = ANY($1::bigint[])', [uins]);
    const byUin = new Map(found.map((r) => [r.uin as number, toUser(r)!]));
    return uins.flatMap((uin) => byUin.get(uin) ?? []);
  }

  async getSessionByToken(tokenHash: string): Promise<SessionRow | undefined> {
    return toSession(await one(this.q, 'SELECT * FROM sessions WHERE token_hash = $1', [tokenHash]));
  }
  async getSession(sessionId: string): Promise<SessionRow | undefined> {
    return toSession(await one(this.q, 'SELECT * FROM sessions WHERE session_id = $1', [sessionId]));
  }
  async listSessions(uin: number): Promise<SessionRow[]> {
    return (await rows(this.q, 'SELECT * FROM sessions WHERE uin = $1 ORDER BY create_time', [uin])).map((r) => toSession(r)!);
  }

  async heads(uins: readonly number[]): Promise<Heads[]> {
    const found = await rows(this.q, 'SELECT uin, head, by_selector FROM heads WHERE uin = ANY($1::bigint[])', [uins]);
    const byUin = new Map(found.map((r) => [r.uin as number, r]));
    return uins.map((uin) => toHeads(byUin.get(uin)));
  }

  async getMessage(msgId: number): Promise<MessageRow | undefined> {
    return toMessage(await one(this.q, 'SELECT * FROM messages WHERE msg_id = $1', [msgId]));
  }
  async findSend(fromUin: number, clientMsgId: string): Promise<MessageRow | undefined> {
    return toMessage(await one(this.q, 'SELECT * FROM messages WHERE from_uin = $1 AND client_msg_id = $2', [fromUin, clientMsgId]));
  }

  async getContact(uin: number, peerUin: number): Promise<ContactRow | undefined> {
    return toContact(await one(this.q, 'SELECT * FROM contacts WHERE uin = $1 AND peer_uin = $2', [uin, peerUin]));
  }
  async listContacts(uin: number): Promise<ContactRow[]> {
    return (await rows(this.q, 'SELECT * FROM contacts WHERE uin = $1 ORDER BY update_time', [uin])).map((r) => toContact(r)!);
  }

  async isBlocked(uin: number, blockedUin: number): Promise<boolean> {
    return (await one(this.q, 'SELECT 1 AS b FROM blocks WHERE uin = $1 AND blocked_uin = $2', [uin, blockedUin])) !== undefined;
  }
  async listBlocked(uin: number): Promise<number[]> {
    return (await rows(this.q, 'SELECT blocked_uin FROM blocks WHERE uin = $1 ORDER BY create_time, blocked_uin', [uin])).map((r) => r.blocked_uin as number);
  }
  async blockersAmong(blockedUin: number, uins: readonly number[]): Promise<number[]> {
    if (uins.length === 0) return [];
    const found = await rows(this.q, 'SELECT uin FROM blocks WHERE blocked_uin = $1 AND uin = ANY($2::bigint[]) ORDER BY uin', [blockedUin, uins]);
    return found.map((r) => r.uin as number);
  }

  async getGroup(groupId: number): Promise<GroupRow | undefined> {
    const r = await one(this.q, 'SELECT * FROM chat_groups WHERE group_id = $1', [groupId]);
    return r ? { groupId: r.group_id, name: r.name, ownerUin: r.owner_uin, createTime: r.create_time } : undefined;
  }
  async getMembers(groupId: number): Promise<number[]> {
    return (await rows(this.q, 'SELECT uin FROM group_members WHERE group_id = $1 ORDER BY join_seq', [groupId])).map((r) => r.uin as number);
  }
  async listGroups(uin: number): Promise<number[]> {
    return (await rows(this.q, 'SELECT group_id FROM group_members WHERE uin = $1 ORDER BY group_id', [uin])).map((r) => r.group_id as number);
  }

  async getReadMarker(uin: number, peer: string): Promise<number> {
    return (await one(this.q, 'SELECT msg_id FROM read_markers WHERE uin = $1 AND peer = $2', [uin, peer]))?.msg_id ?? 0;
  }

  async getUpload(uploadId: string): Promise<MediaUploadRow | undefined> {
    return toUpload(await one(this.q, 'SELECT * FROM media_uploads WHERE upload_id = $1', [uploadId]));
  }
  async findPendingUpload(uin: number, sha256: string, size: number): Promise<MediaUploadRow | undefined> {
    return toUpload(
      await one(
        this.q,
        `SELECT * FROM media_uploads WHERE uin = $1 AND sha256 = $2 AND size = $3 AND state = 'pending' ORDER BY create_time LIMIT 1`,
        [uin, sha256, size],
      ),
    );
  }
  async listStaleUploads(beforeTime: number, limit: number): Promise<MediaUploadRow[]> {
    const found = await rows(this.q, 'SELECT * FROM media_uploads WHERE update_time < $1 ORDER BY update_time LIMIT $2', [beforeTime, limit]);
    return found.map((r) => toUpload(r)!);
  }
  async usedUploadBytes(uin: number, sinceTime: number): Promise<number> {
    const r = await one(
      this.q,
      `SELECT (SELECT COALESCE(SUM(size), 0) FROM media_uploads WHERE uin = $1 AND state = 'pending' AND create_time >= $2)
            + (SELECT COALESCE(SUM(counted_bytes), 0) FROM media WHERE uin = $1 AND create_time >= $2) AS n`,
      [uin, sinceTime],
    );
    return r!.n as number;
  }
  async getMediaBlob(sha256: string): Promise<MediaBlobRow | undefined> {
    return toMediaBlob(await one(this.q, 'SELECT * FROM media_blobs WHERE sha256 = $1', [sha256]));
  }
  async getMedia(mediaId: string): Promise<MediaRow | undefined> {
    return toMedia(await one(this.q, 'SELECT * FROM media WHERE media_id = $1', [mediaId]));
  }
  async findMediaBySha(sha256: string, preferUin: number, limit: number): Promise<MediaRow[]> {
    const found = await rows(this.q, 'SELECT * FROM media WHERE sha256 = $1 ORDER BY (uin = $2) DESC, create_time LIMIT $3', [sha256, preferUin, limit]);
    return found.map((r) => toMedia(r)!);
  }
  async listMediaSends(mediaId: string): Promise<MediaSendRow[]> {
    const found = await rows(this.q, 'SELECT group_id, uin_a, uin_b FROM media_sends WHERE media_id = $1', [mediaId]);
    return found.map((r) => ({ groupId: r.group_id, uinA: r.uin_a, uinB: r.uin_b }));
  }

  async getQrLogin(uuid: string): Promise<QrLoginRow | undefined> {
    return toQrLogin(await one(this.q, 'SELECT * FROM qr_logins WHERE uuid = $1', [uuid]));
  }
}

/** A user whose log this transaction locked: the heads as read under the lock, moved by appends in memory. */
interface LockedHeads extends Heads {
  /** The head when locked (unchanged users are not written back). */
  before: number;
}

/** One write transaction on the writer connection. Log rows, heads and messages are written at {@link flush}. */
class PgTx extends PgReader implements StoreTx {
  readonly #locked = new Map<number, LockedHeads>();
  /** A msgId drawn right after the latest locks were taken, not yet handed out. */
  #drawnMsgId: number | undefined;
  /** The highest uin locked so far: a lock on a lower one can only be tried, never waited for. */
  #maxLocked = -1;
  readonly #log: LogRow[] = [];
  /** Messages inserted in this transaction, by msgId and by (sender, clientMsgId), until flushed. */
  readonly #messages = new Map<number, MessageRow>();
  readonly #sends = new Map<string, MessageRow>();

  async lockLogs(uins: readonly number[]): Promise<void> {
    const fresh = [...new Set(uins)].filter((u) => !this.#locked.has(u)).sort((a, b) => a - b);
    if (fresh.length === 0) return;
    // Below the highest lock held: waiting could close a cycle with a writer that holds these and waits for
    // ours, so only take what is free now. At or above it: wait, in uin order (the total order that makes
    // waiting safe). FOR UPDATE re-reads the row after a wait, so the heads are the last committed ones.
    const low = fresh.filter((u) => u < this.#maxLocked);
    const high = fresh.filter((u) => u >= this.#maxLocked);
    if (low.length > 0) {
      const got = await this.#lockAndDrawMsgId(low, 'FOR UPDATE SKIP LOCKED');
      this.#remember(got);
      if (got.length < low.length) throw new LockConflict(low.filter((u) => !this.#locked.has(u)));
    }
    if (high.length > 0) {
      const got = await this.#lockAndDrawMsgId(high, 'FOR UPDATE');
      this.#remember(got);
      const missing = high.filter((u) => !this.#locked.has(u));
      if (missing.length > 0) throw new Error(`lockLogs: no such users ${missing.join(',')}`);
    }
  }

  /**
   * Locks heads rows and, in the same round trip, after the lock, draws a msgId: valid for a message whose logs
   * are all locked now (see {@link StoreTx.nextMsgId}), so a send's `nextMsgId` costs no round trip of its own.
   * One simple-protocol query of two statements (node-postgres does not pipeline): the uins are inlined, and
   * checked to be integers first.
   */
  async #lockAndDrawMsgId(uins: readonly number[], lock: string): Promise<Row[]> {
    for (const u of uins) if (!Number.isSafeInteger(u)) throw new Error(`lockLogs: not a uin: ${u}`);
    const [locked, drawn] = (await this.q.query(
      `SELECT uin, head, by_selector FROM heads WHERE uin = ANY('{${uins.join(',')}}'::bigint[]) ORDER BY uin ${lock}; SELECT nextval('msg_ids') AS id`,
    )) as unknown as pg.QueryResult[];
    this.#drawnMsgId = drawn!.rows[0]!.id;
    return locked!.rows;
  }

  #remember(got: Row[]): void {
    for (const r of got) {
      const heads = toHeads(r);
      this.#locked.set(r.uin, { ...heads, before: heads.head });
      if (r.uin > this.#maxLocked) this.#maxLocked = r.uin;
    }
  }

  override async heads(uins: readonly number[]): Promise<Heads[]> {
    const unlocked = uins.filter((u) => !this.#locked.has(u));
    const read = unlocked.length > 0 ? await super.heads(unlocked) : [];
    let next = 0;
    return uins.map((uin) => {
      const h = this.#locked.get(uin);
      return h ? { head: h.head, bySelector: { ...h.bySelector } } : read[next++]!;
    });
  }

  async append(entries: readonly NewEntry[]): Promise<LogRow[]> {
    const out: LogRow[] = new Array(entries.length);
    for (let i = 0; i < entries.length; i++) {
      const { uin, kind, fields } = entries[i]!;
      const heads = this.#locked.get(uin);
      if (!heads) throw new Error(`append to user ${uin}'s log without lockLogs`);
      const seq = heads.head + 1;
      const row: LogRow = { uin, seq, kind, json: encodeEntry(seq, kind, fields) };
      heads.head = seq;
      const bit = SELECTOR_OF_KIND[kind] ?? 0;
      if (bit) heads.bySelector[bit] = seq;
      this.#log.push(row);
      out[i] = row;
    }
    return out;
  }

  /** Writes what this transaction buffered: one statement each for log rows, heads and messages. */
  async flush(): Promise<void> {
    if (this.#log.length > 0) {
      const log = this.#log;
      await this.q.query('INSERT INTO log (uin, seq, kind, json) SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[])', [
        log.map((r) => r.uin),
        log.map((r) => r.seq),
        log.map((r) => r.kind),
        log.map((r) => r.json),
      ]);
      const moved = [...this.#locked].filter(([, h]) => h.head !== h.before);
      await this.q.query(
        `UPDATE heads SET head = v.head, by_selector = v.by_selector
         FROM unnest($1::bigint[], $2::bigint[], $3::text[]) AS v(uin, head, by_selector) WHERE heads.uin = v.uin`,
        [moved.map(([u]) => u), moved.map(([, h]) => h.head), moved.map(([, h]) => JSON.stringify(h.bySelector))],
      );
    }
    if (this.#messages.size > 0) {
      const m = [...this.#messages.values()];
      await this.q.query(
        `INSERT INTO messages (msg_id, from_uin, client_msg_id, to_addr, to_uin, group_id, type, content, media_id, create_time, sender_seq, revoked)
         SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::int[], $8::text[],
                              $9::text[], $10::bigint[], $11::bigint[], $12::boolean[])`,
        [
          m.map((r) => r.msgId),
          m.map((r) => r.fromUin),
          m.map((r) => r.clientMsgId),
          m.map((r) => r.to),
          m.map((r) => r.toUin),
          m.map((r) => r.groupId),
          m.map((r) => r.type),
          m.map((r) => r.content),
          m.map((r) => r.mediaId),
          m.map((r) => r.createTime),
          m.map((r) => r.senderSeq),
          m.map((r) => r.revoked),
        ],
      );
    }
  }

  async insertUser(user: Omit<UserRow, 'uin'>): Promise<number> {
    const r = await one(
      this.q,
      `WITH u AS (INSERT INTO users (username, display_name, pw_hash, epoch, create_time) VALUES ($1, $2, $3, $4, $5) RETURNING uin)
       INSERT INTO heads (uin, head, by_selector) SELECT uin, 0, '{}' FROM u RETURNING uin`,
      [user.username, user.displayName, user.pwHash, user.epoch, user.createTime],
    );
    return r!.uin as number;
  }
  async setDisplayName(uin: number, displayName: string): Promise<void> {
    await this.q.query('UPDATE users SET display_name = $1 WHERE uin = $2', [displayName, uin]);
  }

  async setPasswordHash(uin: number, pwHash: string): Promise<void> {
    await this.q.query('UPDATE users SET pw_hash = $1 WHERE uin = $2', [pwHash, uin]);
  }

  async renewEpochs(epoch: string, only?: { uin: number; was: string }): Promise<number> {
    const r = only
      ? await this.q.query('UPDATE users SET epoch = $1 WHERE uin = $2 AND epoch = $3', [epoch, only.uin, only.was])
      : await this.q.query('UPDATE users SET epoch = $1', [epoch]);
    return r.rowCount ?? 0;
  }

  async insertSession(s: SessionRow): Promise<void> {
    await this.q.query(
      `INSERT INTO sessions (session_id, token_hash, uin, device_id, device_name, create_time, last_seen_time, acked_key, ended_ret)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
      [s.sessionId, s.tokenHash, s.uin, s.deviceId, s.deviceName, s.createTime, s.lastSeenTime, s.ackedKey, s.endedRet],
    );
  }
  async endSession(sessionId: string, ret: number): Promise<void> {
    await this.q.query('UPDATE sessions SET ended_ret = $1 WHERE session_id = $2 AND ended_ret = 0', [ret, sessionId]);
  }
  async touchSessions(updates: readonly { sessionId: string; ackedKey: number; lastSeenTime: number }[]): Promise<void> {
    if (updates.length === 0) return;
    await this.q.query(
      `UPDATE sessions SET acked_key = GREATEST(sessions.acked_key, v.acked_key), last_seen_time = GREATEST(sessions.last_seen_time, v.seen)
       FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS v(session_id, acked_key, seen) WHERE sessions.session_id = v.session_id`,
      [updates.map((u) => u.sessionId), updates.map((u) => u.ackedKey), updates.map((u) => u.lastSeenTime)],
    );
  }

  async nextMsgId(): Promise<number> {
    const drawn = this.#drawnMsgId;
    this.#drawnMsgId = undefined;
    return drawn ?? ((await one(this.q, "SELECT nextval('msg_ids') AS id", []))!.id as number);
  }
  override async getMessage(msgId: number): Promise<MessageRow | undefined> {
    return this.#messages.get(msgId) ?? super.getMessage(msgId);
  }
  override async findSend(fromUin: number, clientMsgId: string): Promise<MessageRow | undefined> {
    return this.#sends.get(`${fromUin}:${clientMsgId}`) ?? super.findSend(fromUin, clientMsgId);
  }
  async insertMessage(msg: MessageRow): Promise<void> {
    const key = `${msg.fromUin}:${msg.clientMsgId}`;
    if (this.#messages.has(msg.msgId) || this.#sends.has(key)) throw new Error(`message ${msg.msgId} (${key}) inserted twice`);
    const row = { ...msg };
    this.#messages.set(msg.msgId, row);
    this.#sends.set(key, row);
  }
  async setRevoked(msgId: number): Promise<void> {
    const pending = this.#messages.get(msgId);
    if (pending) pending.revoked = true;
    else await this.q.query('UPDATE messages SET revoked = TRUE WHERE msg_id = $1', [msgId]);
  }

  async putContact(c: ContactRow): Promise<void> {
    await this.q.query(
      `INSERT INTO contacts (uin, peer_uin, state, note, update_time) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (uin, peer_uin) DO UPDATE SET state = excluded.state, note = excluded.note, update_time = excluded.update_time`,
      [c.uin, c.peerUin, c.state, c.note, c.updateTime],
    );
  }
  async deleteContact(uin: number, peerUin: number): Promise<void> {
    await this.q.query('DELETE FROM contacts WHERE uin = $1 AND peer_uin = $2', [uin, peerUin]);
  }
  async putBlock(uin: number, blockedUin: number, createTime: number): Promise<void> {
    await this.q.query('INSERT INTO blocks (uin, blocked_uin, create_time) VALUES ($1, $2, $3) ON CONFLICT (uin, blocked_uin) DO NOTHING', [uin, blockedUin, createTime]);
  }
  async deleteBlock(uin: number, blockedUin: number): Promise<void> {
    await this.q.query('DELETE FROM blocks WHERE uin = $1 AND blocked_uin = $2', [uin, blockedUin]);
  }

  async nextGroupId(): Promise<number> {
    return (await one(this.q, "SELECT nextval('group_ids') AS id", []))!.id as number;
  }
  async putGroup(g: GroupRow): Promise<void> {
    await this.q.query(
      `INSERT INTO chat_groups (group_id, name, owner_uin, create_time) VALUES ($1, $2, $3, $4)
       ON CONFLICT (group_id) DO UPDATE SET name = excluded.name, owner_uin = excluded.owner_uin`,
      [g.groupId, g.name, g.ownerUin, g.createTime],
    );
  }
  async addMembers(groupId: number, uins: readonly number[], joinTime: number): Promise<void> {
    if (uins.length === 0) return;
    // WITH ORDINALITY: members join in the order given (join_seq is drawn row by row in that order).
    await this.q.query(
      `INSERT INTO group_members (group_id, uin, join_time)
       SELECT $1, u, $3 FROM unnest($2::bigint[]) WITH ORDINALITY AS t(u, i) ORDER BY i ON CONFLICT DO NOTHING`,
      [groupId, uins, joinTime],
    );
  }
  async removeMembers(groupId: number, uins: readonly number[]): Promise<void> {
    if (uins.length === 0) return;
    await this.q.query('DELETE FROM group_members WHERE group_id = $1 AND uin = ANY($2::bigint[])', [groupId, uins]);
  }

  async setReadMarker(row: { uin: number; peer: string; msgId: number }): Promise<void> {
    await this.q.query(
      `INSERT INTO read_markers (uin, peer, msg_id) VALUES ($1, $2, $3)
       ON CONFLICT (uin, peer) DO UPDATE SET msg_id = GREATEST(read_markers.msg_id, excluded.msg_id)`,
      [row.uin, row.peer, row.msgId],
    );
  }

  async insertUpload(u: MediaUploadRow): Promise<void> {
    await this.q.query(
      `INSERT INTO media_uploads (upload_id, uin, sha256, size, chunk_size, mime, name, state, media_id, create_time, update_time)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
      [u.uploadId, u.uin, u.sha256, u.size, u.chunkSize, u.mime, u.name, u.state, u.mediaId, u.createTime, u.updateTime],
    );
  }
  async finishUpload(uploadId: string, mediaId: string, updateTime: number): Promise<void> {
    await this.q.query(`UPDATE media_uploads SET state = 'done', media_id = $1, update_time = $2 WHERE upload_id = $3`, [mediaId, updateTime, uploadId]);
  }
  async touchUpload(uploadId: string, updateTime: number): Promise<void> {
    await this.q.query('UPDATE media_uploads SET update_time = GREATEST(update_time, $1) WHERE upload_id = $2', [updateTime, uploadId]);
  }
  async deleteUpload(uploadId: string): Promise<void> {
    await this.q.query('DELETE FROM media_uploads WHERE upload_id = $1', [uploadId]);
  }
  async insertMediaBlob(b: MediaBlobRow): Promise<void> {
    await this.q.query(
      `INSERT INTO media_blobs (sha256, size, kind, mime, served_bytes, width, height, thumb_bytes, thumb_mime, create_time)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (sha256) DO NOTHING`,
      [b.sha256, b.size, b.kind, b.mime, b.servedBytes, b.width, b.height, b.thumbBytes, b.thumbMime, b.createTime],
    );
  }
  async insertMedia(m: MediaRow): Promise<void> {
    await this.q.query('INSERT INTO media (media_id, uin, sha256, name, create_time, counted_bytes) VALUES ($1, $2, $3, $4, $5, $6)', [
      m.mediaId,
      m.uin,
      m.sha256,
      m.name,
      m.createTime,
      m.countedBytes,
    ]);
  }
  async addMediaSend(mediaId: string, s: MediaSendRow): Promise<void> {
    await this.q.query('INSERT INTO media_sends (media_id, group_id, uin_a, uin_b) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING', [
      mediaId,
      s.groupId,
      s.uinA,
      s.uinB,
    ]);
  }

  async insertQrLogin(q: QrLoginRow): Promise<void> {
    await this.q.query(
      `INSERT INTO qr_logins (uuid, device_id, device_name, create_time, expire_time, state, scanner_uin, scan_time)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
      [q.uuid, q.deviceId, q.deviceName, q.createTime, q.expireTime, q.state, q.scannerUin, q.scanTime],
    );
  }
  async updateQrLogin(uuid: string, from: QrLoginRow['state'], to: Pick<QrLoginRow, 'state' | 'scannerUin' | 'scanTime'>): Promise<boolean> {
    // Under READ COMMITTED a second node's UPDATE of the same row waits for the first one's COMMIT, then checks
    // `state = from` again against the committed row: of two racing moves out of one state, one changes a row.
    const r = await this.q.query('UPDATE qr_logins SET state = $1, scanner_uin = $2, scan_time = $3 WHERE uuid = $4 AND state = $5', [
      to.state,
      to.scannerUin,
      to.scanTime,
      uuid,
      from,
    ]);
    return r.rowCount === 1;
  }
  async deleteExpiredQrLogins(beforeTime: number, limit: number): Promise<number> {
    const r = await this.q.query(
      'DELETE FROM qr_logins WHERE uuid IN (SELECT uuid FROM qr_logins WHERE expire_time < $1 ORDER BY expire_time LIMIT $2 FOR UPDATE SKIP LOCKED)',
      [beforeTime, limit],
    );
    return r.rowCount ?? 0;
  }
}

/** Opens the writer connection: `synchronous_commit = on` (Store contract: resolved = durable, whatever the server's default). */
async function connectWriter(url: string): Promise<pg.Client> {
  const writer = new pg.Client({ connectionString: url, types: TYPES, application_name: 'synchat-writer' });
  writer.on('error', () => {}); // reported through the failing query; see PostgresStore.#watch
  await writer.connect();
  try {
    await writer.query('SET synchronous_commit = on');
  } catch (err) {
    await writer.end().catch(() => {});
    throw err;
  }
  return writer;
}

/** Runs the migrations not yet applied, under an advisory lock (several nodes may start at once). */
async function migrate(client: pg.ClientBase): Promise<void> {
  await client.query('BEGIN');
  try {
    await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    await client.query('CREATE TABLE IF NOT EXISTS synchat_schema (version INTEGER NOT NULL)');
    const r = await client.query('SELECT version FROM synchat_schema');
    const version: number = r.rows[0]?.version ?? 0;
    if (version > MIGRATIONS.length) throw new Error(`the database has schema version ${version}, newer than this server knows (${MIGRATIONS.length})`);
    for (let v = version; v < MIGRATIONS.length; v++) await client.query(MIGRATIONS[v]!);
    await client.query('DELETE FROM synchat_schema');
    await client.query('INSERT INTO synchat_schema (version) VALUES ($1)', [MIGRATIONS.length]);
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
}

/** One writer connection, dialed again when it broke (PostgreSQL restarted, the backend was ended). */
class WriterSlot {
  readonly #url: string;
  #client: pg.Client | undefined;
  #isBroken = false;

  constructor(url: string, client?: pg.Client) {
    this.#url = url;
    if (client) this.#adopt(client);
  }

  #adopt(client: pg.Client): void {
    this.#client = client;
    this.#isBroken = false;
    const broke = () => {
      if (client === this.#client) this.#isBroken = true;
    };
    client.on('error', broke);
    client.on('end', broke);
  }

  /** The connection, dialed (again) if there is none or it broke; the transaction that saw it break has failed. */
  async live(): Promise<pg.Client> {
    if (this.#client && !this.#isBroken) return this.#client;
    const old = this.#client;
    this.#adopt(await connectWriter(this.#url));
    void old?.end().catch(() => {});
    return this.#client!;
  }

  async end(): Promise<void> {
    await this.#client?.end().catch(() => {});
  }
}

/** The Store for several nodes. Open with {@link PostgresStore.open}. */
export class PostgresStore implements Store {
  readonly name = 'postgres';
  readonly concurrency: number;
  readonly read: StoreReader;
  readonly #slots: WriterSlot[];
  /** Writer slots not running a transaction, and the transactions waiting for one (first come, first served). */
  readonly #free: WriterSlot[];
  readonly #waiting: ((slot: WriterSlot) => void)[] = [];
  readonly #pool: pg.Pool;
  readonly #maxAttempts: number;
  /** Figures for benchmarks: transactions run again after a serialization failure or deadlock. */
  readonly stats = { retries: 0 };

  private constructor(url: string, first: pg.Client, pool: pg.Pool, opts: PostgresStoreOptions) {
    this.concurrency = Math.max(1, opts.writers ?? 1);
    this.#slots = Array.from({ length: this.concurrency }, (_, i) => new WriterSlot(url, i === 0 ? first : undefined));
    this.#free = [...this.#slots];
    this.#pool = pool;
    this.#maxAttempts = opts.maxAttempts ?? 5;
    this.read = new PgReader(pool);
  }

  /** Connects, migrates, and returns the store. */
  static async open(opts: PostgresStoreOptions): Promise<PostgresStore> {
    const writer = await connectWriter(opts.url);
    const pool = new pg.Pool({ connectionString: opts.url, types: TYPES, max: opts.readPoolSize ?? 8, application_name: 'synchat-reader' });
    try {
      await migrate(writer);
    } catch (err) {
      await writer.end().catch(() => {});
      await pool.end().catch(() => {});
      throw err;
    }
    // A pooled connection that breaks while idle must not crash the process: the pool replaces it.
    pool.on('error', () => {});
    return new PostgresStore(opts.url, writer, pool, opts);
  }

  #acquire(): Promise<WriterSlot> {
    const slot = this.#free.shift();
    return slot ? Promise.resolve(slot) : new Promise((resolve) => this.#waiting.push(resolve));
  }

  #release(slot: WriterSlot): void {
    const next = this.#waiting.shift();
    if (next) next(slot);
    else this.#free.push(slot);
  }

  async transaction<T>(fn: (tx: StoreTx) => Promise<T>): Promise<T> {
    const slot = await this.#acquire();
    try {
      for (let attempt = 1; ; attempt++) {
        const writer = await slot.live();
        const tx = new PgTx(writer);
        try {
          await writer.query('BEGIN');
          const result = await fn(tx);
          await tx.flush();
          await writer.query('COMMIT');
          return result;
        } catch (err) {
          await writer.query('ROLLBACK').catch(() => {});
          const code = (err as { code?: string }).code ?? '';
          // 53100 disk_full, turned into the refusal only here, after the rollback: inside the transaction a job
          // would take it for its own refusal (docs/architecture.md "A full disk").
          if (code === '53100') throw new SynchatError(RET.SERVER_ERROR, DISK_FULL_ERRMSG);
          if (!RETRYABLE.has(code) || attempt >= this.#maxAttempts) throw err;
          this.stats.retries++;
        }
      }
    } finally {
      this.#release(slot);
    }
  }

  async readLog(uin: number, afterSeq: number, limit: number): Promise<LogRow[]> {
    return rows(this.#pool, 'SELECT uin, seq, kind, json FROM log WHERE uin = $1 AND seq > $2 ORDER BY seq LIMIT $3', [uin, afterSeq, limit]) as Promise<LogRow[]>;
  }

  async close(): Promise<void> {
    // Wait for every running transaction: take every slot.
    await Promise.all(this.#slots.map(() => this.#acquire()));
    await Promise.all([...this.#slots.map((slot) => slot.end()), this.#pool.end().catch(() => {})]);
  }
}

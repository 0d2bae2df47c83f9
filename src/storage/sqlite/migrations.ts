/**
 * Versioned schema of the embedded store. Each entry runs once, in order, inside one transaction; the
 * database's `user_version` records how many ran. Never edit a shipped migration: add one.
 */
export const MIGRATIONS: readonly string[] = [
  // 1: accounts, sessions, logs, messages, contacts, groups, read markers.
  `
  CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
  CREATE TABLE users (
    uin INTEGER PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    pw_hash TEXT NOT NULL,
    epoch TEXT NOT NULL,
    create_time INTEGER NOT NULL,
    head INTEGER NOT NULL DEFAULT 0,
    heads_by_selector TEXT NOT NULL DEFAULT '{}'
  );
  CREATE TABLE sessions (
    session_id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    uin INTEGER NOT NULL,
    device_id TEXT NOT NULL,
    device_name TEXT NOT NULL,
    create_time INTEGER NOT NULL,
    last_seen_time INTEGER NOT NULL,
    acked_key INTEGER NOT NULL DEFAULT 0,
    ended_ret INTEGER NOT NULL DEFAULT 0
  ) WITHOUT ROWID;
  CREATE INDEX sessions_by_uin ON sessions (uin);
  CREATE TABLE log (
    uin INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    json TEXT NOT NULL,
    PRIMARY KEY (uin, seq)
  ) WITHOUT ROWID;
  CREATE TABLE messages (
    msg_id INTEGER PRIMARY KEY,
    from_uin INTEGER NOT NULL,
    client_msg_id TEXT NOT NULL,
    to_addr TEXT NOT NULL,
    to_uin INTEGER NOT NULL,
    group_id INTEGER NOT NULL,
    type INTEGER NOT NULL,
    content TEXT NOT NULL,
    media_id TEXT,
    create_time INTEGER NOT NULL,
    sender_seq INTEGER NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0
  );
  CREATE UNIQUE INDEX messages_by_send ON messages (from_uin, client_msg_id);
  CREATE TABLE contacts (
    uin INTEGER NOT NULL,
    peer_uin INTEGER NOT NULL,
    state TEXT NOT NULL,
    note TEXT NOT NULL,
    update_time INTEGER NOT NULL,
    PRIMARY KEY (uin, peer_uin)
  ) WITHOUT ROWID;
  CREATE TABLE chat_groups (
    group_id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    owner_uin INTEGER NOT NULL,
    create_time INTEGER NOT NULL
  );
  CREATE TABLE group_members (
    group_id INTEGER NOT NULL,
    uin INTEGER NOT NULL,
    join_time INTEGER NOT NULL,
    join_seq INTEGER NOT NULL,
    PRIMARY KEY (group_id, uin)
  ) WITHOUT ROWID;
  CREATE INDEX group_members_by_uin ON group_members (uin);
  CREATE TABLE read_markers (
    uin INTEGER NOT NULL,
    peer TEXT NOT NULL,
    msg_id INTEGER NOT NULL,
    PRIMARY KEY (uin, peer)
  ) WITHOUT ROWID;
  `,
  // 2: media — uploads in progress, stored blobs (by SHA-256), per-user media ids, conversations they were sent in.
  `
  CREATE TABLE media_uploads (
    upload_id TEXT PRIMARY KEY,
    uin INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    chunk_size INTEGER NOT NULL,
    mime TEXT NOT NULL,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    media_id TEXT,
    create_time INTEGER NOT NULL,
    update_time INTEGER NOT NULL
  ) WITHOUT ROWID;
  CREATE INDEX media_uploads_by_content ON media_uploads (uin, sha256, size);
  CREATE INDEX media_uploads_by_time ON media_uploads (update_time);
  CREATE TABLE media_blobs (
    sha256 TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    kind TEXT NOT NULL,
    mime TEXT NOT NULL,
    served_bytes INTEGER NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    thumb_bytes INTEGER NOT NULL,
    thumb_mime TEXT NOT NULL,
    create_time INTEGER NOT NULL
  ) WITHOUT ROWID;
  CREATE TABLE media (
    media_id TEXT PRIMARY KEY,
    uin INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    name TEXT NOT NULL,
    create_time INTEGER NOT NULL,
    counted_bytes INTEGER NOT NULL
  ) WITHOUT ROWID;
  CREATE INDEX media_by_sha ON media (sha256, uin);
  CREATE INDEX media_by_uin_time ON media (uin, create_time);
  CREATE TABLE media_sends (
    media_id TEXT NOT NULL,
    group_id INTEGER NOT NULL,
    uin_a INTEGER NOT NULL,
    uin_b INTEGER NOT NULL,
    PRIMARY KEY (media_id, group_id, uin_a, uin_b)
  ) WITHOUT ROWID;
  `,
  // 3: write locality (issue #9). A commit writes every page it touched to the WAL, and a log clustered by
  // (uin, seq) put each recipient's entry on its own leaf page: ~25 KB of WAL per 1:1 message. The log is now
  // a rowid table appended in commit order (a batch's entries share the tail pages) with a (uin, seq) index,
  // and heads live in a narrow table of their own instead of the wide users row (measured in BENCHMARKS.md:
  // WAL bytes per message 25 → 8 KB, SQLite CPU per message about halved).
  `
  CREATE TABLE heads (
    uin INTEGER PRIMARY KEY,
    head INTEGER NOT NULL,
    by_selector TEXT NOT NULL
  );
  INSERT INTO heads (uin, head, by_selector) SELECT uin, head, heads_by_selector FROM users WHERE head > 0;
  ALTER TABLE users DROP COLUMN head;
  ALTER TABLE users DROP COLUMN heads_by_selector;
  CREATE TABLE log_v3 (
    id INTEGER PRIMARY KEY,
    uin INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    json TEXT NOT NULL
  );
  INSERT INTO log_v3 (uin, seq, kind, json) SELECT uin, seq, kind, json FROM log ORDER BY uin, seq;
  DROP TABLE log;
  ALTER TABLE log_v3 RENAME TO log;
  CREATE UNIQUE INDEX log_by_user ON log (uin, seq);
  `,
  // 4: blocks (issue #11). `uin` blocked `blocked_uin`: nothing the blocked user does reaches uin's log. The
  // second index answers "who blocked this sender", read on every send (docs/protocol.md "Contacts").
  `
  CREATE TABLE blocks (
    uin INTEGER NOT NULL,
    blocked_uin INTEGER NOT NULL,
    create_time INTEGER NOT NULL,
    PRIMARY KEY (uin, blocked_uin)
  ) WITHOUT ROWID;
  CREATE INDEX blocks_by_blocked ON blocks (blocked_uin, uin);
  `,
  // 5: QR logins (issue #14, docs/protocol.md "QR login"): short-lived rows, removed a while after they expire
  // (by expire_time, hence its index).
  `
  CREATE TABLE qr_logins (
    uuid TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    device_name TEXT NOT NULL,
    create_time INTEGER NOT NULL,
    expire_time INTEGER NOT NULL,
    state TEXT NOT NULL,
    scanner_uin INTEGER NOT NULL,
    scan_time INTEGER NOT NULL
  ) WITHOUT ROWID;
  CREATE INDEX qr_logins_by_expiry ON qr_logins (expire_time);
  `,
];

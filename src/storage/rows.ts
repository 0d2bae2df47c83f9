/**
 * Rows as both SQL adapters read them (the same column names in both schemas) mapped to the port's types.
 */
import type { ContactRow, MediaBlobRow, MediaRow, MediaUploadRow, MessageRow, QrLoginRow, SessionRow, UserRow } from '../core/ports.ts';

/** A row as a driver returns it. */
export type Row = Record<string, any>;

export function toUser(r: Row | undefined): UserRow | undefined {
  if (!r) return undefined;
  return {
    uin: r.uin,
    username: r.username,
    displayName: r.display_name,
    pwHash: r.pw_hash,
    epoch: r.epoch,
    createTime: r.create_time,
  };
}

export function toSession(r: Row | undefined): SessionRow | undefined {
  if (!r) return undefined;
  return {
    sessionId: r.session_id,
    tokenHash: r.token_hash,
    uin: r.uin,
    deviceId: r.device_id,
    deviceName: r.device_name,
    createTime: r.create_time,
    lastSeenTime: r.last_seen_time,
    ackedKey: r.acked_key,
    endedRet: r.ended_ret,
  };
}

export function toMessage(r: Row | undefined): MessageRow | undefined {
  if (!r) return undefined;
  return {
    msgId: r.msg_id,
    fromUin: r.from_uin,
    clientMsgId: r.client_msg_id,
    to: r.to_addr,
    toUin: r.to_uin,
    groupId: r.group_id,
    type: r.type,
    content: r.content,
    mediaId: r.media_id ?? null,
    createTime: r.create_time,
    senderSeq: r.sender_seq,
    // SQLite stores 0/1, PostgreSQL a boolean.
    revoked: r.revoked === 1 || r.revoked === true,
  };
}

export function toContact(r: Row | undefined): ContactRow | undefined {
  if (!r) return undefined;
  return { uin: r.uin, peerUin: r.peer_uin, state: r.state, note: r.note, updateTime: r.update_time };
}

export function toUpload(r: Row | undefined): MediaUploadRow | undefined {
  if (!r) return undefined;
  return {
    uploadId: r.upload_id,
    uin: r.uin,
    sha256: r.sha256,
    size: r.size,
    chunkSize: r.chunk_size,
    mime: r.mime,
    name: r.name,
    state: r.state,
    mediaId: r.media_id ?? null,
    createTime: r.create_time,
    updateTime: r.update_time,
  };
}

export function toMediaBlob(r: Row | undefined): MediaBlobRow | undefined {
  if (!r) return undefined;
  return {
    sha256: r.sha256,
    size: r.size,
    kind: r.kind,
    mime: r.mime,
    servedBytes: r.served_bytes,
    width: r.width,
    height: r.height,
    thumbBytes: r.thumb_bytes,
    thumbMime: r.thumb_mime,
    createTime: r.create_time,
  };
}

export function toMedia(r: Row | undefined): MediaRow | undefined {
  if (!r) return undefined;
  return { mediaId: r.media_id, uin: r.uin, sha256: r.sha256, name: r.name, createTime: r.create_time, countedBytes: r.counted_bytes };
}

export function toQrLogin(r: Row | undefined): QrLoginRow | undefined {
  if (!r) return undefined;
  return {
    uuid: r.uuid,
    deviceId: r.device_id,
    deviceName: r.device_name,
    createTime: r.create_time,
    expireTime: r.expire_time,
    state: r.state,
    scannerUin: r.scanner_uin,
    scanTime: r.scan_time,
  };
}

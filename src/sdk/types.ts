/**
 * Public types of the Synchat client SDK: options, stored state, outbox items, events. See docs/sdk.md.
 */
import type { ContactEntry, ContactRequestEntry, Entry, GroupEntry, MsgEntry, ReadEntry, RevokeEntry } from '../protocol/index.ts';

/** A long-connection or long-poll transport. */
export type TransportName = 'tcp' | 'ws' | 'http';

/** A gateway from `GET /api/gateways` (PROTOCOL.md: `{transport, url}`). */
export interface Gateway {
  transport: TransportName;
  /** `tcp://host:port`, `ws://host:port/ws`, `http://host:port`. */
  url: string;
}

/** Where the client stands. `offline` means it waits to retry (or was stopped, or the session ended). */
export type ConnectionStateName = 'connecting' | 'online' | 'offline';

/** Payload of the `connection` event. */
export interface ConnectionState {
  state: ConnectionStateName;
  /** The transport in use while `online`; the one being tried while `connecting`. */
  transport?: TransportName;
  /** The gateway URL in use while `online` (for `http`: the base URL long-polls go to), or being tried. */
  url?: string;
  /** Why the client went offline (last error), when it did. */
  reason?: string;
  /** When `offline` and a retry is scheduled: milliseconds until it. */
  retryInMs?: number;
  /**
   * True while the client moves off a gateway that is going away (ERROR or ret 1102, a server draining): not a
   * failure, so apps show at most a brief "reconnecting", no error. Cleared once online, or by a real failure.
   */
  isMoving?: boolean;
}

/** The session and sync position the client keeps in its {@link ClientStore}. */
export interface SessionState {
  sid: string;
  uin: number;
  username: string;
  displayName?: string;
  deviceId?: string;
  /** "I hold everything up to here" (PROTOCOL.md "Model"). */
  syncKey: number;
  /** The log's epoch when `syncKey` was taken; a different epoch from the server means: discard and sync from 0. */
  epoch: string;
}

/** A message to send. `clientMsgId` is made up when absent; it stays the same across every retry. */
export interface OutgoingMessage {
  to: string;
  /** MSG_TYPE: 1 text, 3 image, 34 voice, 49 file. */
  type: number;
  content: string;
  mediaId?: string;
  clientMsgId?: string;
}

/** State of an outbox item: waiting, on the wire, committed by the server, or given up (see `resend`). */
export type OutboxStateName = 'queued' | 'sending' | 'sent' | 'failed';

/** One message in the outbox. Persisted in the store until sent. */
export interface OutboxItem {
  clientMsgId: string;
  to: string;
  type: number;
  content: string;
  mediaId?: string;
  state: OutboxStateName;
  /** Send attempts so far (reset by `resend`). */
  attempts: number;
  /** When it was queued, ms since the epoch (local clock). */
  queuedAt: number;
  /** Set once `sent`. */
  msgId?: string;
  /** Where the message landed in the sender's log, once `sent`. */
  seq?: number;
  /** Server time, once `sent`. */
  createTime?: number;
  /** True when the server had it already (a retry of a send whose answer was lost). */
  duplicate?: boolean;
  /** The last failure, `{ret, errMsg}` (ret -1: the transport failed). */
  lastError?: { ret: number; errMsg: string };
}

/** The answer of `sendmsg` / SEND_ACK. */
export interface SendAnswer {
  msgId: string;
  seq: number;
  createTime: number;
  duplicate: boolean;
}

/** Answer of `login`. */
export interface LoginAnswer {
  sid: string;
  uin: number;
  username: string;
  displayName: string;
  syncKey: number;
  epoch: string;
}

/** A QR login this device asked for (`/api/qrlogin/new`): show `uuid` as a QR code until `expiresAt`. */
export interface QrLoginTicket {
  /** 32 hex digits; the secret the QR code carries. */
  uuid: string;
  /** ms since the epoch; past it the code is useless (ask for a new one). */
  expiresAt: number;
  /** The device id the session will carry. */
  deviceId: string;
}

/** The device asking to log in, as the scanning user is shown it (`/api/qrlogin/scan` and `confirm`): never its address. */
export interface QrAskingDevice {
  deviceName: string;
  /** When it asked, ms since the epoch. */
  createTime: number;
  /** When its code expires, ms since the epoch. */
  expiresAt: number;
}

/** A device session from `/api/sessions`. */
export interface DeviceSession {
  sessionId: string;
  deviceId: string;
  deviceName: string;
  createTime: number;
  lastSeenTime: number;
  ackedKey: number;
  isCurrent: boolean;
}

/** Answer of `/api/contacts/list`. */
export interface ContactList {
  contacts: { username: string; displayName: string; note: string }[];
  incoming: { username: string; displayName: string; note: string }[];
  outgoing: { username: string; displayName: string; note: string }[];
  groups: { groupId: string; name: string }[];
  /** Whom this user blocked, oldest first. */
  blocked: { username: string; displayName: string }[];
}

/** Payload of `sessionEnded`: the server ended this session (1100 logged out / ended, 1101 replaced or revoked). */
export interface SessionEnded {
  ret: number;
  errMsg: string;
}

/** Every event of {@link SynchatClient} and its payload. Listeners run synchronously, in log order. */
export interface ClientEvents {
  /** Every applied sync entry, in seq order (fires before the kind-specific event). */
  entry: Entry;
  /** A message in any conversation, including ones sent by this or another device of this user. */
  message: MsgEntry;
  /** A read marker set by this user on some device (`by` is this user). */
  read: ReadEntry;
  /** A receipt: the peer of a direct chat read up to `msgId` (`by` is the peer). */
  receipt: ReadEntry;
  /** A recalled message. */
  recall: RevokeEntry;
  /** A contact was added, changed (display name) or removed. */
  contact: ContactEntry;
  /** Someone asks to become a contact. */
  contactRequest: ContactRequestEntry;
  /** A group as it now is (created, renamed, members changed, or `removed` for this user). */
  group: GroupEntry;
  /** Connection state changes. */
  connection: ConnectionState;
  /** An outbox item changed state. */
  outbox: OutboxItem;
  /** The server ended this session; the client stopped and forgot the sid. */
  sessionEnded: SessionEnded;
  /** The log's epoch changed: drop every cached entry; the client syncs again from key 0. */
  reset: { epoch: string };
  /** The sync key advanced and was persisted. */
  synced: { syncKey: number };
  /** A non-fatal problem (a listener threw, the store failed); the client carries on. */
  error: Error;
}

/** Union of the typed entry events. */
export type EntryEvent = MsgEntry | ReadEntry | RevokeEntry | ContactEntry | ContactRequestEntry | GroupEntry;

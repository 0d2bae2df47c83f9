/**
 * Sync log entries and selector bits (PROTOCOL.md "Model" and the entry list under "HTTP").
 * Every entry carries `seq` (its place in the owner's log) and `kind`.
 */

/** Selector bits: what changed after a key. */
export const SELECTOR = {
  MESSAGES: 1,
  CONTACTS: 2,
  READ: 4,
  GROUPS: 8,
  RECALLS: 16,
} as const;

/** Every selector bit: the answer when a server cannot tell which kinds of entries arrived. */
export const SELECTOR_ALL: number = Object.values(SELECTOR).reduce((a, b) => a | b, 0);

/** Message types. */
export const MSG_TYPE = {
  TEXT: 1,
  IMAGE: 3,
  VOICE: 34,
  FILE: 49,
  SYSTEM: 10000,
} as const;

/** A message in a conversation, as seen by the log's owner. */
export interface MsgEntry {
  seq: number;
  kind: 'msg';
  msgId: string;
  clientMsgId: string;
  from: string;
  to: string;
  /** The conversation as seen by the log's owner: the other user, or the group id. */
  peer: string;
  type: number;
  content: string;
  mediaId?: string;
  createTime: number;
}

/** A read marker (own other devices) or a receipt (the peer in a direct chat). */
export interface ReadEntry {
  seq: number;
  kind: 'read';
  peer: string;
  msgId: string;
  by: string;
}

/** A recalled message. */
export interface RevokeEntry {
  seq: number;
  kind: 'revoke';
  msgId: string;
  peer: string;
  /** Who recalled it (its sender); absent in entries written before it was added. */
  by?: string;
}

/** Someone asks to become a contact. */
export interface ContactRequestEntry {
  seq: number;
  kind: 'contactRequest';
  from: string;
  displayName?: string;
  note: string;
}

/** A contact was added, changed or removed. */
export interface ContactEntry {
  seq: number;
  kind: 'contact';
  username: string;
  displayName: string;
  /** The contact ended, or (with `blocked`) there is no contact relation with this user. */
  removed?: boolean;
  /** A block (`true`) or unblock (`false`) made on one of the log owner's devices (docs/protocol.md "Blocking"). */
  blocked?: boolean;
}

/** A group as it now is; `removed` when the owner is no longer a member. */
export interface GroupEntry {
  seq: number;
  kind: 'group';
  groupId: string;
  name: string;
  members: string[];
  removed?: boolean;
}

/** Any sync entry. */
export type Entry = MsgEntry | ReadEntry | RevokeEntry | ContactRequestEntry | ContactEntry | GroupEntry;

/** Entry kind name. */
export type EntryKind = Entry['kind'];

/** The selector bit an entry kind sets. */
export const SELECTOR_OF_KIND: Readonly<Record<EntryKind, number>> = {
  msg: SELECTOR.MESSAGES,
  contactRequest: SELECTOR.CONTACTS,
  contact: SELECTOR.CONTACTS,
  read: SELECTOR.READ,
  group: SELECTOR.GROUPS,
  revoke: SELECTOR.RECALLS,
};

/**
 * Encodes an entry with its seq first. Entries are JSON once, at append time; sync pages and pushes splice
 * the stored text without parsing it again.
 */
export function encodeEntry(seq: number, kind: EntryKind, fields: Readonly<Record<string, unknown>> | string): string {
  const body = typeof fields === 'string' ? fields : JSON.stringify(fields);
  // Fan-out encodes the shared fields once and splices each recipient's seq in front (issue #6: encode once).
  return body.length <= 2 ? `{"seq":${seq},"kind":"${kind}"}` : `{"seq":${seq},"kind":"${kind}",${body.slice(1)}`;
}

/** `^@@\d+$`: a group address. */
export function isGroupId(peer: string): boolean {
  return /^@@[1-9][0-9]{0,15}$/.test(peer);
}

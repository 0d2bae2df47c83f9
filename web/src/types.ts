/**
 * Data shapes of the web client: what the cache stores and what the views render.
 */

/** A message as the log delivered it, kept in IndexedDB. */
export interface StoredMessage {
  peer: string;
  msgId: string;
  clientMsgId: string;
  from: string;
  type: number;
  content: string;
  mediaId?: string;
  createTime: number;
  recalled?: boolean;
}

/** Send state shown on my messages (`data-status`). */
export type MessageStatus = 'sending' | 'sent' | 'read' | 'failed';

/** A message as the chat view renders it: from the log, or a local echo still in the outbox or uploading. */
export interface ViewMessage extends Omit<StoredMessage, 'msgId'> {
  /** Undefined until the server assigned one. */
  msgId?: string;
  /** Set on my own messages. */
  status?: MessageStatus;
  /** Upload progress of a media message, 0..1. */
  progress?: number;
  /** A local object URL of the picked file (images) while it uploads. */
  localUrl?: string;
  /** File name and size of a local media echo. */
  fileName?: string;
  fileSize?: number;
  /** Why it failed. */
  error?: string;
}

/** A contact. */
export interface Contact {
  username: string;
  displayName: string;
}

/** A group this user belongs to. */
export interface Group {
  groupId: string;
  name: string;
  members: string[];
}

/** One row of the conversation list. */
export interface Conversation {
  peer: string;
  isGroup: boolean;
  /** Time of the last activity (message, or when the conversation appeared). */
  lastTime: number;
  /** Last message (for the preview), if any. */
  last?: { from: string; type: number; content: string; msgId: string; recalled?: boolean };
  /** Messages from others after my read marker. */
  unread: number;
  /** My read marker (msgId), from any of my devices. */
  readUpTo: string;
  /** Direct chats: how far the peer has read my messages (msgId). */
  peerReadUpTo: string;
}

/** A contact request waiting for my answer. */
export interface IncomingRequest {
  from: string;
  note: string;
  time: number;
}

/** Everything the app keeps besides messages; one IndexedDB record. */
export interface AppState {
  /** The account this cache belongs to. */
  owner: string;
  /** The highest log seq already folded into this state (re-delivered entries at or below it are skipped). */
  appliedSeq: number;
  contacts: Record<string, Contact>;
  groups: Record<string, Group>;
  conversations: Record<string, Conversation>;
  requests: Record<string, IncomingRequest>;
  /** Usernames I asked to become contacts, waiting for them. */
  outgoing: Record<string, { note: string; time: number }>;
  /** Usernames I blocked (docs/protocol.md "Blocking"); absent in a state cached before blocking existed. */
  blocked?: Record<string, true>;
  /** The newest message time seen in the log (ms); conversations that start without a message sort by it. */
  logTime?: number;
  /** Display names of users seen anywhere (contacts, group members). */
  names: Record<string, string>;
}

/**
 * Conversations as a user sees them, pure: the recent-chats list (`/api/chats`, WeChat-web's `ChatSet`) is read from
 * the user's own log, newest entry first, so it holds exactly what reached this user (nothing of a blocked sender,
 * nothing of a group before they joined). See docs/protocol.md "Conversations".
 */
import type { MessageRow } from './ports.ts';

/** A conversation and its latest message, as the log's owner saw it. */
export interface ChatSummary {
  /** The other user, or the group id (`@@<digits>`). */
  peer: string;
  /** The latest message's id (a decimal string) and time (ms). */
  msgId: string;
  createTime: number;
}

/**
 * Adds the conversations of `rowsNewestFirst` (log rows, newest first, continuing where earlier calls stopped) to
 * `found`, each with its latest message: the first `msg` row met of each peer. Only `onlyPeer`'s when given.
 * Returns true once `found` holds `limit` conversations (the caller stops reading).
 */
export function addLatestChats(
  found: Map<string, ChatSummary>,
  rowsNewestFirst: Iterable<{ kind: string; json: string }>,
  limit: number,
  onlyPeer?: string,
): boolean {
  for (const row of rowsNewestFirst) {
    if (found.size >= limit) return true;
    if (row.kind !== 'msg') continue;
    const e = JSON.parse(row.json) as { peer: string; msgId: string; createTime: number };
    if (found.has(e.peer) || (onlyPeer !== undefined && e.peer !== onlyPeer)) continue;
    found.set(e.peer, { peer: e.peer, msgId: e.msgId, createTime: e.createTime });
  }
  return found.size >= limit;
}

/**
 * True when `uin` takes part in the conversation of `msg`: its sender or recipient in a direct chat, a member of its
 * group (`groupMembers`, read by the caller for group messages only).
 */
export function isMessageParticipant(msg: MessageRow, uin: number, groupMembers: readonly number[]): boolean {
  return msg.groupId ? groupMembers.includes(uin) : msg.fromUin === uin || msg.toUin === uin;
}

/**
 * Who receives what: the decisions of sending, reading and befriending, as pure functions of the rows involved.
 * The service loads the rows, calls these, and stores what they return (shared/STYLE.md: decisions live in core,
 * the shell only loads, calls and stores). See docs/architecture.md "How a message travels".
 */
import { RET } from '../protocol/index.ts';
import type { ContactRow, MessageRow } from './ports.ts';
import { refuse, type Refusal } from './rules.ts';

/** A user as the decisions need them. */
export interface Party {
  uin: number;
  username: string;
}

/** One log a message goes to, and the conversation name that log files it under (`peer`). */
export interface Recipient {
  uin: number;
  peer: string;
}

/**
 * The logs a direct message goes to: the sender's (filed under the recipient's name, so the sender's other
 * devices get it) and the recipient's (filed under the sender's); a note to oneself goes to one log only. A
 * recipient who blocked the sender gets nothing, and the sender is not told (docs/protocol.md "Blocking": the
 * message is accepted and kept in the sender's log, as WhatsApp, Signal and Telegram do).
 */
export function directRecipients(sender: Party, to: Party, isBlockedByRecipient = false): Recipient[] {
  if (to.uin === sender.uin || isBlockedByRecipient) return [{ uin: sender.uin, peer: to.username }];
  return [
    { uin: sender.uin, peer: to.username },
    { uin: to.uin, peer: sender.username },
  ];
}

/**
 * Of the users whose logs would get what `actorUin` does (a group message or recall: the members; a profile change:
 * the contacts), those that do: all but the ones who blocked the actor (`blockersOfActor`, any order). The actor is
 * always kept (their own devices).
 */
export function unblockedRecipients(uins: readonly number[], actorUin: number, blockersOfActor: readonly number[]): number[] {
  if (blockersOfActor.length === 0) return [...uins];
  const blockers = new Set(blockersOfActor);
  return uins.filter((u) => u === actorUin || !blockers.has(u));
}

/** The answer to a send: the first answer again for a repeated (sender, clientMsgId) (PROTOCOL.md sendmsg). */
export function sendAnswer(msg: Pick<MessageRow, 'msgId' | 'senderSeq' | 'createTime'>, isDuplicate: boolean): { msgId: string; seq: number; createTime: number; duplicate: boolean } {
  return { msgId: String(msg.msgId), seq: msg.senderSeq, createTime: msg.createTime, duplicate: isDuplicate };
}

/**
 * Marking `msg` read in the direct chat between `readerUin` and `otherUin`: refused unless the message belongs to
 * that chat; otherwise who gets a receipt — the other side, or nobody in a note to oneself (PROTOCOL.md read) or
 * when the other side blocked the reader.
 */
export function directReadReceipt(msg: MessageRow | undefined, readerUin: number, otherUin: number | undefined, isBlockedByOther = false): { receiptUin: number } | Refusal {
  const isBetween =
    msg !== undefined && otherUin !== undefined && msg.groupId === 0 &&
    ((msg.fromUin === readerUin && msg.toUin === otherUin) || (msg.fromUin === otherUin && msg.toUin === readerUin));
  if (!isBetween) return refuse(RET.NOT_FOUND, 'no such message in this conversation');
  return { receiptUin: otherUin === readerUin || isBlockedByOther ? 0 : otherUin };
}

/** What a contact request does: see {@link contactRequestAction}. */
export type ContactRequestAction = 'request' | 'accept' | 'pending' | 'swallow';

/**
 * What a contact request does, given both sides of the relation (`mine`: the requester's row, `theirs`: the
 * target's) and whether the target blocked the requester:
 * - between contacts: refused;
 * - the target asked first: `accept` (both become contacts);
 * - the target blocked the requester: `swallow` — answered as if sent, only the requester's side is stored, the
 *   target's log gets nothing (a block is not revealed);
 * - a request already pending (both rows there): `pending` — nothing is stored or appended, a success (at most one
 *   pending request per pair, so repeats cannot fill the target's log);
 * - otherwise `request`: both rows, and a `contactRequest` entry in the target's log (also after a swallowed
 *   request, once the block is gone).
 */
export function contactRequestAction(mine: ContactRow | undefined, theirs: ContactRow | undefined, isBlockedByTarget: boolean): ContactRequestAction | Refusal {
  if (mine?.state === 'accepted') return refuse(RET.CONFLICT, 'already a contact');
  if (mine?.state === 'incoming') return 'accept';
  if (isBlockedByTarget) return 'swallow';
  if (mine?.state === 'outgoing' && theirs?.state === 'incoming') return 'pending';
  return 'request';
}

/**
 * Adding users to a group (at creation or later): refused when one of them blocked the adder (a blocked user cannot
 * pull the blocker into a conversation). `added`: the users to add; `blockersOfAdder`: who blocked the adder.
 */
export function groupAddRefusal(added: readonly Party[], blockersOfAdder: readonly number[]): Refusal | undefined {
  if (blockersOfAdder.length === 0) return undefined;
  const blockers = new Set(blockersOfAdder);
  const refused = added.find((p) => blockers.has(p.uin));
  return refused ? refuse(RET.FORBIDDEN, `${refused.username} cannot be added to a group by you`) : undefined;
}

/**
 * What blocking (or unblocking) changes, given the blocker's side of the relation and whether the block exists:
 * nothing for a repeat; otherwise whether a pending request between the two is dropped (a block ends it, in both
 * directions), and the `contact` entry's flags for the blocker's log — `blocked`, and `removed` unless the two are
 * contacts (a client that knows no `blocked` flag then keeps its contact list right).
 */
export function blockChange(
  mine: ContactRow | undefined,
  isBlocked: boolean,
  isBlocking: boolean,
): { dropsRequest: boolean; entry: { blocked: boolean; removed?: true } } | undefined {
  if (isBlocked === isBlocking) return undefined;
  const isContact = mine?.state === 'accepted';
  const dropsRequest = isBlocking && mine !== undefined && !isContact;
  return { dropsRequest, entry: isContact ? { blocked: isBlocking } : { blocked: isBlocking, removed: true } };
}

/** Accepting a request: only a pending incoming one. */
export function contactAcceptRefusal(mine: ContactRow | undefined): Refusal | undefined {
  if (mine?.state === 'accepted') return refuse(RET.CONFLICT, 'already a contact');
  if (mine?.state !== 'incoming') return refuse(RET.NOT_FOUND, 'no pending request from that user');
  return undefined;
}

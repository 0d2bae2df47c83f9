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
 * devices get it) and the recipient's (filed under the sender's); a note to oneself goes to one log only.
 */
export function directRecipients(sender: Party, to: Party): Recipient[] {
  if (to.uin === sender.uin) return [{ uin: sender.uin, peer: to.username }];
  return [
    { uin: sender.uin, peer: to.username },
    { uin: to.uin, peer: sender.username },
  ];
}

/** The answer to a send: the first answer again for a repeated (sender, clientMsgId) (PROTOCOL.md sendmsg). */
export function sendAnswer(msg: Pick<MessageRow, 'msgId' | 'senderSeq' | 'createTime'>, isDuplicate: boolean): { msgId: string; seq: number; createTime: number; duplicate: boolean } {
  return { msgId: String(msg.msgId), seq: msg.senderSeq, createTime: msg.createTime, duplicate: isDuplicate };
}

/**
 * Marking `msg` read in the direct chat between `readerUin` and `otherUin`: refused unless the message belongs to
 * that chat; otherwise who gets a receipt — the other side, or nobody in a note to oneself (PROTOCOL.md read).
 */
export function directReadReceipt(msg: MessageRow | undefined, readerUin: number, otherUin: number | undefined): { receiptUin: number } | Refusal {
  const isBetween =
    msg !== undefined && otherUin !== undefined && msg.groupId === 0 &&
    ((msg.fromUin === readerUin && msg.toUin === otherUin) || (msg.fromUin === otherUin && msg.toUin === readerUin));
  if (!isBetween) return refuse(RET.NOT_FOUND, 'no such message in this conversation');
  return { receiptUin: otherUin === readerUin ? 0 : otherUin };
}

/**
 * What a contact request does, given the requester's side of the relation: refused between contacts; accepted at
 * once when the other side asked first; otherwise a new (or repeated) request.
 */
export function contactRequestAction(mine: ContactRow | undefined): 'request' | 'accept' | Refusal {
  if (mine?.state === 'accepted') return refuse(RET.CONFLICT, 'already a contact');
  return mine?.state === 'incoming' ? 'accept' : 'request';
}

/** Accepting a request: only a pending incoming one. */
export function contactAcceptRefusal(mine: ContactRow | undefined): Refusal | undefined {
  if (mine?.state === 'accepted') return refuse(RET.CONFLICT, 'already a contact');
  if (mine?.state !== 'incoming') return refuse(RET.NOT_FOUND, 'no pending request from that user');
  return undefined;
}

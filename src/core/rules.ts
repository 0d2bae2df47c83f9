/**
 * Pure rules of the sync engine: names, selectors, the send/recall/read/group decisions. No I/O, no clock:
 * every input is a parameter. See docs/architecture.md "core".
 */
import { LIMITS, MSG_TYPE, RET, SELECTOR_OF_KIND, isGroupId, type Ret } from '../protocol/index.ts';
import type { ContactRow, Heads, MessageRow } from './ports.ts';

/** An expected refusal: the caller turns it into `{ret, errMsg}`. */
export interface Refusal {
  ok: false;
  ret: Ret;
  errMsg: string;
}

/** Builds a refusal. */
export function refuse(ret: Ret, errMsg: string): Refusal {
  return { ok: false, ret, errMsg };
}

/** PROTOCOL.md "Model": usernames are case-folded; `Alice` registers and logs in as `alice`. */
export function foldUsername(username: string): string {
  return username.toLowerCase();
}

/** True for a well-formed (folded) username. */
export function isUsername(s: string): boolean {
  return /^[a-z0-9_]{3,32}$/.test(s);
}

/**
 * Characters a shown name may not hold: C0/C1 controls (a newline forges a second line in a list), the line and
 * paragraph separators, and the bidi embeddings, overrides and isolates U+202A–U+202E, U+2066–U+2069 (they reorder
 * what follows: `‮gpj.exe` shows as `exe.jpg`).
 */
const FORBIDDEN_IN_NAMES = /[\p{Cc}\u2028\u2029\u202A-\u202E\u2066-\u2069]/u;
/**
 * Characters that show as nothing, beside white space: zero-width and joiner characters, invisible format
 * characters, fillers that render blank (Hangul fillers, the braille blank), variation selectors and tag
 * characters. A name made only of these looks empty (an impostor of "no name", or of every blank-named account).
 * Inclusive code point ranges (a table, not a regex class: several are combining marks).
 */
const INVISIBLE_RANGES: readonly (readonly [number, number])[] = [
  [0x00ad, 0x00ad], [0x034f, 0x034f], [0x061c, 0x061c], [0x115f, 0x1160], [0x17b4, 0x17b5], [0x180b, 0x180f],
  [0x200b, 0x200f], [0x2060, 0x206f], [0x2800, 0x2800], [0x3164, 0x3164], [0xfe00, 0xfe0f], [0xfeff, 0xfeff],
  [0xffa0, 0xffa0], [0x1d173, 0x1d17a], [0xe0000, 0xe007f], [0xe0100, 0xe01ef],
];

function isInvisible(char: string): boolean {
  const cp = char.codePointAt(0)!;
  return /\s/u.test(char) || INVISIBLE_RANGES.some(([lo, hi]) => cp >= lo && cp <= hi);
}

/**
 * Checks a name other users are shown (display name, device name, group name): trimmed, and refused if blank, made
 * only of invisible characters, or holding a control or bidi-override character. `field` names it in the errMsg.
 * Returns the trimmed name, or the refusal.
 */
export function checkShownName(field: string, raw: string): string | Refusal {
  const name = raw.trim();
  if (!name) return refuse(RET.BAD_REQUEST, `${field}: must not be blank`);
  if (FORBIDDEN_IN_NAMES.test(name)) return refuse(RET.BAD_REQUEST, `${field}: must not contain control or bidirectional-override characters`);
  if ([...name].every(isInvisible)) return refuse(RET.BAD_REQUEST, `${field}: must contain a visible character`);
  return name;
}

/** Group address ↔ number. */
export function groupAddress(groupId: number): string {
  return `@@${groupId}`;
}

/** Parses `@@123` → 123; undefined if not a group address. */
export function parseGroupAddress(peer: string): number | undefined {
  return isGroupId(peer) ? Number(peer.slice(2)) : undefined;
}

/** Selector bit of an entry kind (0 for an unknown kind). */
export function selectorOfKind(kind: string): number {
  return (SELECTOR_OF_KIND as Record<string, number>)[kind] ?? 0;
}

/** Selector of everything after `key`: the bits whose last entry is newer than key. */
export function selectorAfter(heads: Heads, key: number): number {
  if (heads.head <= key) return 0;
  let selector = 0;
  for (const [bit, seq] of Object.entries(heads.bySelector)) if (seq > key) selector |= Number(bit);
  return selector;
}

/**
 * Whether a presented key proves that the user's log lost entries: a key ahead of the head was issued for entries
 * the log no longer holds (a restored backup). The log's epoch is then renewed, so that the user's other devices,
 * whose keys new entries may already have passed, resync too (docs/protocol.md "Epoch").
 */
export function isProofOfLoss(syncKey: number | undefined, head: number): boolean {
  return syncKey !== undefined && syncKey > head;
}

// The entry encoding is part of the wire contract (stores encode entries as they allocate seqs).
export { encodeEntry } from '../protocol/index.ts';

const utf8 = new TextEncoder();

/** Checks a send request's type and content; the address and membership are checked by the caller. */
export function checkSendContent(type: number, content: string, mediaId: string | undefined): Refusal | undefined {
  if (type === MSG_TYPE.SYSTEM) return refuse(RET.BAD_REQUEST, 'type 10000 (system) is made by the server only');
  if (utf8.encode(content).length > LIMITS.maxContentBytes) {
    return refuse(RET.TOO_LARGE, `content exceeds ${LIMITS.maxContentBytes} bytes`);
  }
  if (type === MSG_TYPE.TEXT && content.length === 0) return refuse(RET.BAD_REQUEST, 'text content is empty');
  if (type === MSG_TYPE.VOICE && !/^[0-9]{1,9}$/.test(content)) {
    return refuse(RET.BAD_REQUEST, 'voice content must be the duration in ms');
  }
  if ((type === MSG_TYPE.IMAGE || type === MSG_TYPE.VOICE || type === MSG_TYPE.FILE) && !mediaId) {
    return refuse(RET.BAD_REQUEST, 'this message type needs a mediaId');
  }
  return undefined;
}

/** True when uin and peer are accepted contacts (as seen from uin's side). */
export function isAcceptedContact(row: ContactRow | undefined): boolean {
  return row?.state === 'accepted';
}

/**
 * Recall rule: sender only, within {@link LIMITS.recallWindowMs}. Someone else's message gets the same answer as
 * an unknown msgId, so the answer does not tell whether a msgId exists (msgIds are sequential and guessable).
 */
export function checkRecall(msg: MessageRow | undefined, byUin: number, nowMs: number): Refusal | undefined {
  if (!msg || msg.fromUin !== byUin) return refuse(RET.NOT_FOUND, 'no such message sent by you');
  if (msg.type === MSG_TYPE.SYSTEM) return refuse(RET.FORBIDDEN, 'system messages cannot be recalled');
  if (nowMs - msg.createTime > LIMITS.recallWindowMs) {
    return refuse(RET.FORBIDDEN, `the recall window of ${LIMITS.recallWindowMs / 1000} s has passed`);
  }
  return undefined;
}

/** Group membership change rule. */
export function checkMembersChange(opts: {
  byUin: number;
  ownerUin: number;
  members: readonly number[];
  add: readonly number[];
  remove: readonly number[];
}): Refusal | undefined {
  const { byUin, ownerUin, members, add, remove } = opts;
  if (!members.includes(byUin)) return refuse(RET.FORBIDDEN, 'not a member of this group');
  const isOwner = byUin === ownerUin;
  if (add.length > 0 && !isOwner) return refuse(RET.FORBIDDEN, 'only the group owner may add members');
  // PROTOCOL.md groups/members: creator/admin only; leaving yourself always allowed.
  if (remove.some((u) => u !== byUin) && !isOwner) return refuse(RET.FORBIDDEN, 'only the group owner may remove members');
  const after = new Set(members);
  for (const u of remove) after.delete(u);
  for (const u of add) after.add(u);
  return checkGroupSize(after.size);
}

/** A group of `memberCount` members, its owner counted: refused past {@link LIMITS.maxGroupMembers}. */
export function checkGroupSize(memberCount: number): Refusal | undefined {
  if (memberCount > LIMITS.maxGroupMembers) return refuse(RET.TOO_LARGE, `a group has at most ${LIMITS.maxGroupMembers} members, its creator included`);
  return undefined;
}

/** Who owns a group after a change: the owner, or if the owner left, the longest-standing remaining member. */
export function nextOwner(ownerUin: number, membersInJoinOrder: readonly number[]): number {
  if (membersInJoinOrder.includes(ownerUin)) return ownerUin;
  return membersInJoinOrder[0] ?? 0;
}

/** Clamps a sync page size: default 200, at most 1000. */
export function clampSyncLimit(limit: number | undefined): number {
  if (limit === undefined) return LIMITS.defaultSyncLimit;
  return Math.max(1, Math.min(limit, LIMITS.maxSyncLimit));
}

/** Clamps a synccheck hold: default 25 s, at most 60 s. */
export function clampSynccheckTimeout(timeoutMs: number | undefined): number {
  if (timeoutMs === undefined) return LIMITS.defaultSynccheckTimeoutMs;
  return Math.max(0, Math.min(timeoutMs, LIMITS.maxSynccheckTimeoutMs));
}

/** A read marker only moves forward. */
export function isNewerReadMarker(current: number, msgId: number): boolean {
  return msgId > current;
}

/**
 * The WeChat-web ("webwx") gateway's mapping rules, pure: Synchat names, keys, entries and tokens to and from what
 * webwx clients expect (../shared/webwx-protocol.md; docs/webwx.md has the field table). No I/O: the routes call
 * the service and translate with these.
 */
import { LIMITS, MSG_TYPE } from '../../protocol/index.ts';

/** Every webwx API path is under this prefix (webwx-protocol.md §1). */
export const WX_PREFIX = '/cgi-bin/mmwebwx-bin';

/** webwx `Ret` values (webwx-protocol.md §1): ok, logged out, session invalid, a group that is gone, any other failure. */
export const WX_RET = { OK: 0, LOGGED_OUT: 1100, SESSION_INVALID: 1101, NO_SUCH_GROUP: 1201, FAILED: -1 } as const;

/** webwx `MsgType`s the gateway sends (webwx-protocol.md §9). */
export const WX_MSG = { TEXT: 1, IMAGE: 3, VOICE: 34, VERIFY: 37, APP: 49, SYSTEM: 10000, RECALLED: 10002 } as const;

/** `AppMsgType` of an attachment (a Synchat file message). */
export const WX_APP_ATTACHMENT = 6;

/** ItChat's default peer, "send to yourself": Synchat's own conversation with oneself. */
export const FILEHELPER = 'filehelper';

const HEX = /^@((?:[0-9a-f]{2})+)$/;

/**
 * `UserName` of a Synchat user: `@` + the hex of its UTF-8 username. Reversible and `@[0-9a-z]+`, which ItChat's
 * group-prefix regex `(@[0-9a-z]*?):<br/>` needs; never starts `@@`, so never taken for a group.
 */
export function userNameOf(username: string): string {
  return '@' + Buffer.from(username, 'utf8').toString('hex');
}

/** The Synchat peer a webwx `UserName` names: a username, a group id (`@@<digits>`, as is), or undefined. */
export function peerOf(userName: unknown, selfUsername: string): string | undefined {
  if (typeof userName !== 'string') return undefined;
  if (userName === FILEHELPER) return selfUsername;
  if (/^@@[1-9][0-9]{0,15}$/.test(userName)) return userName;
  const m = HEX.exec(userName);
  if (!m) return undefined;
  const username = Buffer.from(m[1]!, 'hex').toString('utf8');
  return /^[a-z0-9_]{3,32}$/.test(username) ? username : undefined;
}

/** A Synchat peer (username or group id) as a webwx `UserName`. */
export function wxNameOfPeer(peer: string): string {
  return peer.startsWith('@@') ? peer : userNameOf(peer);
}

/**
 * Session tokens. The Synchat bearer (`sid`, base64url) is the credential of every webwx request, in two
 * spellings from `[A-Za-z0-9_@]` (webwx-protocol.md §1: `+`, `/` and `-` have caused spurious 1101s): `wxsid` with
 * `-` → `@` (base64url has no `@`), and `skey` = `@crypt_` + that. Either one authenticates; no server state.
 */
export function wxsidOf(sid: string): string {
  return sid.replaceAll('-', '@');
}

/** The `skey` of a bearer (see {@link wxsidOf}). */
export function skeyOf(sid: string): string {
  return '@crypt_' + wxsidOf(sid);
}

/** The bearer a `wxsid` or `skey` spells, or undefined for something else. */
export function sidOfToken(token: unknown): string | undefined {
  if (typeof token !== 'string' || token === '') return undefined;
  const t = token.startsWith('@crypt_') ? token.slice('@crypt_'.length) : token;
  return /^[A-Za-z0-9_@]{16,128}$/.test(t) ? t.replaceAll('@', '-') : undefined;
}

/** `Uin` arrives as a number (wechat4u) or a string (ItChat): a positive integer either way, or undefined. */
export function uinOf(v: unknown): number | undefined {
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^[0-9]{1,16}$/.test(v) ? Number(v) : NaN;
  return Number.isSafeInteger(n) && n > 0 ? n : undefined;
}

/** webwx key of the log's seq in `SyncKey`/`SyncCheckKey` lists (webwx-protocol.md §7: "1 = messages"). */
const LOG_KEY = 1;
/** webwx key carrying the server's time in seconds (real servers send 1000 = a timestamp; informational). */
const TIME_KEY = 1000;

/** A webwx key list. */
export interface WxSyncKey {
  Count: number;
  List: { Key: number; Val: number }[];
}

/**
 * Synchat's one SyncKey (a seq of the user's log) as a webwx key list: `{Key: 1, Val: seq}` plus the server time
 * as key 1000. Presenting the list again (webwxsync body, synccheck `synckey=1_<seq>|…`) acknowledges the seq.
 */
export function wxSyncKeyOf(seq: number, nowMs: number): WxSyncKey {
  return { Count: 2, List: [{ Key: LOG_KEY, Val: seq }, { Key: TIME_KEY, Val: Math.floor(nowMs / 1000) }] };
}

/** The seq a webwx key list carries (key 1), or undefined when it has none or a bad value. */
export function seqOfWxSyncKey(v: unknown): number | undefined {
  const list = (v as { List?: unknown } | undefined)?.List;
  if (!Array.isArray(list)) return undefined;
  const item = list.find((k) => k && (k as { Key?: unknown }).Key === LOG_KEY) as { Val?: unknown } | undefined;
  const val = item?.Val;
  return typeof val === 'number' && Number.isSafeInteger(val) && val >= 0 ? val : undefined;
}

/** The seq of synccheck's `synckey=1_704152857|2_…|1000_…` (key 1), or undefined. */
export function seqOfSynccheckKey(v: unknown): number | undefined {
  if (typeof v !== 'string') return undefined;
  for (const pair of v.split('|')) {
    const m = /^([0-9]+)_([0-9]{1,16})$/.exec(pair);
    if (m && Number(m[1]) === LOG_KEY) return Number(m[2]);
  }
  return undefined;
}

/**
 * A synccheck `selector` from Synchat's selector bits (PROTOCOL.md "Selector"): 2 for messages and recalls (webwx
 * `SYNCCHECK_SELECTOR_MSG`), 4 for contacts and groups (ModContactList), 7 for read markers only ("the user operated
 * on another device"), 2 for any other news; 0 for none. Clients sync on any non-zero value.
 */
export function wxSelectorOf(bits: number): number {
  if (bits === 0) return 0;
  if (bits & (1 | 16)) return 2;
  if (bits & (2 | 8)) return 4;
  if (bits === 4) return 7;
  return 2;
}

/** The synccheck answer text, exactly as ItChat's regex `window.synccheck={retcode:"(\d+)",selector:"(\d+)"}` reads it. */
export function synccheckText(retcode: number, selector: number): string {
  return `window.synccheck={retcode:"${retcode}",selector:"${selector}"}`;
}

/** HTML-escaped text with newlines as `<br/>`, as webwx message contents and names are. */
export function wxText(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/\r?\n/g, '<br/>');
}

/** Every field of a webwx message (clients index them without checking: webwx-protocol.md §7). */
export interface WxMessage {
  MsgId: string;
  FromUserName: string;
  ToUserName: string;
  MsgType: number;
  Content: string;
  Status: number;
  ImgStatus: number;
  CreateTime: number;
  VoiceLength: number;
  PlayLength: number;
  FileName: string;
  FileSize: string;
  MediaId: string;
  Url: string;
  AppMsgType: number;
  StatusNotifyCode: number;
  StatusNotifyUserName: string;
  RecommendInfo: Record<string, unknown>;
  ForwardFlag: number;
  AppInfo: { AppID: string; Type: number };
  HasProductId: number;
  Ticket: string;
  ImgHeight: number;
  ImgWidth: number;
  SubMsgType: number;
  NewMsgId: number;
  OriContent: string;
  EncryFileName: string;
}

function emptyRecommendInfo(): Record<string, unknown> {
  return { UserName: '', NickName: '', QQNum: 0, Province: '', City: '', Content: '', Signature: '', Alias: '', Scene: 0, VerifyFlag: 0, AttrStatus: 0, Sex: 0, Ticket: '', OpCode: 0 };
}

function wxMessage(fields: Partial<WxMessage> & Pick<WxMessage, 'MsgId' | 'FromUserName' | 'ToUserName' | 'MsgType' | 'Content' | 'CreateTime'>): WxMessage {
  return {
    Status: 3,
    ImgStatus: 1,
    VoiceLength: 0,
    PlayLength: 0,
    FileName: '',
    FileSize: '',
    MediaId: '',
    Url: '',
    AppMsgType: 0,
    StatusNotifyCode: 0,
    StatusNotifyUserName: '',
    RecommendInfo: emptyRecommendInfo(),
    ForwardFlag: 0,
    AppInfo: { AppID: '', Type: 0 },
    HasProductId: 0,
    Ticket: '',
    ImgHeight: 0,
    ImgWidth: 0,
    SubMsgType: 0,
    NewMsgId: Number(fields.MsgId),
    OriContent: '',
    EncryFileName: '',
    ...fields,
  };
}

/** A Synchat `msg` entry (PROTOCOL.md entry list). */
export interface MsgEntryFields {
  msgId: string;
  from: string;
  peer: string;
  type: number;
  content: string;
  mediaId?: string;
  createTime: number;
}

/**
 * A `msg` entry in `me`'s log as a webwx message. Own messages (from any device) come `FromUserName` = self, to the
 * peer, without a prefix; another member's group message comes from the group to self with `@member:<br/>` before
 * the text (webwx-protocol.md §9). Text is escaped ({@link wxText}); an image is MsgType 3, voice 34 (VoiceLength
 * from the duration), a file 49 with AppMsgType 6 and its name as FileName.
 */
export function wxMessageOfEntry(e: MsgEntryFields, me: string): WxMessage {
  const isOwn = e.from === me;
  const isGroup = e.peer.startsWith('@@');
  const from = isOwn ? userNameOf(me) : wxNameOfPeer(e.peer);
  const to = isOwn ? wxNameOfPeer(e.peer) : userNameOf(me);
  const prefix = isGroup && !isOwn ? `${userNameOf(e.from)}:<br/>` : '';
  const base = { MsgId: e.msgId, FromUserName: from, ToUserName: to, CreateTime: Math.floor(e.createTime / 1000), MediaId: e.mediaId ?? '' };
  if (e.type === MSG_TYPE.IMAGE) {
    return wxMessage({ ...base, MsgType: WX_MSG.IMAGE, ImgStatus: 2, Content: prefix + wxText('<msg><img /></msg>') });
  }
  if (e.type === MSG_TYPE.VOICE) {
    const ms = Number(e.content) || 0;
    return wxMessage({ ...base, MsgType: WX_MSG.VOICE, VoiceLength: ms, Content: prefix + wxText(`<msg><voicemsg voicelength="${ms}" /></msg>`) });
  }
  if (e.type === MSG_TYPE.FILE) {
    const title = wxText(e.content);
    const xml = `<msg><appmsg appid="" sdkver="0"><title>${title}</title><type>${WX_APP_ATTACHMENT}</type><appattach><attachid>${e.mediaId ?? ''}</attachid></appattach></appmsg></msg>`;
    return wxMessage({ ...base, MsgType: WX_MSG.APP, AppMsgType: WX_APP_ATTACHMENT, FileName: e.content, Content: prefix + wxText(xml) });
  }
  const msgType = e.type === MSG_TYPE.SYSTEM ? WX_MSG.SYSTEM : WX_MSG.TEXT;
  return wxMessage({ ...base, MsgType: msgType, Content: prefix + wxText(e.content) });
}

/**
 * The MsgId of a notice the log holds without a msgId of its own (a recall): 2^53 − 1 − its seq in the user's log.
 * Unique per user, decimal below 2^53, and never a real msgId (those count up from 1).
 */
export function noticeMsgIdOf(seq: number): string {
  return String(Number.MAX_SAFE_INTEGER - seq);
}

/**
 * A `revoke` entry as webwx's MsgType 10002 (webwx-protocol.md §9): the escaped `<sysmsg type="revokemsg">` with
 * the recalled message's id in `msgid`. From the group, or from whoever recalled (`by`; older entries lack it and
 * name the peer), to self.
 */
export function wxRecallOfEntry(e: { seq: number; msgId: string; peer: string; by?: string }, me: string, nowMs: number): WxMessage {
  const by = e.by ?? (e.peer.startsWith('@@') ? '' : e.peer);
  const from = e.peer.startsWith('@@') ? e.peer : by === me ? userNameOf(me) : userNameOf(by || e.peer);
  const to = from === userNameOf(me) ? wxNameOfPeer(e.peer) : userNameOf(me);
  const who = by === me ? 'You' : `"${by}"`;
  const xml =
    `<sysmsg type="revokemsg"><revokemsg><session>${e.peer}</session><oldmsgid>${e.msgId}</oldmsgid>` +
    `<msgid>${e.msgId}</msgid><replacemsg><![CDATA[${who} recalled a message]]></replacemsg></revokemsg></sysmsg>`;
  return wxMessage({ MsgId: noticeMsgIdOf(e.seq), FromUserName: from, ToUserName: to, MsgType: WX_MSG.RECALLED, Content: wxText(xml), CreateTime: Math.floor(nowMs / 1000) });
}

/** A `contactRequest` entry as webwx's MsgType 37 (friend request, from `fmessage`), the asker in RecommendInfo. */
export function wxContactRequestOfEntry(e: { seq: number; from: string; displayName?: string; note: string }, me: string, nowMs: number): WxMessage {
  return wxMessage({
    MsgId: noticeMsgIdOf(e.seq),
    FromUserName: 'fmessage',
    ToUserName: userNameOf(me),
    MsgType: WX_MSG.VERIFY,
    Content: wxText(e.note),
    CreateTime: Math.floor(nowMs / 1000),
    RecommendInfo: { ...emptyRecommendInfo(), UserName: userNameOf(e.from), NickName: e.displayName ?? e.from, Content: e.note },
  });
}

/** A webwx group member (webwx-protocol.md §3 "Member"). */
export function wxMember(username: string, displayName: string): Record<string, unknown> {
  return { Uin: 0, UserName: userNameOf(username), NickName: wxText(displayName), AttrStatus: 0, PYInitial: '', PYQuanPin: '', RemarkPYInitial: '', RemarkPYQuanPin: '', MemberStatus: 0, DisplayName: '', KeyWord: '' };
}

/**
 * A webwx contact object, every key present (ItChat indexes `Sex`, `VerifyFlag`, `MemberList` directly). A person is
 * `ContactFlag` 3 (contact + chat contact); a group `@@<digits>` with its members when known (`MemberCount` 0 makes
 * wechat4u ask webwxbatchgetcontact for them).
 */
export function wxContact(
  userName: string,
  nickName: string,
  group?: { members: { username: string; displayName: string }[]; owner?: string },
): Record<string, unknown> {
  const members = group?.members.map((m) => wxMember(m.username, m.displayName)) ?? [];
  return {
    Uin: 0,
    UserName: userName,
    NickName: wxText(nickName),
    HeadImgUrl: `/cgi-bin/mmwebwx-bin/${group ? 'webwxgetheadimg' : 'webwxgeticon'}?username=${userName}`,
    ContactFlag: group ? 2 : 3,
    MemberCount: members.length,
    MemberList: members,
    RemarkName: '',
    HideInputBarFlag: 0,
    Sex: 0,
    Signature: '',
    VerifyFlag: 0,
    OwnerUin: 0,
    PYInitial: '',
    PYQuanPin: '',
    RemarkPYInitial: '',
    RemarkPYQuanPin: '',
    StarFriend: 0,
    AppAccountFlag: 0,
    Statues: 0,
    AttrStatus: 0,
    Province: '',
    City: '',
    Alias: '',
    SnsFlag: 0,
    UniFriend: 0,
    DisplayName: '',
    ChatRoomId: 0,
    KeyWord: '',
    EncryChatRoomId: group ? userName : '',
    IsOwner: 0,
    ...(group?.owner ? { ChatRoomOwner: userNameOf(group.owner) } : {}),
  };
}

/** The clientMsgId of a webwx send: `ClientMsgId`, else `LocalID`, as a string (clients send numbers or strings). */
export function clientMsgIdOf(msg: { ClientMsgId?: unknown; LocalID?: unknown }): string | undefined {
  for (const v of [msg.ClientMsgId, msg.LocalID]) {
    const s = typeof v === 'number' && Number.isFinite(v) ? String(v) : typeof v === 'string' ? v : '';
    if (s !== '' && s.length <= LIMITS.maxClientMsgIdChars && /^[\x21-\x7E]+$/.test(s)) return s;
  }
  return undefined;
}

/**
 * The WeChat-web ("webwx") gateway (docs/webwx.md): the routes open-source webwx clients call (wechat4u, ItChat),
 * each a translation onto ChatApi calls: no state of its own beyond per-process caches, no second engine, so it
 * runs in gateway processes and on several nodes like every other transport. Mapping rules: codec.ts; login:
 * webwx-login.ts; media: webwx-media.ts.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { LIMITS, MSG_TYPE, RET } from '../../protocol/index.ts';
import type { BlobStore, ChatApi } from '../../service/index.ts';
import type { SynccheckHandler } from '../longpoll/synccheck.ts';
import { parkSynccheck } from '../http/park-synccheck.ts';
import {
  WX_PREFIX,
  WX_RET,
  clientMsgIdOf,
  peerOf,
  seqOfSynccheckKey,
  seqOfWxSyncKey,
  skeyOf,
  synccheckText,
  userNameOf,
  wxContact,
  wxContactRequestOfEntry,
  wxMember,
  wxMessageOfEntry,
  wxNameOfPeer,
  wxRecallOfEntry,
  wxSelectorOf,
  wxSyncKeyOf,
} from './codec.ts';
import { registerWebwxLogin } from './webwx-login.ts';
import { registerWebwxMedia } from './webwx-media.ts';
import { WxCalls, bearerOf, sendJs, sendWx, sendWxFailure, wxRetOf, type Answer, type WxUser } from './wx-request.ts';

/** Options of the webwx routes. */
export interface WebwxRoutesOptions {
  api: ChatApi;
  synccheck: SynccheckHandler;
  /** Where media bytes are read from (as the media routes); absent: uploads and downloads answer Ret -1. */
  blobs?: BlobStore;
  /** Cookies get `Secure` (the server speaks HTTPS). */
  isTls: boolean;
}

/** Entries translated per webwxsync (a page of `/api/sync`); more pending keeps synccheck answering at once. */
const SYNC_PAGE = 200;
/** Recent conversations webwxinit returns as contacts (ChatSet lists up to {@link LIMITS.maxChats}). */
const INIT_CONTACTS = 50;
/** `InviteStartCount`: required by ItChat's init (webwx-protocol.md §3); past it ItChat invites instead of adding. */
const INVITE_START_COUNT = 40;

type Req = FastifyRequest;

/** Registers the gateway's routes on `app`, in their own scope (their body parser and error edge). */
export function registerWebwxRoutes(app: FastifyInstance, opts: WebwxRoutesOptions): void {
  const calls = new WxCalls(opts.api);
  void app.register(async (scope) => {
    // ItChat sends JSON without a JSON Content-Type (webwx-protocol.md §1): every body is read as JSON, whatever
    // the header says; a body that is not JSON is empty.
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', { parseAs: 'string' }, (_req, text, done) => {
      try {
        const v = JSON.parse(String(text));
        done(null, v && typeof v === 'object' ? v : {});
      } catch {
        done(null, {});
      }
    });
    // One edge: whatever fails answers Ret -1 (HTTP 200, as webwx does), logged, never echoed.
    scope.setErrorHandler((err: any, req, reply) => {
      if (err?.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return sendWx(reply, {}, WX_RET.FAILED, 'body too large');
      req.log.error({ err }, 'webwx route failed');
      return sendWx(reply, {}, WX_RET.FAILED, 'server error');
    });
    registerWebwxLogin(scope, { calls, isTls: opts.isTls });
    registerApi(scope, calls, opts);
  });
  // Uploads are multipart: a scope of their own.
  registerWebwxMedia(app, { calls, blobs: opts.blobs });
}

function registerApi(scope: FastifyInstance, calls: WxCalls, opts: WebwxRoutesOptions): void {
  const route = (method: 'GET' | 'POST' | ('GET' | 'POST')[], name: string, handler: (req: Req, reply: FastifyReply) => Promise<unknown>) =>
    scope.route({ method, url: `${WX_PREFIX}/${name}`, handler: async (req, reply) => (await handler(req, reply), reply) });

  route('POST', 'webwxinit', (req, reply) => init(calls, req, reply));
  route(['GET', 'POST'], 'webwxgetcontact', (req, reply) => getContact(calls, req, reply));
  route('POST', 'webwxbatchgetcontact', (req, reply) => batchGetContact(calls, req, reply));
  route('POST', 'webwxstatusnotify', (req, reply) => statusNotify(calls, req, reply));
  route('POST', 'webwxsync', (req, reply) => sync(calls, req, reply));
  route('POST', 'webwxsendmsg', (req, reply) => send(calls, req, reply, MSG_TYPE.TEXT));
  route('POST', 'webwxsendmsgimg', (req, reply) => send(calls, req, reply, MSG_TYPE.IMAGE));
  // A gif is sent as an emoticon (webwx-protocol.md §8): Synchat stores it as an image.
  route('POST', 'webwxsendemoticon', (req, reply) => send(calls, req, reply, MSG_TYPE.IMAGE));
  route('POST', 'webwxsendappmsg', (req, reply) => send(calls, req, reply, MSG_TYPE.FILE));
  route('POST', 'webwxrevokemsg', (req, reply) => revoke(calls, req, reply));
  route('POST', 'webwxcreatechatroom', (req, reply) => createChatroom(calls, req, reply));
  route('POST', 'webwxupdatechatroom', (req, reply) => updateChatroom(calls, req, reply));
  route(['GET', 'POST'], 'webwxlogout', (req, reply) => logout(calls, req, reply, opts.isTls));
  scope.get(`${WX_PREFIX}/synccheck`, (req, reply) => synccheck(opts.synccheck, req, reply));
  // Anything else of the webwx API (video, oplog, verifyuser, …) is not supported: an honest Ret -1.
  scope.all(`${WX_PREFIX}/*`, async (req, reply) => sendWx(reply, {}, WX_RET.FAILED, `not supported by this server: ${req.url.split('?')[0]}`));
}

/** The session's user, or the 1101 answer already sent. */
async function userOrFail(calls: WxCalls, req: Req, reply: FastifyReply): Promise<WxUser | undefined> {
  const me = await calls.user(req);
  if ('ret' in me) {
    sendWxFailure(reply, me);
    return undefined;
  }
  return me;
}

/** Contacts and groups by peer, with the shown names the service knows. */
async function contactsOf(calls: WxCalls, req: Req, peers: readonly string[], knownNames: Map<string, string>): Promise<Record<string, unknown>[]> {
  const out: Record<string, unknown>[] = [];
  for (const peer of peers) {
    if (peer.startsWith('@@')) {
      const g = await calls.call(req, '/api/groups/info', { groupId: peer });
      if (g.ret === RET.OK) out.push(wxContact(peer, g.name, { members: g.members, owner: g.owner }));
      continue;
    }
    let name = knownNames.get(peer);
    if (name === undefined) {
      const u = await calls.call(req, '/api/users/lookup', { username: peer });
      if (u.ret !== RET.OK) continue;
      name = String(u.displayName);
    }
    out.push(wxContact(userNameOf(peer), name));
  }
  return out;
}

async function init(calls: WxCalls, req: Req, reply: FastifyReply): Promise<void> {
  const sid = bearerOf(req);
  const me = await calls.whoami(req, sid);
  if ('ret' in me) return void sendWxFailure(reply, me);
  const [self, chats, list] = await Promise.all([
    calls.call(req, '/api/users/lookup', { username: me.username }),
    calls.call(req, '/api/chats', {}),
    calls.call(req, '/api/contacts/list', {}),
  ]);
  const failed = [self, chats, list].find((a) => a.ret !== RET.OK);
  if (failed) return void sendWxFailure(reply, failed);
  const names = new Map<string, string>(list.contacts.map((c: { username: string; displayName: string }) => [c.username, c.displayName]));
  const recent: string[] = chats.chats.map((c: { peer: string }) => c.peer);
  const contacts = await contactsOf(calls, req, recent.slice(0, INIT_CONTACTS), names);
  const now = Date.now();
  // The key is the head: like WeChat, init starts from now; history stays on the native API.
  const syncKey = wxSyncKeyOf(me.head ?? 0, now);
  sendWx(reply, {
    Count: contacts.length,
    ContactList: contacts,
    SyncKey: syncKey,
    User: { ...wxContact(userNameOf(me.username), String(self.displayName)), Uin: me.uin, HeadImgFlag: 1, WebWxPluginSwitch: 0 },
    ChatSet: recent.map(wxNameOfPeer).join(','),
    SKey: skeyOf(sid!),
    ClientVersion: 0,
    SystemTime: Math.floor(now / 1000),
    GrayScale: 1,
    InviteStartCount: INVITE_START_COUNT,
    MPSubscribeMsgCount: 0,
    MPSubscribeMsgList: [],
    ClickReportInterval: 600000,
  });
}

async function getContact(calls: WxCalls, req: Req, reply: FastifyReply): Promise<void> {
  const list = await calls.call(req, '/api/contacts/list', {});
  if (list.ret !== RET.OK) return void sendWxFailure(reply, list, { MemberCount: 0, MemberList: [], Seq: 0 });
  // Groups come without members (MemberCount 0): wechat4u then asks webwxbatchgetcontact for them.
  const members = [
    ...list.contacts.map((c: { username: string; displayName: string }) => wxContact(userNameOf(c.username), c.displayName)),
    ...list.groups.map((g: { groupId: string; name: string }) => wxContact(g.groupId, g.name, { members: [] })),
  ];
  sendWx(reply, { MemberCount: members.length, MemberList: members, Seq: 0 });
}

async function batchGetContact(calls: WxCalls, req: Req, reply: FastifyReply): Promise<void> {
  const me = await userOrFail(calls, req, reply);
  if (!me) return;
  const body = req.body as { List?: unknown };
  const items = Array.isArray(body.List) ? body.List.slice(0, LIMITS.maxChats) : [];
  const peers = [...new Set(items.map((i) => peerOf((i as { UserName?: unknown })?.UserName, me.username)).filter((p): p is string => p !== undefined))];
  const contacts = await contactsOf(calls, req, peers, new Map());
  sendWx(reply, { Count: contacts.length, ContactList: contacts });
}

/**
 * Code 1 (READED: the client read a chat, `ToUserName` = the peer) marks the conversation read up to its latest
 * message (`/api/chats` with `peer`, then `/api/read`); the other codes (entered, inited, …) change nothing here.
 */
async function statusNotify(calls: WxCalls, req: Req, reply: FastifyReply): Promise<void> {
  const me = await userOrFail(calls, req, reply);
  if (!me) return;
  const body = req.body as { Code?: unknown; ToUserName?: unknown };
  const peer = peerOf(body.ToUserName, me.username);
  let msgId = '0';
  if (body.Code === 1 && peer !== undefined && peer !== me.username) {
    const chats = await calls.call(req, '/api/chats', { peer });
    if (chats.ret !== RET.OK) return void sendWxFailure(reply, chats, { MsgID: '' });
    const latest = chats.chats[0] as { msgId: string } | undefined;
    if (latest) {
      const r = await calls.call(req, '/api/read', { peer, msgId: latest.msgId });
      if (r.ret !== RET.OK) return void sendWxFailure(reply, r, { MsgID: '' });
      msgId = latest.msgId;
    }
  }
  sendWx(reply, { MsgID: msgId });
}

/**
 * synccheck: the native long-poll (SynccheckHandler, ~25 s) answered in webwx's text. Synchat's selector bits become
 * webwx selectors ({@link wxSelectorOf}); a session that ended is retcode 1100 (logged out) or 1101 (replaced,
 * revoked, or never valid); a key ahead of the log answers selector 2 so the client syncs and meets the refusal
 * there; a draining server answers 0/0 and the client polls again elsewhere (1102 would log it out).
 */
function synccheck(handler: SynccheckHandler, req: Req, reply: FastifyReply): FastifyReply {
  const q = req.query as Record<string, unknown>;
  const sid = bearerOf(req);
  const syncKey = seqOfSynccheckKey(q.synckey);
  if (sid === undefined) return sendJs(reply, synccheckText(WX_RET.SESSION_INVALID, 0));
  if (syncKey === undefined) return sendJs(reply, synccheckText(0, 2));
  return parkSynccheck(handler, req, reply, { sid, syncKey, timeoutMs: LIMITS.defaultSynccheckTimeoutMs }, (ret, body) => {
    if (ret === RET.OK) return void sendJs(reply, synccheckText(0, wxSelectorOf((JSON.parse(body) as { selector: number }).selector)));
    if (ret === RET.NOT_LOGGED_IN) return void sendJs(reply, synccheckText(WX_RET.LOGGED_OUT, 0));
    if (ret === RET.SESSION_REPLACED) return void sendJs(reply, synccheckText(WX_RET.SESSION_INVALID, 0));
    if (ret === RET.BAD_REQUEST) return void sendJs(reply, synccheckText(0, 2));
    if (ret === RET.GOING_AWAY) return void sendJs(reply, synccheckText(0, 0));
    sendJs(reply, synccheckText(0, 0), 500);
  });
}

/** Each group's current state, for the group entries of a sync page (one call per group, not per entry). */
async function groupsOf(calls: WxCalls, req: Req, groupIds: readonly string[]): Promise<Map<string, Answer>> {
  const out = new Map<string, Answer>();
  for (const groupId of groupIds) out.set(groupId, await calls.call(req, '/api/groups/info', { groupId }));
  return out;
}

/**
 * webwxsync: one page of `/api/sync` from the presented key (which acknowledges it), translated: messages to
 * AddMsgList (recalls as 10002, contact requests as 37), contacts and groups to ModContactList or DelContactList,
 * read markers dropped. The new key is in both SyncKey and SyncCheckKey (ItChat needs the second); a client that
 * presents an older key again gets the same entries again (its answer was lost).
 */
async function sync(calls: WxCalls, req: Req, reply: FastifyReply): Promise<void> {
  const me = await userOrFail(calls, req, reply);
  if (!me) return;
  const key = seqOfWxSyncKey((req.body as { SyncKey?: unknown }).SyncKey);
  if (key === undefined) return void sendWx(reply, {}, WX_RET.FAILED, 'SyncKey: a list with key 1 (the log seq) is required');
  const page = await calls.call(req, '/api/sync', { syncKey: key, limit: SYNC_PAGE });
  if (page.ret !== RET.OK) return void sendWxFailure(reply, page);
  const now = Date.now();
  const addMsgs: unknown[] = [];
  const modContacts = new Map<string, Record<string, unknown>>();
  const delContacts = new Map<string, Record<string, unknown>>();
  const entries = page.entries as ({ kind: string; seq: number } & Record<string, any>)[];
  const groups = await groupsOf(calls, req, [...new Set(entries.filter((e) => e.kind === 'group').map((e) => e.groupId as string))]);
  for (const e of entries) {
    if (e.kind === 'msg') addMsgs.push(wxMessageOfEntry(e as any, me.username));
    else if (e.kind === 'revoke') addMsgs.push(wxRecallOfEntry(e as any, me.username, now));
    else if (e.kind === 'contactRequest') addMsgs.push(wxContactRequestOfEntry(e as any, me.username, now));
    else if (e.kind === 'contact') {
      const name = userNameOf(e.username);
      if (e.removed || e.blocked) {
        modContacts.delete(name);
        delContacts.set(name, { UserName: name, ContactFlag: 0 });
      } else {
        delContacts.delete(name);
        modContacts.set(name, wxContact(name, e.displayName));
      }
    } else if (e.kind === 'group') {
      const g = groups.get(e.groupId)!;
      if (e.removed || g.ret !== RET.OK) {
        modContacts.delete(e.groupId);
        delContacts.set(e.groupId, { UserName: e.groupId, ContactFlag: 0 });
      } else {
        delContacts.delete(e.groupId);
        modContacts.set(e.groupId, wxContact(e.groupId, g.name, { members: g.members, owner: g.owner }));
      }
    }
  }
  const syncKey = wxSyncKeyOf(page.syncKey, now);
  const sid = bearerOf(req)!;
  sendWx(reply, {
    AddMsgCount: addMsgs.length,
    AddMsgList: addMsgs,
    ModContactCount: modContacts.size,
    ModContactList: [...modContacts.values()],
    DelContactCount: delContacts.size,
    DelContactList: [...delContacts.values()],
    ModChatRoomMemberCount: 0,
    ModChatRoomMemberList: [],
    Profile: { BitFlag: 0, UserName: { Buff: '' }, NickName: { Buff: '' }, BindUin: 0, BindEmail: { Buff: '' }, BindMobile: { Buff: '' }, Status: 0, Sex: 0, PersonalCard: 0, Alias: '', HeadImgUpdateFlag: 0, HeadImgUrl: '', Signature: '' },
    ContinueFlag: page.continueFlag ? 1 : 0,
    SyncKey: syncKey,
    SyncCheckKey: syncKey,
    SKey: skeyOf(sid),
  });
}

/** The media id of an attachment message: `MediaId`, else the `<attachid>` of its appmsg XML (webwx-protocol.md §8). */
function attachIdOf(msg: { MediaId?: unknown; Content?: unknown }): string | undefined {
  if (typeof msg.MediaId === 'string' && msg.MediaId !== '') return msg.MediaId;
  const m = typeof msg.Content === 'string' ? /<attachid>([^<]+)<\/attachid>/.exec(msg.Content.replace(/&lt;/g, '<').replace(/&gt;/g, '>')) : null;
  return m ? m[1] : undefined;
}

/** The `<title>` of an appmsg (a file's name). */
function titleOf(content: unknown): string {
  const m = typeof content === 'string' ? /<title>([^<]*)<\/title>/.exec(content.replace(/&lt;/g, '<').replace(/&gt;/g, '>')) : null;
  return m ? m[1]! : '';
}

/**
 * webwxsendmsg and its media kin, onto `/api/sendmsg`: `ClientMsgId` (else `LocalID`) is the clientMsgId, so a
 * repeat is answered with the first MsgID and nothing is sent twice. Text goes as the client typed it.
 */
async function send(calls: WxCalls, req: Req, reply: FastifyReply, type: number): Promise<void> {
  const me = await userOrFail(calls, req, reply);
  if (!me) return;
  const msg = ((req.body as { Msg?: unknown }).Msg ?? {}) as Record<string, unknown>;
  const localId = msg.LocalID === undefined ? '' : String(msg.LocalID);
  const to = peerOf(msg.ToUserName, me.username);
  const clientMsgId = clientMsgIdOf(msg);
  if (to === undefined || clientMsgId === undefined) {
    return void sendWx(reply, { MsgID: '', LocalID: localId }, WX_RET.FAILED, 'Msg needs ToUserName (a UserName of this server) and ClientMsgId or LocalID');
  }
  const content = type === MSG_TYPE.TEXT ? String(msg.Content ?? '') : type === MSG_TYPE.FILE ? titleOf(msg.Content) : '';
  const mediaId = type === MSG_TYPE.TEXT ? undefined : attachIdOf(msg);
  const r = await calls.call(req, '/api/sendmsg', { clientMsgId, to, type, content, ...(mediaId ? { mediaId } : {}) });
  if (r.ret !== RET.OK) return void sendWxFailure(reply, r, { MsgID: '', LocalID: localId }, to.startsWith('@@'));
  sendWx(reply, { MsgID: r.msgId, LocalID: localId || clientMsgId });
}

/** webwxrevokemsg onto `/api/revoke` (sender only, within 2 minutes: WeChat's own rule). */
async function revoke(calls: WxCalls, req: Req, reply: FastifyReply): Promise<void> {
  const body = req.body as { SvrMsgId?: unknown };
  const msgId = typeof body.SvrMsgId === 'number' ? String(body.SvrMsgId) : body.SvrMsgId;
  const r = await calls.call(req, '/api/revoke', { msgId }, bearerOf(req));
  if (r.ret !== RET.OK) return void sendWx(reply, { Introduction: '', SysWording: '' }, wxRetOf(r), r.errMsg ?? '');
  sendWx(reply, { Introduction: `You can recall a message within ${LIMITS.recallWindowMs / 60_000} minutes of sending it.`, SysWording: 'Recalled' });
}

/** Usernames of a webwx member list: `[{UserName}]` (create) or `"@a,@b"` (update). */
function usernamesOf(list: unknown, me: string): string[] | undefined {
  const names = Array.isArray(list) ? list.map((m) => (m as { UserName?: unknown })?.UserName) : typeof list === 'string' ? list.split(',') : [];
  const peers = names.map((n) => peerOf(n, me));
  if (peers.some((p) => p === undefined || p.startsWith('@@'))) return undefined;
  return [...new Set(peers as string[])].filter((p) => p !== me);
}

/** webwxcreatechatroom onto `/api/groups/create`, answered with the new group and its members. */
async function createChatroom(calls: WxCalls, req: Req, reply: FastifyReply): Promise<void> {
  const me = await userOrFail(calls, req, reply);
  if (!me) return;
  const body = req.body as { MemberList?: unknown; Topic?: unknown };
  const members = usernamesOf(body.MemberList, me.username);
  const empty = { Topic: '', PYInitial: '', QuanPin: '', MemberCount: 0, MemberList: [], ChatRoomName: '', BlackList: '' };
  if (!members || members.length === 0) return void sendWx(reply, empty, WX_RET.FAILED, 'MemberList: UserNames of your contacts');
  const topic = typeof body.Topic === 'string' && body.Topic.trim() !== '' ? body.Topic.trim() : [me.username, ...members].join(', ');
  const name = [...topic].slice(0, LIMITS.maxGroupNameChars).join('');
  const created = await calls.call(req, '/api/groups/create', { name, members });
  if (created.ret !== RET.OK) return void sendWxFailure(reply, created, empty);
  const g = await calls.call(req, '/api/groups/info', { groupId: created.groupId });
  if (g.ret !== RET.OK) return void sendWxFailure(reply, g, empty);
  const list = g.members.map((m: { username: string; displayName: string }) => wxMember(m.username, m.displayName));
  sendWx(reply, { Topic: g.name, PYInitial: '', QuanPin: '', MemberCount: list.length, MemberList: list, ChatRoomName: g.groupId, BlackList: '' });
}

/** webwxupdatechatroom: `fun` addmember/invitemember, delmember → `/api/groups/members`; modtopic → `/api/groups/rename`. */
async function updateChatroom(calls: WxCalls, req: Req, reply: FastifyReply): Promise<void> {
  const me = await userOrFail(calls, req, reply);
  if (!me) return;
  const fun = (req.query as { fun?: unknown }).fun;
  const body = req.body as Record<string, unknown>;
  const groupId = peerOf(body.ChatRoomName, me.username);
  const fields = { MemberCount: 0, MemberList: [] };
  if (!groupId?.startsWith('@@')) return void sendWx(reply, fields, WX_RET.NO_SUCH_GROUP, 'ChatRoomName: a group of this server');
  let r: Answer;
  if (fun === 'modtopic') r = await calls.call(req, '/api/groups/rename', { groupId, name: String(body.NewTopic ?? '') });
  else if (fun === 'addmember' || fun === 'invitemember' || fun === 'delmember') {
    const list = usernamesOf(fun === 'delmember' ? body.DelMemberList : fun === 'addmember' ? body.AddMemberList : body.InviteMemberList, me.username);
    if (!list) return void sendWx(reply, fields, WX_RET.FAILED, 'member list: UserNames of this server, comma-separated');
    r = await calls.call(req, '/api/groups/members', { groupId, ...(fun === 'delmember' ? { remove: list } : { add: list }) });
  } else return void sendWx(reply, fields, WX_RET.FAILED, 'fun: addmember, invitemember, delmember or modtopic');
  if (r.ret !== RET.OK) return void sendWxFailure(reply, r, fields, true);
  const g = await calls.call(req, '/api/groups/info', { groupId });
  sendWx(reply, g.ret === RET.OK ? { MemberCount: g.members.length, MemberList: [] } : fields);
}

/** webwxlogout: the session ends (`/api/logout`) and its cookies are cleared; answered whatever happened. */
async function logout(calls: WxCalls, req: Req, reply: FastifyReply, isTls: boolean): Promise<void> {
  const sid = bearerOf(req);
  if (sid !== undefined) await calls.call(req, '/api/logout', {}, sid);
  const attrs = `; Path=/; Max-Age=0; HttpOnly; SameSite=Lax${isTls ? '; Secure' : ''}`;
  reply.header('set-cookie', ['wxsid', 'wxuin', 'webwx_data_ticket', 'webwx_auth_ticket'].map((n) => `${n}=deleted${attrs}`));
  sendWx(reply, {});
}

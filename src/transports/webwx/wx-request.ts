/**
 * What every webwx route shares: the session's bearer read from wherever a client puts it (BaseRequest, query,
 * cookies), who that session is (cached per process), service calls with the caller's address, and the
 * `BaseResponse` answers. See docs/webwx.md "Sessions".
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { RET } from '../../protocol/index.ts';
import type { ChatApi } from '../../service/index.ts';
import { setBounded } from '../../service/bounded.ts';
import { WX_RET, sidOfToken, uinOf } from './codec.ts';

/** A parsed service answer. */
export type Answer = { ret: number; errMsg?: string } & Record<string, any>;

/** Cookies of a request (`name=value; …`), undecoded values (ours are `[A-Za-z0-9_@]`). */
export function cookiesOf(req: FastifyRequest): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0) out[part.slice(0, i).trim()] = part.slice(i + 1).trim();
  }
  return out;
}

/**
 * The Synchat bearer of a webwx request: `BaseRequest.Sid`/`Skey` in the body, `sid`/`skey` in the query, or the
 * `wxsid` cookie (wechat4u and ItChat keep cookies; downloads carry only `skey` and cookies). Two that disagree, or
 * a `Uin` that is no positive integer, make it undefined (1101). `DeviceID` and `pass_ticket` are never read:
 * wechat4u draws a new DeviceID per request and ItChat puts the pass_ticket there (webwx-protocol.md §1).
 */
export function bearerOf(req: FastifyRequest, baseRequest?: unknown): string | undefined {
  const given = baseRequest ?? (req.body as { BaseRequest?: unknown } | undefined)?.BaseRequest;
  const base = given && typeof given === 'object' ? (given as Record<string, unknown>) : {};
  const query = (req.query ?? {}) as Record<string, unknown>;
  if (base.Uin !== undefined && uinOf(base.Uin) === undefined) return undefined;
  const tokens = [base.Sid, base.Skey, query.sid, query.skey, cookiesOf(req).wxsid].filter((t) => typeof t === 'string' && t !== '');
  let sid: string | undefined;
  for (const t of tokens) {
    const s = sidOfToken(t);
    if (s === undefined || (sid !== undefined && s !== sid)) return undefined;
    sid = s;
  }
  return sid;
}

/** Who a session is. */
export interface WxUser {
  uin: number;
  username: string;
}

/**
 * Bearer → user, for the routes that translate from the user's point of view (own messages, `filehelper`). A
 * username never changes, so an entry is never stale; a session that ended is refused by the call that follows.
 * Bounded: past {@link WHOAMI_CACHE_MAX} the oldest goes.
 */
const WHOAMI_CACHE_MAX = 10_000;

/** Service calls on behalf of webwx requests. */
export class WxCalls {
  readonly api: ChatApi;
  readonly #users = new Map<string, WxUser>();

  constructor(api: ChatApi) {
    this.api = api;
  }

  /** Runs `path` as the request's session (or `sid`) and parses the answer. */
  async call(req: FastifyRequest, path: string, body: unknown, sid = bearerOf(req)): Promise<Answer> {
    const r = await this.api.call(path, body, { sid, ip: req.ip, requestId: req.id });
    return JSON.parse(r.body) as Answer;
  }

  /**
   * The session's user. Answered by an attach without a key, released at once (the one call that names the
   * caller; no listener is left behind), then cached.
   */
  async whoami(req: FastifyRequest, sid = bearerOf(req)): Promise<(WxUser & { head?: number }) | { ret: number; errMsg: string }> {
    if (sid === undefined) return { ret: RET.SESSION_REPLACED, errMsg: 'no valid Sid, Skey or wxsid cookie' };
    const a = await this.api.attach(sid, undefined, req.ip);
    a.subscription?.release();
    if (a.ret !== RET.OK) return { ret: a.ret, errMsg: a.errMsg ?? 'not logged in' };
    const user = { uin: a.uin!, username: a.username! };
    setBounded(this.#users, sid, user, WHOAMI_CACHE_MAX);
    return { ...user, head: a.head };
  }

  /** {@link whoami}, from the cache when this process has seen the session. */
  async user(req: FastifyRequest): Promise<WxUser | { ret: number; errMsg: string }> {
    const sid = bearerOf(req);
    return (sid !== undefined && this.#users.get(sid)) || this.whoami(req, sid);
  }
}

/**
 * The webwx `Ret` of a failed service answer: a session that is gone or was never valid is 1101 (wechat4u's logout
 * path for webwxinit and webwxsync; ItChat stops on any non-zero), a send to a group one is not in is 1201 as WeChat
 * answers it, anything else -1 (webwx-protocol.md §1). The service's errMsg goes along as `ErrMsg`.
 */
export function wxRetOf(a: { ret: number }, isGroup = false): number {
  if (a.ret === RET.NOT_LOGGED_IN || a.ret === RET.SESSION_REPLACED) return WX_RET.SESSION_INVALID;
  if (isGroup && a.ret === RET.FORBIDDEN) return WX_RET.NO_SUCH_GROUP;
  return WX_RET.FAILED;
}

/** Sends a webwx JSON answer: HTTP 200 whatever `Ret` says (clients read `BaseResponse`). */
export function sendWx(reply: FastifyReply, fields: Record<string, unknown>, ret: number = WX_RET.OK, errMsg = ''): FastifyReply {
  return reply
    .code(200)
    .header('content-type', 'application/json; charset=utf-8')
    .header('cache-control', 'no-store')
    .send(JSON.stringify({ BaseResponse: { Ret: ret, ErrMsg: errMsg }, ...fields }));
}

/** Sends a failed service answer as a webwx one. */
export function sendWxFailure(reply: FastifyReply, a: { ret: number; errMsg?: string }, fields: Record<string, unknown> = {}, isGroup = false): FastifyReply {
  return sendWx(reply, fields, wxRetOf(a, isGroup), a.errMsg ?? '');
}

/** Sends JavaScript text (login and synccheck answers, which clients match by regex or `eval`). */
export function sendJs(reply: FastifyReply, text: string, status = 200): FastifyReply {
  return reply.code(status).header('content-type', 'text/javascript; charset=utf-8').header('cache-control', 'no-store').send(text);
}

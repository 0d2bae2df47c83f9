/**
 * webwx login on Synchat's QR login (docs/protocol.md "QR login"; webwx-protocol.md §2): `/jslogin` asks for a uuid
 * (`/api/qrlogin/new`), `/cgi-bin/mmwebwx-bin/login` long-polls it (`ChatApi.pollQrLogin`) and maps its states to
 * webwx codes (waiting 408, scanned 201, confirmed 200 with a redirect_uri, expired 400), and
 * `webwxnewloginpage` answers HTTP 301 with the credentials as XML and cookies. The same uuids as the native flow:
 * a logged-in Synchat device scans and confirms them.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { LIMITS, RET } from '../../protocol/index.ts';
import { setBounded } from '../../service/bounded.ts';
import { WX_PREFIX, sidOfToken, skeyOf, wxsidOf } from './codec.ts';
import { sendJs, type WxCalls } from './wx-request.ts';

/** Options of the login routes. */
export interface WebwxLoginOptions {
  calls: WxCalls;
  /** Cookies get `Secure`. */
  isTls: boolean;
}

/**
 * The state this process last told a webwx client about each uuid, so its next poll is held while the login stays
 * there (the native poll's `state`): wechat4u sends `tip=0` from its first poll, so `tip` cannot say it. Another
 * gateway process that has not seen the uuid answers 201 once more, at once. Bounded: past it the oldest goes.
 */
const TOLD_MAX = 10_000;

/** `window.QRLogin.code = 200; window.QRLogin.uuid = "…";`, the spacing and `;` ItChat's regex needs. */
export function jsloginText(code: number, uuid: string): string {
  return `window.QRLogin.code = ${code}; window.QRLogin.uuid = "${uuid}";`;
}

/** A derived, never-validated token (`pass_ticket`, `webwx_data_ticket`): stable for a session, `[0-9a-f]`. */
export function derivedTicket(sid: string, purpose: string): string {
  return createHash('sha256').update(`${purpose}\n${sid}`).digest('hex').slice(0, 32);
}

function origin(req: FastifyRequest): string {
  return `${req.protocol}://${req.host}`;
}

/** Registers `/jslogin`, the login poll and `webwxnewloginpage`. */
export function registerWebwxLogin(scope: FastifyInstance, opts: WebwxLoginOptions): void {
  const { calls } = opts;
  const told = new Map<string, 'waiting' | 'scanned'>();
  const remember = (uuid: string, state: 'waiting' | 'scanned' | undefined) => {
    if (state === undefined) told.delete(uuid);
    else setBounded(told, uuid, state, TOLD_MAX);
  };

  // The asking device is a webwx client: a device id of its own per login, so two webwx logins of one user never
  // replace each other (a Synchat login replaces the same device's session), and its user agent as the name the
  // confirming device shows.
  scope.route({
    method: ['GET', 'POST'],
    url: '/jslogin',
    handler: async (req, reply) => {
      const agent = String(req.headers['user-agent'] ?? '').slice(0, 40);
      const deviceName = `WeChat web client${agent ? ` (${agent})` : ''}`;
      const r = await calls.call(req, '/api/qrlogin/new', { deviceId: `webwx-${randomBytes(8).toString('hex')}`, deviceName }, undefined);
      return sendJs(reply, r.ret === RET.OK ? jsloginText(200, r.uuid) : jsloginText(r.ret === RET.RATE_LIMITED ? 429 : 500, ''));
    },
  });

  scope.get(`${WX_PREFIX}/login`, (req, reply) => {
    const uuid = (req.query as { uuid?: unknown }).uuid;
    const state = typeof uuid === 'string' ? (told.get(uuid) ?? 'waiting') : 'waiting';
    const poll = calls.api.pollQrLogin({ uuid, timeout: LIMITS.defaultQrPollTimeoutMs, state }, { ip: req.ip, requestId: req.id });
    let isDone = false;
    reply.raw.once('close', () => {
      if (!isDone) poll.cancel();
    });
    void poll.reply.then((r) => {
      isDone = true;
      if (reply.raw.destroyed) return;
      const a = JSON.parse(r.body) as Record<string, any>;
      if (typeof uuid === 'string') remember(uuid, a.state === 'scanned' ? 'scanned' : a.state === 'waiting' ? 'waiting' : undefined);
      sendLoginPoll(reply, req, String(uuid), a);
    });
    return reply;
  });

  scope.get(`${WX_PREFIX}/webwxnewloginpage`, async (req, reply) => {
    const q = req.query as { ticket?: unknown };
    const sid = sidOfToken(q.ticket);
    const who = sid === undefined ? undefined : await calls.whoami(req, sid);
    reply.code(301).header('location', `${origin(req)}/`).header('content-type', 'text/xml; charset=utf-8').header('cache-control', 'no-store');
    if (!who || 'ret' in who) {
      // ItChat reports ret 1203 as "account limited"; wechat4u keeps no credentials and its init then fails.
      return reply.send('<error><ret>1203</ret><message>this login ticket is not valid: log in again</message></error>');
    }
    const passTicket = derivedTicket(sid!, 'pass_ticket');
    const attrs = `; Path=/; HttpOnly; SameSite=Lax${opts.isTls ? '; Secure' : ''}`;
    reply.header('set-cookie', [
      `wxuin=${who.uin}${attrs}`,
      `wxsid=${wxsidOf(sid!)}${attrs}`,
      `webwx_data_ticket=${derivedTicket(sid!, 'webwx_data_ticket')}${attrs}`,
      `webwx_auth_ticket=${derivedTicket(sid!, 'webwx_auth_ticket')}${attrs}`,
      `wxloadtime=${Math.floor(Date.now() / 1000)}${attrs}`,
      `mm_lang=zh_CN${attrs}`,
    ]);
    return reply.send(
      `<error><ret>0</ret><message></message><skey>${skeyOf(sid!)}</skey><wxsid>${wxsidOf(sid!)}</wxsid>` +
        `<wxuin>${who.uin}</wxuin><pass_ticket>${passTicket}</pass_ticket><isgrayscale>1</isgrayscale></error>`,
    );
  });
}

/**
 * One login poll's answer as webwx text: `window.code=408;` (still waiting: poll again), `201` (scanned), `200` with
 * `window.redirect_uri` (confirmed: its ticket is the new session's wxsid, exchanged at webwxnewloginpage for the
 * cookies), `400` (expired, collected, unknown or refused: start over). ItChat's regexes need exactly this spacing.
 */
function sendLoginPoll(reply: FastifyReply, req: FastifyRequest, uuid: string, a: Record<string, any>): void {
  if (a.ret !== RET.OK) return void sendJs(reply, 'window.code=400;');
  if (a.state === 'waiting') return void sendJs(reply, 'window.code=408;');
  if (a.state === 'scanned') return void sendJs(reply, "window.code=201;window.userAvatar = '';");
  if (a.state === 'confirmed' && typeof a.sid === 'string') {
    const scan = Math.floor(Date.now() / 1000);
    const uri = `${origin(req)}${WX_PREFIX}/webwxnewloginpage?ticket=${wxsidOf(a.sid)}&uuid=${uuid}&lang=zh_CN&scan=${scan}`;
    return void sendJs(reply, `window.code=200;\nwindow.redirect_uri="${uri}";`);
  }
  sendJs(reply, 'window.code=400;');
}

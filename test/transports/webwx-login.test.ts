// The WeChat-web login on Synchat's QR login, driven by hand (docs/webwx.md "Login"): the exact texts ItChat's
// regexes and wechat4u's eval read, the 408/201/200/400 long-poll, and webwxnewloginpage's 301 with XML and cookies.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sidOfToken, skeyOf } from '../../src/transports/webwx/codec.ts';
import { api, startServer, userDevice, type Device, type TestServer } from '../helpers/server.ts';

const WX = '/cgi-bin/mmwebwx-bin';

let srv: TestServer;
before(async () => {
  srv = await startServer();
});
after(async () => {
  await srv.stop();
});

async function text(path: string, init: RequestInit = {}): Promise<{ status: number; body: string; headers: Headers }> {
  const res = await fetch(srv.url + path, { redirect: 'manual', ...init });
  return { status: res.status, body: await res.text(), headers: res.headers };
}

async function newUuid(method = 'GET'): Promise<string> {
  const r = await text(`/jslogin?appid=wx782c26e4c19acffb&fun=new&lang=zh_CN&_=${Date.now()}`, { method });
  // ItChat's regex, spacing and trailing ';' included.
  const m = /^window\.QRLogin\.code = (\d+); window\.QRLogin\.uuid = "(\S+?)";$/.exec(r.body);
  assert.ok(m, r.body);
  assert.equal(m[1], '200');
  assert.match(m[2]!, /^[A-Za-z0-9_@]+$/);
  return m[2]!;
}

/** One login poll (held up to ~25 s server-side: the poll answers as soon as the state moves). */
function poll(uuid: string, tip = 1): Promise<string> {
  return text(`${WX}/login?loginicon=true&uuid=${uuid}&tip=${tip}&r=-1&_=1`).then((r) => r.body);
}

describe('webwx login', () => {
  let alice: Device;
  before(async () => {
    alice = await userDevice(srv.url, 'wl_alice');
  });

  it('walks jslogin → 201 on scan → 200 with a redirect_uri on confirm → webwxnewloginpage 301, XML and cookies', async () => {
    const uuid = await newUuid('POST');
    const scanned = poll(uuid, 0);
    assert.equal((await api(srv.url, '/api/qrlogin/scan', { uuid }, alice.sid)).body.ret, 0);
    assert.match(await scanned, /^window\.code=201;/);
    // The next poll is held while the login stays scanned; the confirm answers it.
    const confirmed = poll(uuid, 0);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal((await api(srv.url, '/api/qrlogin/confirm', { uuid }, alice.sid)).body.ret, 0);
    const body = await confirmed;
    assert.match(body, /^window\.code=200;\nwindow\.redirect_uri="\S+";$/);
    const uri = /window\.redirect_uri="(\S+)";/.exec(body)![1]!;
    assert.ok(uri.startsWith(`${srv.url}${WX}/webwxnewloginpage?ticket=`), uri);

    const page = await text(uri.slice(srv.url.length) + '&fun=new&version=v2');
    assert.equal(page.status, 301);
    assert.ok(page.headers.get('location'));
    const xml = (tag: string) => new RegExp(`<${tag}>(.*)</${tag}>`).exec(page.body)?.[1];
    assert.equal(xml('ret'), '0');
    assert.equal(xml('wxuin'), String(alice.uin));
    const wxsid = xml('wxsid')!;
    const skey = xml('skey')!;
    for (const t of [wxsid, skey, xml('pass_ticket')!]) assert.match(t, /^[A-Za-z0-9_@]+$/);
    assert.equal(skey, skeyOf(sidOfToken(wxsid)!));
    const cookies = page.headers.getSetCookie();
    for (const name of ['wxuin', 'wxsid', 'webwx_data_ticket', 'webwx_auth_ticket']) {
      // wechat4u's cookie regex needs a ';' after the value.
      assert.ok(cookies.some((c) => new RegExp(`^${name}=[^;]+;`).test(c)), `cookie ${name}: ${cookies.join(' | ')}`);
    }
    // The new session works, and is a device of alice's own, not her login's replacement.
    const init = await fetch(`${srv.url}${WX}/webwxinit`, { method: 'POST', body: JSON.stringify({ BaseRequest: { Uin: alice.uin, Sid: wxsid, Skey: skey, DeviceID: 'e1' } }) });
    assert.equal((await init.json()).BaseResponse.Ret, 0);
    const sessions = await api(srv.url, '/api/sessions', {}, alice.sid);
    assert.equal(sessions.body.sessions.length, 2);
    // The uuid logs in once: a poll after collection sees it expired.
    assert.equal(await poll(uuid), 'window.code=400;');
  });

  it('holds the poll ~25 s and answers 408 when nobody scans; 400 for a uuid that is not one', async () => {
    assert.equal(await poll(await newUuid()), 'window.code=408;');
    assert.equal(await poll('0123456789abcdef0123456789abcdef'), 'window.code=400;');
    assert.equal(await poll('not-a-uuid'), 'window.code=400;');
  });

  it('answers webwxnewloginpage with a bad ticket by 301 and ret 1203, without cookies', async () => {
    const page = await text(`${WX}/webwxnewloginpage?ticket=NoSuchTicket00000000&uuid=x&lang=zh_CN&scan=1`);
    assert.equal(page.status, 301);
    assert.match(page.body, /^<error><ret>1203<\/ret><message>[^<]+<\/message><\/error>$/);
    assert.equal(page.headers.getSetCookie().length, 0);
  });
});

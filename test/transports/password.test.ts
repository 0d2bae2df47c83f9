// `/api/password`, logout everywhere and the login throttles against a real server, over every transport:
// other sessions end with 1101 on TCP, WebSocket and a parked long-poll; the caller's session stays (issue 11).
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { OP } from '../../src/protocol/index.ts';
import { api, startServer, userDevice, type TestServer } from '../helpers/server.ts';
import { waitUntil } from '../helpers/wait.ts';
import { authedWire } from '../helpers/wire.ts';

let srv: TestServer;
before(async () => {
  srv = await startServer();
});
after(async () => {
  await srv.stop();
});

/** A login from a chosen loopback address (Linux routes all of 127/8 to lo), so throttles see distinct clients. */
function loginFrom(localAddress: string, body: object): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const payload = JSON.stringify(body);
    const req = request(
      { host: '127.0.0.1', port: srv.httpPort, path: '/api/login', method: 'POST', localAddress, headers: { 'content-type': 'application/json' } },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text) }));
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

describe('/api/password', () => {
  it('ends every other session with 1101 on TCP, WebSocket and long-poll; this one stays; only the new password works', async () => {
    const laptop = await userDevice(srv.url, 'pat', 'laptop');
    const phone = await userDevice(srv.url, 'pat', 'phone');
    const tablet = await userDevice(srv.url, 'pat', 'tablet');
    const browser = await userDevice(srv.url, 'pat', 'browser');
    const tcp = (await authedWire('tcp', srv, phone.sid, 0)).client;
    const ws = (await authedWire('ws', srv, tablet.sid, 0)).client;
    // The caller itself is on a long connection and changes the password through CALL.
    const own = (await authedWire('tcp', srv, laptop.sid, 0)).client;
    const parkedBefore = srv.parkedPolls;
    const poll = api(srv.url, `/api/synccheck?syncKey=${browser.syncKey}&timeout=30000`, undefined, browser.sid);
    await waitUntil(() => srv.parkedPolls > parkedBefore, 'the long-poll parks');

    const answer = await own.request(OP.CALL, { path: '/api/password', body: { oldPassword: 'password-pat', newPassword: 'a-new-pass-for-pat' } });
    assert.equal(answer.op, OP.CALL_RESP);
    assert.equal(answer.body.ret, 0, JSON.stringify(answer.body));

    for (const client of [tcp, ws]) {
      const e = await client.nextOp(OP.ERROR);
      assert.equal(e.body.ret, 1101, client.transport);
      await client.waitClosed();
    }
    const polled = await poll;
    assert.equal(polled.status, 401);
    assert.equal(polled.body.ret, 1101);
    assert.equal((await api(srv.url, '/api/sync', { syncKey: 0 }, phone.sid)).body.ret, 1101);

    // This session goes on, on its connection and over HTTP.
    assert.equal((await own.request(OP.HEARTBEAT)).op, OP.HEARTBEAT_ACK);
    assert.equal((await api(srv.url, '/api/sync', { syncKey: 0 }, laptop.sid)).body.ret, 0);
    own.close();

    assert.equal((await api(srv.url, '/api/login', { username: 'pat', password: 'password-pat', deviceId: 'x' })).body.ret, 4, 'the old password stops working');
    assert.equal((await api(srv.url, '/api/login', { username: 'pat', password: 'a-new-pass-for-pat', deviceId: 'x' })).body.ret, 0);
  });

  it('refuses a wrong old password (ret 4) and a common new one (ret 1), and ends nothing', async () => {
    const a = await userDevice(srv.url, 'quinn', 'one');
    const b = await userDevice(srv.url, 'quinn', 'two');
    const wrong = await api(srv.url, '/api/password', { oldPassword: 'not-my-password', newPassword: 'a-new-pass-for-q' }, a.sid);
    assert.deepEqual([wrong.status, wrong.body.ret], [403, 4]);
    const common = await api(srv.url, '/api/password', { oldPassword: 'password-quinn', newPassword: 'password123' }, a.sid);
    assert.deepEqual([common.status, common.body.ret], [400, 1]);
    assert.match(common.body.errMsg, /common/);
    const short = await api(srv.url, '/api/password', { oldPassword: 'password-quinn', newPassword: 'short' }, a.sid);
    assert.equal(short.body.ret, 1);
    assert.equal((await api(srv.url, '/api/sync', { syncKey: 0 }, b.sid)).body.ret, 0);
    assert.equal((await api(srv.url, '/api/password', { oldPassword: 'password-quinn', newPassword: 'a-new-pass-for-q' })).body.ret, 1100);
  });
});

describe('logout everywhere', () => {
  it('ends every session of the user, this one included, on every transport', async () => {
    const a = await userDevice(srv.url, 'rory', 'one');
    const b = await userDevice(srv.url, 'rory', 'two');
    const other = await userDevice(srv.url, 'rory_other', 'one');
    const mine = (await authedWire('ws', srv, a.sid, 0)).client;
    const theirs = (await authedWire('tcp', srv, b.sid, 0)).client;
    mine.send(OP.CALL, { path: '/api/logout', body: { everywhere: true } });
    assert.equal((await mine.nextOp(OP.ERROR)).body.ret, 1100, 'this connection ends as logged out');
    assert.equal((await theirs.nextOp(OP.ERROR)).body.ret, 1101, 'the others as revoked');
    await Promise.all([mine.waitClosed(), theirs.waitClosed()]);
    assert.equal((await api(srv.url, '/api/sync', { syncKey: 0 }, a.sid)).body.ret, 1100);
    assert.equal((await api(srv.url, '/api/sync', { syncKey: 0 }, b.sid)).body.ret, 1101);
    assert.equal((await api(srv.url, '/api/sync', { syncKey: 0 }, other.sid)).body.ret, 0, 'another user is untouched');
    assert.equal((await api(srv.url, '/api/logout', { everywhere: 'yes' }, other.sid)).body.ret, 1, 'everywhere is a boolean');
  });
});

describe('login throttles over HTTP', () => {
  it("does not stop the owner at one address after an attacker's 50 failures at another", async () => {
    await userDevice(srv.url, 'sasha');
    const rets = new Set<number>();
    for (let i = 0; i < 50; i++) rets.add((await loginFrom('127.0.0.2', { username: 'sasha', password: `guess-${i}-guess`, deviceId: 'x' })).body.ret);
    assert.deepEqual([...rets].sort(), [1205, 4], 'the attacker got wrong-password answers, then waits');
    const owner = await loginFrom('127.0.0.3', { username: 'sasha', password: 'password-sasha', deviceId: 'mine' });
    assert.equal(owner.body.ret, 0, JSON.stringify(owner.body));
    assert.equal((await loginFrom('127.0.0.2', { username: 'sasha', password: 'password-sasha', deviceId: 'x' })).body.ret, 1205);
  });
});

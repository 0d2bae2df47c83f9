// Every HTTP row in scope of the core issue, success and failure, against a real server on an ephemeral port.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { api, befriend, startServer, syncAll, userDevice, type TestServer } from '../helpers/server.ts';

let srv: TestServer;
before(async () => {
  srv = await startServer();
});
after(async () => {
  await srv.stop();
});

describe('register and login', () => {
  it('registers a case-folded username and logs in with any case', async () => {
    const r = await api(srv.url, '/api/register', { username: 'Carol_1', password: 'secret-pass', displayName: 'Carol' });
    assert.equal(r.status, 200);
    assert.equal(r.body.ret, 0);
    assert.ok(Number.isInteger(r.body.uin) && r.body.uin > 0);
    const l = await api(srv.url, '/api/login', { username: 'CAROL_1', password: 'secret-pass', deviceId: 'laptop' });
    assert.equal(l.body.ret, 0);
    assert.equal(l.body.username, 'carol_1');
    assert.equal(l.body.displayName, 'Carol');
    assert.equal(l.body.syncKey, 0);
    assert.match(l.body.epoch, /^[0-9a-f]{16}$/);
    assert.ok(Buffer.from(l.body.sid, 'base64url').length >= 16, 'sid carries at least 128 bits');
  });

  it('refuses a taken username with ret 6', async () => {
    await api(srv.url, '/api/register', { username: 'dave', password: 'secret-pass', displayName: 'Dave' });
    const r = await api(srv.url, '/api/register', { username: 'DAVE', password: 'secret-pass', displayName: 'Dave 2' });
    assert.equal(r.status, 409);
    assert.equal(r.body.ret, 6);
  });

  it('validates register input with precise errors', async () => {
    const cases = [
      { username: 'ab', password: 'secret-pass', displayName: 'x' },
      { username: 'bad name', password: 'secret-pass', displayName: 'x' },
      { username: 'okname', password: 'short', displayName: 'x' },
      { username: 'okname', password: 'secret-pass', displayName: '' },
      { username: 'okname', password: 'secret-pass' },
      { username: 'okname', password: 'secret-pass', displayName: 'x', extra: 1 },
      { username: 12345, password: 'secret-pass', displayName: 'x' },
    ];
    for (const body of cases) {
      const r = await api(srv.url, '/api/register', body);
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.equal(r.body.ret, 1);
      assert.equal(typeof r.body.errMsg, 'string');
    }
  });

  it('answers a wrong password and an unknown user alike with ret 4', async () => {
    await userDevice(srv.url, 'erin');
    const a = await api(srv.url, '/api/login', { username: 'erin', password: 'wrong-password', deviceId: 'd' });
    const b = await api(srv.url, '/api/login', { username: 'nobody_here', password: 'wrong-password', deviceId: 'd' });
    assert.equal(a.status, 403);
    assert.equal(a.body.ret, 4);
    assert.deepEqual(a.body, b.body);
  });

  it('makes repeated failed logins of a name from one address wait, with ret 1205 and Retry-After', async () => {
    await userDevice(srv.url, 'frank');
    const answers = [];
    for (let i = 0; i < 6; i++) answers.push(await api(srv.url, '/api/login', { username: 'frank', password: 'nope-nope', deviceId: 'd' }));
    assert.deepEqual(answers.map((a) => a.body.ret), [4, 4, 4, 4, 4, 4], 'five free tries, and the sixth is checked');
    // The sixth failure makes this name wait a second from this address (two, if a second passed meanwhile).
    const waited = await api(srv.url, '/api/login', { username: 'frank', password: 'nope-nope', deviceId: 'd' });
    const limited = waited.body.ret === 1205 ? waited : await api(srv.url, '/api/login', { username: 'frank', password: 'nope-nope', deviceId: 'd' });
    assert.equal(limited.status, 429);
    assert.equal(limited.body.ret, 1205);
    assert.ok(limited.body.retryAfterSec >= 1 && limited.body.retryAfterSec <= 2);
    assert.equal(Number(limited.headers.get('retry-after')), limited.body.retryAfterSec);
    // Even the right password waits until then (from this address).
    const ok = await api(srv.url, '/api/login', { username: 'frank', password: 'password-frank', deviceId: 'd' });
    assert.equal(ok.body.ret, 1205);
  });

  it('logout ends the session: later calls get ret 1100', async () => {
    const d = await userDevice(srv.url, 'gina');
    assert.equal((await api(srv.url, '/api/logout', {}, d.sid)).body.ret, 0);
    const r = await api(srv.url, '/api/sync', { syncKey: 0 }, d.sid);
    assert.equal(r.status, 401);
    assert.equal(r.body.ret, 1100);
  });

  it('a second login of the same device replaces the first (ret 1101)', async () => {
    const first = await userDevice(srv.url, 'hank', 'phone');
    const second = await userDevice(srv.url, 'hank', 'phone');
    assert.equal((await api(srv.url, '/api/sync', { syncKey: 0 }, first.sid)).body.ret, 1101);
    assert.equal((await api(srv.url, '/api/sync', { syncKey: 0 }, second.sid)).body.ret, 0);
  });

  it('lists sessions and revokes another device', async () => {
    const a = await userDevice(srv.url, 'iris', 'laptop');
    const b = await userDevice(srv.url, 'iris', 'phone');
    const list = await api(srv.url, '/api/sessions', {}, a.sid);
    assert.equal(list.body.sessions.length, 2);
    const phone = list.body.sessions.find((s: any) => s.deviceId === 'phone');
    assert.equal(phone.isCurrent, false);
    assert.equal((await api(srv.url, '/api/sessions/revoke', { sessionId: phone.sessionId }, a.sid)).body.ret, 0);
    assert.equal((await api(srv.url, '/api/sync', { syncKey: 0 }, b.sid)).body.ret, 1101);
    assert.equal((await api(srv.url, '/api/sessions/revoke', { sessionId: phone.sessionId }, a.sid)).body.ret, 3);
  });

  it('refuses calls without a session with ret 1100', async () => {
    const r = await api(srv.url, '/api/sync', { syncKey: 0 });
    assert.equal(r.status, 401);
    assert.equal(r.body.ret, 1100);
    const bad = await api(srv.url, '/api/sync', { syncKey: 0 }, 'not-a-token');
    assert.equal(bad.body.ret, 1100);
  });
});

describe('edges', () => {
  it('answers bad JSON, wrong content type, oversize bodies and unknown routes with JSON errors', async () => {
    const bad = await fetch(srv.url + '/api/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{nope' });
    assert.equal(bad.status, 400);
    assert.equal((await bad.json()).ret, 1);
    const text = await fetch(srv.url + '/api/login', { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'x' });
    assert.equal(text.status, 400);
    assert.equal((await text.json()).ret, 1);
    const huge = await fetch(srv.url + '/api/login', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'x'.repeat(200_000) }),
    });
    assert.equal(huge.status, 413);
    assert.equal((await huge.json()).ret, 5);
    const array = await api(srv.url, '/api/login', [1, 2]);
    assert.equal(array.body.ret, 1);
    const missing = await api(srv.url, '/api/nothing', {});
    assert.equal(missing.status, 404);
    assert.equal(missing.body.ret, 3);
  });

  it('lists the gateways', async () => {
    const r = await api(srv.url, '/api/gateways');
    assert.equal(r.body.ret, 0);
    assert.ok(r.body.gateways.some((g: any) => g.transport === 'http' && g.url === srv.url));
  });
});

describe('contacts', () => {
  it('request → contactRequest entry; accept → contact entries on both sides', async () => {
    const a = await userDevice(srv.url, 'jack');
    const b = await userDevice(srv.url, 'kate');
    assert.equal((await api(srv.url, '/api/contacts/request', { username: 'Kate', note: 'from work' }, a.sid)).body.ret, 0);
    const kb = await syncAll(srv.url, b.sid);
    assert.deepEqual(kb.entries.map((e) => [e.kind, e.from, e.note]), [['contactRequest', 'jack', 'from work']]);
    assert.equal((await api(srv.url, '/api/contacts/accept', { username: 'jack' }, b.sid)).body.ret, 0);
    const ja = await syncAll(srv.url, a.sid);
    assert.deepEqual(ja.entries.map((e) => [e.kind, e.username]), [['contact', 'kate']]);
    const kb2 = await syncAll(srv.url, b.sid, kb.syncKey);
    assert.deepEqual(kb2.entries.map((e) => [e.kind, e.username, e.displayName]), [['contact', 'jack', 'JACK']]);
    const list = await api(srv.url, '/api/contacts/list', {}, a.sid);
    assert.deepEqual(list.body.contacts.map((c: any) => c.username), ['kate']);
  });

  it('refuses unknown users (3), yourself (1), existing contacts (6) and accepting without a request (3)', async () => {
    const a = await userDevice(srv.url, 'liam');
    const b = await userDevice(srv.url, 'mona');
    assert.equal((await api(srv.url, '/api/contacts/request', { username: 'ghost_user' }, a.sid)).body.ret, 3);
    assert.equal((await api(srv.url, '/api/contacts/request', { username: 'liam' }, a.sid)).body.ret, 1);
    assert.equal((await api(srv.url, '/api/contacts/accept', { username: 'mona' }, a.sid)).body.ret, 3);
    await befriend(srv.url, a, b);
    assert.equal((await api(srv.url, '/api/contacts/request', { username: 'mona' }, a.sid)).body.ret, 6);
  });

  it('remove ends the contact on both sides and forbids messaging', async () => {
    const a = await userDevice(srv.url, 'nina');
    const b = await userDevice(srv.url, 'omar');
    await befriend(srv.url, a, b);
    assert.equal((await api(srv.url, '/api/contacts/remove', { username: 'omar' }, a.sid)).body.ret, 0);
    const ob = await syncAll(srv.url, b.sid);
    assert.deepEqual(ob.entries.at(-1), { ...ob.entries.at(-1), kind: 'contact', username: 'nina', removed: true });
    const s = await api(srv.url, '/api/sendmsg', { clientMsgId: 'c1', to: 'omar', type: 1, content: 'hi' }, a.sid);
    assert.equal(s.status, 403);
    assert.equal(s.body.ret, 4);
    assert.equal((await api(srv.url, '/api/contacts/remove', { username: 'omar' }, a.sid)).body.ret, 3);
  });

  it('looks up a user by name', async () => {
    const a = await userDevice(srv.url, 'pete');
    assert.deepEqual((await api(srv.url, '/api/users/lookup', { username: 'PETE' }, a.sid)).body, { ret: 0, username: 'pete', displayName: 'PETE' });
    assert.equal((await api(srv.url, '/api/users/lookup', { username: 'nobody_x' }, a.sid)).body.ret, 3);
  });
});

describe('messages', () => {
  it('sends to a contact; both logs get it; a duplicate returns the first answer and appends nothing', async () => {
    const a = await userDevice(srv.url, 'quin');
    const b = await userDevice(srv.url, 'rosa');
    await befriend(srv.url, a, b);
    const before = await syncAll(srv.url, a.sid);
    const s1 = await api(srv.url, '/api/sendmsg', { clientMsgId: 'm-1', to: 'rosa', type: 1, content: 'hello 👋' }, a.sid);
    assert.equal(s1.body.ret, 0);
    assert.equal(s1.body.duplicate, false);
    assert.match(s1.body.msgId, /^[1-9][0-9]*$/);
    assert.equal(s1.body.seq, before.syncKey + 1);
    const s2 = await api(srv.url, '/api/sendmsg', { clientMsgId: 'm-1', to: 'rosa', type: 1, content: 'changed' }, a.sid);
    assert.deepEqual(s2.body, { ...s1.body, duplicate: true });
    const mine = await syncAll(srv.url, a.sid, before.syncKey);
    assert.equal(mine.entries.length, 1);
    assert.deepEqual(mine.entries[0], {
      seq: s1.body.seq, kind: 'msg', msgId: s1.body.msgId, clientMsgId: 'm-1', from: 'quin', to: 'rosa', peer: 'rosa',
      type: 1, content: 'hello 👋', createTime: s1.body.createTime,
    });
    const theirs = (await syncAll(srv.url, b.sid)).entries.filter((e) => e.kind === 'msg');
    assert.equal(theirs.length, 1);
    assert.equal(theirs[0].peer, 'quin');
    assert.equal(theirs[0].msgId, s1.body.msgId);
  });

  it('refuses strangers (4), system messages (1), oversize text (5), media types without mediaId (1)', async () => {
    const a = await userDevice(srv.url, 'sam');
    const b = await userDevice(srv.url, 'tess');
    const send = (body: object) => api(srv.url, '/api/sendmsg', { clientMsgId: 'x' + Math.random(), to: 'tess', type: 1, content: 'x', ...body }, a.sid);
    assert.equal((await send({})).body.ret, 4);
    await befriend(srv.url, a, b);
    assert.equal((await send({ type: 10000 })).body.ret, 1);
    const big = await send({ content: 'é'.repeat(9000) });
    assert.equal(big.body.ret, 5);
    assert.equal(big.status, 413);
    assert.equal((await send({ type: 3 })).body.ret, 1);
    assert.equal((await send({ type: 2 })).body.ret, 1);
    assert.equal((await send({ to: '@@999' })).body.ret, 4);
    assert.equal((await send({ content: '' })).body.ret, 1);
  });

  it('read: own other devices get a read marker and the peer gets a receipt; markers only move forward', async () => {
    const a = await userDevice(srv.url, 'uma');
    const b = await userDevice(srv.url, 'vic');
    const b2 = await userDevice(srv.url, 'vic', 'tablet');
    await befriend(srv.url, a, b);
    const s = await api(srv.url, '/api/sendmsg', { clientMsgId: 'r1', to: 'vic', type: 1, content: 'read me' }, a.sid);
    const aKey = (await syncAll(srv.url, a.sid)).syncKey;
    const b2Key = (await syncAll(srv.url, b2.sid)).syncKey;
    assert.equal((await api(srv.url, '/api/read', { peer: 'uma', msgId: s.body.msgId }, b.sid)).body.ret, 0);
    const receipt = (await syncAll(srv.url, a.sid, aKey)).entries;
    assert.deepEqual(receipt.map((e) => [e.kind, e.peer, e.msgId, e.by]), [['read', 'vic', s.body.msgId, 'vic']]);
    const marker = (await syncAll(srv.url, b2.sid, b2Key)).entries;
    assert.deepEqual(marker.map((e) => [e.kind, e.peer, e.msgId, e.by]), [['read', 'uma', s.body.msgId, 'vic']]);
    // Reading the same message again changes nothing.
    assert.equal((await api(srv.url, '/api/read', { peer: 'uma', msgId: s.body.msgId }, b.sid)).body.ret, 0);
    assert.equal((await syncAll(srv.url, a.sid, aKey)).entries.length, 1);
    assert.equal((await api(srv.url, '/api/read', { peer: 'uma', msgId: '999999' }, b.sid)).body.ret, 3);
  });

  it('revoke: sender only, every participant gets a recall entry', async () => {
    const a = await userDevice(srv.url, 'walt');
    const b = await userDevice(srv.url, 'xena');
    await befriend(srv.url, a, b);
    const s = await api(srv.url, '/api/sendmsg', { clientMsgId: 'v1', to: 'xena', type: 1, content: 'oops' }, a.sid);
    assert.equal((await api(srv.url, '/api/revoke', { msgId: s.body.msgId }, b.sid)).body.ret, 3, 'someone else’s message: as if unknown');
    assert.equal((await api(srv.url, '/api/revoke', { msgId: s.body.msgId }, a.sid)).body.ret, 0);
    const xb = (await syncAll(srv.url, b.sid)).entries.at(-1);
    assert.deepEqual([xb.kind, xb.msgId, xb.peer], ['revoke', s.body.msgId, 'walt']);
    const wa = (await syncAll(srv.url, a.sid)).entries.at(-1);
    assert.deepEqual([wa.kind, wa.msgId, wa.peer], ['revoke', s.body.msgId, 'xena']);
    assert.equal((await api(srv.url, '/api/revoke', { msgId: '123456789' }, a.sid)).body.ret, 3);
  });
});

describe('groups', () => {
  it('create, message, add, remove, leave, rename', async () => {
    const [a, b, c, d] = await Promise.all(['yara', 'zack', 'abby', 'bill'].map((u) => userDevice(srv.url, u)));
    await befriend(srv.url, a, b);
    await befriend(srv.url, a, c);
    await befriend(srv.url, a, d);
    assert.equal((await api(srv.url, '/api/groups/create', { name: 'Team', members: ['bill', 'ghost_x'] }, a.sid)).body.ret, 3);
    assert.equal((await api(srv.url, '/api/groups/create', { name: 'Team', members: ['zack'] }, b.sid)).body.ret, 0);
    const g = await api(srv.url, '/api/groups/create', { name: 'Team', members: ['zack', 'abby'] }, a.sid);
    assert.equal(g.body.ret, 0);
    const groupId = g.body.groupId;
    assert.match(groupId, /^@@[0-9]+$/);
    const zb = (await syncAll(srv.url, b.sid)).entries.filter((e) => e.kind === 'group' && e.groupId === groupId);
    assert.deepEqual(zb.at(-1).members, ['yara', 'zack', 'abby']);
    const s = await api(srv.url, '/api/sendmsg', { clientMsgId: 'g1', to: groupId, type: 1, content: 'hi team' }, b.sid);
    assert.equal(s.body.ret, 0);
    for (const dev of [a, b, c]) {
      const m = (await syncAll(srv.url, dev.sid)).entries.filter((e) => e.kind === 'msg' && e.to === groupId);
      assert.deepEqual(m.map((e) => [e.from, e.peer, e.content]), [['zack', groupId, 'hi team']]);
    }
    // Non-owner may not add; bill is not a member, so he may not send.
    assert.equal((await api(srv.url, '/api/groups/members', { groupId, add: ['bill'] }, b.sid)).body.ret, 4);
    assert.equal((await api(srv.url, '/api/sendmsg', { clientMsgId: 'g2', to: groupId, type: 1, content: 'x' }, d.sid)).body.ret, 4);
    assert.equal((await api(srv.url, '/api/groups/members', { groupId, add: ['bill'], remove: ['abby'] }, a.sid)).body.ret, 0);
    const abby = (await syncAll(srv.url, c.sid)).entries.filter((e) => e.kind === 'group').at(-1);
    assert.equal(abby.removed, true);
    assert.equal((await api(srv.url, '/api/sendmsg', { clientMsgId: 'g3', to: groupId, type: 1, content: 'x' }, c.sid)).body.ret, 4);
    // Leaving yourself is always allowed.
    assert.equal((await api(srv.url, '/api/groups/members', { groupId, remove: ['zack'] }, b.sid)).body.ret, 0);
    assert.equal((await api(srv.url, '/api/groups/rename', { groupId, name: 'Crew' }, d.sid)).body.ret, 0);
    const last = (await syncAll(srv.url, a.sid)).entries.filter((e) => e.kind === 'group').at(-1);
    assert.deepEqual([last.name, last.members], ['Crew', ['yara', 'bill']]);
  });

  it('caps a group at 500 members', async () => {
    const a = await userDevice(srv.url, 'cody');
    const members = Array.from({ length: 501 }, (_, i) => `m${i}_cap`);
    const r = await api(srv.url, '/api/groups/create', { name: 'Big', members }, a.sid);
    assert.equal(r.body.ret, 1);
  });
});

describe('sync', () => {
  it("pages with continueFlag and clamps limit; refuses a key ahead of the log and renews the log's epoch once", async () => {
    const a = await userDevice(srv.url, 'dora');
    const b = await userDevice(srv.url, 'ezra');
    await befriend(srv.url, a, b);
    for (let i = 0; i < 25; i++) await api(srv.url, '/api/sendmsg', { clientMsgId: 'p' + i, to: 'ezra', type: 1, content: 'n' + i }, a.sid);
    const p1 = await api(srv.url, '/api/sync', { syncKey: 0, limit: 10 }, b.sid);
    assert.equal(p1.body.entries.length, 10);
    assert.equal(p1.body.continueFlag, true);
    assert.equal(p1.body.syncKey, p1.body.entries.at(-1).seq);
    const all = await syncAll(srv.url, b.sid, 0, 7);
    assert.equal(all.entries.length, 27); // request + contact + 25 messages
    assert.deepEqual(all.entries.map((e) => e.seq), [...all.entries.map((e) => e.seq)].sort((x, y) => x - y));
    const end = await api(srv.url, '/api/sync', { syncKey: all.syncKey }, b.sid);
    assert.deepEqual([end.body.entries, end.body.syncKey, end.body.continueFlag], [[], all.syncKey, false]);
    const ahead = await api(srv.url, '/api/sync', { syncKey: all.syncKey + 100 }, b.sid);
    assert.equal(ahead.body.ret, 1);
    // Proof that the log lost entries (docs/protocol.md "Epoch"): the epoch is renewed, once, for every device.
    assert.notEqual(ahead.body.epoch, b.epoch);
    assert.equal((await api(srv.url, '/api/sync', { syncKey: all.syncKey + 100 }, b.sid)).body.epoch, ahead.body.epoch);
    assert.equal((await api(srv.url, '/api/sync', { syncKey: 0 }, b.sid)).body.epoch, ahead.body.epoch);
    assert.equal((await userDevice(srv.url, 'ezra', 'other')).epoch, ahead.body.epoch);
    assert.equal((await api(srv.url, '/api/sync', { syncKey: -1 }, b.sid)).body.ret, 1);
  });
});

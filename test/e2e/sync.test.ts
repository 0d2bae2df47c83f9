// Multi-device sync, acknowledgement, and long-poll behaviour against a real server.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { api, befriend, startServer, syncAll, userDevice, type TestServer } from '../helpers/server.ts';
import { waitUntil } from '../helpers/wait.ts';

/** How long a poll may take to park (or unpark) before the test fails instead of hanging (not a timing assertion). */
const PARK_GUARD_MS = 10_000;

let srv: TestServer;
before(async () => {
  srv = await startServer();
});
after(async () => {
  await srv.stop();
});

describe('multi-device', () => {
  it('two devices of one user both receive everything, including what the other device sent', async () => {
    const phone = await userDevice(srv.url, 'md_alice', 'phone');
    const laptop = await userDevice(srv.url, 'md_alice', 'laptop');
    const bob = await userDevice(srv.url, 'md_bob');
    await befriend(srv.url, phone, bob);
    await api(srv.url, '/api/sendmsg', { clientMsgId: 'p1', to: 'md_bob', type: 1, content: 'from phone' }, phone.sid);
    await api(srv.url, '/api/sendmsg', { clientMsgId: 'l1', to: 'md_bob', type: 1, content: 'from laptop' }, laptop.sid);
    await api(srv.url, '/api/sendmsg', { clientMsgId: 'b1', to: 'md_alice', type: 1, content: 'from bob' }, bob.sid);
    const a = await syncAll(srv.url, phone.sid);
    const b = await syncAll(srv.url, laptop.sid);
    assert.deepEqual(a, b, 'both devices hold the same log');
    const msgs = a.entries.filter((e) => e.kind === 'msg').map((e) => [e.from, e.peer, e.content]);
    assert.deepEqual(msgs, [
      ['md_alice', 'md_bob', 'from phone'],
      ['md_alice', 'md_bob', 'from laptop'],
      ['md_bob', 'md_bob', 'from bob'],
    ]);
  });

  it('records each device\'s acknowledged key as it presents keys', async () => {
    const devs = await Promise.all(['d1', 'd2', 'd3'].map((d) => userDevice(srv.url, 'ack_carol', d)));
    const dave = await userDevice(srv.url, 'ack_dave');
    await befriend(srv.url, devs[0]!, dave);
    for (let i = 0; i < 6; i++) await api(srv.url, '/api/sendmsg', { clientMsgId: 'a' + i, to: 'ack_carol', type: 1, content: 'n' + i }, dave.sid);
    const { entries } = await syncAll(srv.url, devs[0]!.sid);
    const keys = [entries[1].seq, entries[4].seq, entries.at(-1).seq];
    // Each device presents a different key; presenting a key acknowledges everything up to it.
    await api(srv.url, '/api/sync', { syncKey: keys[0] }, devs[0]!.sid);
    await api(srv.url, '/api/sync', { syncKey: keys[1] }, devs[1]!.sid);
    await api(srv.url, `/api/synccheck?syncKey=${keys[2]}&timeout=0`, undefined, devs[2]!.sid);
    const list = await api(srv.url, '/api/sessions', {}, devs[0]!.sid);
    const acked = Object.fromEntries(list.body.sessions.map((s: any) => [s.deviceId, s.ackedKey]));
    assert.deepEqual(acked, { d1: keys[0], d2: keys[1], d3: keys[2] });
    // Keys only grow: presenting an older key does not move an acknowledgement back.
    await api(srv.url, '/api/sync', { syncKey: 0 }, devs[1]!.sid);
    const again = await api(srv.url, '/api/sessions', {}, devs[0]!.sid);
    assert.equal(again.body.sessions.find((s: any) => s.deviceId === 'd2').ackedKey, keys[1]);
  });
});

describe('synccheck long-poll', () => {
  it('answers at once when entries after the key exist', async () => {
    const a = await userDevice(srv.url, 'lp_erin');
    const b = await userDevice(srv.url, 'lp_finn');
    await befriend(srv.url, a, b);
    const r = await api(srv.url, '/api/synccheck?syncKey=0&timeout=30000', undefined, b.sid);
    assert.equal(r.body.ret, 0);
    assert.equal(r.body.selector, 2);
    assert.equal(r.body.syncKey, 2);
    assert.equal(r.body.epoch, b.epoch);
  });

  it('wakes a parked synccheck when a message for its user commits', async () => {
    const a = await userDevice(srv.url, 'lp_gail');
    const b = await userDevice(srv.url, 'lp_hugo');
    await befriend(srv.url, a, b);
    const key = (await syncAll(srv.url, b.sid)).syncKey;
    const poll = api(srv.url, `/api/synccheck?syncKey=${key}&timeout=60000`, undefined, b.sid);
    await waitUntil(() => srv.parkedPolls > 0, 'the poll parks', PARK_GUARD_MS);
    await api(srv.url, '/api/sendmsg', { clientMsgId: 'w1', to: 'lp_hugo', type: 1, content: 'wake up' }, a.sid);
    const r = await poll;
    assert.deepEqual([r.body.ret, r.body.selector, r.body.syncKey], [0, 1, key + 1]);
  });

  it('honours timeout with selector 0', async () => {
    const a = await userDevice(srv.url, 'lp_ivan');
    const r = await api(srv.url, '/api/synccheck?syncKey=0&timeout=200', undefined, a.sid);
    assert.deepEqual(r.body, { ret: 0, selector: 0, syncKey: 0, epoch: a.epoch });
  });

  it('a new poll from the same device ends the previous one', async () => {
    const a = await userDevice(srv.url, 'lp_jane');
    const first = api(srv.url, '/api/synccheck?syncKey=0&timeout=60000', undefined, a.sid);
    await waitUntil(() => srv.parkedPolls > 0, 'the poll parks', PARK_GUARD_MS);
    const second = api(srv.url, '/api/synccheck?syncKey=0&timeout=300', undefined, a.sid);
    assert.deepEqual((await first).body, { ret: 0, selector: 0, syncKey: 0, epoch: a.epoch });
    assert.equal((await second).body.ret, 0);
  });

  it('ends a parked poll with ret 1100 when its session logs out, and validates its query', async () => {
    const a = await userDevice(srv.url, 'lp_kyle');
    const poll = api(srv.url, '/api/synccheck?syncKey=0&timeout=60000', undefined, a.sid);
    await waitUntil(() => srv.parkedPolls > 0, 'the poll parks', PARK_GUARD_MS);
    await api(srv.url, '/api/logout', {}, a.sid);
    assert.equal((await poll).body.ret, 1100);
    const b = await userDevice(srv.url, 'lp_lena');
    for (const q of ['syncKey=abc', 'syncKey=-1', '', 'syncKey=1&timeout=-5', 'syncKey=0&bogus=1']) {
      const r = await api(srv.url, `/api/synccheck?${q}`, undefined, b.sid);
      assert.equal(r.body.ret, 1, q);
    }
    const ahead = await api(srv.url, '/api/synccheck?syncKey=50&timeout=0', undefined, b.sid);
    assert.equal(ahead.body.ret, 1);
    assert.equal((await api(srv.url, '/api/synccheck?syncKey=0', undefined, 'bad')).body.ret, 1100);
  });

  it('unparks a poll whose client goes away', async () => {
    const a = await userDevice(srv.url, 'lp_mara');
    const ctrl = new AbortController();
    const p = fetch(`${srv.url}/api/synccheck?syncKey=0&timeout=60000`, { headers: { authorization: `Bearer ${a.sid}` }, signal: ctrl.signal }).catch(() => 'aborted');
    await waitUntil(() => srv.parkedPolls > 0, 'the poll parks', PARK_GUARD_MS);
    ctrl.abort();
    assert.equal(await p, 'aborted');
    await waitUntil(() => srv.parkedPolls === 0, 'the abandoned poll is unparked', PARK_GUARD_MS);
  });
});

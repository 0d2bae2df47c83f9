// Abuse of other users' logs (issue 11), over a real server: one pending contact request per pair, blocking
// (requests, direct and group messages, receipts, profile changes and group adds stop reaching the blocker, across a
// restart, until unblocked), shown names refused with control / bidi / invisible-only characters, one recall answer
// for someone else's message and an unknown one, the group cap counting the creator, and the per-user write rates.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { LIMITS } from '../../src/protocol/index.ts';
import { WRITE_RATES } from '../../src/service/rate-limit.ts';
import type { Config } from '../../src/server/config.ts';
import { api, befriend, startServer, syncAll, userDevice, type Device, type TestServer } from '../helpers/server.ts';

/** Entries of `d`'s log after `key` (all of them by default). */
async function logOf(server: TestServer, d: Device, key = 0): Promise<any[]> {
  return (await syncAll(server.url, d.sid, key)).entries;
}

/** The head of `d`'s log now. */
async function headOf(server: TestServer, d: Device): Promise<number> {
  return (await syncAll(server.url, d.sid)).syncKey;
}

/** A call that must succeed; returns its body. */
async function ok(server: TestServer, path: string, body: unknown, d: Device): Promise<any> {
  const r = await api(server.url, path, body, d.sid);
  assert.equal(r.body.ret, 0, `${path} ${JSON.stringify(body)}: ${JSON.stringify(r.body)}`);
  return r.body;
}

/** A server for the enclosing describe: started before its tests, stopped after them. */
function suiteServer(overrides: Partial<Config> = {}): { srv: TestServer } {
  const box = {} as { srv: TestServer };
  before(async () => {
    box.srv = await startServer(overrides);
  });
  after(() => box.srv.stop());
  return box;
}

describe('contact requests and blocking', () => {
  const suite = suiteServer();

  it('appends one entry for 30 repeated requests, and a request back accepts', async () => {
    const a = await userDevice(suite.srv.url, 'rep_a');
    const b = await userDevice(suite.srv.url, 'rep_b');
    const answers = await Promise.all(Array.from({ length: 30 }, (_, i) => api(suite.srv.url, '/api/contacts/request', { username: 'rep_b', note: `hi ${i}` }, a.sid)));
    assert.deepEqual(new Set(answers.map((r) => r.body.ret)), new Set([0]), 'every repeat answers as a success');
    const requests = (await logOf(suite.srv, b)).filter((e) => e.kind === 'contactRequest');
    assert.equal(requests.length, 1, 'one entry in the target’s log');
    const list = await ok(suite.srv, '/api/contacts/list', {}, b);
    assert.deepEqual(list.incoming.map((c: any) => c.username), ['rep_a']);
    await ok(suite.srv, '/api/contacts/request', { username: 'rep_a' }, b);
    assert.deepEqual((await ok(suite.srv, '/api/contacts/list', {}, a)).contacts.map((c: any) => c.username), ['rep_b'], 'asking back accepted');
  });

  it('keeps everything the blocked user does out of the blocker’s log, across a restart, until unblocked', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'synchat-block-'));
    let s = await startServer({ dataDir });
    try {
      const a = await userDevice(s.url, 'blk_a');
      const a2 = await userDevice(s.url, 'blk_a', 'phone');
      const b = await userDevice(s.url, 'blk_b');
      const c = await userDevice(s.url, 'blk_c');
      const d = await userDevice(s.url, 'blk_d');
      await befriend(s.url, a, b);
      await befriend(s.url, a, c);
      await befriend(s.url, b, c);
      const { groupId } = await ok(s, '/api/groups/create', { name: 'three', members: ['blk_b', 'blk_c'] }, a);
      const { groupId: bGroup } = await ok(s, '/api/groups/create', { name: 'b and c', members: ['blk_c'] }, b);
      const { msgId: aMsg } = await ok(s, '/api/sendmsg', { clientMsgId: 'a1', to: 'blk_b', type: 1, content: 'before' }, a);

      // D asks first: the block drops the pending request.
      await ok(s, '/api/contacts/request', { username: 'blk_a' }, d);
      await ok(s, '/api/contacts/block', { username: 'blk_b' }, a);
      await ok(s, '/api/contacts/block', { username: 'blk_d' }, a);
      const again = await ok(s, '/api/contacts/block', { username: 'blk_b' }, a);
      assert.deepEqual(again, { ret: 0 }, 'a repeated block is a success');
      const aHead = await headOf(s, a);
      const onPhone = (await logOf(s, a2)).filter((e) => e.kind === 'contact' && 'blocked' in e);
      assert.deepEqual(
        onPhone.map((e) => [e.username, e.blocked, e.removed ?? false]),
        [['blk_b', true, false], ['blk_d', true, true]],
        'the blocker’s other device learns both blocks, once each (b stays a contact, d has no relation left)',
      );
      const list = await ok(s, '/api/contacts/list', {}, a);
      assert.deepEqual(list.blocked.map((u: any) => u.username), ['blk_b', 'blk_d']);
      assert.deepEqual(list.incoming, [], 'd’s pending request was dropped');
      assert.deepEqual(list.contacts.map((u: any) => u.username).sort(), ['blk_b', 'blk_c'], 'a blocked contact stays a contact');

      await s.stop();
      s = await startServer({ dataDir });

      // Everything b and d do now is answered as usual and reaches other logs, but not a's.
      const direct = await ok(s, '/api/sendmsg', { clientMsgId: 'b1', to: 'blk_a', type: 1, content: 'let me in' }, b);
      assert.ok(Number(direct.msgId) > 0 && direct.seq > 0, 'a direct message to the blocker is accepted');
      await ok(s, '/api/sendmsg', { clientMsgId: 'b2', to: groupId, type: 1, content: 'to the group' }, b);
      await ok(s, '/api/read', { peer: 'blk_a', msgId: aMsg }, b);
      await ok(s, '/api/profile', { displayName: 'B renamed' }, b);
      await ok(s, '/api/contacts/request', { username: 'blk_a', note: 'again' }, d);
      assert.deepEqual((await ok(s, '/api/contacts/list', {}, d)).outgoing.map((u: any) => u.username), ['blk_a'], 'd sees the request as sent');
      const groupMsg = await ok(s, '/api/sendmsg', { clientMsgId: 'b3', to: groupId, type: 1, content: 'recalled' }, b);
      await ok(s, '/api/revoke', { msgId: groupMsg.msgId }, b);
      const add = await api(s.url, '/api/groups/members', { groupId: bGroup, add: ['blk_a'] }, b.sid);
      assert.deepEqual([add.body.ret, add.body.errMsg], [4, 'blk_a cannot be added to a group by you']);
      const create = await api(s.url, '/api/groups/create', { name: 'trap', members: ['blk_a', 'blk_c'] }, b.sid);
      assert.equal(create.body.ret, 4, 'nor in a new group');
      assert.deepEqual(await logOf(s, a, aHead), [], 'nothing reached the blocker');

      const cLog = await logOf(s, c);
      assert.ok(cLog.some((e) => e.kind === 'msg' && e.content === 'to the group'), 'the other members still get the blocked member’s messages');
      assert.ok(cLog.some((e) => e.kind === 'revoke' && e.msgId === groupMsg.msgId));
      assert.ok(cLog.some((e) => e.kind === 'contact' && e.displayName === 'B renamed'));
      const bLog = await logOf(s, b);
      assert.ok(bLog.some((e) => e.kind === 'msg' && e.clientMsgId === 'b1'), 'the sender’s own devices keep the message');

      // The blocker still hears from the group's other members, and the group's own changes.
      await ok(s, '/api/sendmsg', { clientMsgId: 'c1', to: groupId, type: 1, content: 'from c' }, c);
      assert.deepEqual((await logOf(s, a, aHead)).map((e) => [e.kind, e.from]), [['msg', 'blk_c']]);

      await ok(s, '/api/contacts/unblock', { username: 'blk_b' }, a);
      await ok(s, '/api/contacts/unblock', { username: 'blk_d' }, a);
      const unblockedAt = await headOf(s, a);
      const unblocks = (await logOf(s, a2, aHead)).filter((e) => e.kind === 'contact');
      assert.deepEqual(unblocks.map((e) => [e.username, e.blocked, e.removed ?? false]), [['blk_b', false, false], ['blk_d', false, true]]);
      assert.deepEqual((await ok(s, '/api/contacts/list', {}, a)).blocked, []);
      await ok(s, '/api/sendmsg', { clientMsgId: 'b4', to: 'blk_a', type: 1, content: 'hello again' }, b);
      await ok(s, '/api/sendmsg', { clientMsgId: 'b5', to: groupId, type: 1, content: 'group again' }, b);
      await ok(s, '/api/contacts/request', { username: 'blk_a', note: 'third time' }, d);
      const after = await logOf(s, a, unblockedAt);
      assert.deepEqual(
        after.map((e) => [e.kind, e.content ?? e.note]),
        [['msg', 'hello again'], ['msg', 'group again'], ['contactRequest', 'third time']],
        'unblocking restores messages, and a request sent while blocked can be sent again',
      );
    } finally {
      await s.stop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('refuses blocking oneself or an unknown user', async () => {
    const a = await userDevice(suite.srv.url, 'self_blk');
    assert.equal((await api(suite.srv.url, '/api/contacts/block', { username: 'self_blk' }, a.sid)).body.ret, 1);
    assert.equal((await api(suite.srv.url, '/api/contacts/block', { username: 'nobody_x' }, a.sid)).body.ret, 3);
    assert.equal((await api(suite.srv.url, '/api/contacts/unblock', { username: 'a b' }, a.sid)).body.ret, 1);
  });
});

describe('shown names, recall answers and the group cap', () => {
  const suite = suiteServer();

  it('refuses display, device and group names with control or bidi characters, or nothing visible', async () => {
    const a = await userDevice(suite.srv.url, 'names_a');
    const b = await userDevice(suite.srv.url, 'names_b');
    await befriend(suite.srv.url, a, b);
    const { groupId } = await ok(suite.srv, '/api/groups/create', { name: 'fine', members: ['names_b'] }, a);
    const bad = ['gpj\u202Eexe.txt', 'a\u2066b', 'line\nbreak', 'bell\u0007', '\u200B\u200B', '\u3164', ' \u2800 \uFEFF '];
    for (const name of bad) {
      const calls: [string, Record<string, unknown>][] = [
        ['/api/register', { username: 'names_new', password: 'correct horse battery', displayName: name }],
        ['/api/profile', { displayName: name }],
        ['/api/login', { username: 'names_a', password: 'password-names_a', deviceId: 'd2', deviceName: name }],
        ['/api/groups/create', { name, members: ['names_b'] }],
        ['/api/groups/rename', { groupId, name }],
      ];
      for (const [path, body] of calls) {
        const r = await api(suite.srv.url, path, body, a.sid);
        assert.equal(r.body.ret, 1, `${path} ${JSON.stringify(name)}`);
        assert.match(r.body.errMsg, /^(displayName|deviceName|name): must (not contain control or bidirectional-override characters|contain a visible character|not be blank)$/);
      }
    }
    await ok(suite.srv, '/api/profile', { displayName: '  Ann 李 😀  ' }, a);
    assert.equal((await ok(suite.srv, '/api/users/lookup', { username: 'names_a' }, b)).displayName, 'Ann 李 😀');
  });

  it('answers a recall of someone else’s message exactly as one of an unknown msgId', async () => {
    const a = await userDevice(suite.srv.url, 'recall_a');
    const b = await userDevice(suite.srv.url, 'recall_b');
    await befriend(suite.srv.url, a, b);
    const { msgId } = await ok(suite.srv, '/api/sendmsg', { clientMsgId: 'r1', to: 'recall_a', type: 1, content: 'mine' }, b);
    const theirs = await api(suite.srv.url, '/api/revoke', { msgId }, a.sid);
    const unknown = await api(suite.srv.url, '/api/revoke', { msgId: '987654321' }, a.sid);
    assert.equal(theirs.body.ret, 3);
    assert.deepEqual([theirs.status, theirs.body], [unknown.status, unknown.body]);
  });

  it('counts the creator in the 500-member cap, at creation and when members are added', async () => {
    const owner = await userDevice(suite.srv.url, 'cap_owner');
    const names = Array.from({ length: LIMITS.maxGroupMembers }, (_, i) => `cap_${i}`);
    for (let i = 0; i < names.length; i += 25) {
      await Promise.all(
        names.slice(i, i + 25).map(async (name) => {
          const d = await userDevice(suite.srv.url, name);
          await ok(suite.srv, '/api/contacts/request', { username: 'cap_owner' }, d);
          await ok(suite.srv, '/api/contacts/request', { username: name }, owner); // asking back accepts
        }),
      );
    }
    const tooMany = await api(suite.srv.url, '/api/groups/create', { name: 'big', members: names }, owner.sid);
    assert.deepEqual([tooMany.body.ret, tooMany.body.errMsg], [5, `a group has at most ${LIMITS.maxGroupMembers} members, its creator included`]);
    const { groupId } = await ok(suite.srv, '/api/groups/create', { name: 'big', members: names.slice(0, -1) }, owner);
    const full = (await logOf(suite.srv, owner)).findLast((e) => e.kind === 'group' && e.groupId === groupId);
    assert.equal(full.members.length, LIMITS.maxGroupMembers);
    const add = await api(suite.srv.url, '/api/groups/members', { groupId, add: [names.at(-1)] }, owner.sid);
    assert.equal(add.body.ret, 5);
  });
});

describe('per-user write rates on what lands in other users’ logs', () => {
  const suite = suiteServer({ rateLimit: 'on' });

  /** Calls `call` until the limit, then once more: that one answers 1205 with retryAfterSec. */
  async function overLimit(limit: number, call: (i: number) => Promise<{ body: any }>): Promise<any> {
    for (let i = 0; i < limit; i++) assert.equal((await call(i)).body.ret, 0, `call ${i + 1} of ${limit}`);
    return (await call(limit)).body;
  }

  it('answers 1205 with retryAfterSec past the contact-request, group-change and profile-change rates', async () => {
    const a = await userDevice(suite.srv.url, 'rate_a');
    const b = await userDevice(suite.srv.url, 'rate_b');
    const c = await userDevice(suite.srv.url, 'rate_c');
    await befriend(suite.srv.url, b, c);

    const requests = await overLimit(WRITE_RATES.contactRequests.limit, () => api(suite.srv.url, '/api/contacts/request', { username: 'rate_b' }, a.sid));
    assert.equal(requests.ret, 1205);
    assert.ok(requests.retryAfterSec > 0 && requests.retryAfterSec <= 3600, JSON.stringify(requests));
    assert.match(requests.errMsg, /^contact requests too fast/);

    const { groupId } = await ok(suite.srv, '/api/groups/create', { name: 'g0', members: ['rate_c'] }, b);
    const renames = await overLimit(WRITE_RATES.groupChanges.limit - 1, (i) => api(suite.srv.url, '/api/groups/rename', { groupId, name: `g${i + 1}` }, b.sid));
    assert.equal(renames.ret, 1205);
    assert.ok(renames.retryAfterSec > 0);
    const groupsOfC = (await logOf(suite.srv, c)).filter((e) => e.kind === 'group');
    assert.equal(groupsOfC.length, WRITE_RATES.groupChanges.limit, 'the refused change reached no log');

    const profiles = await overLimit(WRITE_RATES.profileChanges.limit, (i) => api(suite.srv.url, '/api/profile', { displayName: `C ${i}` }, c.sid));
    assert.equal(profiles.ret, 1205);
    assert.ok(profiles.retryAfterSec > 0);
    // Another user is not affected by c's limit.
    await ok(suite.srv, '/api/profile', { displayName: 'B' }, b);
  });
});

// Recall through a real ChatService (SQLite store, in-process bus) whose clock the test moves: the 120 s window at
// its edges, and recall in a group (every member's log gets the entry, devices converge, only the sender recalls).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { LocalBus } from '../../src/bus/local/local-bus.ts';
import { LIMITS } from '../../src/protocol/api.ts';
import { ChatService } from '../../src/service/service.ts';
import { SqliteStore } from '../../src/storage/sqlite/sqlite-store.ts';
import { DEFAULTS } from '../../src/server/config.ts';

const silent = { info() {}, warn() {}, error() {} };
const NOT_YOURS = { ret: 3, errMsg: 'no such message sent by you' };

/** A chat over a fresh SQLite file, driven through ChatService.call, with a clock the test sets. */
async function openChat(t: TestContext) {
  const dir = mkdtempSync(join(tmpdir(), 'synchat-recall-'));
  const store = new SqliteStore({ file: join(dir, 'db.sqlite') });
  const bus = new LocalBus();
  const clock = { ms: Date.UTC(2026, 0, 1) };
  const service = new ChatService({
    store,
    bus,
    clock: { now: () => clock.ms },
    logger: silent,
    passwordLog2N: 10,
    sessionIdleMs: 30 * 24 * 60 * 60_000,
    isGroupCommit: true,
    isRateLimited: false,
    gateways: () => [],
    qrLoginExpiryMs: DEFAULTS.qrLoginExpiryMs,
  });
  t.after(async () => {
    await service.close();
    await bus.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const call = async (path: string, body: unknown, sid?: string) => JSON.parse((await service.call(path, body, { ip: '10.0.0.1', sid })).body);
  const ok = async (path: string, body: unknown, sid?: string) => {
    const r = await call(path, body, sid);
    assert.equal(r.ret, 0, `${path} ${JSON.stringify(r)}`);
    return r;
  };
  return {
    clock,
    call,
    ok,
    /** Registers `username` (once) and logs a device in; returns its sid. */
    async device(username: string, deviceId = 'dev'): Promise<string> {
      const password = `pw-${username}-123`;
      await call('/api/register', { username, password, displayName: username });
      return (await ok('/api/login', { username, password, deviceId })).sid;
    },
    /** Every entry of the device's log from 0, all pages. */
    async log(sid: string): Promise<any[]> {
      const entries: any[] = [];
      for (let key = 0; ; ) {
        const r = await ok('/api/sync', { syncKey: key }, sid);
        entries.push(...r.entries);
        key = r.syncKey;
        if (!r.continueFlag) return entries;
      }
    },
    async befriend(a: string, aSid: string, b: string, bSid: string) {
      await ok('/api/contacts/request', { username: b }, aSid);
      await ok('/api/contacts/accept', { username: a }, bSid);
    },
  };
}

describe('the recall window', () => {
  it(`recalls at ${LIMITS.recallWindowMs / 1000 - 1} s and refuses with ret 4 at ${LIMITS.recallWindowMs / 1000 + 1} s, for the sender and the peer alike`, async (t) => {
    assert.equal(LIMITS.recallWindowMs, 120_000, 'docs/protocol.md promises 120 s');
    const c = await openChat(t);
    const alice = await c.device('alice');
    const bob = await c.device('bob');
    await c.befriend('alice', alice, 'bob', bob);
    const early = await c.ok('/api/sendmsg', { clientMsgId: 'early', to: 'bob', type: 1, content: 'recall me' }, alice);
    const late = await c.ok('/api/sendmsg', { clientMsgId: 'late', to: 'bob', type: 1, content: 'too late' }, alice);

    c.clock.ms += LIMITS.recallWindowMs - 1000;
    await c.ok('/api/revoke', { msgId: early.msgId }, alice);
    c.clock.ms += 2000;
    assert.deepEqual(await c.call('/api/revoke', { msgId: late.msgId }, alice), {
      ret: 4,
      errMsg: `the recall window of ${LIMITS.recallWindowMs / 1000} s has passed`,
    });
    for (const sid of [alice, bob]) {
      const revokes = (await c.log(sid)).filter((e) => e.kind === 'revoke');
      assert.deepEqual(revokes.map((e) => e.msgId), [early.msgId], 'only the message recalled in time is recalled');
    }
  });
});

describe('recall in a group', () => {
  it('gives every member (every device) the revoke entry, and a member who did not send it cannot recall it', async (t) => {
    const c = await openChat(t);
    const owner = await c.device('owner');
    const ann = await c.device('ann');
    const annPhone = await c.device('ann', 'phone');
    const ben = await c.device('ben');
    await c.befriend('owner', owner, 'ann', ann);
    await c.befriend('owner', owner, 'ben', ben);
    const { groupId } = await c.ok('/api/groups/create', { name: 'g', members: ['ann', 'ben'] }, owner);
    const sent = await c.ok('/api/sendmsg', { clientMsgId: 'g1', to: groupId, type: 1, content: 'oops' }, ann);

    // Not the sender, the group's owner included: the answer of an unknown msgId; nothing is recalled.
    assert.deepEqual(await c.call('/api/revoke', { msgId: sent.msgId }, owner), NOT_YOURS);
    assert.deepEqual(await c.call('/api/revoke', { msgId: sent.msgId }, ben), NOT_YOURS);
    assert.equal((await c.log(ben)).filter((e) => e.kind === 'revoke').length, 0);

    c.clock.ms += 60_000;
    await c.ok('/api/revoke', { msgId: sent.msgId }, annPhone);
    await c.ok('/api/revoke', { msgId: sent.msgId }, ann); // twice: a no-op
    const logs = new Map<string, any[]>();
    for (const [who, sid] of [['owner', owner], ['ann', ann], ['ann phone', annPhone], ['ben', ben]] as const) {
      const log = await c.log(sid);
      assert.deepEqual(
        log.filter((e) => e.kind === 'revoke').map((e) => ({ msgId: e.msgId, peer: e.peer })),
        [{ msgId: sent.msgId, peer: groupId }],
        `${who}: one revoke entry for the message`,
      );
      const msgAt = log.findIndex((e) => e.kind === 'msg' && e.msgId === sent.msgId);
      const revokeAt = log.findIndex((e) => e.kind === 'revoke');
      assert.ok(msgAt >= 0 && revokeAt > msgAt, `${who}: the revoke follows the message`);
      logs.set(who, log);
    }
    assert.deepEqual(logs.get('ann phone'), logs.get('ann'), "ann's two devices converge on one log");
  });
});

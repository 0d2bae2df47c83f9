// Accounts and sessions through a real ChatService (SQLite store, in-process bus) with an injected clock: growing
// login delays, the registration throttle, idle expiry, the session cap and the cache bounds (issue 11).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { LocalBus } from '../../src/bus/local/local-bus.ts';
import { MAX_SESSIONS_PER_USER } from '../../src/service/accounts.ts';
import { ChatService, type ServiceOptions } from '../../src/service/service.ts';
import { SqliteStore } from '../../src/storage/sqlite/sqlite-store.ts';
import { DEFAULTS } from '../../src/server/config.ts';

const DAY_MS = 24 * 60 * 60_000;
const silent = { info() {}, warn() {}, error() {} };

/** A service over a fresh SQLite file whose clock the test moves. */
function openService(t: TestContext, options: Partial<ServiceOptions> = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'synchat-accounts-'));
  const store = new SqliteStore({ file: join(dir, 'db.sqlite') });
  const bus = new LocalBus();
  let now = Date.UTC(2026, 0, 1);
  const service = new ChatService({
    store,
    bus,
    clock: { now: () => now },
    logger: silent,
    passwordLog2N: 10,
    sessionIdleMs: 30 * DAY_MS,
    isGroupCommit: true,
    isRateLimited: true,
    gateways: () => [],
    qrLoginExpiryMs: DEFAULTS.qrLoginExpiryMs,
    ...options,
  });
  t.after(async () => {
    await service.close();
    await bus.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  /** One call's answer body, from address `ip`. */
  const call = async (path: string, body: unknown, ip = '10.0.0.1', sid?: string) => JSON.parse((await service.call(path, body, { ip, sid })).body);
  return {
    service,
    store,
    call,
    advance(ms: number) {
      now += ms;
    },
    async register(username: string, password = `pw-${username}-123`, ip = `10.9.${username.length}.1`) {
      const r = await call('/api/register', { username, password, displayName: username }, ip);
      assert.equal(r.ret, 0, JSON.stringify(r));
    },
    login: (username: string, password = `pw-${username}-123`, ip = '10.0.0.1', deviceId = 'dev') => call('/api/login', { username, password, deviceId }, ip),
  };
}

describe('login throttles', () => {
  it('makes failures from one address wait ever longer, and never the owner at another address', async (t) => {
    const s = openService(t);
    await s.register('owner');
    const waits: number[] = [];
    for (let i = 0; i < 50; i++) {
      const r = await s.login('owner', 'guess-guess', '203.0.113.7');
      if (r.ret === 1205) {
        waits.push(r.retryAfterSec);
        s.advance(r.retryAfterSec * 1000);
        continue;
      }
      assert.equal(r.ret, 4, JSON.stringify(r));
    }
    assert.ok(waits.length > 0, 'the attacker was made to wait');
    assert.ok(waits.every((w, i) => i === 0 || w >= waits[i - 1]!), `waits only grow: ${waits}`);
    assert.ok(waits.at(-1)! > waits[0]!, `waits grew: ${waits}`);
    assert.ok(waits.at(-1)! <= 600, 'capped at 10 minutes');
    // The owner, from their own address, logs in at once.
    const owner = await s.login('owner', undefined, '198.51.100.2');
    assert.equal(owner.ret, 0, JSON.stringify(owner));
    // The attacker's address still waits after its next failure, whatever the password.
    assert.notEqual((await s.login('owner', 'guess-guess', '203.0.113.7')).ret, 0);
    assert.equal((await s.login('owner', undefined, '203.0.113.7')).ret, 1205);
  });

  it('lets 5 failures of a name and address go free, then waits 1 s, 2 s, 4 s; a success forgets them', async (t) => {
    const s = openService(t);
    await s.register('typo');
    for (let i = 0; i < 5; i++) assert.equal((await s.login('typo', 'wrong-wrong')).ret, 4);
    assert.equal((await s.login('typo', 'wrong-wrong')).ret, 4, 'the 6th failure is still checked');
    const w1 = await s.login('typo');
    assert.deepEqual([w1.ret, w1.retryAfterSec], [1205, 1], 'the right password waits too while the address must');
    s.advance(1000);
    assert.equal((await s.login('typo', 'wrong-wrong')).ret, 4);
    assert.equal((await s.login('typo')).retryAfterSec, 2);
    s.advance(2000);
    assert.equal((await s.login('typo', 'wrong-wrong')).ret, 4);
    assert.equal((await s.login('typo')).retryAfterSec, 4);
    s.advance(4000);
    assert.equal((await s.login('typo')).ret, 0);
    for (let i = 0; i < 5; i++) assert.equal((await s.login('typo', 'wrong-wrong')).ret, 4, 'the free tries are back after a success');
  });

  it('throttles one address guessing many accounts', async (t) => {
    const s = openService(t);
    let limited;
    for (let i = 0; i < 25 && !limited; i++) {
      const r = await s.login(`user_${i}`, 'guess-guess', '203.0.113.9');
      if (r.ret === 1205) limited = r;
    }
    assert.equal(limited?.ret, 1205, 'past 20 failures from one address, it waits');
    assert.equal((await s.login('user_0', 'guess-guess', '203.0.113.10')).ret, 4, 'another address does not');
  });

  it('throttles registrations per address (10 an hour)', async (t) => {
    const s = openService(t);
    for (let i = 0; i < 10; i++) {
      assert.equal((await s.call('/api/register', { username: `reg_${i}`, password: 'pw-registered-1', displayName: 'R' }, '192.0.2.1')).ret, 0);
    }
    const over = await s.call('/api/register', { username: 'reg_10', password: 'pw-registered-1', displayName: 'R' }, '192.0.2.1');
    assert.equal(over.ret, 1205);
    assert.ok(over.retryAfterSec > 0 && over.retryAfterSec <= 3600);
    assert.equal((await s.call('/api/register', { username: 'reg_11', password: 'pw-registered-1', displayName: 'R' }, '192.0.2.2')).ret, 0);
    s.advance(60 * 60_000);
    assert.equal((await s.call('/api/register', { username: 'reg_10', password: 'pw-registered-1', displayName: 'R' }, '192.0.2.1')).ret, 0);
  });

  it('counts a wrong old password at /api/password as a failed login', async (t) => {
    const s = openService(t);
    await s.register('changer');
    const { sid } = await s.login('changer');
    for (let i = 0; i < 6; i++) {
      const r = await s.call('/api/password', { oldPassword: 'not-it-at-all', newPassword: 'brand-new-pass-1' }, '10.0.0.1', sid);
      assert.equal(r.ret, 4);
    }
    const r = await s.call('/api/password', { oldPassword: 'pw-changer-123', newPassword: 'brand-new-pass-1' }, '10.0.0.1', sid);
    assert.equal(r.ret, 1205, 'the right old password waits too');
    assert.equal((await s.login('changer')).ret, 1205, 'and so does a login of that name from that address');
  });
});

describe('passwords', () => {
  it('refuses common passwords and the username at register and at /api/password (ret 1)', async (t) => {
    const s = openService(t);
    for (const password of ['password1', 'Qwertyuiop', 'iloveyou', 'samantha_1x'.slice(0, 8)]) {
      const r = await s.call('/api/register', { username: 'weak_one', password, displayName: 'W' });
      assert.equal(r.ret, 1, password);
      assert.match(r.errMsg, /common|username/);
    }
    assert.equal((await s.call('/api/register', { username: 'weak_one', password: 'WEAK_ONE', displayName: 'W' })).ret, 1);
    await s.register('weak_one');
    const { sid } = await s.login('weak_one');
    const r = await s.call('/api/password', { oldPassword: 'pw-weak_one-123', newPassword: '12345678' }, '10.0.0.1', sid);
    assert.equal(r.ret, 1);
    assert.match(r.errMsg, /^newPassword: one of the most common passwords/);
  });

  it('stores a new hash at the current cost when a login finds a cheaper one', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'synchat-rehash-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const open = (passwordLog2N: number) => {
      const store = new SqliteStore({ file: join(dir, 'db.sqlite') });
      const bus = new LocalBus();
      const service = new ChatService({ store, bus, clock: { now: Date.now }, logger: silent, passwordLog2N, sessionIdleMs: DAY_MS, isGroupCommit: true, isRateLimited: false, gateways: () => [], qrLoginExpiryMs: DEFAULTS.qrLoginExpiryMs });
      const call = async (path: string, body: unknown) => JSON.parse((await service.call(path, body, { ip: '10.0.0.1' })).body);
      return { store, call, close: async () => (await service.close(), await bus.close(), await store.close()) };
    };
    const cheap = open(10);
    await cheap.call('/api/register', { username: 'rehash', password: 'pw-rehash-123', displayName: 'R' });
    assert.match((await cheap.store.read.getUserByName('rehash'))!.pwHash, /^scrypt\$10\$/);
    await cheap.close();
    const dearer = open(11);
    assert.equal((await dearer.call('/api/login', { username: 'rehash', password: 'pw-rehash-123', deviceId: 'd' })).ret, 0);
    assert.match((await dearer.store.read.getUserByName('rehash'))!.pwHash, /^scrypt\$11\$/);
    assert.equal((await dearer.call('/api/login', { username: 'rehash', password: 'pw-rehash-123', deviceId: 'd' })).ret, 0, 'the new hash works');
    await dearer.close();
  });
});

describe('sessions', () => {
  it('ends a session unused for longer than the idle time with 1100, in the store', async (t) => {
    const s = openService(t);
    await s.register('sleepy');
    const a = await s.login('sleepy', undefined, '10.0.0.1', 'used');
    const b = await s.login('sleepy', undefined, '10.0.0.1', 'unused');
    // `used` makes a call every 20 days (a call counts as seen, not only an ack); `unused` makes none.
    for (let i = 0; i < 3; i++) {
      s.advance(20 * DAY_MS);
      assert.equal((await s.call('/api/contacts/list', {}, '10.0.0.1', a.sid)).ret, 0, `call ${i}`);
      // The last-seen times reach the store with the next touch flush (once a second).
      await new Promise((r) => setTimeout(r, 1100));
    }
    const list = await s.call('/api/sessions', {}, '10.0.0.1', a.sid);
    assert.deepEqual(list.sessions.map((x: { deviceId: string }) => x.deviceId), ['used'], 'an idle session leaves the device list');
    const late = await s.call('/api/sync', { syncKey: 0 }, '10.0.0.1', b.sid);
    assert.equal(late.ret, 1100);
    assert.match(late.errMsg, /unused for more than 30 days/);
    const row = await s.store.read.getSession((await s.store.read.listSessions(a.uin)).find((r) => r.deviceId === 'unused')!.sessionId);
    assert.equal(row?.endedRet, 1100, 'ended in the store, so on every node');
    const seenRow = (await s.store.read.listSessions(a.uin)).find((r) => r.deviceId === 'used')!;
    assert.ok(seenRow.lastSeenTime >= Date.UTC(2026, 0, 1) + 60 * DAY_MS, 'calls update the stored last-seen time');
  });

  it(`holds at most ${MAX_SESSIONS_PER_USER} sessions a user: a login past it ends the least recently seen with 1101`, async (t) => {
    const s = openService(t);
    await s.register('collector');
    const sids: string[] = [];
    for (let i = 0; i < MAX_SESSIONS_PER_USER; i++) {
      sids.push((await s.login('collector', undefined, '10.0.0.1', `d${i}`)).sid);
      s.advance(1000);
    }
    // d0 is the oldest but was used just now; d1 is then the least recently seen.
    s.advance(5 * 60_000);
    assert.equal((await s.call('/api/sync', { syncKey: 0 }, '10.0.0.1', sids[0])).ret, 0);
    const extra = await s.login('collector', undefined, '10.0.0.1', 'one-more');
    assert.equal(extra.ret, 0);
    assert.equal((await s.call('/api/sync', { syncKey: 0 }, '10.0.0.1', sids[1])).ret, 1101);
    assert.equal((await s.call('/api/sync', { syncKey: 0 }, '10.0.0.1', sids[0])).ret, 0);
    assert.equal((await s.call('/api/sessions', {}, '10.0.0.1', extra.sid)).sessions.length, MAX_SESSIONS_PER_USER);
  });

  it('keeps every cache within its bound however many users and sessions pass through', async (t) => {
    const limits = { sessions: 8, users: 5, touches: 6 };
    const s = openService(t, { cacheLimits: limits, isRateLimited: false });
    for (let i = 0; i < 20; i++) {
      const name = `cache_${i}`;
      await s.register(name);
      const { sid } = await s.login(name);
      assert.equal((await s.call('/api/sync', { syncKey: 0 }, '10.0.0.1', sid)).ret, 0);
      assert.equal((await s.call('/api/users/lookup', { username: 'cache_0' }, '10.0.0.1', sid)).ret, 0);
      s.service.ack(`session-${i}`, 1);
      s.advance(2 * 60_000);
    }
    const sizes = s.service.cacheSizes;
    assert.ok(sizes.sessions! <= limits.sessions && sizes.sids! <= limits.sessions, JSON.stringify(sizes));
    assert.ok(sizes.usernames! <= limits.users && sizes.epochs! <= limits.users && sizes.uins! <= limits.users, JSON.stringify(sizes));
    assert.ok(sizes.touches! <= limits.touches, JSON.stringify(sizes));
    assert.equal(sizes.sessions, limits.sessions, 'the cache was filled, so the bound was driven past');
    // Acks of 20 sessions between two flushes: only the bound's worth wait in memory.
    for (let i = 0; i < 20; i++) s.service.ack(`burst-${i}`, 1);
    assert.equal(s.service.cacheSizes.touches, limits.touches);
  });
});

// QR login over HTTP (docs/protocol.md "QR login"): a device asks for a uuid and long-polls it, a logged-in device
// scans (and sees who asks) and confirms, and the asking device's poll collects a working session once. One process
// here; the same flow through two gateway processes and across two nodes is in qr-login-cluster.test.ts.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { qrNew, qrPoll } from '../helpers/qr.ts';
import { api, startServer, userDevice, type Device, type TestServer } from '../helpers/server.ts';
import { waitUntil } from '../helpers/wait.ts';

describe('QR login (one process)', () => {
  let server: TestServer;
  let alice: Device;

  before(async () => {
    server = await startServer();
    alice = await userDevice(server.url, 'qr_alice', 'phone');
  });
  after(() => server.stop());

  it('logs a device in: new → waiting → scan → scanned → confirm → confirmed with a working session, given once', async () => {
    const { uuid, expiresAt } = await qrNew(server.url, 'laptop-1', 'Laptop in the hall');
    assert.match(uuid, /^[0-9a-f]{32}$/);
    assert.ok(expiresAt > Date.now() && expiresAt <= Date.now() + 5 * 60_000, 'expires within 5 minutes');
    assert.deepEqual(await qrPoll(server.url, uuid), { ret: 0, state: 'waiting' });

    const scan = await api(server.url, '/api/qrlogin/scan', { uuid }, alice.sid);
    assert.equal(scan.body.ret, 0, JSON.stringify(scan.body));
    assert.equal(scan.body.deviceName, 'Laptop in the hall');
    assert.equal(typeof scan.body.createTime, 'number');
    assert.equal(JSON.stringify(scan.body).includes('127.0.0.1'), false, 'the asking device is shown without its address');
    assert.deepEqual(await qrPoll(server.url, uuid), { ret: 0, state: 'scanned', displayName: 'QR_ALICE' });
    // A scan does not confirm: the poll that saw `scanned` is held (timeout 0 answers at once with the same state).
    assert.equal((await qrPoll(server.url, uuid, { state: 'scanned' })).state, 'scanned');

    const confirm = await api(server.url, '/api/qrlogin/confirm', { uuid }, alice.sid);
    assert.equal(confirm.body.ret, 0, JSON.stringify(confirm.body));
    const got = await qrPoll(server.url, uuid, { state: 'scanned' });
    assert.equal(got.ret, 0);
    assert.equal(got.state, 'confirmed');
    assert.equal(got.uin, alice.uin);
    assert.equal(got.username, 'qr_alice');
    assert.equal(got.displayName, 'QR_ALICE');
    assert.equal(typeof got.syncKey, 'number');
    assert.equal(typeof got.epoch, 'string');
    assert.equal((await api(server.url, '/api/sync', { syncKey: 0 }, got.sid)).body.ret, 0, 'the collected sid works');
    assert.deepEqual(await qrPoll(server.url, uuid, { state: 'scanned' }), { ret: 0, state: 'expired' }, 'the session is given once');
    assert.equal((await api(server.url, '/api/qrlogin/confirm', { uuid }, alice.sid)).body.ret, 3, 'a used uuid cannot be confirmed again');

    // The new device is one of the user's sessions, named as it asked, and can be revoked like any other.
    const list = await api(server.url, '/api/sessions', {}, alice.sid);
    const laptop = list.body.sessions.find((s: any) => s.deviceId === 'laptop-1');
    assert.equal(laptop?.deviceName, 'Laptop in the hall');
    assert.equal((await api(server.url, '/api/sessions/revoke', { sessionId: laptop.sessionId }, alice.sid)).body.ret, 0);
    assert.equal((await api(server.url, '/api/sync', { syncKey: 0 }, got.sid)).body.ret, 1101);
  });

  it('wakes a held poll when the login is scanned, and again when it is confirmed', { timeout: 20_000 }, async () => {
    const { uuid } = await qrNew(server.url, 'laptop-2');
    // Held 30 s: the test's 20 s timeout fails it if only the poll's timeout answered.
    const scanned = qrPoll(server.url, uuid, { timeout: 30_000 });
    await waitUntil(() => server.core.service.qrLoginPolls === 1, 'the poll is held');
    assert.equal((await api(server.url, '/api/qrlogin/scan', { uuid }, alice.sid)).body.ret, 0);
    assert.equal((await scanned).state, 'scanned');
    const confirmed = qrPoll(server.url, uuid, { timeout: 30_000, state: 'scanned' });
    await waitUntil(() => server.core.service.qrLoginPolls === 1, 'the poll is held');
    assert.equal((await api(server.url, '/api/qrlogin/confirm', { uuid }, alice.sid)).body.ret, 0);
    const got = await confirmed;
    assert.equal(got.state, 'confirmed');
    assert.equal((await api(server.url, '/api/sync', { syncKey: 0 }, got.sid)).body.ret, 0);
  });

  it('confirms once under two racing confirms, and gives the session to one of two racing polls', async () => {
    const { uuid } = await qrNew(server.url, 'laptop-3');
    assert.equal((await api(server.url, '/api/qrlogin/scan', { uuid }, alice.sid)).body.ret, 0);
    const confirms = await Promise.all([1, 2].map(() => api(server.url, '/api/qrlogin/confirm', { uuid }, alice.sid)));
    assert.deepEqual(confirms.map((r) => r.body.ret).sort(), [0, 6], JSON.stringify(confirms.map((r) => r.body)));
    const before = (await api(server.url, '/api/sessions', {}, alice.sid)).body.sessions.length;
    const polls = await Promise.all([1, 2, 3].map(() => qrPoll(server.url, uuid, { state: 'scanned' })));
    assert.deepEqual(polls.map((p) => p.state).sort(), ['confirmed', 'expired', 'expired'], JSON.stringify(polls));
    const after = (await api(server.url, '/api/sessions', {}, alice.sid)).body.sessions.length;
    assert.equal(after, before + 1, 'one session was made');
  });

  it('refuses a confirm before the scan, a scan by a second account, and either without a session', async () => {
    const bob = await userDevice(server.url, 'qr_bob', 'phone');
    const { uuid } = await qrNew(server.url, 'laptop-4');
    assert.equal((await api(server.url, '/api/qrlogin/confirm', { uuid }, alice.sid)).body.ret, 6, 'the scan shows who asks: it comes first');
    assert.equal((await api(server.url, '/api/qrlogin/scan', { uuid })).body.ret, 1100);
    assert.equal((await api(server.url, '/api/qrlogin/confirm', { uuid })).body.ret, 1100);
    assert.equal((await api(server.url, '/api/qrlogin/scan', { uuid }, alice.sid)).body.ret, 0);
    assert.equal((await api(server.url, '/api/qrlogin/scan', { uuid }, alice.sid)).body.ret, 0, 'the same user may scan again');
    assert.equal((await api(server.url, '/api/qrlogin/scan', { uuid }, bob.sid)).body.ret, 6);
    assert.equal((await api(server.url, '/api/qrlogin/confirm', { uuid }, bob.sid)).body.ret, 6);
    assert.equal((await qrPoll(server.url, uuid)).state, 'scanned', 'still alice’s to confirm');
  });

  it('answers unknown uuids with 3 and malformed ones with 1', async () => {
    const unknown = 'f'.repeat(32);
    assert.equal((await qrPoll(server.url, unknown)).ret, 3);
    assert.equal((await api(server.url, '/api/qrlogin/scan', { uuid: unknown }, alice.sid)).body.ret, 3);
    assert.equal((await api(server.url, '/api/qrlogin/confirm', { uuid: unknown }, alice.sid)).body.ret, 3);
    for (const bad of ['', 'F'.repeat(32), 'f'.repeat(31), 'f'.repeat(33), '../etc/passwd', 'g'.repeat(32)]) {
      const r = await qrPoll(server.url, bad);
      assert.equal(r.ret, 1, `poll ${JSON.stringify(bad)}: ${JSON.stringify(r)}`);
      assert.equal((await api(server.url, '/api/qrlogin/scan', { uuid: bad }, alice.sid)).body.ret, 1);
    }
    assert.equal((await qrPoll(server.url, 'f'.repeat(32), { state: 'confirmed' })).ret, 1, 'a poll says waiting or scanned');
    assert.equal((await api(server.url, '/api/qrlogin/new', { deviceId: 'x', deviceName: 'evil\u202Egpj.exe' })).body.ret, 1, 'device names are checked');
    assert.equal((await api(server.url, '/api/qrlogin/new', {})).body.ret, 1);
  });

  it('cancels a held poll when its client goes away, and the login can still be collected', async () => {
    const { uuid } = await qrNew(server.url, 'laptop-5');
    const gone = new AbortController();
    const held = qrPoll(server.url, uuid, { timeout: 30_000 }, gone.signal).catch((err: Error) => err.name);
    await waitUntil(() => server.core.service.qrLoginPolls === 1, 'the poll is held');
    gone.abort();
    assert.equal(await held, 'AbortError');
    await waitUntil(() => server.core.service.qrLoginPolls === 0, 'the poll is let go');
    assert.equal((await api(server.url, '/api/qrlogin/scan', { uuid }, alice.sid)).body.ret, 0);
    assert.equal((await api(server.url, '/api/qrlogin/confirm', { uuid }, alice.sid)).body.ret, 0);
    assert.equal((await qrPoll(server.url, uuid)).state, 'confirmed');
  });
});

describe('QR login expiry and throttles', () => {
  it('expires a uuid: a held poll hears `expired` at expiry, and it can no longer be scanned', async () => {
    const server = await startServer({ qrLoginExpiryMs: 1000 });
    try {
      const alice = await userDevice(server.url, 'qr_exp', 'phone');
      const { uuid } = await qrNew(server.url, 'laptop');
      // Held up to 30 s, answered at the 1 s expiry.
      assert.deepEqual(await qrPoll(server.url, uuid, { timeout: 30_000 }), { ret: 0, state: 'expired' });
      assert.equal((await api(server.url, '/api/qrlogin/scan', { uuid }, alice.sid)).body.ret, 3);
      // Scanned in time but confirmed too late: still nothing to collect.
      const late = await qrNew(server.url, 'laptop');
      assert.equal((await api(server.url, '/api/qrlogin/scan', { uuid: late.uuid }, alice.sid)).body.ret, 0);
      assert.deepEqual(await qrPoll(server.url, late.uuid, { timeout: 30_000, state: 'scanned' }), { ret: 0, state: 'expired' });
      assert.equal((await api(server.url, '/api/qrlogin/confirm', { uuid: late.uuid }, alice.sid)).body.ret, 3);
    } finally {
      await server.stop();
    }
  });

  it('throttles new uuids per address (20 a minute) with 1205 and a retry time', async () => {
    const server = await startServer({ rateLimit: 'on' });
    try {
      for (let i = 0; i < 20; i++) await qrNew(server.url, `d${i}`);
      const r = await api(server.url, '/api/qrlogin/new', { deviceId: 'one-too-many' });
      assert.equal(r.status, 429);
      assert.equal(r.body.ret, 1205);
      assert.ok(r.body.retryAfterSec > 0 && r.body.retryAfterSec <= 60, JSON.stringify(r.body));
    } finally {
      await server.stop();
    }
  });

  it('makes an address that polls unknown uuids wait, after 20 free tries', async () => {
    const server = await startServer();
    try {
      for (let i = 0; i < 20; i++) assert.equal((await qrPoll(server.url, i.toString(16).padStart(32, '0'))).ret, 3);
      const r = await qrPoll(server.url, 'a'.repeat(32));
      assert.equal(r.ret, 3, 'the 21st failure is counted');
      const waited = await qrPoll(server.url, 'b'.repeat(32));
      assert.equal(waited.ret, 1205, JSON.stringify(waited));
      assert.ok(waited.retryAfterSec >= 1);
    } finally {
      await server.stop();
    }
  });
});

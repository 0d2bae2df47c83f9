// QR login where the asking device and the confirming device reach different processes (docs/protocol.md "QR
// login"): through two gateway processes in front of one core (the poll held in the core over IPC), and across two
// nodes on one PostgreSQL and one Redis (the poll held on one node, the scan and confirm made on the other, the
// collected session used on both). The nodes' part skips without PostgreSQL and Redis, and fails under CI=true.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { nodesForSuite } from '../helpers/nodes.ts';
import { spawnGatewayServer, type GatewayServer } from '../helpers/process.ts';
import { qrNew, qrPoll } from '../helpers/qr.ts';
import { api, userDevice } from '../helpers/server.ts';
import { requirePostgres, requireRedis } from '../helpers/services.ts';

/**
 * The whole flow with held polls: `ask` is where the device asks and waits, `confirm` where the user scans and
 * confirms; the session it collects works on both.
 */
async function loginAcross(ask: string, confirm: string, username: string): Promise<void> {
  const phone = await userDevice(confirm, username, 'phone');
  const { uuid } = await qrNew(ask, 'desk', 'Desk');
  const scanned = qrPoll(ask, uuid, { timeout: 30_000 });
  const scan = await api(confirm, '/api/qrlogin/scan', { uuid }, phone.sid);
  assert.equal(scan.body.ret, 0, JSON.stringify(scan.body));
  assert.equal(scan.body.deviceName, 'Desk');
  assert.deepEqual(await scanned, { ret: 0, state: 'scanned', displayName: username.toUpperCase() });
  const confirmed = qrPoll(ask, uuid, { timeout: 30_000, state: 'scanned' });
  assert.equal((await api(confirm, '/api/qrlogin/confirm', { uuid }, phone.sid)).body.ret, 0);
  const got = await confirmed;
  assert.equal(got.state, 'confirmed', JSON.stringify(got));
  assert.equal(got.uin, phone.uin);
  for (const base of [ask, confirm]) {
    assert.equal((await api(base, '/api/sync', { syncKey: 0 }, got.sid)).body.ret, 0);
    assert.equal((await qrPoll(base, uuid, { state: 'scanned' })).state, 'expired', 'given once, on every node');
  }
  const sessions = (await api(confirm, '/api/sessions', {}, phone.sid)).body.sessions;
  assert.ok(sessions.some((s: any) => s.deviceId === 'desk' && s.deviceName === 'Desk'), JSON.stringify(sessions));
}

describe('QR login through two gateway processes', () => {
  let server: GatewayServer;
  before(async () => {
    server = await spawnGatewayServer('synchat-qr-gateways-');
  });
  after(() => server.stopAndClean());

  it('logs a device in with its poll held while the scan and confirm arrive on other connections', async () => {
    await loginAcross(server.url, server.url, 'qrg_alice');
  });

  it('confirms once when two confirms race through the gateways', async () => {
    const phone = await userDevice(server.url, 'qrg_bob', 'phone');
    const { uuid } = await qrNew(server.url, 'desk');
    assert.equal((await api(server.url, '/api/qrlogin/scan', { uuid }, phone.sid)).body.ret, 0);
    const rets = await Promise.all([1, 2, 3].map(async () => (await api(server.url, '/api/qrlogin/confirm', { uuid }, phone.sid)).body.ret));
    assert.deepEqual(rets.sort(), [0, 6, 6]);
    const polls = await Promise.all([1, 2, 3].map(() => qrPoll(server.url, uuid, { state: 'scanned' })));
    assert.deepEqual(polls.map((p) => p.state).sort(), ['confirmed', 'expired', 'expired']);
  });
});

const skip = (await requirePostgres()) ?? (await requireRedis());

describe('QR login across two nodes', { skip }, () => {
  const cluster = nodesForSuite(2);
  const url = (i: number) => cluster().nodes[i]!.url;

  it('wakes a poll held on one node when the login is scanned and confirmed on the other', async () => {
    await loginAcross(url(0), url(1), 'qrn_alice');
  });

  it('confirms once, and gives the session to one poll, when both nodes race', async () => {
    const phone = await userDevice(url(0), 'qrn_bob', 'phone');
    const { uuid } = await qrNew(url(1), 'desk');
    assert.equal((await api(url(0), '/api/qrlogin/scan', { uuid }, phone.sid)).body.ret, 0);
    const rets = await Promise.all([0, 1, 0, 1].map(async (i) => (await api(url(i), '/api/qrlogin/confirm', { uuid }, phone.sid)).body.ret));
    assert.deepEqual(rets.sort(), [0, 6, 6, 6]);
    const polls = await Promise.all([0, 1, 0, 1].map((i) => qrPoll(url(i), uuid, { state: 'scanned' })));
    assert.deepEqual(polls.map((p) => p.state).sort(), ['confirmed', 'expired', 'expired', 'expired'], JSON.stringify(polls));
    const sessions = (await api(url(0), '/api/sessions', {}, phone.sid)).body.sessions;
    assert.equal(sessions.filter((s: any) => s.deviceId === 'desk').length, 1);
  });
});

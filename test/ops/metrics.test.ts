// GET /metrics against real servers (docs/operations.md "Metrics"): the figures move as traffic flows, a node with two
// gateway processes answers for all three of its processes on whichever gateway is asked, callers off loopback need
// the admin token, and the whole text passes a strict reading of Prometheus' exposition format.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { OP } from '../../src/protocol/index.ts';
import { spawnGatewayServer, type GatewayServer } from '../helpers/process.ts';
import { parseExposition, sumOf, type Family } from '../helpers/prometheus-text.ts';
import { api, befriend, startServer, syncAll, userDevice, type TestServer } from '../helpers/server.ts';
import { waitUntil } from '../helpers/wait.ts';
import { authedWire, type WireClient } from '../helpers/wire.ts';

/** GET /metrics; the text parsed strictly (a violation fails the test). */
async function scrape(url: string, headers: Record<string, string> = {}): Promise<{ status: number; contentType: string | null; body: string; families: Map<string, Family> }> {
  const res = await fetch(url + '/metrics', { headers });
  const body = await res.text();
  return { status: res.status, contentType: res.headers.get('content-type'), body, families: res.status === 200 ? parseExposition(body) : new Map() };
}

describe('/metrics on one process', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startServer();
  });
  after(() => srv.stop());

  it('moves sends, deliveries, latencies, connections and answers as traffic flows', async () => {
    const alice = await userDevice(srv.url, 'm_alice');
    const bob = await userDevice(srv.url, 'm_bob');
    await befriend(srv.url, alice, bob);
    const { syncKey } = await syncAll(srv.url, bob.sid);
    const before = (await scrape(srv.url)).families;
    const bobConn = await authedWire('tcp', srv, bob.sid, syncKey);
    await waitUntil(async () => sumOf((await scrape(srv.url)).families, 'synchat_connections', { transport: 'tcp' }) === 1, 'the tcp gauge to count bob');

    const sent = await api(srv.url, '/api/sendmsg', { clientMsgId: 'm1', to: 'm_bob', type: 1, content: 'hello' }, alice.sid);
    assert.equal(sent.body.ret, 0);
    const push = await bobConn.client.nextOp(OP.PUSH);
    assert.equal(push.body.entries.length, 1);
    // An error answer on each edge: a bad session over HTTP, an ACK ahead of the log on the long connection.
    assert.equal((await api(srv.url, '/api/sendmsg', { clientMsgId: 'm2', to: 'm_bob', type: 1, content: 'x' }, 'no-such-session')).body.ret, 1100);
    bobConn.client.send(OP.ACK, { syncKey: 999_999 });
    assert.equal((await bobConn.client.nextOp(OP.ERROR)).body.ret, 1);
    assert.equal((await api(srv.url, `/api/synccheck?syncKey=${push.body.syncKey}&timeout=0`, undefined, bob.sid)).body.ret, 0);

    const { families: now, contentType } = await scrape(srv.url);
    assert.equal(contentType, 'text/plain; version=0.0.4; charset=utf-8');
    const grew = (sample: string, labels: Record<string, string> = {}) => sumOf(now, sample, labels) - sumOf(before, sample, labels);
    assert.equal(grew('synchat_sends_total'), 1);
    assert.equal(grew('synchat_log_appends_total'), 2, 'alice\'s copy and bob\'s');
    assert.equal(grew('synchat_send_to_commit_seconds_count'), 1);
    assert.ok(grew('synchat_send_to_commit_seconds_sum') > 0);
    assert.equal(grew('synchat_deliveries_total', { via: 'push' }), 1);
    assert.ok(grew('synchat_commit_to_delivery_seconds_count') >= 1, 'the PUSH was timed');
    assert.ok(grew('synchat_commit_batch_jobs_count') >= 1);
    assert.ok(grew('synchat_commit_sync_seconds_count') >= 1);
    assert.ok(sumOf(before, 'synchat_sync_page_entries_count') >= 1, 'bob\'s sync page');
    assert.equal(sumOf(now, 'synchat_connections', { transport: 'tcp' }), 1);
    assert.equal(sumOf(now, 'synchat_users_online'), 1);
    assert.equal(grew('synchat_answers_total', { transport: 'http', ret: '1100' }), 1);
    assert.equal(grew('synchat_answers_total', { transport: 'tcp', ret: '1' }), 1);
    assert.equal(grew('synchat_answers_total', { transport: 'longpoll', ret: '0' }), 1);
    assert.equal(grew('synchat_answers_total', { transport: 'http', ret: '0' }), 1, 'the send (a scrape is no JSON answer)');
    assert.equal(grew('synchat_answers_total', { transport: 'tcp', ret: '0' }), 1, 'AUTH_OK');

    const snapshot = await srv.ops.snapshot();
    assert.equal(snapshot.processes.length, 1);
    assert.deepEqual([snapshot.processes[0]!.role, snapshot.processes[0]!.pid], ['single', process.pid]);
    assert.equal(snapshot.processes[0]!.connections.tcp, 1);
    assert.equal(snapshot.usersOnline, 1);
    assert.equal(snapshot.totals.sends, sumOf(now, 'synchat_sends_total'));
    assert.ok(snapshot.latencyMs.sendToCommitP99 > 0);

    bobConn.client.close();
    await waitUntil(async () => sumOf((await scrape(srv.url)).families, 'synchat_connections', { transport: 'tcp' }) === 0, 'the tcp gauge to drop bob');
    assert.equal(sumOf((await scrape(srv.url)).families, 'synchat_users_online'), 0);
  });

  it('counts a parked long-poll and times the news that wakes it', async () => {
    const carol = await userDevice(srv.url, 'm_carol');
    const dave = await userDevice(srv.url, 'm_dave');
    await befriend(srv.url, carol, dave);
    const { syncKey } = await syncAll(srv.url, dave.sid);
    const before = (await scrape(srv.url)).families;
    const poll = api(srv.url, `/api/synccheck?syncKey=${syncKey}&timeout=30000`, undefined, dave.sid);
    await waitUntil(async () => sumOf((await scrape(srv.url)).families, 'synchat_parked_polls') === 1, 'the parked poll to be counted');
    await api(srv.url, '/api/sendmsg', { clientMsgId: 'p1', to: 'm_dave', type: 1, content: 'wake up' }, carol.sid);
    assert.equal((await poll).body.selector > 0, true);
    const now = (await scrape(srv.url)).families;
    assert.equal(sumOf(now, 'synchat_parked_polls'), 0);
    assert.equal(sumOf(now, 'synchat_commit_to_delivery_seconds_count') - sumOf(before, 'synchat_commit_to_delivery_seconds_count'), 1);
    assert.equal(sumOf(now, 'synchat_answers_total', { transport: 'longpoll', ret: '0' }) - sumOf(before, 'synchat_answers_total', { transport: 'longpoll', ret: '0' }), 1);
  });

  it('names every series synchat_ and labels it with the node', async () => {
    const { families } = await scrape(srv.url);
    const nodes = new Set<string>();
    for (const f of families.values()) {
      assert.match(f.name, /^synchat_/);
      assert.ok(f.help.length > 0, `${f.name} has HELP text`);
      for (const s of f.samples) nodes.add(s.labels.node ?? '(none)');
    }
    assert.deepEqual([...nodes], [`${(await import('node:os')).hostname()}:${srv.httpPort}`]);
  });
});

describe('/metrics access', () => {
  const token = 'metrics-test-token-0123456789';
  let open: TestServer;
  let guarded: TestServer;
  before(async () => {
    open = await startServer({ trustProxy: 'loopback' });
    guarded = await startServer({ trustProxy: 'loopback', adminToken: token });
  });
  after(async () => {
    await open.stop();
    await guarded.stop();
  });
  /** A caller off loopback, as a trusted proxy on loopback names it. */
  const remote = { 'x-forwarded-for': '203.0.113.9' };

  it('answers loopback callers without a token', async () => {
    assert.equal((await scrape(open.url)).status, 200);
    assert.equal((await scrape(guarded.url)).status, 200);
  });

  it('refuses a caller off loopback when no admin token is set', async () => {
    const r = await scrape(open.url, remote);
    assert.equal(r.status, 403);
    assert.equal(JSON.parse(r.body).ret, 4);
  });

  it('asks a caller off loopback for the token, refuses a wrong one, and answers the right one', async () => {
    const missing = await scrape(guarded.url, remote);
    assert.deepEqual([missing.status, JSON.parse(missing.body).ret], [401, 1100]);
    const wrong = await scrape(guarded.url, { ...remote, authorization: `Bearer ${token}x` });
    assert.deepEqual([wrong.status, JSON.parse(wrong.body).ret], [403, 4]);
    const right = await scrape(guarded.url, { ...remote, authorization: `Bearer ${token}` });
    assert.equal(right.status, 200);
    assert.ok(right.families.has('synchat_sends_total'));
  });
});

describe('/metrics of a node with two gateway processes', () => {
  let srv: GatewayServer;
  const clients: WireClient[] = [];
  before(async () => {
    srv = await spawnGatewayServer('synchat-metrics-');
  });
  after(async () => {
    for (const c of clients) c.close();
    await srv.stopAndClean();
  });

  it('adds up the core and both gateways on whichever gateway answers', async () => {
    const devices = [];
    for (let i = 0; i < 8; i++) devices.push(await userDevice(srv.url, `mc_user${i}`));
    for (const [i, d] of devices.entries()) clients.push((await authedWire(i % 2 === 0 ? 'tcp' : 'ws', srv.ports, d.sid)).client);
    // Every scrape is a new request; the kernel hands them to either gateway.
    for (let i = 0; i < 6; i++) {
      const { families } = await scrape(srv.url);
      const processes = new Set(families.get('synchat_process_resident_memory_bytes')!.samples.map((s) => s.labels.process!));
      const roles = [...processes].map((p) => p.replace(/-\d+$/, '')).sort();
      assert.deepEqual(roles, ['core', 'gateway', 'gateway'], `every process of the node in scrape ${i}: ${[...processes]}`);
      assert.equal(sumOf(families, 'synchat_connections'), devices.length, 'connections summed over both gateways');
      assert.equal(sumOf(families, 'synchat_connections', { transport: 'ws' }), devices.length / 2);
      assert.equal(sumOf(families, 'synchat_users_online'), devices.length);
      assert.equal(sumOf(families, 'synchat_answers_total', { transport: 'tcp', ret: '0' }) + sumOf(families, 'synchat_answers_total', { transport: 'ws', ret: '0' }), devices.length, 'one AUTH_OK each');
      assert.equal(new Set([...families.values()].flatMap((f) => f.samples.map((s) => s.labels.node))).size, 1, 'one node label');
    }
  });
});

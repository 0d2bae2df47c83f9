// `GET /api/admin/stats` (src/transports/http/admin-routes.ts): who may read the admin dashboard's data, and what
// it answers. Loopback callers (every test) get nothing for being on loopback: the token or an admin user's session.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { AdminStats } from '../../src/ops/admin-stats.ts';
import { startServer, userDevice, type TestServer } from '../helpers/server.ts';

const TOKEN = 'admin-routes-test-token-0123456789';

async function stats(base: string, authorization?: string): Promise<{ status: number; body: any; headers: Headers }> {
  const res = await fetch(`${base}/api/admin/stats`, { headers: authorization ? { authorization } : {} });
  return { status: res.status, headers: res.headers, body: await res.json() };
}

describe('GET /api/admin/stats', () => {
  let srv: TestServer;
  before(async () => {
    // Registered as `Root_Admin`; the setting names it in another case: names compare case-folded.
    srv = await startServer({ adminToken: TOKEN, adminUsers: 'ROOT_admin, other_admin' });
  });
  after(() => srv.stop());

  it("answers this node's report to the admin token", async () => {
    const r = await stats(srv.url, `Bearer ${TOKEN}`);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('cache-control'), 'no-store');
    const body = r.body as AdminStats;
    assert.equal(body.ret, 0);
    assert.equal(body.nodeId, srv.core.nodeId);
    assert.equal(body.nodes.length, 1, 'no Redis: this node alone');
    const [own] = body.nodes;
    assert.equal(own!.snapshot.nodeId, srv.core.nodeId);
    assert.equal(own!.store, process.env.STORE_UNDER_TEST === 'postgres' ? 'postgres' : 'sqlite');
    assert.ok(own!.machine.cores >= 1 && own!.machine.memBytes > 0);
    assert.equal(own!.snapshot.processes.length, 1);
    assert.equal(own!.snapshot.processes[0]!.pid, process.pid);
    assert.ok(own!.snapshot.processes[0]!.rssBytes > 0);
    // Nothing secret: the token is not echoed, and no field holds a sid or a password.
    assert.doesNotMatch(JSON.stringify(body), new RegExp(TOKEN));
  });

  it("answers an admin user's session, and refuses a user who is not one", async () => {
    const root = await userDevice(srv.url, 'Root_Admin', 'laptop');
    const r = await stats(srv.url, `Bearer ${root.sid}`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.ret, 0);

    const plain = await userDevice(srv.url, 'plain_user', 'laptop');
    const refused = await stats(srv.url, `Bearer ${plain.sid}`);
    assert.equal(refused.status, 403);
    assert.equal(refused.body.ret, 4);
    assert.match(refused.body.errMsg, /plain_user is not an admin user/);
  });

  it('refuses a caller without a credential, with a wrong token, or with an ended session', async () => {
    const none = await stats(srv.url);
    assert.equal(none.status, 401);
    assert.equal(none.body.ret, 1100);
    assert.match(none.body.errMsg, /SYNCHAT_ADMIN_TOKEN/);

    const wrong = await stats(srv.url, `Bearer ${TOKEN}x`);
    assert.equal(wrong.status, 401);
    assert.equal(wrong.body.ret, 1100);

    const other = await userDevice(srv.url, 'other_admin', 'phone');
    const out = await fetch(`${srv.url}/api/logout`, { method: 'POST', headers: { authorization: `Bearer ${other.sid}` } });
    assert.equal((await out.json()).ret, 0);
    const ended = await stats(srv.url, `Bearer ${other.sid}`);
    assert.equal(ended.status, 401);
    assert.equal(ended.body.ret, 1100);
  });
});

describe('GET /api/admin/stats with neither a token nor admin users', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startServer();
  });
  after(() => srv.stop());

  it('is off, even to a loopback caller', async () => {
    const r = await stats(srv.url);
    assert.equal(r.status, 403);
    assert.equal(r.body.ret, 4);
    assert.match(r.body.errMsg, /off: set SYNCHAT_ADMIN_TOKEN or SYNCHAT_ADMIN_USERS/);
  });
});

describe('GET /api/admin/stats of a draining node', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startServer({ adminToken: TOKEN });
  });
  after(() => srv.stop());

  it('says so in its snapshot (the dashboard shows a draining badge)', async () => {
    assert.equal((await stats(srv.url, `Bearer ${TOKEN}`)).body.nodes[0].snapshot.isDraining, false);
    // The first step of a SIGTERM (docs/operations.md "Draining and rolling restarts"); serving goes on.
    await srv.core.startDrain();
    assert.equal((await stats(srv.url, `Bearer ${TOKEN}`)).body.nodes[0].snapshot.isDraining, true);
  });
});

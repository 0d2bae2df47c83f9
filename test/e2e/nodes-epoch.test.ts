// Epoch renewal over two nodes on one PostgreSQL database and one Redis (issue 12): a key ahead of the log, presented
// through node 0's gateway process, renews the user's epoch, and node 1, which answered the old epoch just before,
// answers the new one at once (epochs are not cached with a bus between nodes); `npm run renew-epochs
// --postgres-url` with the nodes stopped renews every user's epoch. Skipped without PostgreSQL and Redis.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { startNodes, startOwnRedis, type OwnRedis, type TestNodes } from '../helpers/nodes.ts';
import { api, befriend, syncAll, userDevice } from '../helpers/server.ts';
import { requirePostgres, requireRedis } from '../helpers/services.ts';
import { authedWire } from '../helpers/wire.ts';

const skip = (await requirePostgres()) ?? (await requireRedis());

describe('epoch renewal over several nodes', { skip }, () => {
  let redis: OwnRedis;
  let cluster: TestNodes;
  before(async () => {
    redis = await startOwnRedis();
    cluster = await startNodes(2, redis.url, [1, 0]);
  });
  after(async () => {
    await cluster?.stop();
    await redis?.kill();
  });
  const node = (i: number) => cluster.nodes[i]!;

  it('a key ahead of the head on one node renews the epoch that every node answers; renew-epochs --postgres-url renews every user', async () => {
    const alice = await userDevice(node(0).url, 'ne_alice');
    const here = await userDevice(node(0).url, 'ne_bob', 'here');
    const there = await userDevice(node(1).url, 'ne_bob', 'there');
    await befriend(node(0).url, alice, here);
    assert.equal((await api(node(0).url, '/api/sendmsg', { clientMsgId: 'm1', to: 'ne_bob', type: 1, content: 'hi' }, alice.sid)).body.ret, 0);
    const first = await api(node(1).url, '/api/sync', { syncKey: 0 }, there.sid);
    assert.equal(first.body.epoch, here.epoch, 'node 1 answers the registered epoch');
    const head = (await syncAll(node(1).url, there.sid)).syncKey;

    // Through node 0's gateway process (the epoch comes from its core).
    const { client, authOk } = await authedWire('ws', node(0), here.sid, head + 5);
    client.close();
    const renewed: string = authOk.epoch;
    assert.notEqual(renewed, here.epoch, 'AUTH with a key ahead of the head renews the epoch');
    assert.equal((await api(node(1).url, '/api/sync', { syncKey: 0 }, there.sid)).body.epoch, renewed, 'node 1 answers the renewed epoch');
    const onOne = await authedWire('tcp', node(1), there.sid, head);
    onOne.client.close();
    assert.equal(onOne.authOk.epoch, renewed);
    // The same key again on node 0 renews nothing more; on node 1, which did not renew it, it renews once more (a
    // node remembers only its own renewals), then no more, and both nodes answer that epoch.
    assert.equal((await api(node(0).url, '/api/sync', { syncKey: head + 5 }, here.sid)).body.epoch, renewed);
    const again = (await api(node(1).url, '/api/sync', { syncKey: head + 5 }, there.sid)).body.epoch;
    assert.notEqual(again, renewed);
    assert.equal((await api(node(1).url, '/api/sync', { syncKey: head + 5 }, there.sid)).body.epoch, again);
    assert.equal((await api(node(0).url, '/api/sync', { syncKey: 0 }, here.sid)).body.epoch, again);

    // After a restore: the operator's command, nodes stopped.
    await Promise.all(cluster.nodes.map((n) => n.server.stop()));
    const run = spawnSync(process.execPath, ['--import', 'tsx', 'scripts/renew-epochs.ts', '--postgres-url', cluster.dbUrl], {
      encoding: 'utf8',
      env: { ...process.env, SYNCHAT_POSTGRES_URL: '' },
    });
    assert.equal(run.status, 0, run.stderr);
    assert.match(run.stdout, /Renewed the epoch of 2 users in the PostgreSQL database/);
    await Promise.all(cluster.nodes.map((n) => n.restart()));
    const renewedAll = (await api(node(0).url, '/api/sync', { syncKey: 0 }, here.sid)).body.epoch;
    assert.notEqual(renewedAll, again);
    assert.equal((await api(node(1).url, '/api/sync', { syncKey: 0 }, there.sid)).body.epoch, renewedAll);
    const aliceEpoch = (await api(node(1).url, '/api/sync', { syncKey: 0 }, alice.sid)).body.epoch;
    assert.notEqual(aliceEpoch, alice.epoch, "alice's epoch is renewed too");
  });
});

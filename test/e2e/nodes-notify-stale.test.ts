/**
 * Chaos finding 2 (cluster): a long connection whose device synced past the news it had heard (the news crossed
 * nodes late, or not at all while Redis was down) learned that head from the catch-up sweep afterwards, sent a
 * NOTIFY for a key the device already held and stayed "notified" with no gap to fetch: the device ignores such a
 * NOTIFY, so no sync cleared the flag and every later head the sweep announced was swallowed. The device stayed
 * online, its own requests answered, hearing nothing (45 s in the chaos runs).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { OP } from '../../src/protocol/index.ts';
import { startNodes, startOwnRedis, type OwnRedis, type TestNodes } from '../helpers/nodes.ts';
import { api, befriend, syncAll, userDevice } from '../helpers/server.ts';
import { requirePostgres, requireRedis } from '../helpers/services.ts';
import { authedWire } from '../helpers/wire.ts';

const skip = (await requirePostgres()) ?? (await requireRedis());

/** The catch-up sweep's period on a node (ChatService's catchUpMs default), plus room for its store read. */
const SWEEP_MS = 5_000 + 1_500;

describe('a long connection that synced ahead of the news it heard (two nodes, Redis down)', { skip }, () => {
  let redis: OwnRedis;
  let cluster: TestNodes;
  before(async () => {
    redis = await startOwnRedis();
    cluster = await startNodes(2, redis.url);
  });
  after(async () => {
    await cluster?.stop();
    await redis?.kill();
  });

  it('gets no NOTIFY for a key it holds, and a NOTIFY for the next head the catch-up sweep finds', async () => {
    const [n0, n1] = cluster.nodes;
    const amy = await userDevice(n0!.url, 'st_amy');
    const ben = await userDevice(n1!.url, 'st_ben');
    await befriend(n0!.url, amy, ben);
    const { client } = await authedWire('tcp', n1!, ben.sid, (await syncAll(n1!.url, ben.sid)).syncKey);
    const send = async (clientMsgId: string) => {
      const r = await api(n0!.url, '/api/sendmsg', { clientMsgId, to: 'st_ben', type: 1, content: clientMsgId }, amy.sid);
      assert.equal(r.body.ret, 0);
    };
    try {
      await redis.kill();
      // Node 1 does not hear of this message: Redis is down.
      await send('st-1');
      // Ben syncs over his connection on node 1 and gets it: his key is now past what that connection heard.
      const synced = await client.request(OP.SYNC, { syncKey: 0 });
      const k1 = synced.body.syncKey as number;
      assert.ok(synced.body.entries.some((e: any) => e.clientMsgId === 'st-1'));
      client.send(OP.ACK, { syncKey: k1 });
      // The sweep announces k1, which Ben holds: nothing to tell him.
      await new Promise((r) => setTimeout(r, SWEEP_MS));
      const stale = client.received.filter((p) => p.op === OP.ERROR || (p.op === OP.NOTIFY && p.body.syncKey <= k1));
      assert.deepEqual(stale.map((p) => p.body), [], 'the ACK accepted, and no NOTIFY for a key the device holds');
      // A new message, still without Redis: the sweep finds it and the connection tells Ben.
      await send('st-2');
      await client.next((p) => p.op === OP.NOTIFY && p.body.syncKey > k1, 'NOTIFY of the next head');
    } finally {
      client.close();
      await redis.start();
    }
  });
});

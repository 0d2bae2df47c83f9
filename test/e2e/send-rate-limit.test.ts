// The send rate with SYNCHAT_RATE_LIMIT=on (test servers run with it off): the 301st send in 10 s answers 1205
// with retryAfterSec over HTTP, TCP and WebSocket, nothing past the limit reaches a log, sending works again after
// the window; and on two nodes sharing Redis the limit is one per user, across nodes (docs/protocol.md).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { OP } from '../../src/protocol/index.ts';
import { SENDS_PER_WINDOW, SEND_WINDOW_MS } from '../../src/service/messages.ts';
import { startNodes, startOwnRedis, type OwnRedis, type TestNodes } from '../helpers/nodes.ts';
import { api, befriend, startServer, syncAll, userDevice, type Device, type TestServer } from '../helpers/server.ts';
import { requirePostgres, requireRedis } from '../helpers/services.ts';
import { authedWire, type WireClient } from '../helpers/wire.ts';

/** Sends at once, at most this many in flight: the whole limit goes out well inside one window. */
const IN_FLIGHT = 20;

type Send = (clientMsgId: string) => Promise<any>;

function httpSend(url: string, from: Device, to: string): Send {
  return async (clientMsgId) => (await api(url, '/api/sendmsg', { clientMsgId, to, type: 1, content: clientMsgId }, from.sid)).body;
}

function wireSend(client: WireClient, to: string): Send {
  return async (clientMsgId) => {
    const r = await client.request(OP.SEND, { clientMsgId, to, type: 1, content: clientMsgId });
    assert.equal(r.op, OP.SEND_ACK);
    return r.body;
  };
}

/** Sends `count` messages `${prefix}-<n>` through `sends` in turn, IN_FLIGHT at a time; answers in order. */
async function sendMany(sends: Send[], prefix: string, count: number): Promise<any[]> {
  const answers: any[] = new Array(count);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < count; i = next++) answers[i] = await sends[i % sends.length]!(`${prefix}-${i}`);
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
  return answers;
}

/** Checks the answer past the limit: 1205 with a retryAfterSec inside the window. */
function assertLimited(body: any, what: string): void {
  assert.equal(body.ret, 1205, `${what}: ${JSON.stringify(body)}`);
  assert.match(body.errMsg, /^sending too fast; try again in \d+ s$/);
  assert.ok(Number.isInteger(body.retryAfterSec) && body.retryAfterSec >= 1 && body.retryAfterSec <= SEND_WINDOW_MS / 1000, JSON.stringify(body));
}

/** The clientMsgIds of `prefix` in a log. */
async function sentIds(url: string, d: Device, prefix: string): Promise<string[]> {
  return (await syncAll(url, d.sid)).entries.filter((e) => e.kind === 'msg' && e.clientMsgId.startsWith(`${prefix}-`)).map((e) => e.clientMsgId);
}

async function waitOut(retryAfterSec: number): Promise<void> {
  await new Promise((r) => setTimeout(r, retryAfterSec * 1000 + 200));
}

describe('the send rate with SYNCHAT_RATE_LIMIT=on, one node', () => {
  let srv: TestServer;
  const wires: WireClient[] = [];
  before(async () => {
    srv = await startServer({ rateLimit: 'on' });
  });
  after(async () => {
    for (const w of wires) w.close();
    await srv?.stop();
  });

  it('answers the 301st send in 10 s with 1205 and retryAfterSec over HTTP, TCP and WebSocket, appends nothing past the limit, and sends again after the window', async () => {
    const bob = await userDevice(srv.url, 'rl_bob');
    // One sender per transport (the limit is per user, so the three run at once and share one wait).
    const senders = await Promise.all(
      (['http', 'tcp', 'ws'] as const).map(async (transport) => {
        const d = await userDevice(srv.url, `rl_${transport}`);
        await befriend(srv.url, d, bob);
        if (transport === 'http') return { transport, d, send: httpSend(srv.url, d, 'rl_bob') };
        const { client } = await authedWire(transport, srv, d.sid);
        wires.push(client);
        return { transport, d, send: wireSend(client, 'rl_bob') };
      }),
    );
    const waits = await Promise.all(
      senders.map(async ({ transport, d, send }) => {
        const answers = await sendMany([send], transport, SENDS_PER_WINDOW);
        answers.forEach((a, i) => assert.equal(a.ret, 0, `${transport}: send ${i + 1} of ${SENDS_PER_WINDOW}: ${JSON.stringify(a)}`));
        const over = [await send(`${transport}-over-1`), await send(`${transport}-over-2`)];
        over.forEach((a, i) => assertLimited(a, `${transport}: send ${SENDS_PER_WINDOW + 1 + i}`));
        const ids = await sentIds(srv.url, d, transport);
        assert.equal(ids.length, SENDS_PER_WINDOW, `${transport}: the sender's log holds the ${SENDS_PER_WINDOW} answered sends and nothing past them`);
        assert.ok(!ids.some((id) => id.includes('-over-')), `${transport}: a refused send reached a log`);
        return Math.max(...over.map((a) => a.retryAfterSec));
      }),
    );
    assert.equal((await sentIds(srv.url, bob, 'http')).length + (await sentIds(srv.url, bob, 'tcp')).length + (await sentIds(srv.url, bob, 'ws')).length, 3 * SENDS_PER_WINDOW);
    await waitOut(Math.max(...waits));
    for (const { transport, send } of senders) assert.equal((await send(`${transport}-after`)).ret, 0, `${transport}: sends again after the window`);
    assert.equal((await sentIds(srv.url, bob, 'tcp')).length, SENDS_PER_WINDOW + 1);
  });
});

const skip = (await requirePostgres()) ?? (await requireRedis());

describe('the send rate on two nodes sharing Redis', { skip }, () => {
  let redis: OwnRedis;
  let cluster: TestNodes;
  before(async () => {
    redis = await startOwnRedis();
    cluster = await startNodes(2, redis.url, [0, 0], { SYNCHAT_RATE_LIMIT: 'on' });
  });
  after(async () => {
    await cluster?.stop();
    await redis?.kill();
  });

  it('is one limit per user across nodes: sends alternating between two nodes are refused past 300 on both, and resume after the window', async () => {
    const [a, b] = [cluster.nodes[0]!, cluster.nodes[1]!];
    const ann = await userDevice(a.url, 'rl_ann');
    const bob = await userDevice(b.url, 'rl_bob');
    await befriend(a.url, ann, bob);
    const answers = await sendMany([httpSend(a.url, ann, 'rl_bob'), httpSend(b.url, ann, 'rl_bob')], 'x', SENDS_PER_WINDOW);
    answers.forEach((r, i) => assert.equal(r.ret, 0, `send ${i + 1} (node ${i % 2}): ${JSON.stringify(r)}`));
    // Each node saw only 150 of them: with a limit per node, both would still accept.
    const overA = await httpSend(a.url, ann, 'rl_bob')('x-over-a');
    const overB = await httpSend(b.url, ann, 'rl_bob')('x-over-b');
    assertLimited(overA, 'node 0, send 301');
    assertLimited(overB, 'node 1, send 302');
    for (const node of [a, b]) {
      const ids = await sentIds(node.url, bob, 'x');
      assert.equal(ids.length, SENDS_PER_WINDOW, 'the answered sends, and nothing past the limit');
      assert.ok(!ids.some((id) => id.includes('-over-')));
    }
    await waitOut(Math.max(overA.retryAfterSec, overB.retryAfterSec));
    assert.equal((await httpSend(b.url, ann, 'rl_bob')('x-after')).ret, 0, 'sends again after the window');
    assert.equal((await sentIds(a.url, bob, 'x')).length, SENDS_PER_WINDOW + 1);
  });
});

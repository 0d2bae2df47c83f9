// The SDK against three real nodes (PostgreSQL + Redis, PROTOCOL.md "Several nodes"), with nothing given but the
// first node's URL: the client learns every node from `/api/gateways`, spreads over them, and when the node it is
// on is killed with SIGKILL in the middle of a burst it continues through another one, over TCP, WebSocket and
// long-poll. Sends are reconciled by clientMsgId against the server's logs. Skipped without PostgreSQL or Redis,
// failing under CI=true.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { SynchatClient } from '../../src/sdk/index.ts';
import { startNodes, startOwnRedis, type OwnRedis, type TestNode, type TestNodes } from '../helpers/nodes.ts';
import { syncAll } from '../helpers/server.ts';
import { requirePostgres, requireRedis } from '../helpers/services.ts';
import { TRANSPORTS, befriend, startClient, waitUntil, type TestClient } from './helpers.ts';

const skip = (await requirePostgres()) ?? (await requireRedis());

/** Waits until the node at `url` lists the gateways of all three nodes (PROTOCOL.md: once they are up). */
async function untilAllListed(url: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const r = (await (await fetch(url + '/api/gateways')).json()) as { gateways: unknown[] };
    if (r.gateways.length === 9) return;
    if (Date.now() > deadline) assert.fail(`${url} lists ${r.gateways.length} gateways, not those of all three nodes`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

describe('SDK over three real nodes', { skip }, () => {
  let redis: OwnRedis;
  let cluster: TestNodes;
  const clients: SynchatClient[] = [];
  before(async () => {
    redis = await startOwnRedis();
    cluster = await startNodes(3, redis.url);
  });
  after(async () => {
    for (const c of clients) await c.close();
    await cluster?.stop();
    await redis?.kill();
  });

  /** The node a client is on (by the port of its gateway or, on long-poll, of its HTTP base URL). */
  function nodeOf(c: SynchatClient): TestNode | undefined {
    const url = c.connection.transport === 'http' ? c.baseUrl : c.connection.url;
    const port = url ? Number(new URL(url).port) : NaN;
    return cluster.nodes.find((n) => n.httpPort === port || n.tcpPort === port);
  }

  async function client(transport: (typeof TRANSPORTS)[number], username: string, random: () => number): Promise<TestClient> {
    const c = await startClient(transport, cluster.nodes[0]!.url, username, 'dev1', { random });
    clients.push(c.client);
    return c;
  }

  for (const transport of TRANSPORTS) {
    it(`learns every node from /api/gateways and spreads its clients over them (${transport})`, async () => {
      await untilAllListed(cluster.nodes[0]!.url);
      // These draws pick a different position of the list each time, whatever order the nodes are listed in.
      const on = new Set<number | undefined>();
      for (const [i, r] of [0, 0.4, 0.99].entries()) on.add(nodeOf((await client(transport, `sp_${transport}_${i}`, () => r)).client)?.index);
      assert.deepEqual([...on].sort(), [0, 1, 2], 'one client on each node');
    });

    it(`continues through another node when its node is killed in the middle of a burst, nothing lost or doubled (${transport})`, async () => {
      await untilAllListed(cluster.nodes[0]!.url);
      const sender = await client(transport, `kb_send_${transport}`, () => 0);
      const receiver = await client(transport, `kb_recv_${transport}`, () => 0);
      await befriend(sender.client, receiver.client);
      const doomed = nodeOf(receiver.client)!;
      assert.equal(nodeOf(sender.client), doomed, 'the same draws put both on one node');
      const sent: string[] = [];
      for (let i = 0; i < 60; i++) sent.push((await sender.client.queueMessage({ to: receiver.client.username!, type: 1, content: `burst ${i}` })).clientMsgId);
      await waitUntil(() => receiver.messages.length >= 10, 'the receiver has some of the burst');
      await doomed.server.kill9();
      try {
        await waitUntil(() => receiver.messages.length >= 60 && sender.client.outbox.length === 0, 'the whole burst arrives through another node', 60_000);
        assert.deepEqual(receiver.ids(), sent, 'receiver: nothing lost, nothing doubled, in order');
        await waitUntil(() => sender.messages.length >= 60, "the sender's device has its own burst");
        assert.deepEqual(sender.ids(), sent, 'sender: nothing lost, nothing doubled, in order');
        const live = cluster.nodes.find((n) => n !== doomed)!;
        for (const c of [sender, receiver]) {
          const logged = (await syncAll(live.url, c.client.sid!)).entries.filter((e) => e.kind === 'msg').map((e) => e.clientMsgId);
          assert.deepEqual(logged, sent, `${c.client.username}'s log holds each send once`);
          await waitUntil(() => c.client.connection.state === 'online', `${c.client.username} is online`);
          assert.notEqual(nodeOf(c.client), doomed, `${c.client.username} left the dead node`);
          assert.equal(c.client.transport, transport);
        }
      } finally {
        await doomed.restart();
      }
    });
  }
});

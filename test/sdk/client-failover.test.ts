// Spreading and failover through the SDK, against a real server: two "nodes", each a pair of real TCP proxies
// (one in front of the server's TCP port, one in front of its HTTP port, which also carries /ws), listed to the
// clients as two nodes' gateways. Killing a node closes its proxies: open connections are cut, new ones refused.
// What the clients sent is reconciled by clientMsgId against the server's logs: nothing lost, nothing doubled.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { RET, SynchatClient, type ConnectionState, type Gateway } from '../../src/sdk/index.ts';
import type { Connections } from '../../src/transports/conn/connections.ts';
import { freePort } from '../helpers/process.ts';
import { startServer, syncAll, type TestServer } from '../helpers/server.ts';
import { Proxy, TRANSPORTS, befriend, clientOptions, startClient, waitUntil, type TestClient } from './helpers.ts';

/** One node as the clients see it: its gateways, served by proxies to the one real server. */
interface FakeNode {
  name: string;
  httpUrl: string;
  gateways: Gateway[];
  tcp: Proxy;
  http: Proxy;
  /** The node dies: its connections are cut and new ones refused. */
  kill(): Promise<void>;
}

async function fakeNode(name: string, srv: TestServer): Promise<FakeNode> {
  const tcp = await new Proxy(srv.tcpPort).listen();
  const http = await new Proxy(srv.httpPort).listen();
  const httpUrl = `http://127.0.0.1:${http.port}`;
  return {
    name,
    httpUrl,
    gateways: [
      { transport: 'tcp', url: `tcp://127.0.0.1:${tcp.port}` },
      { transport: 'ws', url: `ws://127.0.0.1:${http.port}/ws` },
      { transport: 'http', url: httpUrl },
    ],
    tcp,
    http,
    async kill() {
      await Promise.all([tcp.close(), http.close()]);
    },
  };
}

/** The node a client is on now (its long connection's gateway, or on long-poll its HTTP base URL). */
function nodeOf(c: SynchatClient, nodes: readonly FakeNode[]): FakeNode | undefined {
  const url = c.connection.transport === 'http' ? c.baseUrl : c.connection.url;
  return nodes.find((n) => n.gateways.some((g) => g.url === url));
}

/** The clientMsgIds of the message entries in a user's log on the server. */
async function loggedIds(srv: TestServer, sid: string): Promise<string[]> {
  return (await syncAll(srv.url, sid)).entries.filter((e) => e.kind === 'msg').map((e) => e.clientMsgId);
}

for (const transport of TRANSPORTS) {
  describe(`SDK over several nodes, ${transport}`, () => {
    let srv: TestServer;
    let nodes: FakeNode[] = [];
    const clients: SynchatClient[] = [];

    before(async () => {
      srv = await startServer();
    });
    after(async () => {
      for (const c of clients) await c.close();
      for (const n of nodes) await n.kill();
      await srv.stop();
    });

    /** Two fresh nodes for one test. */
    async function twoNodes(): Promise<FakeNode[]> {
      for (const n of nodes) await n.kill();
      nodes = [await fakeNode('node A', srv), await fakeNode('node B', srv)];
      return nodes;
    }

    /** A client that knows both nodes' gateways and starts at node A's HTTP URL; `random` decides its picks. */
    async function client(username: string, random: () => number): Promise<TestClient> {
      const c = await startClient(transport, nodes[0]!.httpUrl, username, 'dev1', { gateways: nodes.flatMap((n) => n.gateways), random });
      clients.push(c.client);
      return c;
    }

    it('spreads clients over the nodes: a pick is random among the live gateways, not always the first', async () => {
      await twoNodes();
      const a = await client(`spread_a_${transport}`, () => 0);
      const b = await client(`spread_b_${transport}`, () => 0.99);
      const nodeA = nodeOf(a.client, nodes);
      const nodeB = nodeOf(b.client, nodes);
      assert.ok(nodeA && nodeB, 'both clients are on a listed node');
      assert.notEqual(nodeA, nodeB, 'different random draws, different nodes');
    });

    it('moves to the other node when its node dies in the middle of a burst, losing and doubling nothing', async () => {
      await twoNodes();
      // The same draws put both on one node, which is then killed under them.
      const sender = await client(`fo_send_${transport}`, () => 0);
      const receiver = await client(`fo_recv_${transport}`, () => 0);
      await befriend(sender.client, receiver.client);
      const doomed = nodeOf(receiver.client, nodes)!;
      assert.equal(nodeOf(sender.client, nodes), doomed, 'both start on one node');
      const survivor = nodes.find((n) => n !== doomed)!;
      const sent: string[] = [];
      for (let i = 0; i < 60; i++) sent.push((await sender.client.queueMessage({ to: receiver.client.username!, type: 1, content: `burst ${i}` })).clientMsgId);
      await waitUntil(() => receiver.messages.length >= 10, 'the receiver has some of the burst');
      await doomed.kill();
      await waitUntil(() => receiver.messages.length >= 60 && sender.client.outbox.length === 0, 'the whole burst arrives through the other node');
      assert.deepEqual(receiver.ids(), sent, 'receiver: nothing lost, nothing doubled, in order');
      await waitUntil(() => sender.messages.length >= 60, "the sender's device has its own burst");
      assert.deepEqual(sender.ids(), sent, 'sender: nothing lost, nothing doubled, in order');
      for (const c of [sender, receiver]) {
        assert.deepEqual(await loggedIds(srv, c.client.sid!), sent, `${c.client.username}'s log on the server holds each send once`);
        await waitUntil(() => c.client.connection.state === 'online' && nodeOf(c.client, nodes) === survivor, `${c.client.username} is on ${survivor.name}`);
        assert.equal(c.client.transport, transport);
      }
    });

    it('repeats a send whose answer a dying node lost on the other node, under the same clientMsgId, once', async () => {
      await twoNodes();
      const sender = await client(`lost_send_${transport}`, () => 0);
      const receiver = await startClient(transport, srv.url, `lost_recv_${transport}`, 'dev1');
      clients.push(receiver.client);
      await befriend(sender.client, receiver.client);
      const doomed = nodeOf(sender.client, nodes)!;
      const survivor = nodes.find((n) => n !== doomed)!;
      // The node takes the send and commits it, and dies before its answer leaves.
      doomed.tcp.dropAnswers();
      doomed.http.dropAnswers();
      const item = await sender.client.sendText(receiver.client.username!, 'answered by the other node', 'lost-answer');
      assert.equal(item.state, 'sent');
      await waitUntil(() => receiver.messages.length >= 1, 'the receiver has it');
      // The logs are the authority: one entry in each means the repeat appended nothing.
      assert.deepEqual(await loggedIds(srv, sender.client.sid!), ['lost-answer'], 'committed once');
      assert.deepEqual(await loggedIds(srv, receiver.client.sid!), ['lost-answer'], 'delivered once');
      assert.deepEqual(receiver.ids(), ['lost-answer']);
      await waitUntil(() => nodeOf(sender.client, nodes) === survivor, `the sender moved to ${survivor.name}`);
    });

    it(
      'moves to the other node at once on ERROR 1102 (going away): no backoff delay, no error, nothing lost or doubled',
      { skip: transport === 'http' ? 'ERROR 1102 is a long-connection packet; ret 1102 on HTTP moves the base URL in HttpClient' : false },
      async () => {
        await twoNodes();
        const sender = await client(`away_send_${transport}`, () => 0);
        const receiver = await client(`away_recv_${transport}`, () => 0);
        await befriend(sender.client, receiver.client);
        const doomed = nodeOf(receiver.client, nodes)!;
        const survivor = nodes.find((n) => n !== doomed)!;
        const states: ConnectionState[] = [];
        const errors: Error[] = [];
        receiver.client.on('connection', (s) => states.push(s));
        receiver.client.on('error', (e) => errors.push(e));
        const sent: string[] = [];
        for (let i = 0; i < 40; i++) sent.push((await sender.client.queueMessage({ to: receiver.client.username!, type: 1, content: `away ${i}` })).clientMsgId);
        await waitUntil(() => receiver.messages.length >= 10, 'the receiver has some of the burst');
        // The server's own connection API, as a drain uses it: ERROR 1102, then close. Its listeners stay open.
        const uin = receiver.client.session!.uin;
        const conns = (srv.connections as Connections).connectionsOf(uin);
        assert.equal(conns.length, 1, 'the receiver holds one long connection');
        conns[0]!.fail(RET.GOING_AWAY, 'this server is going away');
        await waitUntil(() => receiver.messages.length >= 40, 'the whole burst arrives');
        assert.deepEqual(receiver.ids(), sent, 'nothing lost, nothing doubled, in order');
        await waitUntil(() => receiver.client.connection.state === 'online', 'the receiver is online again');
        const away = states.find((s) => s.state === 'offline');
        assert.ok(away, `the receiver went offline once: ${JSON.stringify(states)}`);
        assert.match(away.reason ?? '', /going away/);
        assert.equal(away.retryInMs, 0, 'no backoff delay before the reconnect');
        assert.equal(away.isMoving, true, 'apps see a move, not a failure');
        assert.equal(states.filter((s) => s.state === 'offline').length, 1, 'one move, no failed attempt after it');
        assert.equal(nodeOf(receiver.client, nodes), survivor, `the receiver moved to ${survivor.name}`);
        assert.equal(receiver.client.connection.isMoving, undefined, 'online again: no longer moving');
        assert.deepEqual(errors, []);
      },
    );
  });
}

describe('SDK API calls over several nodes', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startServer();
  });
  after(async () => {
    await srv.stop();
  });

  it('goes to a bootstrap URL when its base URL refuses connections, for any call', async () => {
    const dead = `http://127.0.0.1:${await freePort()}`;
    const c = new SynchatClient(clientOptions('http', dead, { bootstrapUrls: [srv.url] }));
    try {
      const { uin } = await c.register('boot_user', 'password-boot', 'Boot');
      assert.ok(uin > 0, 'register (not repeatable in general) went to the live node: the dead one never got it');
      await c.login('boot_user', 'password-boot', { deviceId: 'd' });
      assert.equal(c.baseUrl, srv.url);
      await c.start();
      assert.equal((await c.whenOnline()).transport, 'http');
      assert.equal(c.connection.url, srv.url);
    } finally {
      await c.close();
    }
  });

  /** Two logged-in contacts: `owner` knows nodes A and B (starting at A, not started), `friend` talks to the server. */
  async function contactsOverTwoNodes(prefix: string) {
    const a = await fakeNode('node A', srv);
    const b = await fakeNode('node B', srv);
    const owner = new SynchatClient(clientOptions('http', a.httpUrl, { gateways: [...a.gateways, ...b.gateways], random: () => 0 }));
    const friend = new SynchatClient(clientOptions('http', srv.url));
    for (const [c, name] of [[owner, `${prefix}_owner`], [friend, `${prefix}_friend`]] as const) {
      await c.register(name, `password-${name}`, name);
      await c.login(name, `password-${name}`, { deviceId: 'd' });
    }
    await owner.requestContact(friend.username!);
    await friend.acceptContact(owner.username!);
    return {
      a,
      b,
      owner,
      friend,
      async close() {
        await owner.close();
        await friend.close();
        await a.kill();
        await b.kill();
      },
    };
  }

  it('repeats a sendmsg whose answer node A lost on node B with the same clientMsgId: the server answers duplicate', async () => {
    const t = await contactsOverTwoNodes('dup');
    try {
      t.a.http.dropAnswers();
      const body = { clientMsgId: 'http-retry', to: t.friend.username, type: 1, content: 'once' };
      const answer = await t.owner.call('/api/sendmsg', body);
      assert.equal(answer.duplicate, true, 'node A committed it; the repeat on node B appended nothing');
      assert.equal(t.owner.baseUrl, t.b.httpUrl);
      assert.deepEqual(await loggedIds(srv, t.friend.sid!), ['http-retry']);
    } finally {
      await t.close();
    }
  });

  it('does not repeat a call that is unsafe to repeat once it may have reached the dying node, but moves on', async () => {
    const t = await contactsOverTwoNodes('grp');
    try {
      t.a.http.dropAnswers();
      // groups/create reached node A, which made the group and lost the answer: repeating it would make a second.
      await assert.rejects(t.owner.createGroup('once', [t.friend.username!]), TypeError);
      assert.equal(t.owner.baseUrl, t.b.httpUrl, 'later calls go to the other node');
      const { groups } = await t.owner.listContacts();
      assert.deepEqual(
        groups.map((g) => g.name),
        ['once'],
        'one group: the call was not repeated',
      );
    } finally {
      await t.close();
    }
  });
});

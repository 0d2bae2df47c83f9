// The same end-to-end scenarios through the SDK over TCP, WebSocket and HTTP long-poll, against real servers:
// multi-device, duplicates, reconnect in the middle of a burst (server restart and cut connections), slow reader,
// heartbeat timeout, outbox failed → resend.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MemoryStore, SendFailedError, SynchatClient, type TransportName } from '../../src/sdk/index.ts';
import { startServer, type TestServer } from '../helpers/server.ts';
import { nodeConnectors } from '../../src/sdk/node/index.ts';
import { Proxy, TRANSPORTS, assertNoDuplicates, befriend, clientOptions, gatewaysFor, startClient, waitUntil, type TestClient } from './helpers.ts';

/** Server heartbeat for these tests: the smallest the config allows, so a dead link shows within seconds. */
const HEARTBEAT_MS = 1000;

for (const transport of TRANSPORTS) {
  describe(`SDK over ${transport}`, () => {
    let srv: TestServer;
    let dataDir: string;
    const clients: SynchatClient[] = [];
    const proxies: Proxy[] = [];

    before(async () => {
      dataDir = mkdtempSync(join(tmpdir(), `synchat-sdk-${transport}-`));
      srv = await startServer({ dataDir, heartbeatMs: HEARTBEAT_MS });
    });
    after(async () => {
      for (const c of clients) await c.close();
      for (const p of proxies) await p.close();
      await srv.stop();
      rmSync(dataDir, { recursive: true, force: true });
    });

    async function client(username: string, deviceId = 'dev1', extra = {}): Promise<TestClient> {
      const c = await startClient(transport, srv.url, username, deviceId, extra);
      clients.push(c.client);
      return c;
    }

    /** A client whose long connection (or, on http, every request) goes through a proxy. */
    async function proxiedClient(username: string, deviceId = 'dev1'): Promise<{ c: TestClient; proxy: Proxy }> {
      const proxy = await new Proxy(transport === 'tcp' ? srv.tcpPort : srv.httpPort).listen();
      proxies.push(proxy);
      const ports = { httpPort: proxy.port, tcpPort: proxy.port };
      const baseUrl = transport === 'http' ? `http://127.0.0.1:${proxy.port}` : srv.url;
      const c = await startClient(transport, baseUrl, username, deviceId, { gateways: gatewaysFor(transport, ports) });
      clients.push(c.client);
      return { c, proxy };
    }

    it('delivers everything to every device of a user, including what the other device sent', async () => {
      const a1 = await client('alice', 'phone');
      const a2 = await client('alice', 'laptop');
      const b = await client('bob');
      await befriend(a1.client, b.client);
      const sent: string[] = [];
      for (let i = 0; i < 5; i++) sent.push((await a1.client.sendText('bob', `a1-${i}`)).clientMsgId);
      for (let i = 0; i < 5; i++) sent.push((await b.client.sendText('alice', `b-${i}`)).clientMsgId);
      for (let i = 0; i < 5; i++) sent.push((await a2.client.sendText('bob', `a2-${i}`)).clientMsgId);
      for (const [name, c] of [['alice phone', a1], ['alice laptop', a2], ['bob', b]] as const) {
        await waitUntil(() => c.messages.length >= 15, `${name} has 15 messages`);
        assert.deepEqual(c.ids(), sent, `${name} sees every message once, in send order`);
        const msgIds = c.messages.map((m) => Number(m.msgId));
        assert.deepEqual(msgIds, [...msgIds].sort((x, y) => x - y), 'msgId increases in conversation order');
      }
      assert.ok(a1.messages.every((m) => m.peer === 'bob'));
      assert.ok(b.messages.every((m) => m.peer === 'alice'));
    });

    it('applies a retried send with the same clientMsgId once', async () => {
      const c1 = await client('carol');
      const d = await client('dave');
      await befriend(c1.client, d.client);
      // The first attempt committed but its answer was lost with the process: the outbox still says "sending".
      const first = await c1.client.call('/api/sendmsg', { clientMsgId: 'retry-me', to: 'dave', type: 1, content: 'once' });
      const store = new MemoryStore({
        // The device already holds its own entry (key past it), so only the server can recognise the repeat.
        session: { ...c1.client.session!, syncKey: first.seq },
        outbox: [{ clientMsgId: 'retry-me', to: 'dave', type: 1, content: 'once', state: 'sending', attempts: 1, queuedAt: Date.now() }],
      });
      const again = new SynchatClient(clientOptions(transport, srv.url, { store }));
      clients.push(again);
      const outcome = new Promise<any>((resolve) => again.on('outbox', (item) => item.state === 'sent' && resolve(item)));
      await again.start();
      const item = await outcome;
      assert.equal(item.clientMsgId, 'retry-me');
      assert.equal(item.duplicate, true, 'the server recognised the retry');
      const after = await d.client.sendText('carol', 'after');
      await waitUntil(() => d.messages.length >= 2, 'dave has both messages');
      assert.deepEqual(d.ids(), ['retry-me', after.clientMsgId], 'applied once, nothing else appended');
      assert.deepEqual(again.outbox, []);
    });

    it('loses and doubles nothing when the server restarts in the middle of a burst', async () => {
      const e = await client('erin');
      const f = await client('fred');
      await befriend(e.client, f.client);
      const sent: string[] = [];
      for (let i = 0; i < 60; i++) sent.push((await e.client.queueMessage({ to: 'fred', type: 1, content: `burst ${i}` })).clientMsgId);
      await waitUntil(() => f.messages.length >= 10, 'fred has some of the burst');
      const ports = { httpPort: srv.httpPort, tcpPort: srv.tcpPort };
      await srv.stop();
      await waitUntil(() => e.client.connection.state !== 'online' && f.client.connection.state !== 'online', 'both clients notice');
      srv = await startServer({ dataDir, heartbeatMs: HEARTBEAT_MS, ...ports });
      await waitUntil(() => f.messages.length >= 60 && e.client.outbox.length === 0, 'the whole burst arrives');
      await waitUntil(() => e.messages.length >= 60, "erin's device has its own burst");
      assert.deepEqual(f.ids(), sent, 'fred: nothing lost, nothing doubled, in order');
      assert.deepEqual(e.ids(), sent, 'erin: nothing lost, nothing doubled, in order');
      assert.equal((await e.client.whenOnline()).transport, transport);
    });

    it('loses and doubles nothing when the connection is cut in the middle of a burst', async () => {
      const g = await client('gina');
      const { c: h, proxy } = await proxiedClient('hank');
      await befriend(g.client, h.client);
      const sent: string[] = [];
      for (let i = 0; i < 80; i++) sent.push((await g.client.queueMessage({ to: 'hank', type: 1, content: `m${i}` })).clientMsgId);
      await waitUntil(() => h.messages.length >= 5, 'hank has some of the burst');
      proxy.cut();
      await waitUntil(() => h.messages.length >= 40, 'hank is back and receiving');
      proxy.cut();
      await waitUntil(() => h.messages.length >= 80, 'hank has the whole burst');
      assert.deepEqual(h.ids(), sent);
      assertNoDuplicates(h.ids(), "hank's messages");
    });

    it('catches up exactly once after reading nothing for a while (slow reader)', async () => {
      const i1 = await client('ivan');
      const { c: j, proxy } = await proxiedClient('judy');
      await befriend(i1.client, j.client);
      await waitUntil(() => proxy.size > 0, 'judy connected through the proxy');
      proxy.pauseToClient();
      const sent: string[] = [];
      // Large messages fill the server's outbound buffer for judy while she reads nothing.
      const text = 'x'.repeat(8000);
      for (let k = 0; k < 150; k++) sent.push((await i1.client.queueMessage({ to: 'judy', type: 1, content: `${k} ${text}` })).clientMsgId);
      await waitUntil(() => i1.client.outbox.length === 0, 'ivan sent everything');
      proxy.resumeToClient();
      await waitUntil(() => j.messages.length >= 150, 'judy caught up');
      assert.deepEqual(j.ids(), sent);
    });

    it(
      'notices a dead connection by heartbeat and reconnects without losing messages',
      { skip: transport === 'http' ? 'long-poll has no heartbeat (its requests time out instead)' : false },
      async () => {
        const k = await client('kate');
        const { c: l, proxy } = await proxiedClient('liam');
        await befriend(k.client, l.client);
        const reasons: string[] = [];
        l.client.on('connection', (s) => s.reason && reasons.push(s.reason));
        await waitUntil(() => proxy.size > 0, 'liam connected through the proxy');
        proxy.stall();
        const sent = [(await k.client.sendText('liam', 'while the network is dead')).clientMsgId];
        await waitUntil(() => reasons.some((r) => /heartbeat|no packet/.test(r)), 'liam notices the dead link');
        await waitUntil(() => l.messages.length >= 1, 'liam gets the message after reconnecting');
        sent.push((await k.client.sendText('liam', 'after')).clientMsgId);
        await waitUntil(() => l.messages.length >= 2, 'and the next one');
        assert.deepEqual(l.ids(), sent);
        assert.equal(l.client.transport, transport);
      },
    );

    it('turns a refused send into failed, and resend() delivers it once under the same clientMsgId', async () => {
      const m = await client('mona');
      const n = await client('nick');
      const states: string[] = [];
      m.client.on('outbox', (item) => item.clientMsgId === 'to-stranger' && states.push(item.state));
      await assert.rejects(m.client.sendText('nick', 'hello stranger', 'to-stranger'), (err: any) => {
        assert.ok(err instanceof SendFailedError);
        assert.equal(err.ret, 4);
        return true;
      });
      assert.deepEqual(states, ['queued', 'sending', 'failed']);
      assert.equal(m.client.outbox[0]!.state, 'failed');
      await befriend(m.client, n.client);
      const item = await m.client.resend('to-stranger');
      assert.equal(item.state, 'sent');
      assert.equal(item.clientMsgId, 'to-stranger');
      await waitUntil(() => n.messages.length >= 1, 'nick has it');
      assert.deepEqual(n.ids(), ['to-stranger']);
      assert.deepEqual(m.client.outbox, []);
    });
  });
}

describe('SDK transport choice', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startServer({ heartbeatMs: HEARTBEAT_MS });
  });
  after(async () => {
    await srv.stop();
  });

  for (const preferred of ['tcp', 'ws'] as TransportName[]) {
    it(`falls back to long-poll when ${preferred} cannot be reached, and returns to ${preferred} when it can`, async () => {
      const proxy = await new Proxy(preferred === 'tcp' ? srv.tcpPort : srv.httpPort).listen();
      proxy.refuse(true);
      const c = new SynchatClient(clientOptions(preferred, srv.url, { gateways: gatewaysFor(preferred, { httpPort: proxy.port, tcpPort: proxy.port }) }));
      try {
        await c.register(`fb_${preferred}`, 'password-fb', 'FB').catch(() => {});
        await c.login(`fb_${preferred}`, 'password-fb', { deviceId: 'd' });
        const transports: (string | undefined)[] = [];
        c.on('connection', (s) => s.state === 'online' && transports.push(s.transport));
        await c.start();
        assert.equal((await c.whenOnline()).transport, 'http');
        proxy.refuse(false);
        await waitUntil(() => c.transport === preferred, `back on ${preferred}`);
        assert.equal(transports[0], 'http', 'first online over long-poll');
        assert.equal(transports.at(-1), preferred);
        // Still in sync on the new transport.
        await c.setProfile('Fallback');
        await c.sync();
        assert.ok(c.syncKey > 0);
      } finally {
        await c.close();
        await proxy.close();
      }
    });
  }

  it('uses TCP by preference when every transport is available', async () => {
    const preferred = new SynchatClient({ baseUrl: srv.url, connectors: nodeConnectors() });
    try {
      await preferred.register('pref_user', 'password-pref', 'Pref').catch(() => {});
      await preferred.login('pref_user', 'password-pref', { deviceId: 'd' });
      await preferred.start();
      assert.equal((await preferred.whenOnline()).transport, 'tcp');
    } finally {
      await preferred.close();
    }
  });
});

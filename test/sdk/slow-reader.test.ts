// An SDK device that stops reading until the server's own outbound buffer for it passes the soft bound, over TCP
// and WebSocket: the kernel's socket buffers (megabytes on loopback) are filled first, then the server holds
// pushes up to SYNCHAT_OUTBOUND_BUFFER_BYTES and stops, the device's own SYNC answer takes the buffer past the
// bound, news then queues nothing (one NOTIFY is owed until the link drains), and once the device reads again it
// has every message exactly once, in order, on the same connection. The server's connection stats are the proof.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { SynchatClient, TransportName } from '../../src/sdk/index.ts';
import { startServer, type TestServer } from '../helpers/server.ts';
import { Proxy, assertNoDuplicates, befriend, gatewaysFor, startClient, waitUntil } from './helpers.ts';

const SOFT = 64 * 1024;
const BIG = 'x'.repeat(15 * 1024);
/** Sends before the test gives up on filling the kernel's buffers (about 22 MiB). */
const MAX_SENDS = 1500;

for (const transport of ['tcp', 'ws'] as TransportName[]) {
  describe(`SDK over ${transport}: a slow reader at the server's backpressure`, () => {
    let srv: TestServer;
    const clients: SynchatClient[] = [];
    let proxy: Proxy;
    before(async () => {
      srv = await startServer({ sqliteSynchronous: 'OFF', outboundBufferBytes: SOFT });
    });
    after(async () => {
      for (const c of clients) await c.close();
      await proxy?.close();
      await srv.stop();
    });

    it('fills the server buffer past the soft bound, owes news as one NOTIFY, then catches up exactly once', async () => {
      const ivan = await startClient(transport, srv.url, `slow_ivan_${transport}`, 'dev1');
      clients.push(ivan.client);
      proxy = await new Proxy(transport === 'tcp' ? srv.tcpPort : srv.httpPort).listen();
      const ports = { httpPort: proxy.port, tcpPort: proxy.port };
      const judy = await startClient(transport, srv.url, `slow_judy_${transport}`, 'dev1', { gateways: gatewaysFor(transport, ports) });
      clients.push(judy.client);
      await befriend(ivan.client, judy.client);
      const judyUin = judy.client.session!.uin;
      const states: string[] = [];
      judy.client.on('connection', (s) => states.push(s.state));
      const row = () => srv.connections.list().find((c) => c.uin === judyUin)!;

      // Caught up and idle first: no SYNC of hers is in flight when she stops reading.
      await judy.client.sync();
      await waitUntil(() => row() !== undefined && row().key === row().head, 'judy is caught up');
      proxy.pauseToClient();
      const sent: string[] = [];
      const send = async (n: number, content: string) => {
        const items = await Promise.all(Array.from({ length: n }, () => ivan.client.sendText(judy.client.username!, content)));
        sent.push(...items.map((i) => i.clientMsgId));
      };
      // Until the kernel is full and the server holds pushes itself, then stops pushing: its key stays behind.
      while (!(row().head - row().key >= 20 && row().bufferedBytes >= SOFT / 2)) {
        assert.ok(sent.length < MAX_SENDS, `the server never buffered for the paused reader: ${JSON.stringify(row())}`);
        await send(20, BIG);
      }
      // Pushes alone never pass the soft bound (a PUSH must fit under it).
      assert.ok(srv.connections.stats().peakBufferedBytes <= SOFT + 1024, `peak ${srv.connections.stats().peakBufferedBytes}`);
      // The device's own SYNC is answered whatever the buffer holds: that takes it past the bound.
      const syncing = judy.client.sync();
      await waitUntil(() => row().bufferedBytes > SOFT, 'the SYNC answer takes the buffer past the soft bound');
      const over = row();
      // News now: neither PUSH nor NOTIFY is queued (nothing is added to the buffer); the NOTIFY is owed.
      await send(5, 'after the bound');
      await waitUntil(() => row().head >= over.head + 5, 'the server has the news');
      assert.equal(row().bufferedBytes, over.bufferedBytes, 'nothing queued while over the bound');
      assert.ok(row().key < row().head);

      proxy.resumeToClient();
      await syncing;
      await waitUntil(() => judy.messages.length >= sent.length, 'judy has every message');
      await waitUntil(() => row().key === row().head, "the server's idea of judy's key reaches the head");
      assertNoDuplicates(judy.ids(), "judy's messages");
      assert.deepEqual(new Set(judy.ids()), new Set(sent));
      // In commit order: the same order as the sender's own device saw them.
      await waitUntil(() => ivan.messages.length >= sent.length, 'ivan has his own messages');
      assert.deepEqual(judy.ids(), ivan.ids());
      assert.deepEqual(states, [], 'the connection was never dropped');
    });
  });
}

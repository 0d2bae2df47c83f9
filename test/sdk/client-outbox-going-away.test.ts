// A send answered ret 1102 ("this server is going away") stays in the outbox and goes again: the answer says
// "reconnect, to another gateway", not "refused". An HTTP relay in front of a real server answers the first
// /api/sendmsg 1102 (as a proxy in front of a draining node, or another implementation, may) and passes the rest.
import assert from 'node:assert/strict';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, it } from 'node:test';
import { RET, RET_INFO } from '../../src/protocol/index.ts';
import { startServer, syncAll, type TestServer } from '../helpers/server.ts';
import { befriend, startClient, waitUntil, type TestClient } from './helpers.ts';

/** Relays HTTP to `port`; the first `refuse` sends are answered 503 {ret: 1102} without reaching the server. */
async function goingAwayRelay(port: number, refuse: number): Promise<{ url: string; refused: () => number; close(): Promise<void> }> {
  let refused = 0;
  const server: Server = createServer((req, res) => {
    if (req.method === 'POST' && req.url?.startsWith('/api/sendmsg') && refused < refuse) {
      refused++;
      req.resume();
      res.writeHead(503, { 'content-type': 'application/json' }).end(JSON.stringify({ ret: RET.GOING_AWAY, errMsg: RET_INFO[RET.GOING_AWAY].errMsg }));
      return;
    }
    const upstream = request({ host: '127.0.0.1', port, method: req.method, path: req.url, headers: req.headers }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    refused: () => refused,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

let srv: TestServer;
let relay: Awaited<ReturnType<typeof goingAwayRelay>>;
const clients: TestClient[] = [];

before(async () => {
  srv = await startServer();
  relay = await goingAwayRelay(srv.httpPort, 1);
});
after(async () => {
  for (const c of clients) await c.client.close();
  await relay.close();
  await srv.stop();
});

it('a send answered 1102 is sent again (same clientMsgId), not marked failed, and lands once', async () => {
  // Long-poll only, one base URL: the relay. The send is answered 1102 with no other URL to move to.
  const sender = await startClient('http', relay.url, 'away_send', 'dev1', { gateways: [{ transport: 'http', url: relay.url }] });
  assert.equal(sender.client.baseUrl, relay.url);
  const receiver = await startClient('http', srv.url, 'away_recv', 'dev1');
  clients.push(sender, receiver);
  await befriend(sender.client, receiver.client);
  const item = await sender.client.sendText('away_recv', 'after a going-away answer', 'away-1');
  assert.equal(relay.refused(), 1, 'the relay answered the first send 1102');
  assert.equal(item.state, 'sent', `sent on a later attempt (got ${item.state}: ${JSON.stringify(item)})`);
  await waitUntil(() => receiver.messages.length >= 1, 'the receiver has it');
  const logged = (await syncAll(srv.url, receiver.client.sid!)).entries.filter((e) => e.kind === 'msg').map((e) => e.clientMsgId);
  assert.deepEqual(logged, ['away-1'], "once in the receiver's log");
});

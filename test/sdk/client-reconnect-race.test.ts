// Found by `npm run chaos`: a client on long-poll, trying its long connection again in the background, lost its
// long-poll meanwhile (the server was killed). The reconnect found the background attempt in progress and gave way;
// the attempt then failed and scheduled nothing, so the client stayed offline for good (its device never caught up,
// its outbox never drained). Here the long connection's gateway accepts and never answers (the background attempt
// lasts until its connect timeout) and long-poll is cut during it: the client must come back online.
import assert from 'node:assert/strict';
import { createServer, type Socket } from 'node:net';
import { test } from 'node:test';
import { SynchatClient } from '../../src/sdk/index.ts';
import { startServer } from '../helpers/server.ts';
import { clientOptions, Proxy, waitUntil } from './helpers.ts';

test('a long-poll that fails while the long connection is retried in the background still leads to a reconnect', async () => {
  const srv = await startServer();
  const http = await new Proxy(srv.httpPort).listen();
  const held: Socket[] = [];
  const silent = createServer((s) => void held.push(s));
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
  const silentPort = (silent.address() as { port: number }).port;
  const httpUrl = `http://127.0.0.1:${http.port}`;
  const client = new SynchatClient(
    clientOptions('tcp', httpUrl, {
      gateways: [
        { transport: 'tcp', url: `tcp://127.0.0.1:${silentPort}` },
        { transport: 'http', url: httpUrl },
      ],
      wire: { connectTimeoutMs: 1_500 },
      longConnectionRetryMs: 100,
      backoff: { baseMs: 50, maxMs: 200 },
    }),
  );
  try {
    await client.register('race_ann', 'password-race_ann', 'Ann');
    await client.login('race_ann', 'password-race_ann', { deviceId: 'd1' });
    await client.start();
    await waitUntil(() => client.connection.state === 'online' && client.connection.transport === 'http', 'online on long-poll (the long connection timed out)');
    // The background retry of the long connection is under way once the silent gateway holds a second socket.
    await waitUntil(() => held.length >= 2, 'a background attempt of the long connection');
    http.refuse(true);
    http.cut();
    await waitUntil(() => client.connection.state !== 'online', 'long-poll failed');
    http.refuse(false);
    await waitUntil(() => client.connection.state === 'online', 'online again after long-poll came back', 10_000);
    const sent = await client.sendText('race_ann', 'note to self');
    assert.ok(Number(sent.seq) > 0);
  } finally {
    await client.close();
    for (const s of held) s.destroy();
    silent.close();
    await http.close();
    await srv.stop();
  }
});

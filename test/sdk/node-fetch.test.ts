// nodeFetch (src/sdk/node/node-fetch.ts), the fetch that takes a CA, fails the way Node's global fetch does, so
// the HTTP client's failover reads its errors alike: a refused connection is a TypeError whose cause has the
// socket's code (never sent: safe to repeat elsewhere), and an abort rejects with the signal's reason.
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { test } from 'node:test';
import { nodeFetch } from '../../src/sdk/node/index.ts';
import { freePort } from '../helpers/process.ts';

test('a refused connection rejects with a TypeError whose cause carries ECONNREFUSED, as the global fetch does', async () => {
  const url = `http://127.0.0.1:${await freePort()}/api/gateways`;
  const [ours, global] = await Promise.all([nodeFetch()(url).catch((e) => e), fetch(url).catch((e) => e)]);
  for (const err of [ours, global]) {
    assert.ok(err instanceof TypeError);
    assert.equal((err.cause as { code?: string })?.code, 'ECONNREFUSED');
  }
});

test('an abort of a request the server holds rejects with the signal’s reason and drops the socket', async () => {
  const sockets: Socket[] = [];
  const server: Server = createServer((s) => void sockets.push(s.resume()));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const ac = new AbortController();
    const pending = nodeFetch()(`http://127.0.0.1:${(server.address() as { port: number }).port}/api/synccheck`, { signal: ac.signal });
    while (sockets.length === 0) await new Promise((r) => setTimeout(r, 10));
    const reason = new Error('gave up');
    ac.abort(reason);
    await assert.rejects(pending, (err) => err === reason);
    await new Promise<void>((resolve) => (sockets[0]!.destroyed ? resolve() : sockets[0]!.once('close', () => resolve())));
  } finally {
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
  }
});

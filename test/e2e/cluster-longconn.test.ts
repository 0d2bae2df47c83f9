// The long connection through several gateway processes: clients on TCP and WebSocket land on different
// gateways (node:cluster spreads connections), and every message reaches every device once, in order, as
// PUSH/NOTIFY relayed over the IPC link from the core.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { assertNoDuplicates, startClient, waitUntil, type TestClient } from '../sdk/helpers.ts';
import { freePort, spawnServerProcess } from '../helpers/process.ts';

test('devices on TCP and WebSocket across two gateway processes receive every message once, in order', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'synchat-cluster-lc-'));
  const server = await spawnServerProcess({
    SYNCHAT_DATA_DIR: dataDir,
    SYNCHAT_WORKERS: '2',
    SYNCHAT_HTTP_PORT: String(await freePort()),
    SYNCHAT_TCP_PORT: String(await freePort()),
  });
  const clients: TestClient[] = [];
  try {
    // Several connections per user so they spread over both gateways.
    const alice = [await startClient('tcp', server.url, 'clc_alice', 'a1'), await startClient('ws', server.url, 'clc_alice', 'a2')];
    const bob = [
      await startClient('ws', server.url, 'clc_bob', 'b1'),
      await startClient('tcp', server.url, 'clc_bob', 'b2'),
      await startClient('tcp', server.url, 'clc_bob', 'b3'),
    ];
    clients.push(...alice, ...bob);
    await alice[0]!.client.requestContact('clc_bob', 'hi');
    await bob[0]!.client.acceptContact('clc_alice');

    const sends = [];
    for (let i = 0; i < 40; i++) sends.push(alice[i % 2]!.client.sendText('clc_bob', `m${i}`, `clc-a-${i}`));
    for (let i = 0; i < 40; i++) sends.push(bob[i % 3]!.client.sendText('clc_alice', `r${i}`, `clc-b-${i}`));
    await Promise.all(sends);

    for (const c of clients) await waitUntil(() => c.messages.length >= 80, `${c.client.username} has all 80 messages`);
    const reference = clients[0]!.ids();
    for (const c of clients) {
      assertNoDuplicates(c.ids(), c.client.username!);
      assert.deepEqual(c.ids(), reference, 'every device, on every gateway, sees one order');
    }
    const msgIds = clients[0]!.messages.map((m) => Number(m.msgId));
    for (let i = 1; i < msgIds.length; i++) assert.ok(msgIds[i]! > msgIds[i - 1]!);
  } finally {
    for (const c of clients) await c.client.close();
    await server.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
});

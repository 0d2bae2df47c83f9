/**
 * The chaos runner's wire log (bench/chaos/wire-log.ts): a wrapped connector still carries the device's traffic,
 * and the report line names the last link and the sync-related packets of both directions with their keys.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, syncAll } from '../helpers/server.ts';
import { befriend, gatewaysFor, startClient, waitUntil } from '../sdk/helpers.ts';
import { tcpConnector } from '../../src/sdk/node/index.ts';
import { WireLog } from '../../bench/chaos/wire-log.ts';

test('chaos wire log: a wrapped TCP connector works and the report shows AUTH, AUTH_OK, SYNC, PUSH and ACK with keys', async () => {
  const server = await startServer();
  const wire = new WireLog();
  const gateways = gatewaysFor('tcp', server);
  const alice = await startClient('tcp', server.url, 'wl_alice', 'a1', { gateways, connectors: [wire.wrap(tcpConnector())] });
  const bob = await startClient('tcp', server.url, 'wl_bob', 'b1', { gateways });
  try {
    await befriend(alice.client, bob.client);
    // Alice idle at her head (synced and acknowledged), so the message comes as a PUSH, not in a sync's answer.
    const { syncKey: head } = await syncAll(server.url, alice.client.sid!);
    await waitUntil(() => new RegExp(`>ACK ${head} at`).test(wire.describe()), 'alice acknowledged her head');
    await bob.client.sendText('wl_alice', 'hello');
    await waitUntil(() => alice.ids().length === 1, 'alice got the message');
    await waitUntil(() => new RegExp(`>ACK ${alice.client.syncKey} at`).test(wire.describe()), 'alice acknowledged her key');
    const line = wire.describe();
    assert.match(line, /^link 1 to tcp:\/\/127\.0\.0\.1:\d+ open, opened \d+ ms ago: /);
    assert.match(line, />AUTH 0 at \d+/, 'the AUTH with the key it presented');
    assert.match(line, /<AUTH_OK \d+ at \d+/);
    assert.match(line, />SYNC \d+ at \d+/);
    assert.match(line, /<SYNC_RESP \d+ at \d+/);
    assert.match(line, new RegExp(`<PUSH ${alice.client.syncKey} at \\d+`), 'the PUSH with the key it brought');
  } finally {
    await alice.client.close();
    await bob.client.close();
    await server.stop();
  }
});

// The SDK's adaptive heartbeat against a real server (docs/sdk.md "Heartbeat"): the client proposes its longest
// period, the server agrees it, the period grows while the link survives, and a link that dies silently (a proxy
// that swallows packets, as a NAT that dropped the mapping) makes the next connection heartbeat below that period.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { HeartbeatPolicy } from '../../src/sdk/index.ts';
import type { Connections } from '../../src/transports/conn/connections.ts';
import { startServer, type TestServer } from '../helpers/server.ts';
import { Proxy, gatewaysFor, startClient, waitUntil } from './helpers.ts';

/** The mobile profile's shape, in seconds instead of minutes. */
const FAST_ADAPTIVE: HeartbeatPolicy = { initialMs: 1_000, minMs: 1_000, maxMs: 3_000, stepMs: 1_000, growAfter: 1 };

for (const transport of ['tcp', 'ws'] as const) {
  describe(`SDK adaptive heartbeat, ${transport}`, () => {
    let srv: TestServer;
    let tcp: Proxy;
    let http: Proxy;
    before(async () => {
      srv = await startServer({ heartbeatMinMs: 1_000, heartbeatMs: 2_000, heartbeatMaxMs: 3_000 });
      tcp = await new Proxy(srv.tcpPort).listen();
      http = await new Proxy(srv.httpPort).listen();
    });
    after(async () => {
      await Promise.all([tcp.close(), http.close()]);
      await srv.stop();
    });

    it('grows to the agreed period while the link survives and steps below it after a silent death', async () => {
      const gateways = gatewaysFor(transport, { httpPort: http.port, tcpPort: tcp.port });
      const { client } = await startClient(transport, srv.url, `hb_adapt_${transport}`, 'phone', { gateways, heartbeat: FAST_ADAPTIVE });
      try {
        const uin = client.session!.uin;
        const serverSide = () => (srv.connections as Connections).connectionsOf(uin).map((c) => c.heartbeatMs);
        assert.deepEqual(serverSide(), [3_000], 'AUTH proposed 3 s and the server agreed it');
        assert.equal(client.heartbeatMs, 1_000, 'the first connection starts at the safe period');
        await waitUntil(() => client.heartbeatMs === 3_000, 'the period grows a step per survived period, up to the agreed one');

        // The link now swallows every packet both ways: the HEARTBEAT goes unanswered.
        const reasons: string[] = [];
        client.on('connection', (s) => {
          if (s.reason) reasons.push(s.reason);
        });
        (transport === 'tcp' ? tcp : http).stall();
        await waitUntil(() => reasons.length > 0 && client.connection.state === 'online', 'the client notices and reconnects');
        assert.match(reasons[0]!, /heartbeat not acknowledged|no packet/);
        assert.equal(client.heartbeatMs, 2_000, 'the next connection heartbeats a step below the period that died');
        await waitUntil(() => serverSide().length === 1, 'the server holds the new connection alone');
      } finally {
        await client.close();
      }
    });
  });
}

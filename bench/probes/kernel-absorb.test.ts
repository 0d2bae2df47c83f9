// A measurement kept to reproduce BENCHMARKS.md "Issue 12" (not in npm test, which reads test/ only): how many bytes
// of answers a paused loopback reader's kernel buffers take before the server's own outbound buffer for it grows
// past the soft bound, TCP vs WebSocket. Run: node --import tsx --test bench/probes/kernel-absorb.test.ts
import { test } from 'node:test';
import { OP } from '../../src/protocol/index.ts';
import { api, befriend, startServer, userDevice } from '../../test/helpers/server.ts';
import { authedWire } from '../../test/helpers/wire.ts';
const SOFT = 64 * 1024;
const out: any[] = [];
test('absorb', async () => {
  for (const run of [1, 2, 3]) for (const transport of ['tcp', 'ws'] as const) {
    const srv = await startServer({ sqliteSynchronous: 'OFF', outboundBufferBytes: SOFT, outboundHardBytes: 256 * 1024 * 1024, outboundStallMs: 600_000 });
    const r = await userDevice(srv.url, `ab_r_${run}_${transport}`);
    const f = await userDevice(srv.url, `ab_f_${run}_${transport}`);
    await befriend(srv.url, r, f);
    for (let i = 0; i < 60; i++) await api(srv.url, '/api/sendmsg', { clientMsgId: `m${i}`, to: r.username, type: 1, content: 'x'.repeat(15 * 1024) }, f.sid);
    const { client } = await authedWire(transport, srv, r.sid, 0);
    // One answer's size, read normally first.
    const one = await client.request(OP.SYNC, { syncKey: 0, limit: 1000 });
    const answerBytes = Buffer.byteLength(JSON.stringify(one.body)) + 16;
    client.pause();
    let syncs = 0;
    const t0 = Date.now();
    for (;;) {
      client.send(OP.SYNC, { syncKey: 0, limit: 1000 });
      syncs++;
      await new Promise((res) => setTimeout(res, 40));
      const row = srv.connections.list().find((c) => c.uin === r.uin)!;
      if (row.bufferedBytes > SOFT) {
        out.push({ run, transport, answerBytes, syncs, sentBytes: syncs * answerBytes, serverBuffered: row.bufferedBytes, kernelHeldApprox: syncs * answerBytes - row.bufferedBytes, ms: Date.now() - t0 });
        break;
      }
    }
    client.close();
    await srv.stop();
  }
  console.log(JSON.stringify(out, null, 2));
});

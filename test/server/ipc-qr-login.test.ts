// QR login polls over the gateway ↔ core link (in-memory channels around the real IpcCoreHost, IpcChatClient and
// ChatService): a poll held for a gateway is let go when the gateway cancels it (its client went away) and when the
// gateway process is gone (close), and after close nothing more is sent toward that gateway.
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { test } from 'node:test';
import { IpcChatClient, IpcCoreHost } from '../../src/server/ipc.ts';
import { qrNew } from '../helpers/qr.ts';
import { startServer } from '../helpers/server.ts';
import { waitUntil } from '../helpers/wait.ts';

type Channel = EventEmitter & { send(m: unknown): boolean; sent: number };

/** Two ends of a channel: what one sends, the other receives on a later turn (as over a pipe); sends are counted. */
function channelPair(): [Channel, Channel] {
  const a = Object.assign(new EventEmitter(), { sent: 0 }) as Channel;
  const b = Object.assign(new EventEmitter(), { sent: 0 }) as Channel;
  a.send = (m) => (a.sent++, setImmediate(() => b.emit('message', structuredClone(m))), true);
  b.send = (m) => (b.sent++, setImmediate(() => a.emit('message', structuredClone(m))), true);
  return [a, b];
}

test('a QR poll held for a gateway ends when the gateway cancels it, and when the gateway is gone', async (t) => {
  const srv = await startServer();
  t.after(() => srv.stop());
  const [coreEnd, gatewayEnd] = channelPair();
  const host = new IpcCoreHost(srv.core.service, coreEnd as never, () => srv.core.readiness(), () => srv.core.reports.stats());
  const gateway = new IpcChatClient(gatewayEnd);
  const ctx = { ip: '127.0.0.1' };

  const first = await qrNew(srv.url, 'desk');
  const cancelled = gateway.pollQrLogin({ uuid: first.uuid, timeout: '30000' }, ctx);
  await waitUntil(() => srv.core.service.qrLoginPolls === 1, 'the poll is held in the core');
  cancelled.cancel();
  // The gateway still gets an answer (nobody reads it), so its request table does not keep the id.
  assert.equal((await cancelled.reply).ret, 0);
  assert.equal(srv.core.service.qrLoginPolls, 0);

  const second = await qrNew(srv.url, 'desk');
  void gateway.pollQrLogin({ uuid: second.uuid, timeout: '30000' }, ctx).reply;
  await waitUntil(() => srv.core.service.qrLoginPolls === 1, 'the poll is held in the core');
  const sentBefore = coreEnd.sent;
  host.close();
  await waitUntil(() => srv.core.service.qrLoginPolls === 0, 'the gateway is gone: its poll is let go');
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(coreEnd.sent, sentBefore, 'nothing is sent toward a closed gateway');
});

// QR login through the SDK (docs/sdk.md "QR login"): a client without a session asks for a uuid and waits; a
// logged-in client scans (seeing the asking device's name) and confirms; the waiting client ends up logged in as
// that user, starts, and its messages reach the first client.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { SynchatClient, type MsgEntry } from '../../src/sdk/index.ts';
import { SynchatError } from '../../src/protocol/index.ts';
import { startServer, type TestServer } from '../helpers/server.ts';
import { clientOptions, startClient, waitUntil } from './helpers.ts';

describe('SDK QR login', () => {
  let srv: TestServer;
  const clients: SynchatClient[] = [];
  before(async () => {
    srv = await startServer();
  });
  after(async () => {
    for (const c of clients) await c.close();
    await srv.stop();
  });

  it('logs a new client in as the confirming user; it syncs and sends like a password login', async () => {
    const phone = await startClient('tcp', srv.url, 'sq_alice', 'phone');
    clients.push(phone.client);
    const desk = new SynchatClient(clientOptions('ws', srv.url));
    clients.push(desk);

    const ticket = await desk.qrLoginNew({ deviceName: 'Desk PC' });
    let scannedBy: string | undefined;
    const waiting = desk.waitQrLogin(ticket, { onScanned: (name) => (scannedBy = name) });
    const asking = await phone.client.scanQrLogin(ticket.uuid);
    assert.equal(asking.deviceName, 'Desk PC');
    assert.equal(asking.expiresAt, ticket.expiresAt);
    await waitUntil(() => scannedBy !== undefined, 'the waiting client hears of the scan');
    assert.equal(scannedBy, 'SQ_ALICE');
    await phone.client.confirmQrLogin(ticket.uuid);
    const answer = await waiting;
    assert.equal(answer.username, 'sq_alice');
    assert.equal(desk.session?.username, 'sq_alice');
    assert.equal(desk.session?.deviceId, ticket.deviceId);

    await desk.start();
    await desk.sendText('sq_alice', 'from the desk');
    await waitUntil(() => phone.messages.some((m: MsgEntry) => m.content === 'from the desk'), 'the phone gets the desk’s message');
    const devices = await phone.client.listSessions();
    assert.ok(devices.some((d) => d.deviceName === 'Desk PC'), JSON.stringify(devices));
  });

  it('rejects the wait with ret 3 when the code expires, and with the reason when aborted', async () => {
    const short = await startServer({ qrLoginExpiryMs: 1000 });
    try {
      const c = new SynchatClient(clientOptions('http', short.url));
      const ticket = await c.qrLoginNew();
      await assert.rejects(c.waitQrLogin(ticket), (err: unknown) => err instanceof SynchatError && err.ret === 3);
      const stop = new AbortController();
      const next = await c.qrLoginNew();
      const waiting = c.waitQrLogin(next, { signal: stop.signal });
      stop.abort(new Error('user closed the dialog'));
      await assert.rejects(waiting, /user closed the dialog/);
      await c.close();
    } finally {
      await short.stop();
    }
  });
});

// Session, persistence and acknowledgement behaviour of the SDK against a real server: the outbox survives a
// restart of the client, an epoch change resyncs from 0, a revoked session ends the client, the server records the
// key the client presents, and bounded automatic retries end in `failed`.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MemoryStore, SendFailedError, SynchatClient, type Entry, type SessionEnded } from '../../src/sdk/index.ts';
import { FileStore } from '../../src/sdk/node/index.ts';
import { startServer, type TestServer } from '../helpers/server.ts';
import { Proxy, TRANSPORTS, befriend, clientOptions, gatewaysFor, startClient, waitUntil } from './helpers.ts';

let srv: TestServer;
const dir = mkdtempSync(join(tmpdir(), 'synchat-sdk-session-'));
const clients: SynchatClient[] = [];
before(async () => {
  srv = await startServer({ heartbeatMs: 1000 });
});
after(async () => {
  for (const c of clients) await c.close();
  await srv.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function started(transport: 'tcp' | 'ws' | 'http', username: string, deviceId = 'dev1', extra = {}) {
  const c = await startClient(transport, srv.url, username, deviceId, extra);
  clients.push(c.client);
  return c;
}

describe('outbox persistence', () => {
  it('sends messages written while offline after the client restarts with the same file store', async () => {
    const bob = await started('tcp', 'ob_bob');
    const file = join(dir, 'ob_alice.json');
    const first = new SynchatClient(clientOptions('tcp', srv.url, { store: new FileStore(file) }));
    await first.register('ob_alice', 'password-ob_alice', 'A');
    await first.login('ob_alice', 'password-ob_alice', { deviceId: 'phone' });
    await first.requestContact('ob_bob');
    await bob.client.acceptContact('ob_alice');
    // Never started: offline. The messages wait in the store.
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await first.queueMessage({ to: 'ob_bob', type: 1, content: `offline ${i}` })).clientMsgId);
    await first.close();

    const second = new SynchatClient(clientOptions('tcp', srv.url, { store: new FileStore(file) }));
    clients.push(second);
    const session = await second.restore();
    assert.equal(session?.username, 'ob_alice');
    assert.deepEqual(second.outbox.map((i) => i.clientMsgId), ids);
    await second.start();
    await waitUntil(() => bob.messages.length >= 3, 'bob has the offline messages');
    assert.deepEqual(bob.ids(), ids);
    await waitUntil(() => second.outbox.length === 0, 'the outbox drains');
    await second.stop(); // waits for pending store writes
    assert.deepEqual(await new FileStore(file).loadOutbox(), [], 'and the store knows it');
  });

  it('gives up after maxSendAttempts transport failures, then resend() delivers once', async () => {
    const bob = await started('tcp', 'rt_bob');
    const proxy = await new Proxy(srv.tcpPort).listen();
    try {
      const alice = await started('tcp', 'rt_alice', 'dev1', { maxSendAttempts: 1, gateways: gatewaysFor('tcp', { httpPort: 0, tcpPort: proxy.port }) });
      await befriend(alice.client, bob.client);
      await waitUntil(() => proxy.size > 0, 'alice connected through the proxy');
      proxy.stall();
      await assert.rejects(alice.client.sendText('rt_bob', 'into the void', 'void-1'), (err: any) => {
        assert.ok(err instanceof SendFailedError);
        assert.equal(err.ret, -1, 'a transport failure');
        return true;
      });
      assert.equal(alice.client.outbox[0]?.state, 'failed');
      await alice.client.whenOnline();
      const item = await alice.client.resend('void-1');
      assert.equal(item.state, 'sent');
      await waitUntil(() => bob.messages.length >= 1, 'bob has it');
      assert.deepEqual(bob.ids(), ['void-1']);
    } finally {
      await proxy.close();
    }
  });
});

for (const transport of TRANSPORTS) {
  describe(`session over ${transport}`, () => {
    it('presents the new key: the server records it as the device acknowledgement', async () => {
      const a = await started(transport, `ack_a_${transport}`);
      const b = await started(transport, `ack_b_${transport}`);
      await befriend(a.client, b.client);
      for (let i = 0; i < 3; i++) await a.client.sendText(b.client.username!, `m${i}`);
      await waitUntil(() => b.messages.length >= 3, 'b has the messages');
      const key = b.client.syncKey;
      assert.ok(key > 0);
      let acked = -1;
      const since = Date.now();
      while (acked !== key && Date.now() - since < 30_000) {
        const sessions = await b.client.listSessions();
        acked = sessions.find((s) => s.isCurrent)!.ackedKey;
        if (acked !== key) await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(acked, key, 'the server holds the key b presented');
    });

    it('discards its position and syncs from key 0 when the epoch differs', async () => {
      const a = await started(transport, `ep_a_${transport}`);
      const b = await started(transport, `ep_b_${transport}`);
      await befriend(a.client, b.client);
      await a.client.sendText(b.client.username!, 'history');
      await waitUntil(() => b.messages.length >= 1, 'b has the message');
      const stale = { ...b.client.session!, epoch: 'not-the-epoch' };
      await b.client.stop();
      const c = new SynchatClient(clientOptions(transport, srv.url, { store: new MemoryStore({ session: stale }) }));
      clients.push(c);
      const resets: string[] = [];
      const entries: Entry[] = [];
      c.on('reset', (r) => resets.push(r.epoch));
      c.on('entry', (e) => entries.push(e));
      await c.start();
      await c.whenOnline();
      await waitUntil(() => entries.some((e) => e.kind === 'msg'), 'the history arrives again');
      assert.equal(resets.length, 1);
      assert.equal(resets[0], b.client.session!.epoch);
      assert.deepEqual(entries.map((e) => e.kind), ['contactRequest', 'contact', 'msg'], 'the whole log from key 0, once');
      assert.equal(c.session!.epoch, b.client.session!.epoch);
      const seqs = entries.map((e) => e.seq);
      assert.deepEqual(seqs, [...seqs].sort((x, y) => x - y));
    });

    it('ends with sessionEnded 1101 when another device revokes it, and forgets the sid', async () => {
      const store = new MemoryStore();
      const victim = await started(transport, `rv_${transport}`, 'old-phone', { store });
      const other = await started(transport, `rv_${transport}`, 'laptop');
      const ended: SessionEnded[] = [];
      victim.client.on('sessionEnded', (e) => ended.push(e));
      const target = (await other.client.listSessions()).find((s) => s.deviceId === 'old-phone')!;
      await other.client.revokeSession(target.sessionId);
      await waitUntil(() => ended.length > 0, 'the victim hears it');
      assert.equal(ended[0]!.ret, 1101);
      assert.equal(victim.client.isRunning, false);
      assert.equal(victim.client.connection.state, 'offline');
      assert.equal(await store.loadSession(), undefined);
    });
  });
}

describe('logout', () => {
  it('stops the client, forgets the session, and the sid no longer works', async () => {
    const store = new MemoryStore();
    const c = await started('tcp', 'lo_user', 'dev1', { store });
    const sid = c.client.sid!;
    await c.client.logout();
    assert.equal(c.client.isRunning, false);
    assert.equal(await store.loadSession(), undefined);
    const probe = new SynchatClient(clientOptions('http', srv.url, { store: new MemoryStore({ session: { sid, uin: 1, username: 'lo_user', syncKey: 0, epoch: '' } }) }));
    await probe.restore();
    await assert.rejects(probe.listContacts(), (err: any) => err.ret === 1100);
  });
});

describe('password change and logout everywhere', () => {
  it('changePassword ends the other devices with sessionEnded 1101 and keeps this one running', async () => {
    const mine = await started('tcp', 'cp_user', 'one');
    const other = await started('ws', 'cp_user', 'two');
    const ended: SessionEnded[] = [];
    other.client.on('sessionEnded', (e) => ended.push(e));
    await assert.rejects(mine.client.changePassword('not-the-password', 'a-new-pass-for-cp'), (err: any) => err.ret === 4);
    await mine.client.changePassword('password-cp_user', 'a-new-pass-for-cp');
    await waitUntil(() => ended.length > 0, 'the other device hears it');
    assert.equal(ended[0]!.ret, 1101);
    assert.equal(other.client.isRunning, false);
    assert.equal(mine.client.isRunning, true);
    assert.equal((await mine.client.listSessions()).length, 1);
  });

  it('logout({everywhere: true}) ends every other device too', async () => {
    const mine = await started('tcp', 'le_user', 'one');
    const other = await started('tcp', 'le_user', 'two');
    const ended: SessionEnded[] = [];
    other.client.on('sessionEnded', (e) => ended.push(e));
    await mine.client.logout({ everywhere: true });
    assert.equal(mine.client.isRunning, false);
    await waitUntil(() => ended.length > 0, 'the other device hears it');
    assert.equal(ended[0]!.ret, 1101);
  });
});

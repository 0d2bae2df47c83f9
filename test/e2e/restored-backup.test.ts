// A restored backup end to end: a device holds a key from the log; the server is stopped, its data folder
// replaced by an older copy and started again (same ports); the device's key is now ahead of the restored log.
// Through the SDK (TCP, WebSocket, long-poll) and by hand on the wire (TCP, WebSocket), the device resyncs from
// key 0 and converges on the restored log plus what was sent after the restore, with no entry applied twice.
// The log's epoch does not change on a restore (it is set at registration): the device notices only because its
// key is ahead of the restored head (PROTOCOL.md "Epoch"). A device that comes back only after new entries have
// passed its key cannot tell, and is not covered here. The path where the epoch does change (a rebuilt log,
// played by changing the stored epoch while the server is stopped) is tested at the end: AUTH_OK and sync carry
// the new epoch and the device starts again from key 0.
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { OP } from '../../src/protocol/index.ts';
import type { MsgEntry, SynchatClient, TransportName } from '../../src/sdk/index.ts';
import { api, befriend, startServer, syncAll, userDevice, type Device, type TestServer } from '../helpers/server.ts';
import { TRANSPORTS as WIRE_TRANSPORTS, authedWire } from '../helpers/wire.ts';
import { TRANSPORTS, assertNoDuplicates, startClient, waitUntil } from '../sdk/helpers.ts';

const skip = process.env.STORE_UNDER_TEST === 'postgres' ? "restores a copy of the SQLite data folder" : undefined;

const KEPT = Array.from({ length: 5 }, (_, i) => `kept-${i}`);
const LOST = Array.from({ length: 10 }, (_, i) => `lost-${i}`);
const NEW = Array.from({ length: 3 }, (_, i) => `new-${i}`);

/** Servers and folders of one scenario, for cleanup. */
interface Scenario {
  srv: TestServer;
  alice: Device;
  bob: Device;
  dirs: string[];
  /** SDK clients to close before the server stops. */
  clients: { close(): Promise<void> }[];
}

/**
 * Alice sends KEPT to Bob; `beforeBackup` runs (a device that must exist in the backup logs in); the stopped
 * server's folder is copied; Alice sends LOST; `beforeRestore` checks the device holds them; the folder is
 * replaced by the copy and the server started on the same ports.
 */
async function restoreScenario(tag: string, s: Partial<Scenario>, beforeBackup: (srv: TestServer) => Promise<void>, beforeRestore: (srv: TestServer, bob: Device) => Promise<void>): Promise<Scenario> {
  const dataDir = mkdtempSync(join(tmpdir(), 'synchat-restore-'));
  const backupDir = mkdtempSync(join(tmpdir(), 'synchat-backup-'));
  s.dirs = [dataDir, backupDir];
  s.srv = await startServer({ dataDir });
  const ports = { httpPort: s.srv.httpPort, tcpPort: s.srv.tcpPort };
  const alice = await userDevice(s.srv.url, `rb_alice_${tag}`);
  const bob = await userDevice(s.srv.url, `rb_bob_${tag}`, 'phone');
  await befriend(s.srv.url, alice, bob);
  for (const id of KEPT) assert.equal((await api(s.srv.url, '/api/sendmsg', text(bob.username, id), alice.sid)).body.ret, 0);
  await beforeBackup(s.srv);
  await s.srv.stop();
  cpSync(dataDir, backupDir, { recursive: true });
  s.srv = await startServer({ dataDir, ...ports });
  for (const id of LOST) assert.equal((await api(s.srv.url, '/api/sendmsg', text(bob.username, id), alice.sid)).body.ret, 0);
  await beforeRestore(s.srv, bob);
  await s.srv.stop();
  rmSync(dataDir, { recursive: true, force: true });
  cpSync(backupDir, dataDir, { recursive: true });
  s.srv = await startServer({ dataDir, ...ports });
  return { srv: s.srv, alice, bob, dirs: s.dirs, clients: s.clients ?? [] };
}

function text(to: string, clientMsgId: string) {
  return { clientMsgId, to, type: 1, content: clientMsgId };
}

/** The resets of an SDK client, and the messages it applied since the last one. */
function watchResets(client: SynchatClient): { resets: string[]; sinceReset(): MsgEntry[] } {
  const resets: string[] = [];
  let since: MsgEntry[] = [];
  client.on('reset', (r) => {
    resets.push(r.epoch);
    since = [];
  });
  client.on('message', (m) => since.push(m));
  return { resets, sinceReset: () => since };
}

async function cleanup(s: Partial<Scenario>): Promise<void> {
  for (const c of s.clients ?? []) await c.close();
  await s.srv?.stop();
  for (const d of s.dirs ?? []) rmSync(d, { recursive: true, force: true });
}

for (const transport of TRANSPORTS as TransportName[]) {
  describe(`a restored backup, SDK over ${transport}`, { skip }, () => {
    const s: Partial<Scenario> = { clients: [] };
    after(() => cleanup(s));

    it('a device whose key is ahead of the restored log resyncs from 0 and converges, each entry once', async () => {
      let b: Awaited<ReturnType<typeof startClient>> | undefined;
      let watch: ReturnType<typeof watchResets> | undefined;
      let keyBefore = 0;
      const { srv, alice, bob } = await restoreScenario(
        `sdk_${transport}`,
        s,
        async (first) => {
          // Bob's device logs in before the backup (a session created after it would not survive the restore).
          b = await startClient(transport, first.url, `rb_bob_sdk_${transport}`, 'laptop');
          s.clients!.push(b.client);
          await waitUntil(() => b!.messages.length >= KEPT.length, 'bob has the first messages');
          watch = watchResets(b.client);
        },
        async () => {
          await waitUntil(() => b!.messages.length >= KEPT.length + LOST.length, 'bob has every message (online again after the backup)');
          keyBefore = b!.client.session!.syncKey;
        },
      );
      const restoredHead = (await syncAll(srv.url, bob.sid)).syncKey;
      assert.ok(restoredHead < keyBefore, `restored head ${restoredHead} is behind the device's key ${keyBefore}`);
      // New messages take seqs the device's key already covers.
      for (const id of NEW) assert.equal((await api(srv.url, '/api/sendmsg', text(bob.username, id), alice.sid)).body.ret, 0);
      const want = [...KEPT, ...NEW];
      const { resets, sinceReset } = watch!;
      await waitUntil(() => resets.length > 0 && sinceReset().length >= want.length, `bob's device resyncs from 0 and has the ${want.length} messages of the restored log`);
      const ids = sinceReset().map((m) => m.clientMsgId);
      assertNoDuplicates(ids, 'messages after the reset');
      assert.deepEqual(ids, want);
      const head = (await syncAll(srv.url, bob.sid)).syncKey;
      await waitUntil(() => b!.client.session!.syncKey === head, "the device's key is the restored log's head");
      assert.equal(resets.length, 1, 'one reset');
    });
  });
}

for (const transport of WIRE_TRANSPORTS) {
  describe(`a restored backup, by hand over ${transport}`, { skip }, () => {
    const s: Partial<Scenario> = {};
    after(() => cleanup(s));

    it('AUTH with a key ahead of the restored log: AUTH_OK gives the lower head and nothing is pushed, SYNC from the key is refused with the epoch, SYNC from 0 converges', async () => {
      let key = 0;
      const { srv, alice, bob } = await restoreScenario(
        `wire_${transport}`,
        s,
        async () => {},
        async (srv2, bob2) => {
          // The device has synced everything, LOST included: its key.
          key = (await syncAll(srv2.url, bob2.sid)).syncKey;
        },
      );
      const before = await syncAll(srv.url, bob.sid);
      assert.ok(before.syncKey < key, `restored head ${before.syncKey} is behind the device's key ${key}`);
      const { client, authOk } = await authedWire(transport, srv, bob.sid, key);
      assert.equal(authOk.syncKey, before.syncKey, 'AUTH_OK carries the restored head');
      assert.equal(authOk.epoch, bob.epoch);
      // News after the restore: the connection does not take the device's key (it is ahead of the head), so
      // nothing is pushed that the device could take for an entry it holds; AUTH_OK's head already told it to sync.
      const m = text(bob.username, 'after-restore');
      assert.equal((await api(srv.url, '/api/sendmsg', m, alice.sid)).body.ret, 0);
      assert.equal((await client.request(OP.HEARTBEAT)).op, OP.HEARTBEAT_ACK);
      assert.deepEqual(client.received.map((p) => p.op), [OP.AUTH_OK, OP.HEARTBEAT_ACK]);
      const refused = await client.request(OP.SYNC, { syncKey: key });
      assert.equal(refused.body.ret, 1);
      assert.equal(refused.body.epoch, bob.epoch);
      assert.match(refused.body.errMsg, /ahead of this log/);
      // From 0: the restored log once, then what came after; later news is pushed again.
      const seqs: number[] = [];
      const ids: string[] = [];
      let at = 0;
      for (;;) {
        const page = await client.request(OP.SYNC, { syncKey: at });
        assert.equal(page.body.ret, 0);
        for (const e of page.body.entries) {
          seqs.push(e.seq);
          if (e.kind === 'msg') ids.push(e.clientMsgId);
        }
        at = page.body.syncKey;
        if (!page.body.continueFlag) break;
      }
      assert.equal(new Set(seqs).size, seqs.length, 'no entry twice');
      assert.deepEqual(ids, [...KEPT, 'after-restore']);
      const later = text(bob.username, 'later');
      assert.equal((await api(srv.url, '/api/sendmsg', later, alice.sid)).body.ret, 0);
      const push = await client.nextOp(OP.PUSH);
      assert.deepEqual(
        push.body.entries.map((e: any) => [e.seq, e.clientMsgId]),
        [[at + 1, 'later']],
      );
      assert.equal(client.received.filter((p) => p.op === OP.PUSH).length, 1, 'nothing pushed before the resync');
      client.close();
    });
  });
}

describe('a changed epoch (a rebuilt log)', { skip }, () => {
  const s: Partial<Scenario> = { clients: [] };
  after(() => cleanup(s));

  it('AUTH_OK and sync carry the new epoch; the SDK and a device on the wire start again from key 0 and converge, each entry once', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'synchat-epoch-'));
    s.dirs = [dataDir];
    s.srv = await startServer({ dataDir });
    const ports = { httpPort: s.srv.httpPort, tcpPort: s.srv.tcpPort };
    const alice = await userDevice(s.srv.url, 'rb_alice_epoch');
    const bob = await userDevice(s.srv.url, 'rb_bob_epoch', 'phone');
    await befriend(s.srv.url, alice, bob);
    for (const id of KEPT) assert.equal((await api(s.srv.url, '/api/sendmsg', text(bob.username, id), alice.sid)).body.ret, 0);
    const b = await startClient('tcp', s.srv.url, bob.username, 'laptop');
    s.clients!.push(b.client);
    await waitUntil(() => b.messages.length >= KEPT.length, 'the SDK device has every message');
    const { resets, sinceReset } = watchResets(b.client);
    const wireKey = (await syncAll(s.srv.url, bob.sid)).syncKey;
    // Rebuilt while stopped: same entries, a new epoch.
    await s.srv.stop();
    const db = new Database(join(dataDir, 'synchat.db'));
    db.prepare('UPDATE users SET epoch = ? WHERE uin = ?').run('rebuilt-1', bob.uin);
    db.close();
    s.srv = await startServer({ dataDir, ...ports });
    for (const id of NEW) assert.equal((await api(s.srv.url, '/api/sendmsg', text(bob.username, id), alice.sid)).body.ret, 0);
    const want = [...KEPT, ...NEW];
    await waitUntil(() => resets.length > 0 && sinceReset().length >= want.length, 'the SDK device resyncs from 0');
    assert.deepEqual(resets, ['rebuilt-1']);
    assert.deepEqual(
      sinceReset().map((m) => m.clientMsgId),
      want,
    );
    // On the wire: a key from the old epoch that is not ahead of the head; AUTH_OK's epoch is what tells.
    const { client, authOk } = await authedWire('ws', s.srv, bob.sid, wireKey);
    assert.equal(authOk.epoch, 'rebuilt-1');
    const page = await client.request(OP.SYNC, { syncKey: 0 });
    assert.equal(page.body.epoch, 'rebuilt-1');
    const ids = page.body.entries.filter((e: any) => e.kind === 'msg').map((e: any) => e.clientMsgId);
    assert.deepEqual(ids, want);
    assertNoDuplicates(
      page.body.entries.map((e: any) => String(e.seq)),
      'entries',
    );
    client.close();
  });
});

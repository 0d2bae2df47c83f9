// A restored backup end to end: a device holds a key from the log; the server is stopped, its data folder
// replaced by an older copy and started again (same ports); the device's key is now ahead of the restored log.
// Through the SDK (TCP, WebSocket, long-poll) and by hand on the wire (TCP, WebSocket), the device resyncs from
// key 0 and converges on the restored log plus what was sent after the restore, with no entry applied twice.
// A device whose key is ahead of the restored head proves the loss: the server renews that user's epoch, so the
// user's other devices resync too, even one that saw some lost entries and comes back only after new entries
// have passed its key (it would otherwise sync on from that key and never get the new entries below it). With no
// device ahead, the operator's `npm run renew-epochs` after the restore does the same for every user (PROTOCOL.md
// "Epoch", docs/deploy.md "Backups and restore"). The path where the stored epoch changes while the server is
// stopped (a rebuilt log) is tested at the end: AUTH_OK and sync carry the new epoch and the device starts again
// from key 0.
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { OP } from '../../src/protocol/index.ts';
import type { MsgEntry, SynchatClient, TransportName } from '../../src/sdk/index.ts';
import { api, befriend, startServer, syncAll, userDevice, type Device, type TestServer } from '../helpers/server.ts';
import { TRANSPORTS as WIRE_TRANSPORTS, authedWire, type WireClient } from '../helpers/wire.ts';
import { TRANSPORTS, assertNoDuplicates, startClient, waitUntil } from '../sdk/helpers.ts';

const skip = process.env.STORE_UNDER_TEST === 'postgres' ? "restores a copy of the SQLite data folder" : undefined;

const KEPT = Array.from({ length: 5 }, (_, i) => `kept-${i}`);
const LOST = Array.from({ length: 10 }, (_, i) => `lost-${i}`);
// More than half of LOST: the new entries pass the key of a device that saw only the first half.
const NEW = Array.from({ length: 8 }, (_, i) => `new-${i}`);
const HALF = LOST.length / 2;

/** Servers and folders of one scenario, for cleanup. */
interface Scenario {
  srv: TestServer;
  alice: Device;
  bob: Device;
  dirs: string[];
  /** SDK clients to close before the server stops. */
  clients: { close(): Promise<void> }[];
}

/** Optional steps of {@link restoreScenario}. */
interface ScenarioSteps {
  /** After the first half of LOST (a device that sees only those goes offline here). */
  halfway?: (srv: TestServer, bob: Device) => Promise<void>;
  /** With the server stopped and the backup copied back (the operator's renewal). */
  afterRestore?: (dataDir: string) => void;
}

/**
 * Alice sends KEPT to Bob; `beforeBackup` runs (a device that must exist in the backup logs in); the stopped
 * server's folder is copied; Alice sends LOST (`steps.halfway` after its first half); `beforeRestore` checks the
 * device holds them; the folder is replaced by the copy (`steps.afterRestore`) and the server started on the same
 * ports.
 */
async function restoreScenario(
  tag: string,
  s: Partial<Scenario>,
  beforeBackup: (srv: TestServer) => Promise<void>,
  beforeRestore: (srv: TestServer, bob: Device) => Promise<void>,
  steps: ScenarioSteps = {},
): Promise<Scenario> {
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
  for (const [i, id] of LOST.entries()) {
    if (i === HALF) await steps.halfway?.(s.srv, bob);
    assert.equal((await api(s.srv.url, '/api/sendmsg', text(bob.username, id), alice.sid)).body.ret, 0);
  }
  await beforeRestore(s.srv, bob);
  await s.srv.stop();
  rmSync(dataDir, { recursive: true, force: true });
  cpSync(backupDir, dataDir, { recursive: true });
  steps.afterRestore?.(dataDir);
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

/** Pages a wire device's log from key 0 (each page carries `epoch`, no entry twice): its messages' ids and the head. */
async function syncFromZero(client: WireClient, epoch: string): Promise<{ ids: string[]; syncKey: number }> {
  const seqs: number[] = [];
  const ids: string[] = [];
  let at = 0;
  for (;;) {
    const page = await client.request(OP.SYNC, { syncKey: at });
    assert.equal(page.body.ret, 0);
    assert.equal(page.body.epoch, epoch);
    for (const e of page.body.entries) {
      seqs.push(e.seq);
      if (e.kind === 'msg') ids.push(e.clientMsgId);
    }
    at = page.body.syncKey;
    if (!page.body.continueFlag) break;
  }
  assertNoDuplicates(seqs.map(String), 'entries from key 0');
  return { ids, syncKey: at };
}

/** The operator's `npm run renew-epochs -- --data-dir DIR`, run as a process. */
function renewEpochs(dataDir: string): { status: number | null; stdout: string; stderr: string } {
  return spawnSync(process.execPath, ['--import', 'tsx', 'scripts/renew-epochs.ts', '--data-dir', dataDir], {
    encoding: 'utf8',
    env: { ...process.env, SYNCHAT_POSTGRES_URL: '' },
  });
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

    it("a device whose key is ahead of the restored log renews the epoch: it and the user's device whose key new entries passed resync from 0 and converge, each entry once", async () => {
      let a: Awaited<ReturnType<typeof startClient>> | undefined;
      let b: Awaited<ReturnType<typeof startClient>> | undefined;
      let watchA: ReturnType<typeof watchResets> | undefined;
      let watchB: ReturnType<typeof watchResets> | undefined;
      let keyA = 0;
      let keyB = 0;
      const { srv, alice, bob } = await restoreScenario(
        `sdk_${transport}`,
        s,
        async (first) => {
          // Bob's devices log in before the backup (a session created after it would not survive the restore).
          a = await startClient(transport, first.url, `rb_bob_sdk_${transport}`, 'laptop');
          b = await startClient(transport, first.url, `rb_bob_sdk_${transport}`, 'tablet');
          s.clients!.push(a.client, b.client);
          await waitUntil(() => a!.messages.length >= KEPT.length && b!.messages.length >= KEPT.length, 'both devices have the first messages');
          watchA = watchResets(a.client);
          watchB = watchResets(b.client);
        },
        async () => {
          await waitUntil(() => a!.messages.length >= KEPT.length + LOST.length, 'the laptop has every message (online again after the backup)');
          keyA = a!.client.session!.syncKey;
        },
        {
          // The tablet sees the first half of LOST, then goes offline until new entries have passed its key.
          halfway: async () => {
            await waitUntil(() => b!.messages.length >= KEPT.length + HALF, 'the tablet has the first half of the lost messages');
            await b!.client.stop();
            keyB = b!.client.session!.syncKey;
          },
        },
      );
      const restoredHead = (await syncAll(srv.url, bob.sid)).syncKey;
      assert.ok(restoredHead < keyB && keyB < keyA, `restored head ${restoredHead} is behind the tablet's key ${keyB} and the laptop's ${keyA}`);
      // The laptop comes back first, with its key ahead: the epoch is renewed.
      await waitUntil(() => watchA!.resets.length > 0, 'the laptop resets');
      const renewed = (await api(srv.url, '/api/sync', { syncKey: 0 }, bob.sid)).body.epoch;
      assert.notEqual(renewed, bob.epoch, 'the epoch was renewed');
      assert.deepEqual(watchA!.resets, [renewed]);
      // New messages take seqs both devices' keys already cover, and pass the tablet's key.
      for (const id of NEW) assert.equal((await api(srv.url, '/api/sendmsg', text(bob.username, id), alice.sid)).body.ret, 0);
      const head = (await syncAll(srv.url, bob.sid)).syncKey;
      assert.ok(head > keyB, `the head ${head} passed the tablet's key ${keyB}`);
      await b!.client.start();
      const want = [...KEPT, ...NEW];
      for (const [name, c, w] of [['laptop', a!, watchA!], ['tablet', b!, watchB!]] as const) {
        await waitUntil(() => w.resets.length > 0 && w.sinceReset().length >= want.length, `bob's ${name} resyncs from 0 and has the ${want.length} messages of the restored log`);
        const ids = w.sinceReset().map((m) => m.clientMsgId);
        assertNoDuplicates(ids, `the ${name}'s messages after the reset`);
        assert.deepEqual(ids, want, name);
        await waitUntil(() => c.client.session!.syncKey === head, `the ${name}'s key is the restored log's head`);
        assert.deepEqual(w.resets, [renewed], `the ${name} reset once, to the renewed epoch`);
      }
    });
  });
}

describe('a restored backup, then npm run renew-epochs (no device ahead of the log)', { skip }, () => {
  const s: Partial<Scenario> = { clients: [] };
  after(() => cleanup(s));

  it('a device whose key new entries passed resyncs from 0 (SDK over TCP), as does one on the wire (WebSocket), each entry once', async () => {
    let b: Awaited<ReturnType<typeof startClient>> | undefined;
    let watch: ReturnType<typeof watchResets> | undefined;
    let keyB = 0;
    let wire: Device | undefined;
    let wireKey = 0;
    let renewal = '';
    const { srv, alice, bob } = await restoreScenario(
      'operator',
      s,
      async (first) => {
        b = await startClient('tcp', first.url, 'rb_bob_operator', 'tablet');
        s.clients!.push(b.client);
        await waitUntil(() => b!.messages.length >= KEPT.length, 'the tablet has the first messages');
        watch = watchResets(b.client);
        const login = await api(first.url, '/api/login', { username: 'rb_bob_operator', password: 'password-rb_bob_operator', deviceId: 'wire' });
        wire = { ...login.body };
      },
      async () => {},
      {
        halfway: async (srv2) => {
          await waitUntil(() => b!.messages.length >= KEPT.length + HALF, 'the tablet has the first half of the lost messages');
          await b!.client.stop();
          keyB = b!.client.session!.syncKey;
          wireKey = (await syncAll(srv2.url, wire!.sid)).syncKey;
        },
        afterRestore: (dataDir) => {
          // A mistyped folder is refused, not given a fresh empty database.
          const typo = renewEpochs(join(dataDir, 'nothing-here'));
          assert.equal(typo.status, 1);
          assert.match(typo.stderr, /no database at/);
          const run = renewEpochs(dataDir);
          assert.equal(run.status, 0, run.stderr);
          renewal = run.stdout;
        },
      },
    );
    assert.match(renewal, /Renewed the epoch of \d+ users/);
    const restoredHead = (await syncAll(srv.url, bob.sid)).syncKey;
    assert.ok(restoredHead < keyB && keyB === wireKey, `restored head ${restoredHead} is behind the devices' key ${keyB}`);
    for (const id of NEW) assert.equal((await api(srv.url, '/api/sendmsg', text(bob.username, id), alice.sid)).body.ret, 0);
    const head = (await syncAll(srv.url, bob.sid)).syncKey;
    assert.ok(head > keyB, `the head ${head} passed the devices' key ${keyB}`);
    const want = [...KEPT, ...NEW];
    // The SDK device: its stored epoch is no longer the log's.
    await b!.client.start();
    await waitUntil(() => watch!.resets.length > 0 && watch!.sinceReset().length >= want.length, 'the tablet resyncs from 0');
    const epoch = watch!.resets[0]!;
    assert.notEqual(epoch, bob.epoch);
    assert.deepEqual(watch!.resets, [epoch], 'one reset');
    assert.deepEqual(
      watch!.sinceReset().map((m) => m.clientMsgId),
      want,
    );
    await waitUntil(() => b!.client.session!.syncKey === head, "the tablet's key is the log's head");
    // On the wire: the key is below the head, so only AUTH_OK's epoch tells; from 0 the log once.
    const { client, authOk } = await authedWire('ws', srv, wire!.sid, wireKey);
    assert.equal(authOk.epoch, epoch);
    assert.equal(authOk.syncKey, head);
    assert.deepEqual((await syncFromZero(client, epoch)).ids, want);
    client.close();
  });
});

for (const transport of WIRE_TRANSPORTS) {
  describe(`a restored backup, by hand over ${transport}`, { skip }, () => {
    const s: Partial<Scenario> = {};
    after(() => cleanup(s));

    it("AUTH with a key ahead of the restored log: AUTH_OK gives the lower head and a renewed epoch, nothing is pushed, SYNC from the key is refused with the same epoch, SYNC from 0 converges; the user's device whose key new entries passed resyncs too", async () => {
      let key = 0;
      let tablet: Device | undefined;
      let tabletKey = 0;
      const { srv, alice, bob } = await restoreScenario(
        `wire_${transport}`,
        s,
        async (first) => {
          const login = await api(first.url, '/api/login', { username: `rb_bob_wire_${transport}`, password: `password-rb_bob_wire_${transport}`, deviceId: 'tablet' });
          tablet = { ...login.body };
        },
        async (srv2, bob2) => {
          // The device has synced everything, LOST included: its key.
          key = (await syncAll(srv2.url, bob2.sid)).syncKey;
        },
        {
          // The tablet syncs the first half of LOST only.
          halfway: async (srv2) => {
            tabletKey = (await syncAll(srv2.url, tablet!.sid)).syncKey;
          },
        },
      );
      const before = await syncAll(srv.url, bob.sid);
      assert.ok(before.syncKey < key, `restored head ${before.syncKey} is behind the device's key ${key}`);
      const { client, authOk } = await authedWire(transport, srv, bob.sid, key);
      assert.equal(authOk.syncKey, before.syncKey, 'AUTH_OK carries the restored head');
      const renewed: string = authOk.epoch;
      assert.notEqual(renewed, bob.epoch, 'a key ahead of the log renews its epoch');
      // News after the restore: the connection does not take the device's key (it is ahead of the head), so
      // nothing is pushed that the device could take for an entry it holds; AUTH_OK's head already told it to sync.
      const m = text(bob.username, 'after-restore');
      assert.equal((await api(srv.url, '/api/sendmsg', m, alice.sid)).body.ret, 0);
      assert.equal((await client.request(OP.HEARTBEAT)).op, OP.HEARTBEAT_ACK);
      assert.deepEqual(client.received.map((p) => p.op), [OP.AUTH_OK, OP.HEARTBEAT_ACK]);
      const refused = await client.request(OP.SYNC, { syncKey: key });
      assert.equal(refused.body.ret, 1);
      assert.equal(refused.body.epoch, renewed, 'renewed once: the same key again changes nothing');
      assert.match(refused.body.errMsg, /ahead of this log/);
      // From 0: the restored log once, then what came after; later news is pushed again.
      const { ids, syncKey: at } = await syncFromZero(client, renewed);
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
      // New entries pass the tablet's key: its key is below the head, AUTH_OK's epoch is what tells it.
      for (const id of NEW) assert.equal((await api(srv.url, '/api/sendmsg', text(bob.username, id), alice.sid)).body.ret, 0);
      const head = (await syncAll(srv.url, bob.sid)).syncKey;
      assert.ok(before.syncKey < tabletKey && tabletKey < head, `the tablet's key ${tabletKey} was ahead of the restored head ${before.syncKey} and is behind the head ${head}`);
      const t = await authedWire(transport, srv, tablet!.sid, tabletKey);
      assert.equal(t.authOk.epoch, renewed);
      assert.equal(t.authOk.syncKey, head);
      assert.deepEqual((await syncFromZero(t.client, renewed)).ids, [...KEPT, 'after-restore', 'later', ...NEW]);
      t.client.close();
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

// "An answered send survives power loss", at the sync boundary: while the WAL fsync is held back (the store's
// fsyncModule seam parks it), a committed write is neither answered (HTTP sendmsg, SEND_ACK over TCP and
// WebSocket), nor announced (PUSH, NOTIFY, a parked synccheck), nor readable (/api/sync, synccheck of another
// device); once the fsync is released everything arrives. Real listeners, raw wire clients.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { OP } from '../../src/protocol/index.ts';
import { heldFsync } from '../helpers/gated-fsync.ts';
import { api, befriend, startServer, syncAll, userDevice } from '../helpers/server.ts';
import { waitUntil } from '../helpers/wait.ts';
import { authedWire, type WireClient } from '../helpers/wire.ts';

const skip = process.env.STORE_UNDER_TEST === 'postgres' ? "the WAL fsync is the SQLite store's" : undefined;
/** How long the test watches for a leak once a write has committed with its fsync parked (a leak takes ms). */
const WATCH_MS = 300;
const ANNOUNCING = new Set<number>([OP.SEND_ACK, OP.PUSH, OP.NOTIFY]);


// A caught-up connection is PUSHed its news; one whose PUSH would not fit under the outbound bound is NOTIFYed
// (the smallest bound, 1 KiB, and messages of 1.5 KiB), which tests every connection's NOTIFY path.
for (const announce of ['PUSH', 'NOTIFY'] as const) {
  test(`no answer, ${announce}, synccheck answer or read shows a write before its WAL fsync completed (HTTP, TCP, WebSocket)`, { skip }, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'synchat-held-fsync-'));
    const disk = heldFsync(dir);
    const srv = await startServer(announce === 'NOTIFY' ? { outboundBufferBytes: 1024 } : {}, { fsyncModule: disk.module });
    const content = announce === 'NOTIFY' ? 'n'.repeat(1536) : 'p';
    const wires: WireClient[] = [];
    t.after(async () => {
      disk.release();
      for (const w of wires) w.close();
      await srv.stop();
      rmSync(dir, { recursive: true, force: true });
    });
    const wire = async (transport: 'tcp' | 'ws', sid: string, syncKey?: number): Promise<WireClient> => {
      const { client } = await authedWire(transport, srv, sid, syncKey);
      wires.push(client);
      return client;
    };

    const alice = await userDevice(srv.url, 'held_alice');
    const bob = await userDevice(srv.url, 'held_bob');
    await befriend(srv.url, alice, bob);
    const aliceKey = (await syncAll(srv.url, alice.sid)).syncKey;
    const bobKey = (await syncAll(srv.url, bob.sid)).syncKey;
    const device = async (who: string, id: string) => userDevice(srv.url, who, id);
    // Senders (whose caught-up connections would also get their own message PUSHed) and receivers of every kind.
    const aliceTcp = await wire('tcp', (await device('held_alice', 'tcp')).sid, aliceKey);
    const aliceWs = await wire('ws', (await device('held_alice', 'ws')).sid, aliceKey);
    const bobTcp = await wire('tcp', (await device('held_bob', 'tcp')).sid, bobKey);
    const bobWs = await wire('ws', (await device('held_bob', 'ws')).sid, bobKey);
    const bobCaller = await wire('ws', (await device('held_bob', 'caller')).sid); // asks CALL /api/synccheck
    const bobPoller = await device('held_bob', 'poller');
    const bobReader = await device('held_bob', 'reader');
    const wiresByName = { aliceTcp, aliceWs, bobTcp, bobWs, bobCaller };

    disk.hold();
    const parkedBefore = disk.parked();
    const raw = new Database(join(srv.dataDir, 'synchat.db'), { readonly: true });
    t.after(() => raw.close());
    const committed = (): string[] =>
      (raw.prepare("SELECT client_msg_id AS c FROM messages WHERE client_msg_id LIKE 'held-%'").all() as { c: string }[]).map((r) => r.c);
    const early: { http?: unknown; poll?: unknown } = {};
    const poll = api(srv.url, `/api/synccheck?syncKey=${bobKey}&timeout=30000`, undefined, bobPoller.sid).then((r) => (early.poll ??= r.body));
    const send = (clientMsgId: string) => ({ clientMsgId, to: 'held_bob', type: 1, content });
    const http = api(srv.url, '/api/sendmsg', send('held-http'), alice.sid).then((r) => (early.http ??= r.body));
    const tcpSeq = aliceTcp.send(OP.SEND, send('held-tcp'));
    const wsSeq = aliceWs.send(OP.SEND, send('held-ws'));

    // A write committed (another connection reads it from the WAL) and its fsync is parked.
    await disk.waitParked(parkedBefore);
    await waitUntil(() => committed().length > 0, 'a send has committed');
    await new Promise((r) => setTimeout(r, WATCH_MS));
    assert.ok(committed().length >= 1, 'the test watches a committed, not yet durable write');
    assert.equal(early.http, undefined, 'HTTP sendmsg answered before its fsync');
    for (const [name, w] of Object.entries(wiresByName)) {
      assert.deepEqual(w.received.filter((p) => ANNOUNCING.has(p.op)), [], `${name} got SEND_ACK, PUSH or NOTIFY before the fsync`);
    }
    assert.equal(early.poll, undefined, 'a parked synccheck answered before the fsync');
    const read = await api(srv.url, '/api/sync', { syncKey: bobKey }, bobReader.sid);
    assert.deepEqual([read.body.entries, read.body.syncKey], [[], bobKey], '/api/sync shows a write before its fsync');
    const check = await api(srv.url, `/api/synccheck?syncKey=${bobKey}&timeout=0`, undefined, bobReader.sid);
    assert.deepEqual([check.body.selector, check.body.syncKey], [0, bobKey], 'synccheck tells of a write before its fsync');
    const call = await bobCaller.request(OP.CALL, { path: '/api/synccheck', body: { syncKey: String(bobKey) } });
    assert.deepEqual([call.body.selector, call.body.syncKey], [0, bobKey], 'CALL /api/synccheck tells of a write before its fsync');

    disk.release();
    const all = ['held-http', 'held-tcp', 'held-ws'];
    assert.equal((await http).ret, 0);
    assert.equal((await aliceTcp.next((p) => p.op === OP.SEND_ACK && p.seq === tcpSeq)).body.ret, 0);
    assert.equal((await aliceWs.next((p) => p.op === OP.SEND_ACK && p.seq === wsSeq)).body.ret, 0);
    for (const [name, w] of Object.entries({ aliceTcp, aliceWs, bobTcp, bobWs })) {
      if (announce === 'NOTIFY') {
        assert.ok((await w.nextOp(OP.NOTIFY)).body.syncKey > (name.startsWith('alice') ? aliceKey : bobKey), `${name}: NOTIFYed once durable`);
        continue;
      }
      const pushed = new Set<string>();
      while (pushed.size < all.length) for (const e of (await w.nextOp(OP.PUSH)).body.entries) pushed.add(e.clientMsgId);
      assert.deepEqual([...pushed].sort(), [...all].sort(), `${name}: every send PUSHed once durable`);
    }
    const pollAnswer = await poll;
    assert.equal(pollAnswer.ret, 0);
    assert.notEqual(pollAnswer.selector, 0, 'the parked synccheck answers news once durable');
    const after = await syncAll(srv.url, bobReader.sid, bobKey);
    assert.deepEqual(after.entries.map((e) => e.clientMsgId).sort(), [...all].sort());
  });
}
